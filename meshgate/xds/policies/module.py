"""What a policy module is (`PolicyModule`), the registry of them, and the report of what they shaped.

The contract is drawn in the package docstring (`meshgate.xds.policies`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from meshgate.resources.model import Resource
from meshgate.resources.proto_json import parse_dict
from meshgate.xds.policies.matching import CACHE, Loser, Match

__all__ = [
    "EMPTY_REPORT",
    "IGNORED_BY_KUMA",
    "PASS_THROUGH",
    "UNSUPPORTED",
    "Applied",
    "ConnectionManager",
    "DataplaneHook",
    "DataplaneSite",
    "Denied",
    "Direction",
    "Gate",
    "GateHook",
    "Ignored",
    "LogSite",
    "Loser",
    "Match",
    "Matcher",
    "PolicyModule",
    "PolicyRegistry",
    "PolicyReport",
    "Resources",
    "Shaped",
    "Target",
    "conf",
    "ignored_kinds",
    "typed_conf",
]


_Conf = TypeVar("_Conf", bound=Message)


class Target(StrEnum):
    LISTENER = "listener"
    ROUTE = "route"
    CLUSTER = "cluster"
    ACCESS_LOG = "access log"  # a filter chain's access log: `<listener>/<filter chain index>`
    PROXY = "proxy"  # the proxy's whole generated config
    DATAPLANE = "dataplane"  # every HTTP connection manager of any proxy (TrafficTrace)


class Matcher(StrEnum):
    """How a kind's policies are matched. Kuma's `targetRef` policies will add their own."""

    CONNECTION = "sources/destinations"  # matching.py
    SELECTORS = "selectors"  # matching.best_for_proxy: Kuma's dataplane policies (ProxyTemplate, TrafficTrace)


# The destination a gateway's access log is matched against: Kuma indexes a gateway's TrafficLog by its
# pass-through service (filter_chain_generator.go:250-263), since a listener reaches many destinations.
PASS_THROUGH = {"kuma.io/service": "pass_through"}


@dataclass(frozen=True, slots=True)
class LogSite:
    """Where an access log goes: a gateway filter chain, HTTP (its HCM) or TCP (its TCP proxy)."""

    mesh: Resource | None  # the Mesh (its `logging` backends); None until KDS has brought it
    mesh_name: str
    address: str  # the proxy's address (Kuma's %KUMA_SOURCE_ADDRESS%)
    service: str  # the gateway's service (Kuma's %KUMA_SOURCE_SERVICE%)
    http: bool
    # The pipe the proxy's data plane process reads a `tcp` logging backend's lines from (Kuma's
    # `proxy.Metadata.AccessLogSocketPath`): the path the proxy sent in its node metadata, else Kuma's name for
    # it (meshgate.sockets).
    access_log_socket: str = ""


# A proxy's generated resources by type URL, then name, in generation order; a PROXY hook edits it in place.
Resources = dict[str, dict[str, Message]]

# The cluster's protocol (http, http2, grpc, tcp) is passed too: Kuma's configurers branch on it.
ClusterHook = Callable[[Match, cluster_pb2.Cluster, str], None]
RouteHook = Callable[[Match, route_components_pb2.Route], None]
ListenerHook = Callable[[Match, listener_pb2.Listener], None]
# The HTTP filter the kind's route hook relies on (its per-route config is read by it), put before the router
# in each gateway HCM one of whose routes the kind shaped.
HttpFilterHook = Callable[[], hcm_pb2.HttpFilter]
AccessLogHook = Callable[[Match, LogSite], accesslog_pb2.AccessLog | None]
# Returns what it could not apply (problems), applied or not: one entry per refused modification.
ProxyHook = Callable[[Resource, Resources], list[str]]


class Direction(StrEnum):
    """Kuma's `TrafficDirection` of an HTTP connection manager (`xds/envoy/types.go:228-230`)."""

    OUTBOUND = "OUTBOUND"
    INBOUND = "INBOUND"
    UNSPECIFIED = "UNSPECIFIED"  # a builtin gateway's listeners


@dataclass(frozen=True, slots=True)
class ConnectionManager:
    """One HTTP connection manager of a proxy, as Kuma's generators know it when they configure it."""

    listener: str
    direction: Direction
    service: str  # the proxy's service on it: an inbound's, else the proxy's identifying service
    destination: str = ""  # an outbound's destination service


