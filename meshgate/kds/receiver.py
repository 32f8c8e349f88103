"""The receiving side of one KDS stream, with no I/O.

The receiver subscribes to every kind with the wildcard, sending `initial_resource_versions` for what
it already holds (so a reconnect transfers only what changed). For each response it decodes and
validates every resource, and produces a `Plan`: what to apply to the local store, and the ACK or NACK
to send *after* applying. Valid resources are applied even when others in the same response are bad;
an invalid resource keeps the receiver's old copy, as Kuma does.

Every request carries `node` (meshgate.kds.node): in full on the subscriptions, its id alone on ACKs and
NACKs, as Kuma's own do. A response for a kind this side does not serve (a Kuma peer sends kinds meshgate
does not know) is ACKed with nothing stored: a `Plan` with `unknown` set, at most
meshgate.kds.limits.MAX_UNKNOWN_KINDS distinct such kinds per stream.

A `strict` receiver (the global's, facing zones it need not trust) treats a resource that does not even
decode as a MalformedMessage, not a rejection: no honest peer sends one, so the stream ends.

A receiver built with `validate=None` trusts its peer's validation (issue 16: a zone facing a global it
authenticated; what the global accepted, the zone accepts). It still decodes every resource, so a resource
it cannot decode (bad envelope, wrong or undecodable spec, a name that does not match its meta) is rejected
by name, and `accept` (the ownership rules) still runs: only the semantic validation of the spec is skipped.

One response is decoded, and recorded as applied, as one batch each, with the cyclic garbage collector paused
(meshgate.collector).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from meshgate.collector import gc_paused
from meshgate.kds.envelope import EnvelopeError, from_wire
from meshgate.kds.errors import MalformedMessage, ProtocolError
from meshgate.kds.limits import check_response, check_unknown_kind, clip
from meshgate.kds.node import ack_node
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.errors import Violation
from meshgate.resources.model import Resource, ResourceKey

__all__ = ["Plan", "Receiver", "ReceiverKind", "Rejection"]

Validator = Callable[[Resource], list[Violation]]
# Rejections a closed stream keeps per kind, for its insight (the first few say what went wrong).
_KEPT_REJECTIONS = 10


@dataclass(frozen=True, slots=True)
class Rejection:
    name: str  # wire name
    version: str
    reason: str


@dataclass(slots=True)
class ReceiverKind:
    descriptor: KindDescriptor
    # wire name -> (store key, version) of what this receiver holds from the peer.
    held: dict[str, tuple[ResourceKey, str]] = field(default_factory=dict)
    subscribed: bool = False
    responses: int = 0
    bytes_received: int = 0
    acks_sent: int = 0
    nacks_sent: int = 0
    last_nonce: str = ""
    last_rejections: tuple[Rejection, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    kind: str
    nonce: str
    upserts: tuple[tuple[str, str, Resource], ...]  # (wire name, version, resource)
    removals: tuple[tuple[str, ResourceKey], ...]  # (wire name, key)
    rejections: tuple[Rejection, ...]
    # A kind this side does not serve: nothing to apply, only an ACK to send.
    unknown: bool = False

    @property
    def accepted(self) -> bool:
        return not self.rejections


class Receiver:
    def __init__(
        self,
        descriptors: Iterable[KindDescriptor],
        validate: Validator | None,
        *,
        accept: Callable[[Resource], str | None] | None = None,
        transform: Callable[[Resource], Resource] | None = None,
        strict: bool = False,
        node: base_pb2.Node | None = None,
    ) -> None:
        """`accept` may veto a decoded resource with a reason (ownership rules), before validation;
        `transform` maps a valid resource to what is stored (the global renames zone resources);
        `strict` checks each response's shape (meshgate.kds.limits) and ends the stream on garbage;
        `node` goes in every request (meshgate.kds.node.kds_node); the adapter may set it until it subscribes."""
        self.kinds: dict[str, ReceiverKind] = {d.name: ReceiverKind(d) for d in descriptors}
        self.node = node if node is not None else base_pb2.Node()
        # Responses received per kind this side does not serve (bounded: MAX_UNKNOWN_KINDS kinds).
        self.unknown: dict[str, int] = {}
        self._strict = strict
        self._validate = validate
        self._accept = accept
        self._transform = transform

    def subscribe(
        self, held: Mapping[str, Mapping[str, tuple[ResourceKey, str]]]
    ) -> list[discovery_pb2.DeltaDiscoveryRequest]:
        """Initial wildcard requests, one per kind, carrying what is already held (kind -> name -> ...)."""
        out = []
        for kind, rk in self.kinds.items():
            rk.held = dict(held.get(kind, {}))
            rk.subscribed = True
            out.append(
                discovery_pb2.DeltaDiscoveryRequest(
                    node=self.node,
                    type_url=kind,
                    resource_names_subscribe=["*"],
                    initial_resource_versions={n: v for n, (_, v) in rk.held.items()},
                )
            )
        return out

    def receive(self, resp: discovery_pb2.DeltaDiscoveryResponse) -> Plan:
        if self._strict:
            check_response(resp, self.kinds)
        rk = self.kinds.get(resp.type_url)
        if rk is None:
            check_unknown_kind(resp.type_url, self.unknown)
            self.unknown[resp.type_url] = self.unknown.get(resp.type_url, 0) + 1
            return Plan(resp.type_url, resp.nonce, (), (), (), unknown=True)
        if not rk.subscribed:
            raise ProtocolError(f"response for kind {clip(resp.type_url)!r}, which this stream did not subscribe to")
        rk.responses += 1
        rk.bytes_received += resp.ByteSize()
        rk.last_nonce = resp.nonce
        upserts: list[tuple[str, str, Resource]] = []
        rejections: list[Rejection] = []
        descriptor, accept, validate, transform = rk.descriptor, self._accept, self._validate, self._transform
        # The checks run inline, not in a method per resource: a full sync passes 10k resources through here.
        with gc_paused():
            for wire in resp.resources:
                try:
                    resource = from_wire(descriptor, wire)
                except EnvelopeError as exc:
                    if self._strict:
                        raise MalformedMessage(str(exc)) from exc
                    rejections.append(Rejection(wire.name, wire.version, str(exc)))
                    continue
                # Ownership first; then validation, unless None: the peer validated it (a global this zone
                # authenticated), and decoding and ownership still apply.
                reason = accept(resource) if accept is not None else None
                if not reason and validate is not None:
                    violations = validate(resource)
                    if violations:
                        reason = "; ".join(str(v) for v in violations)
                if reason:
                    rejections.append(Rejection(wire.name, wire.version, reason))
                else:
                    upserts.append((wire.name, wire.version, resource if transform is None else transform(resource)))
        removals = tuple((n, rk.held[n][0]) for n in resp.removed_resources if n in rk.held)
        return Plan(rk.descriptor.name, resp.nonce, tuple(upserts), removals, tuple(rejections))

    def forget(self) -> None:
        """Drops what this (closed) stream held per resource, keeping its counters: a closed stream's
        insight needs how many responses crossed, not which versions a peer that is gone once had."""
        for rk in self.kinds.values():
            rk.held = {}
            rk.last_rejections = rk.last_rejections[:_KEPT_REJECTIONS]

    def applied(self, plan: Plan) -> discovery_pb2.DeltaDiscoveryRequest:
        """Records that `plan` is in the local store; returns the ACK or NACK to send."""
        if plan.unknown:
            return discovery_pb2.DeltaDiscoveryRequest(
                node=ack_node(self.node), type_url=plan.kind, response_nonce=plan.nonce
            )
        rk = self.kinds[plan.kind]
        held = rk.held
        # Two tuples per resource, which would set off collections over a heap that just grew by a full sync.
        with gc_paused():
            for name, version, resource in plan.upserts:
                held[name] = (resource.key, version)
        for name, _ in plan.removals:
            rk.held.pop(name, None)
        rk.last_rejections = plan.rejections
        req = discovery_pb2.DeltaDiscoveryRequest(
            node=ack_node(self.node), type_url=plan.kind, response_nonce=plan.nonce
        )
        if plan.accepted:
            rk.acks_sent += 1
            return req
        rk.nacks_sent += 1
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=r.name, description=r.reason) for r in plan.rejections
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad)
        # Kuma joins the errors into the message; we do too, and add structured details it ignores.
        message = "; ".join(f"{plan.kind} {r.name}: {r.reason}" for r in plan.rejections)
        req.error_detail.CopyFrom(status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail]))
        return req
