"""grpc.aio adapter for the zone's side of GlobalToZoneSync: subscribe, apply, ACK; reconnect forever.

While the global is away the zone keeps its store as it is, so everything local keeps serving. On
reconnect it sends `initial_resource_versions` computed from its store, so only changes travel, and
removals that happened meanwhile still arrive.

`grpc://HOST:PORT` connects in plaintext, `grpcs://HOST:PORT` over TLS (see meshgate.transport.tls). The
sync streams, health checks and config dumps all ride the one channel, so they share its security.

Every request carries `node` (meshgate.kds.node: the zone name as id, Kuma's metadata), the features go as
repeated `features` metadata values, and a response for a kind the zone does not know is ACKed and ignored.
Reconnects back off exponentially (`Backoff`), so a global that ends every session at once is not hammered.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import anyio
import grpc
import structlog

from meshgate.api.mesh.v1alpha1 import kds_pb2, kds_pb2_grpc
from meshgate.backoff import Backoff
from meshgate.kds import ownership
from meshgate.kds.envelope import to_wire
from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE, clip
from meshgate.kds.node import FEATURES_KEY, ZONE_FEATURES, kds_node
from meshgate.kds.receiver import Plan, Receiver, Rejection
from meshgate.kds.sender import ProtocolError
from meshgate.observability.process import leaf_exceptions
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.errors import Violation
from meshgate.resources.model import Resource, ResourceKey
from meshgate.store.protocol import ResourceStore, iter_all
from meshgate.transport.kds_upstream import ZoneUpstream
from meshgate.transport.tls import ClientTls, explain_tls_failure
from meshgate.transport.xds_configs import ConfigDumpAnswerer

__all__ = [
    "Backoff",
    "ClientStatus",
    "GlobalAddress",
    "GlobalToZoneClient",
    "channel_options",
    "parse_address",
    "parse_global_address",
]

log = structlog.get_logger(__name__)

# Kuma's KDS limits: 10 MiB messages by default (`--kds-max-msg-size`), 15 s keepalive.
MAX_FAILED_PINGS = 3


def channel_options(max_msg_size: int = DEFAULT_MAX_MSG_SIZE) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_msg_size),
        ("grpc.max_send_message_length", max_msg_size),
        ("grpc.keepalive_time_ms", 15_000),
        ("grpc.keepalive_timeout_ms", 15_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


@dataclass(frozen=True, slots=True)
class GlobalAddress:
    """One `--global-address`, parsed."""

    target: str  # HOST:PORT as gRPC dials it (an IPv6 host in brackets)
    host: str  # without brackets, for a TLS handshake of our own
    port: int
    tls: bool


# Kuma's schemes: grpcs is KDS over TLS. A bare HOST:PORT stays plaintext, as it always was here.
_SCHEMES = {"grpc": False, "grpcs": True}


def parse_global_address(address: str) -> GlobalAddress:
    """`grpc://HOST:PORT`, `grpcs://HOST:PORT` or bare `HOST:PORT`; ValueError names what is wrong."""
    expected = "expected grpc://HOST:PORT, or grpcs://HOST:PORT for TLS"
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme.lower() not in _SCHEMES:
            raise ValueError(f"--global-address {address!r}: unknown scheme {scheme + '://'!r}; {expected}")
        tls = _SCHEMES[scheme.lower()]
    else:
        rest, tls = address, False
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ValueError(f"--global-address {address!r}: {expected}")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not bare or ("[" in bare or "]" in bare) or (":" in bare and bare == host):
        raise ValueError(f"--global-address {address!r}: {expected} (an IPv6 address in brackets: [::1]:5685)")
    return GlobalAddress(f"{host}:{port}", bare, int(port), tls)


def parse_address(address: str) -> str:
    """`grpc://host:port`, `grpcs://host:port` (or bare `host:port`) -> the gRPC target `host:port`."""
    return parse_global_address(address).target


@dataclass(slots=True)
class ClientStatus:
    connected: bool = False
    address: str = ""
    connects: int = 0
    last_error: str = ""
    connected_at: datetime | None = None
    # Kinds whose first response since the last connect has been applied.
    synced_kinds: set[str] = field(default_factory=set)


class GlobalToZoneClient:
    def __init__(
        self,
        *,
        zone: str,
        addresses: Sequence[str],
        store: ResourceStore,
        kinds: Sequence[KindDescriptor],
        validate: Callable[[Resource], list[Violation]],
        features: Sequence[str] = ZONE_FEATURES,
        backoff: Backoff | None = None,
        upstream: ZoneUpstream | None = None,
        instance_id: str = "",
        xds_configs: ConfigDumpAnswerer | None = None,
        ca_cert_file: Path | None = None,
        tls_skip_verify: bool = False,
        token: str | Callable[[], str] = "",
        max_msg_size: int = DEFAULT_MAX_MSG_SIZE,
    ) -> None:
        """`ca_cert_file` and `tls_skip_verify` apply to `grpcs://` addresses only; a CA file that cannot be
        read or parsed raises StartupError naming `--kds-ca-cert-file`. `token` is the zone token presented
        as `authorization: Bearer` on every call (a global with `--kds-auth cp-token` requires it): a string,
        or a function asked on every call, so a renewed token is used without a restart."""
        self._token: Callable[[], str] = token if callable(token) else (lambda: token)
        # Set by `credentials_changed`: ends the reconnect backoff early (a new token may be accepted now).
        self._wake = anyio.Event()
        if not addresses:
            raise ValueError("--global-address is required")
        self.zone = zone
        self._targets = [parse_global_address(a) for a in addresses]
        if any(t.tls for t in self._targets):
            self._tls = ClientTls.load(ca_cert_file, tls_skip_verify)
        else:
            self._tls = ClientTls()
            if ca_cert_file is not None or tls_skip_verify:
                log.warning("kds.client.tls_options_unused", zone=zone, reason="no --global-address is grpcs://")
        self._max_msg_size = max_msg_size
        self._store = store
        self._kinds = tuple(kinds)
        self._descriptors = {d.name: d for d in kinds}
        self._validate = validate
        self._features = tuple(features)
        self._upstream = upstream
        self._xds_configs = xds_configs
        self.instance_id = instance_id
        self._backoff = backoff or Backoff()
        self.status = ClientStatus()
        self.on_synced: Callable[[str], None] | None = None
        # The current session's receiver (its per-kind counters), None before the first connect.
        self.receiver: Receiver | None = None
        # anyio.current_time() of the current session's first response, for the backoff.
        self._first_response_at: float | None = None
        # Responses received over every session: a stream that delivers proves the global alive (`_ping`).
        self._responses = 0
        # Seconds a health check may take before it counts as failed.
        self.ping_timeout = 5.0

    def credentials_changed(self) -> None:
        """The zone token changed: a zone waiting to reconnect (refused with the old one) retries now."""
        self._wake.set()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        token = self._token()
        return (
            ("client-id", self.zone),
            ("kds-version", "v3"),
            # One value per feature, as Kuma sends them (pkg/kds/mux/client.go: AppendToOutgoingContext with
            # the key repeated) and reads them (pkg/kds/features.go: md.Get, exact match).
            *((FEATURES_KEY, f) for f in self._features),
            ("zone-instance-id", self.instance_id),
            # Every call is authenticated on its own by a global with --kds-auth cp-token; built per call, so
            # each one carries the current token.
            *((("authorization", f"Bearer {token}"),) if token else ()),
        )

    @property
    def synced(self) -> bool:
        return self.status.synced_kinds >= {d.name for d in self._kinds}

    async def run(self) -> None:
        """Connects, syncs until the stream ends, and reconnects with backoff. Never returns."""
        i = 0
        while True:
            address = self._targets[i % len(self._targets)]
            target = address.target
            i += 1
            error = ""  # stays empty when the session is cancelled (shutdown): that is no disconnect
            self._wake = anyio.Event()
            self._first_response_at = None
            try:
                await self._session(address)
            except* _EXPECTED as group:
                error = "; ".join(_describe(e) for e in leaf_exceptions(group))
                error = self.status.last_error = explain_tls_failure(error, tls=address.tls)
            except* Exception as group:
                # A bug must not take the zone down: it keeps serving its store, logs loudly, retries.
                error = self.status.last_error = "; ".join(_describe(e) for e in leaf_exceptions(group))
                log.error("kds.client.unexpected_error", zone=self.zone, exc_info=group)
            finally:
                if self.status.connected:
                    if error:
                        log.warning("kds.client.disconnected", zone=self.zone, error=error)
                    else:
                        log.info("kds.client.stopped", zone=self.zone)
                self.status.connected = False
                self.status.synced_kinds.clear()
                first = self._first_response_at
                self._backoff.session_ended(None if first is None else anyio.current_time() - first)
            delay = self._backoff.next_delay()
            log.info(
                "kds.client.reconnecting",
                zone=self.zone,
                target=target,
                delay=round(delay, 3),
                error=self.status.last_error,
            )
            with anyio.move_on_after(delay):
                await self._wake.wait()
                log.info("kds.client.credentials_changed", zone=self.zone, target=target)

    def global_authenticated(self, address: GlobalAddress) -> bool:
        """Whether this zone authenticates the global at `address`: TLS with the certificate verified against
        --kds-ca-cert-file or the system roots (not --kds-tls-skip-verify, which trusts whatever is presented)."""
        return address.tls and not self._tls.skip_verify

    async def _held(self) -> dict[str, dict[str, tuple[ResourceKey, str]]]:
        """What this zone holds from the global, as (key, content version) per wire name."""
        held: dict[str, dict[str, tuple[ResourceKey, str]]] = {}
        for d in self._kinds:
            out = held[d.name] = {}
            async for r in iter_all(self._store, d.name, page_size=5000):
                if ownership.synced_from_global(self.zone, r):
                    wire = to_wire(r)
                    out[wire.name] = (r.key, wire.version)
        return held

    async def _channel(self, address: GlobalAddress) -> grpc.aio.Channel:
        if not address.tls:
            return grpc.aio.insecure_channel(address.target, options=channel_options(self._max_msg_size))
        credentials, options = await self._tls.channel_credentials(address.host, address.port)
        return grpc.aio.secure_channel(
            address.target, credentials, options=[*channel_options(self._max_msg_size), *options]
        )

    async def _session(self, address: GlobalAddress) -> None:
        target = address.target
        metadata = self._metadata()
        async with await self._channel(address) as channel:
            stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
            health = kds_pb2_grpc.GlobalKDSServiceStub(channel)
            call = stub.GlobalToZoneSync(metadata=metadata)
            # node.id is the zone name and control-plane-id this instance, as a Kuma zone sends them
            # (pkg/kds/zone/components.go: NewDeltaKDSStream(stream, zone, rt, cfgJson, ...)).
            node = kds_node(self.zone, control_plane_id=self.instance_id, features=self._features)
            # What a global this zone authenticated (TLS, its certificate verified) accepted, the zone accepts
            # without validating it again (issue 16): the receiver still decodes every resource, NACKing by name
            # what it cannot decode, and still enforces ownership. A global it cannot authenticate (plaintext,
            # --kds-tls-skip-verify) could be anyone, so the zone validates what that one sends.
            trusted = self.global_authenticated(address)
            receiver = self.receiver = Receiver(
                self._kinds,
                None if trusted else self._validate,
                accept=partial(ownership.zone_accepts, self.zone),
                node=node,
            )
            for req in receiver.subscribe(await self._held()):
                await _write(call, req)
            slog = log.bind(zone=self.zone, stream=target, validated_by="global" if trusted else "zone")
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._ping, health)
                if self._upstream is not None:
                    # Zone to global rides the same connection; if it fails, the session reconnects whole.
                    tg.start_soon(self._upstream.run, channel, metadata, self.instance_id)
                if self._xds_configs is not None:
                    # Config dumps for the global (GlobalKDSService/StreamXDSConfigs), on the same connection.
                    tg.start_soon(self._xds_configs.run, channel, metadata)
                first = True
                async for resp in call:
                    if first:
                        first = False
                        self._first_response_at = anyio.current_time()
                        self.status.connected = True
                        self.status.connects += 1
                        self.status.address = target
                        self.status.connected_at = datetime.now(UTC)
                        slog.info("kds.client.connected")
                    self._responses += 1
                    plan = receiver.receive(resp)
                    if plan.unknown:
                        # A kind this zone does not know (a Kuma global may send more): ACKed, not stored.
                        if receiver.unknown[plan.kind] == 1:
                            slog.info("kds.client.unknown_kind", type=clip(plan.kind), resources=len(resp.resources))
                        await _write(call, receiver.applied(plan))
                        continue
                    plan = await self._apply(plan)
                    await _write(call, receiver.applied(plan))
                    if plan.rejections:
                        slog.warning(
                            "kds.client.nack",
                            type=plan.kind,
                            nonce=plan.nonce,
                            rejected={r.name: r.reason for r in plan.rejections},
                        )
                    slog.debug(
                        "kds.client.applied",
                        type=plan.kind,
                        nonce=plan.nonce,
                        upserts=len(plan.upserts),
                        removals=len(plan.removals),
                    )
                    if plan.kind not in self.status.synced_kinds:
                        self.status.synced_kinds.add(plan.kind)
                        if self.on_synced is not None:
                            self.on_synced(plan.kind)
                tg.cancel_scope.cancel()
            raise ProtocolError("the global closed the stream")

    async def _apply(self, plan: Plan) -> Plan:
        """Applies a plan's valid resources; a global resource that would overwrite one created in this
        zone (same kind, mesh and name) is rejected by name instead, so local state is never clobbered."""
        upserts = plan.upserts
        rejections = list(plan.rejections)
        if upserts and self._descriptors[plan.kind].writable_on_zone:
            local = await self._local_keys(plan.kind)
            kept = []
            for name, version, resource in upserts:
                if resource.key in local:
                    reason = (
                        f"conflicts with {plan.kind} {resource.meta.name!r} in mesh {resource.meta.mesh!r} "
                        f"created in zone {self.zone!r}; rename one of them"
                    )
                    rejections.append(Rejection(name, version, reason))
                else:
                    kept.append((name, version, resource))
            upserts = tuple(kept)
        await self._store.apply_sync(plan.kind, [r for _, _, r in upserts], [k for _, k in plan.removals])
        return dataclasses.replace(plan, upserts=upserts, rejections=tuple(rejections))

    async def _local_keys(self, kind: str) -> set[ResourceKey]:
        return {
            r.key
            async for r in iter_all(self._store, kind, page_size=5000)
            if not ownership.synced_from_global(self.zone, r)
        }

    async def _ping(self, health: kds_pb2_grpc.GlobalKDSServiceStub) -> None:
        """Pings the global at the interval it asks for. A stream can look alive while its peer is gone
        (a global restarted behind a load balancer): after MAX_FAILED_PINGS in a row, end the session so
        the zone reconnects instead of waiting on a dead stream. A ping that fails while the stream delivered
        a response since the previous one does not count: that global is alive, only busy (after a restart,
        every zone reconnects at once), and reconnecting would add to its load instead of easing it."""
        interval = 10.0
        failures = 0
        responses = self._responses
        while True:
            try:
                resp = await health.HealthCheck(
                    kds_pb2.ZoneHealthCheckRequest(), metadata=self._metadata(), timeout=self.ping_timeout
                )
                interval = max(0.1, resp.interval.ToTimedelta().total_seconds()) or interval
                failures = 0
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    # A global without health checks: stop pinging, keep the session, as Kuma's zone does
                    # (pkg/kds/mux/client.go, startHealthCheck).
                    log.info("kds.client.health_check_unimplemented", zone=self.zone)
                    return
                failures = 0 if self._responses != responses else failures + 1
                log.warning("kds.client.health_check_failed", zone=self.zone, error=_describe(exc), failures=failures)
                if failures >= MAX_FAILED_PINGS:
                    raise ProtocolError(f"{failures} health checks in a row failed; reconnecting") from exc
            responses = self._responses
            await anyio.sleep(interval)


# Failures of a connection, not of our code: the stream ended, the peer went away, or broke protocol.
# grpc.aio raises InvalidStateError when writing to a call that has already finished.
_EXPECTED = (grpc.aio.AioRpcError, ProtocolError, OSError, asyncio.InvalidStateError)


async def _write(call: grpc.aio.StreamStreamCall[object, object], message: object) -> None:
    """grpc.aio raises a bare InvalidStateError ("RPC already finished") on a write to a call that has ended,
    which hides why it ended: a refused TLS handshake, or a global that went away. Raise the call's status."""
    try:
        await call.write(message)
    except asyncio.InvalidStateError:
        code, details = await call.code(), await call.details()
        raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