@dataclass(frozen=True, slots=True)
class DataplaneSite:
    """What a `dataplane` hook works on besides the resources: any proxy (gateway or sidecar), its Mesh, and
    the HTTP connection managers generation built for it, by listener name."""

    proxy: Resource
    mesh: Resource | None  # None until KDS has brought it
    gateway: bool  # a builtin gateway
    connection_managers: tuple[ConnectionManager, ...]


# Edits the resources of any proxy (its HCMs, a cluster of its own); returns the problems, as a ProxyHook does.
DataplaneHook = Callable[[Match, DataplaneSite, Resources], list[str]]


@dataclass(frozen=True, slots=True)
class Gate:
    """What a `gate` hook decides on: may the gateway listener with `source` tags reach the backend with
    `backend` tags? Asked for every backend, whether or not the kind has policies (no policy may mean deny)."""

    policies: tuple[Resource, ...]  # every policy of the kind in the mesh, by name
    mesh: Resource | None  # the Mesh (mTLS decides whether permissions are enforced)
    source: Mapping[str, str]
    backend: Mapping[str, str]


# A denial reason, or None when the backend may be reached.
GateHook = Callable[[Gate], "str | None"]


@dataclass(frozen=True, slots=True)
class PolicyModule:
    kind: str  # the resource kind, as in `type`: "Timeout"
    cluster: ClusterHook | None = None
    route: RouteHook | None = None
    listener: ListenerHook | None = None
    http_filter: HttpFilterHook | None = None  # with `route`: the filter its per-route config is for
    access_log: AccessLogHook | None = None
    proxy: ProxyHook | None = None  # with Matcher.SELECTORS: the winner for the proxy edits its resources
    # With Matcher.SELECTORS: the winner for any proxy (sidecar too, by any inbound's tags) edits its resources,
    # before the `proxy` hooks (Kuma's generators run before ProxyTemplate's modifications).
    dataplane: DataplaneHook | None = None
    # Denies backends (`policies.denial` makes Envoy answer 403 for their share); asked for every backend.
    gate: GateHook | None = None
    matcher: Matcher = Matcher.CONNECTION

    @property
    def targets(self) -> frozenset[Target]:
        hooks: dict[Target, object] = {
            Target.CLUSTER: self.cluster,
            Target.ROUTE: self.route,
            Target.LISTENER: self.listener,
            Target.ACCESS_LOG: self.access_log,
            Target.PROXY: self.proxy,
            Target.DATAPLANE: self.dataplane,
        }
        return frozenset(target for target, hook in hooks.items() if hook is not None)

    @property
    def ignored(self) -> bool:
        """Kuma's gateway ignores the kind: reported, never applied."""
        return not self.targets and self.gate is None


class PolicyRegistry:
    """Policy modules by kind. Immutable: `with_module` returns a new registry."""

    def __init__(self, modules: Iterable[PolicyModule] = ()) -> None:
        self._by_kind: dict[str, PolicyModule] = {}
        for module in modules:
            if module.kind in self._by_kind:
                raise ValueError(f"two policy modules for kind {module.kind!r}")
            self._by_kind[module.kind] = module

    def get(self, kind: str) -> PolicyModule | None:
        return self._by_kind.get(kind)

    def with_module(self, module: PolicyModule) -> PolicyRegistry:
        return PolicyRegistry([*(m for m in self._by_kind.values() if m.kind != module.kind), module])

    def __iter__(self) -> Any:
        return iter(sorted(self._by_kind.values(), key=lambda m: m.kind))


@dataclass(frozen=True, slots=True)
class Applied:
    """The policy of `kind` that shaped the `target` named `name` (a listener, `<route configuration>/<virtual
    host>/<route>`, or a cluster), with the losers."""

    kind: str
    target: Target
    name: str
    match: Match


