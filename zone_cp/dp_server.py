"""The zone's data plane server policy: who may open an xDS stream, registering its Dataplane, and where its
Envoy admin is (for config dumps). Plugged into the ADS adapter as its `StreamGate`.

Kuma's way (pkg/xds/auth/callbacks.go, pkg/xds/server/callbacks/dataplane_lifecycle.go):

    first request of a stream
      node.id                   <mesh>.<name>
      node.metadata             dataplane.resource    the Dataplane (JSON or YAML), as kuma-dp sends it;
                                                      absent: a Dataplane already in this zone's store
                                dataplane.admin.port  the Envoy admin port, on the stream's peer address
                                accessLogSocketPath   the pipe its data plane process reads TrafficLog lines
                                                      for `tcp` backends from (meshgate.sockets)
      gRPC metadata             authorization         the data plane token (raw, as kuma-dp; "Bearer " allowed)
    -> the token must verify with the mesh's keys, be unrevoked and unexpired, and vouch for the Dataplane's
       identity: name, mesh, tags (inbound and gateway tags) and type (gateway for a builtin gateway,
       dataplane otherwise) -- `meshgate.auth.dataplane_token.check_identity`, Kuma's messages
    -> a Dataplane from the metadata is created or updated in the store (origin zone), and deleted when
       the last authenticated stream of that proxy closes
    -> while open, the token is re-checked every `recheck_interval` seconds, at its expiry, and whenever a
       mesh Secret changes (a revocation list synced from the global): a revoked or expired token ends the
       stream with UNAUTHENTICATED

On a Kubernetes zone (`service_accounts` given) a proxy may present, instead of a data plane token, the
projected service account token of its gateway Pod: a token with a `kubernetes.io` claim goes to a TokenReview
and must belong to a replica of the MeshGatewayInstance whose Dataplane it claims
(`meshgate.k8s.token_review`). It is checked when the stream opens, as Kuma checks it, and not re-checked
while the stream lives (a bound token stops working when its Pod goes, and with it the stream).

A ZoneIngress or ZoneEgress proxy (`node.id` `.<name>`, meshgate-dp --proxy-type ingress|egress) registers its
resource the same way, with a data plane token of type `ingress` / `egress` for its name (`zone_cp.zone_proxies`:
Kuma's zone token of scope `ingress` / `egress` cannot be checked by a zone).

With `--dp-server-authn none` (`tokens=None`) no token is asked for; registration and the admin address
bookkeeping stay the same. A refusal is logged (`xds.auth.refused`, WARN, bounded fields) and counted
(`meshgate_xds_auth_failures{reason}` on the diagnostics `/metrics`).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import anyio
import anyio.abc
import grpc
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from envoy.config.core.v3 import base_pb2

from meshgate.auth.jwt import TokenError, unverified_payload
from meshgate.k8s.token_review import ServiceAccountTokenRefused, ServiceAccountTokens
from meshgate.resources import codec, kinds
from meshgate.resources.errors import ValidationError
from meshgate.resources.model import LABEL_ORIGIN, LABEL_ZONE, Origin, Resource, ResourceKey
from meshgate.sockets import FIELD_ACCESS_LOG_SOCKET_PATH, FIELD_METRICS_SOCKET_PATH
from meshgate.store.events import ChangeBatch
from meshgate.store.protocol import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore
from meshgate.store.watch import WatchLog, reconcile_forever
from meshgate.tokens.keys import SigningKeyMissing
from meshgate.tokens.services import DataplaneTokens
from meshgate.transport.ads_server import StreamRefused
from meshgate.xds.ads import ProxyId
from meshgate.xds.gateway import is_builtin_gateway
from meshgate.xds.ingress import with_available_services
from zone_cp.zone_proxies import (
    PROXY_TYPES,
    token_mesh,
    verify_zone_proxy,
    zone_proxy_from_metadata,
    zone_proxy_kind,
)

__all__ = [
    "AUTHORIZATION",
    "FIELD_ADMIN_PORT",
    "FIELD_DATAPLANE",
    "AdminTarget",
    "DpServer",
    "dataplane_identity",
    "peer_host",
]

log = structlog.get_logger(__name__)

# Kuma's names (pkg/core/xds/metadata.go, pkg/xds/auth/callbacks.go).
FIELD_DATAPLANE: Final = "dataplane.resource"
FIELD_ADMIN_PORT: Final = "dataplane.admin.port"
AUTHORIZATION: Final = "authorization"
# Re-check open streams' tokens at least this often (revocations also wake them at once, see above).
RECHECK_INTERVAL: Final = 10.0
# A Dataplane document in node metadata larger than this is refused: no proxy needs more.
MAX_DATAPLANE_BYTES: Final = 64 * 1024
# An access log pipe path longer than this is ignored (Kuma's names are at most 103 bytes; PATH_MAX is 4096).
MAX_SOCKET_PATH: Final = 1024
_MAX_LOGGED = 300


@dataclass(frozen=True, slots=True)
class AdminTarget:
    """Where a connected proxy's Envoy admin answers: the stream's peer host and the port it declared."""

    host: str
    port: int

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"


def peer_host(peer: str) -> str:
    """The host of a grpc peer string: `ipv4:1.2.3.4:5`, `ipv6:[::1]:5`; "" for anything else (unix sockets)."""
    scheme, _, rest = peer.partition(":")
    if scheme == "ipv4":
        return rest.rpartition(":")[0]
    if scheme == "ipv6":
        return rest.rpartition(":")[0].strip("[]").split("%")[0]
    return ""


def dataplane_identity(resource: Resource) -> tuple[dict[str, list[str]], str]:
    """(tags -> every value the Dataplane carries, proxy type) as a token must vouch for them."""
    spec: Any = resource.spec
    tags: dict[str, set[str]] = {}
    for inbound in spec.networking.inbound:
        for k, v in inbound.tags.items():
            tags.setdefault(k, set()).add(v)
    if spec.networking.HasField("gateway"):
        for k, v in spec.networking.gateway.tags.items():
            tags.setdefault(k, set()).add(v)
    proxy_type = "gateway" if is_builtin_gateway(resource) else "dataplane"
    return {k: sorted(v) for k, v in sorted(tags.items())}, proxy_type


def _credential(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    values = [v for k, v in metadata if k.lower() == AUTHORIZATION]
    if len(values) > 1:
        raise StreamRefused("malformed", f"request must have exactly 1 {AUTHORIZATION!r} header, got {len(values)}")
    if not values:
        return ""
    value = values[0].decode(errors="replace") if isinstance(values[0], bytes) else values[0]
    value = value.strip()
    return value[7:].strip() if value[:7].lower() == "bearer " else value


def _metadata_string(node: base_pb2.Node, field: str) -> str | None:
    value = node.metadata.fields.get(field)
    if value is None:
        return None
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return str(value.string_value)
    if kind == "number_value":
        return str(int(value.number_value))
    return None


def _socket_path(node: base_pb2.Node, field: str = FIELD_ACCESS_LOG_SOCKET_PATH) -> str:
    """The access log pipe (or, by `field`, the metrics socket) the proxy declared, or "" (the zone then names
    one: meshgate.xds.generate). It only ever goes into that proxy's own Envoy config; a path Envoy could not
    open as a file is refused."""
    value = _metadata_string(node, field) or ""
    if len(value) > MAX_SOCKET_PATH or not value.isprintable():
        return ""
    return value


def is_service_account_token(token: str) -> bool:
    """Whether a token *looks* like a Kubernetes service account token (its unverified `kubernetes.io` claim).
    Only to route it to the TokenReview rather than to the data plane token verifier: each verifies fully."""
    with contextlib.suppress(TokenError, ValueError):
        return isinstance(unverified_payload(token).get("kubernetes.io"), Mapping)
    return False


class _Session:
    def __init__(
        self, server: DpServer, proxy: ProxyId, dataplane: Resource, token: str, admin: AdminTarget | None, owns: bool
    ) -> None:
        self.server, self.proxy, self.dataplane, self.token, self.admin = server, proxy, dataplane, token, admin
        self.owns = owns  # this stream registered the Dataplane: the last such stream removes it
        self.expires_at = float("inf")
        self.access_log_socket = ""
        self.metrics_socket = ""

    async def watch(self) -> StreamRefused:
        server = self.server
        tokens = server.tokens
        if tokens is None or server.is_service_account(self.token):
            await anyio.sleep_forever()
            raise AssertionError("unreachable")
        while True:
            changed = server.secrets_changed
            wait = min(server.recheck_interval, max(self.expires_at - server.clock() + 0.5, 0.0))
            with anyio.move_on_after(wait):
                await changed.wait()
            try:
                if changed.is_set():  # a mesh Secret changed: maybe the revocation list, read it now
                    # A zone proxy is in no mesh: its token's mesh holds the keys and the revocation list.
                    await tokens.mesh(self.proxy.mesh or token_mesh(self.token)).refresh(force=True)
                await server.verify(self.proxy, self.dataplane, self.token)
            except StreamRefused as exc:
                server.refused(self.proxy, "", exc, open_stream=True)
                return exc

    async def close(self) -> None:
        await self.server.closed(self)


class DpServer:
    """`StreamGate` for the zone's ADS server; `tokens=None` admits every proxy (`--dp-server-authn none`)."""

    def __init__(
        self,
        store: ResourceStore,
        zone: str,
        tokens: DataplaneTokens | None,
        *,
        recheck_interval: float = RECHECK_INTERVAL,
        clock: Callable[[], float] = time.time,
        service_accounts: ServiceAccountTokens | None = None,
    ) -> None:
        """`service_accounts`: on a Kubernetes zone, also admit gateway Pods by their service account token."""
        self.store, self.zone, self.tokens = store, zone, tokens
        self.service_accounts = service_accounts
        self.recheck_interval = recheck_interval
        self.clock = clock
        self.sessions: dict[ProxyId, list[_Session]] = {}
        self.failures: Counter[str] = Counter()
        # Replaced (and the old one set) whenever a mesh Secret changes: every open session re-checks.
        self.secrets_changed = anyio.Event()
        # Deregistrations, done by `run`'s task rather than the closing stream's: gRPC cancels a handler whose
        # client went away natively, which a shielded scope does not stop, so a delete awaited there can be
        # lost and the proxy stay registered. 1024: far more proxies than close within one store write.
        self._deregister: MemoryObjectSendStream[tuple[ProxyId, ResourceKey]] | None = None

    # -- the gate ----------------------------------------------------------------------------------------------

    async def open(
        self, proxy: ProxyId, node: base_pb2.Node, metadata: Sequence[tuple[str, str | bytes]], peer: str
    ) -> _Session:
        try:
            token = _credential(metadata)
            dataplane, from_metadata = await self._dataplane(proxy, node)
            claims_exp = await self.verify(proxy, dataplane, token)
            owns = await self._register(dataplane) if from_metadata else False
        except StreamRefused as exc:
            self.refused(proxy, peer, exc, open_stream=False)
            raise
        port = _metadata_string(node, FIELD_ADMIN_PORT)
        host = peer_host(peer)
        admin = AdminTarget(host, int(port)) if port and port.isdigit() and 0 < int(port) < 65536 and host else None
        session = _Session(self, proxy, dataplane, token, admin, owns)
        session.expires_at = claims_exp
        session.access_log_socket = _socket_path(node)
        session.metrics_socket = _socket_path(node, FIELD_METRICS_SOCKET_PATH)
        self.sessions.setdefault(proxy, []).append(session)
        log.info("xds.auth.admitted", proxy=str(proxy)[:_MAX_LOGGED], peer=peer, authn=self.authn, registered=owns)
        return session

    @property
    def authn(self) -> str:
        if self.tokens is None:
            return "none"
        return "dpToken" if self.service_accounts is None else "dpToken,serviceAccountToken"

    def is_service_account(self, token: str) -> bool:
        return self.service_accounts is not None and is_service_account_token(token)

    async def verify(self, proxy: ProxyId, dataplane: Resource, token: str) -> float:
        """The token's expiry (inf without authentication), or StreamRefused naming why it does not do."""
        if self.tokens is None:
            return float("inf")
        if not token:
            raise StreamRefused(
                "missing_token",
                f"missing data plane token: send it as gRPC metadata {AUTHORIZATION!r} (meshgate-dp"
                " --dataplane-token-file; get one with `meshgatectl generate dataplane-token`)",
            )
        if dataplane.kind in PROXY_TYPES:
            return await verify_zone_proxy(self.tokens, proxy, token, dataplane.kind)
        tags, proxy_type = dataplane_identity(dataplane)
        if self.service_accounts is not None and is_service_account_token(token):
            try:
                await self.service_accounts.authenticate(
                    token, name=proxy.name, mesh=proxy.mesh, tags=tags, proxy_type=proxy_type
                )
            except ServiceAccountTokenRefused as exc:
                status = grpc.StatusCode.UNAVAILABLE if exc.unavailable else grpc.StatusCode.UNAUTHENTICATED
                raise StreamRefused(exc.reason, f"authentication failed: {exc}", status) from None
            return float("inf")
        try:
            claims = await self.tokens.verify(token, mesh=proxy.mesh, name=proxy.name, tags=tags, proxy_type=proxy_type)
        except SigningKeyMissing as exc:
            raise StreamRefused(
                "no_signing_key", f"authentication failed: {exc}", grpc.StatusCode.UNAVAILABLE
            ) from None
        except TokenError as exc:
            other = token_mesh(token) if exc.code == "bad_signature" else ""
            if other and other != proxy.mesh:
                # Kuma's message: each mesh has its own keys, so only the claim can say which mesh it was for.
                message = f"proxy mesh from requestor: {proxy.mesh} is different than in token: {other}"
                raise StreamRefused("wrong_identity", f"authentication failed: {message}") from None
            raise StreamRefused(exc.code, f"authentication failed: {exc}") from None
        return float(claims.expires_at)

    def refused(self, proxy: ProxyId, peer: str, exc: StreamRefused, *, open_stream: bool) -> None:
        self.failures[exc.reason] += 1
        log.warning(
            "xds.auth.refused",
            proxy=str(proxy)[:_MAX_LOGGED],
            peer=peer[:_MAX_LOGGED] or None,
            reason=exc.reason,
            error=str(exc)[:_MAX_LOGGED],
            open_stream=open_stream,
        )

    async def closed(self, session: _Session) -> None:
        live = self.sessions.get(session.proxy, [])
        with contextlib.suppress(ValueError):
            live.remove(session)
        if not live:
            self.sessions.pop(session.proxy, None)
        if session.owns and not any(s.owns for s in live):
            # dataplane_lifecycle.go: a proxy that registered itself is gone with its last stream.
            if self._deregister is None:
                await self._remove(session.proxy, session.dataplane.key)
                return
            try:
                self._deregister.send_nowait((session.proxy, session.dataplane.key))
            except anyio.WouldBlock:
                await self._remove(session.proxy, session.dataplane.key)

    async def _remove(self, proxy: ProxyId, key: ResourceKey) -> None:
        if any(s.owns for s in self.sessions.get(proxy, [])):
            return  # registered again by a new stream meanwhile
        with contextlib.suppress(NotFoundError):
            await self.store.delete(key)
        log.info("xds.dataplane.deregistered", proxy=str(proxy)[:_MAX_LOGGED])

    async def _deregister_closed(self, receive: MemoryObjectReceiveStream[tuple[ProxyId, ResourceKey]]) -> None:
        async with receive:
            async for proxy, key in receive:
                await self._remove(proxy, key)

    # -- what the rest of the zone asks --------------------------------------------------------------------

    def admin_target(self, mesh: str, name: str) -> AdminTarget | None:
        """The Envoy admin of the newest live stream of this proxy (authenticated, unless authn is none)."""
        for session in reversed(self.sessions.get(ProxyId(mesh, name), [])):
            if session.admin is not None:
                return session.admin
        return None

    def access_log_socket(self, proxy: ProxyId) -> str:
        """The access log pipe the newest live stream of this proxy declared, or "" (none, or no stream)."""
        live = self.sessions.get(proxy)
        return live[-1].access_log_socket if live else ""

    def metrics_socket(self, proxy: ProxyId) -> str:
        """The metrics socket the newest live stream of this proxy declared, or "" (none, or no stream)."""
        live = self.sessions.get(proxy)
        return live[-1].metrics_socket if live else ""

    def zone_proxy_kind(self, proxy: ProxyId) -> str:
        """What a connected `.<name>` proxy registered: ZoneEgress or ZoneIngress (the default)."""
        live = self.sessions.get(proxy)
        return live[-1].dataplane.kind if live else kinds.ZONE_INGRESS

    def connected(self, mesh: str, name: str) -> bool:
        return bool(self.sessions.get(ProxyId(mesh, name)))

    def metrics_text(self) -> str:
        lines = [
            "# HELP meshgate_xds_auth_failures xDS streams refused or closed because the proxy's data plane token"
            " did not prove its identity",
            "# TYPE meshgate_xds_auth_failures counter",
        ]
        lines += [f'meshgate_xds_auth_failures{{reason="{r}"}} {n}' for r, n in sorted(self.failures.items())]
        return "\n".join(lines) + "\n"

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Wakes every open session when a mesh Secret changes (a revocation list or a signing key), and removes
        what closed streams registered."""
        send, receive = anyio.create_memory_object_stream[tuple[ProxyId, ResourceKey]](1024)
        async with anyio.create_task_group() as tg, send:
            tg.start_soon(self._deregister_closed, receive)
            self._deregister = send
            try:
                await reconcile_forever(
                    self.store,
                    {kinds.SECRET},
                    self._wake_sessions,
                    log=WatchLog(log, "xds.auth.wake_failed"),
                    task_status=task_status,
                )
            finally:
                self._deregister = None

    async def _wake_sessions(self, _batch: ChangeBatch | None) -> None:
        changed, self.secrets_changed = self.secrets_changed, anyio.Event()
        changed.set()

    # -- internals ---------------------------------------------------------------------------------------------

    async def _dataplane(self, proxy: ProxyId, node: base_pb2.Node) -> tuple[Resource, bool]:
        text = _metadata_string(node, FIELD_DATAPLANE)
        if proxy.is_zone_proxy:
            kind = zone_proxy_kind(node, text)
            return zone_proxy_from_metadata(
                proxy, text, kind, field=FIELD_DATAPLANE, max_bytes=MAX_DATAPLANE_BYTES
            ), True
        if text is None:
            try:
                found = await self.store.get(ResourceKey(kinds.DATAPLANE, proxy.mesh, proxy.name))
            except NotFoundError:
                raise StreamRefused(
                    "unknown_dataplane",
                    f'Dataplane "{proxy.name}" not found in mesh "{proxy.mesh}": create it in this zone first or'
                    f" send it as node metadata {FIELD_DATAPLANE!r} (meshgate-dp --dataplane-file)",
                    grpc.StatusCode.NOT_FOUND,
                ) from None
            self._check_local(found)
            return found, False
        if len(text) > MAX_DATAPLANE_BYTES:
            raise StreamRefused(
                "invalid_dataplane",
                f"{FIELD_DATAPLANE} is over {MAX_DATAPLANE_BYTES} bytes",
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        try:
            docs = codec.load_documents(text)
            if len(docs) != 1:
                raise StreamRefused(
                    "invalid_dataplane",
                    f"{FIELD_DATAPLANE} must hold one Dataplane document",
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
            doc = {**docs[0], "type": kinds.DATAPLANE, "mesh": proxy.mesh, "name": proxy.name}
            if docs[0].get("mesh", proxy.mesh) != proxy.mesh or docs[0].get("name", proxy.name) != proxy.name:
                raise StreamRefused(
                    "invalid_dataplane",
                    f"{FIELD_DATAPLANE} names {docs[0].get('mesh')}.{docs[0].get('name')}, not node.id {proxy}",
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
            given = doc.get("labels")
            labels: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
            labels.pop(LABEL_ZONE, None)
            doc["labels"] = {**labels, LABEL_ORIGIN: Origin.ZONE.value}
            return codec.load(doc, kind=kinds.DATAPLANE), True
        except ValidationError as exc:
            problems = "; ".join(map(str, exc.violations))[:_MAX_LOGGED]
            raise StreamRefused(
                "invalid_dataplane",
                f"invalid Dataplane in {FIELD_DATAPLANE}: {problems}",
                grpc.StatusCode.INVALID_ARGUMENT,
            ) from None

    def _check_local(self, resource: Resource) -> None:
        labels = resource.meta.labels
        if labels.get(LABEL_ORIGIN) == Origin.GLOBAL.value or labels.get(LABEL_ZONE, self.zone) != self.zone:
            raise StreamRefused(
                "foreign_dataplane",
                f'Dataplane "{resource.meta.name}" belongs to zone {labels.get(LABEL_ZONE, "?")!r}: a proxy'
                " connects to its own zone",
                grpc.StatusCode.PERMISSION_DENIED,
            )

    async def _register(self, dataplane: Resource) -> bool:
        """Creates or updates the Dataplane, ZoneIngress or ZoneEgress (dataplane_lifecycle.go); True once it is in
        the store.
        A ZoneIngress keeps the `availableServices` the zone wrote (zone_cp/ingress.py), which its proxy does
        not know."""
        key = dataplane.key
        for _ in range(5):  # optimistic concurrency: re-read on conflict, a few times at most
            try:
                current = await self.store.get(key)
            except NotFoundError:
                try:
                    await self.store.create(dataplane)
                except AlreadyExistsError:
                    continue
                log.info("xds.dataplane.registered", proxy=f"{key.mesh}.{key.name}"[:_MAX_LOGGED])
                return True
            self._check_local(current)
            if key.kind == kinds.ZONE_INGRESS:
                kept = getattr(current.spec, "availableServices", ())
                dataplane = with_available_services(dataplane, kept) or dataplane
            if codec.spec_bytes(current) == codec.spec_bytes(dataplane) and _same(current.meta.labels, dataplane):
                return True
            try:
                await self.store.update(
                    replace(current, spec=dataplane.spec).with_meta(labels=dict(dataplane.meta.labels))
                )
            except (ConflictError, NotFoundError):
                continue
            return True
        raise StreamRefused(
            "conflict",
            f"could not register {key.kind} {key.name}: too many concurrent writers",
            grpc.StatusCode.ABORTED,
        )


def _same(labels: Mapping[str, str], dataplane: Resource) -> bool:
    return dict(labels) == dict(dataplane.meta.labels)