@dataclass(frozen=True, slots=True)
class Denied:
    """A backend the `kind`'s gate denied to the listener with `source` tags, and why."""

    kind: str
    backend: tuple[tuple[str, str], ...]  # its tags, sorted
    source: tuple[tuple[str, str], ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    kind: str
    policies: tuple[str, ...]  # their names
    reason: str


IGNORED_BY_KUMA = "Kuma's builtin gateway ignores this kind"
UNSUPPORTED = "meshgate has no gateway module for this kind yet"


# (target, its name, each kind that shaped it with its Match): several `Applied` in one record.
Shaped = tuple[Target, str, tuple[tuple[str, Match], ...]]


class PolicyReport:
    """What shaped one proxy's config: `applied` by kind, target and name (one record per name: the twins of a
    match, `/api/` and `/api`, share their route's name), the kinds `ignored`, the backends `denied`.

    `applied` is given in the order generation recorded it, a cluster's records possibly as one `Shaped` (every
    kind that shaped it, one object instead of one per kind: a generation records one per cluster), and is
    expanded, de-duplicated and sorted when first read (`meshgatectl inspect`), not once per generation."""

    __slots__ = ("_applied", "_sorted", "denied", "ignored")

    def __init__(
        self,
        applied: Iterable[Applied | Shaped] = (),
        ignored: tuple[Ignored, ...] = (),
        denied: tuple[Denied, ...] = (),
    ) -> None:
        self._applied = applied
        self._sorted: tuple[Applied, ...] | None = None
        self.ignored = ignored
        self.denied = denied

    @property
    def applied(self) -> tuple[Applied, ...]:
        if self._sorted is None:
            order = {target: i for i, target in enumerate(Target)}
            unique: dict[tuple[str, Target, str], Applied] = {}
            for item in self._applied:
                if isinstance(item, Applied):
                    unique[(item.kind, item.target, item.name)] = item
                    continue
                target, name, matches = item
                for kind, match in matches:
                    unique[(kind, target, name)] = Applied(kind, target, name, match)
            self._sorted = tuple(sorted(unique.values(), key=lambda a: (a.kind, order[a.target], a.name)))
            self._applied = ()
        return self._sorted

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyReport):
            return NotImplemented
        return (self.applied, self.ignored, self.denied) == (other.applied, other.ignored, other.denied)


EMPTY_REPORT = PolicyReport()


def conf(policy: Resource) -> Mapping[str, Any]:
    """A policy's `conf` as Kuma's Universal JSON has it (camelCase), whether its spec is the kind's protobuf
    message (durations in seconds, "3600s") or a Struct (durations as written, "1h" too: read them with
    `parse_duration`, or use `typed_conf`)."""
    spec: Any = policy.spec
    found = json_format.MessageToDict(spec).get("conf", {})
    return found if isinstance(found, dict) else {}


_CONF_KEYS: dict[type[Message], str] = {}


def typed_conf(policy: Resource, conf_type: type[_Conf]) -> _Conf:
    """A policy's `conf` as the kind's `Conf` message (`Timeout.Conf`, ...), so that a module maps it field by
    field as Kuma's Go configurers do. A Struct spec whose conf does not parse (written before the kind had a
    validator) reads as an empty conf: it changes nothing rather than failing generation. Parsed once per policy
    object (hooks run for every route and cluster it shapes); callers only read it."""
    key = _CONF_KEYS.get(conf_type)
    if key is None:
        key = _CONF_KEYS[conf_type] = f"conf:{conf_type.DESCRIPTOR.full_name}"
    value: _Conf = CACHE.get(policy, key, _typed_conf, policy, conf_type)
    return value


def _typed_conf(policy: Resource, conf_type: type[_Conf]) -> _Conf:
    try:
        # A Struct conf keeps durations as written ("1h"): read them as Kuma's jsonpb does (`ToTyped`).
        return parse_dict(dict(conf(policy)), conf_type(), ignore_unknown_fields=True)
    except json_format.ParseError:
        return conf_type()


def ignored_kinds(policies: Mapping[str, tuple[Resource, ...]], registry: PolicyRegistry) -> tuple[Ignored, ...]:
    """The kinds with policies in the context that generation does not apply, and why."""
    out = []
    for kind in sorted(policies):
        module = registry.get(kind)
        if module is not None and not module.ignored:
            continue
        reason = UNSUPPORTED if module is None else IGNORED_BY_KUMA
        out.append(Ignored(kind, tuple(p.meta.name for p in policies[kind]), reason))
    return tuple(out)
