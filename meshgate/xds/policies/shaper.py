"""`Shaper`: applies a context's policies to one proxy's generated config, through the modules' hooks. Pure.

`generate` makes one per proxy and calls it at these points: when a gateway route resolves a backend to a
cluster (`cluster_matches`, then `shape_cluster` when the cluster is built), when a virtual host's route is
built (`route_shaper`, which records the kinds that shaped a route), when a gateway HTTP connection manager is
built after its routes (`http_filters`: the filters those kinds' per-route configs are for), when a gateway
filter chain is built (`access_logs`, for its HCM or TCP proxy), when a gateway listener is built
(`shape_listener`), and once the whole config is built (`shape_dataplane` for any proxy, then `shape_proxy`
for a builtin gateway). A context without policies
for an applied kind makes every call a no-op that returns at once, so config without policies is built exactly
as before the seam existed. Matching is cached per listener's tags (Kuma computes candidates by source once
per listener host) and per backend, since a gateway has many routes to few backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from meshgate.resources.model import Resource
from meshgate.xds.policies.matching import (
    Candidates,
    Match,
    TagsKey,
    best_for_dataplane,
    best_for_destination,
    best_for_proxy,
    best_for_split,
    by_source,
    index_of,
    tags_key,
)
from meshgate.xds.policies.module import (
    PASS_THROUGH,
    Applied,
    DataplaneSite,
    Denied,
    Gate,
    LogSite,
    PolicyModule,
    PolicyRegistry,
    PolicyReport,
    Resources,
    Shaped,
    Target,
    ignored_kinds,
)
from meshgate.xds.routes import Entry

__all__ = ["POLICY_TAG_PREFIX", "ClusterMatches", "Shaper", "TagsKey", "tags_key"]

# Pseudo-tags hashed into the name of a cluster a policy shapes (never seen by Envoy but in that hash).
POLICY_TAG_PREFIX = "meshgate.io/policy/"

# The winner of each cluster-shaping kind for one cluster, by kind name.
ClusterMatches = tuple[tuple[str, Match], ...]


class _Listener:
    """The matching done for one listener's tags, kept for the proxy's build: each kind's candidates by source
    (Kuma's `ConnectionPoliciesBySource`), each backend's winner of each kind, each route's, each cluster's."""

    __slots__ = ("candidates", "clusters", "per_backend", "routes", "tags")

    def __init__(self, tags: Mapping[str, str]) -> None:
        self.tags = tags
        self.candidates: dict[str, Candidates] = {}
        self.per_backend: dict[TagsKey, dict[str, Match | None]] = {}  # backend -> kind -> its winner
        self.routes: dict[tuple[str, tuple[TagsKey, ...]], Match | None] = {}
        self.clusters: dict[TagsKey, ClusterMatches] = {}


class Shaper:
    def __init__(
        self, policies: Mapping[str, tuple[Resource, ...]], registry: PolicyRegistry, mesh: Resource | None = None
    ) -> None:
        self._policies = policies
        self._mesh = mesh
        # Gates are asked whether or not their kind has policies: no permission at all may deny.
        self.gates = tuple(m for m in registry if m.gate is not None)
        self._denied: dict[tuple[TagsKey, TagsKey], bool] = {}
        self._denials: list[Denied] = []
        self._by_target: dict[Target, list[PolicyModule]] = {target: [] for target in Target}
        for kind in sorted(policies):
            module = registry.get(kind)
            if module is None:
                continue
            for target in module.targets:
                self._by_target[target].append(module)
        self._ignored = ignored_kinds(policies, registry)
        self._applied: list[Applied | Shaped] = []
        self._cluster_modules = {m.kind: m for m in self._by_target[Target.CLUSTER]}
        self._listeners: dict[TagsKey, _Listener] = {}

    def denied(self, listener_tags: Mapping[str, str], backend: TagsKey) -> bool:
        """Whether a gate (TrafficPermission) denies `backend` (sorted tags) to the listener; recorded."""
        key = (tags_key(listener_tags), backend)
        found = self._denied.get(key)
        if found is None:
            found = False
            for module in self.gates:
                assert module.gate is not None
                gate = Gate(self._policies.get(module.kind, ()), self._mesh, listener_tags, dict(backend))
                reason = module.gate(gate)
                if reason is not None:
                    self._denials.append(Denied(module.kind, backend, key[0], reason))
                    found = True
                    break
            self._denied[key] = found
        return found

    def shapes(self, target: Target) -> bool:
        return bool(self._by_target[target])

    def _listener(self, tags: Mapping[str, str]) -> _Listener:
        key = tags_key(tags)
        found = self._listeners.get(key)
        if found is None:
            found = self._listeners[key] = _Listener(tags)
        return found

    def _backend_match(self, kind: str, listener: _Listener, backend: TagsKey) -> Match | None:
        kinds = listener.per_backend.get(backend)
        if kinds is None:
            kinds = listener.per_backend[backend] = {}
        elif kind in kinds:
            return kinds[kind]
        candidates = listener.candidates.get(kind)
        if candidates is None:
            candidates = listener.candidates[kind] = by_source(index_of(self._policies[kind]), listener.tags)
        found = kinds[kind] = best_for_destination(candidates, dict(backend))
        return found

    def cluster_matches(self, listener_tags: Mapping[str, str], backend: TagsKey) -> ClusterMatches:
        """The winner of each cluster-shaping kind for `backend` (sorted tags) reached from the listener."""
        listener = self._listener(listener_tags)
        found = listener.clusters.get(backend)
        if found is None:
            found = listener.clusters[backend] = tuple(
                (module.kind, match)
                for module in self._by_target[Target.CLUSTER]
                if (match := self._backend_match(module.kind, listener, backend)) is not None
            )
        return found

    @staticmethod
    def identity(matches: ClusterMatches) -> dict[str, str]:
        """The pseudo-tags that make a shaped cluster's name differ from an unshaped one's and from one shaped by
        other policies."""
        return {POLICY_TAG_PREFIX + kind: match.winner.meta.name for kind, match in matches}

    def shape_cluster(self, name: str, cluster: cluster_pb2.Cluster, matches: ClusterMatches, protocol: str) -> None:
        """`protocol`: the cluster's, as `clusters.protocol_of` gives it."""
        for kind, match in matches:
            module = self._cluster_modules[kind]
            assert module.cluster is not None  # in _by_target[CLUSTER] only with a cluster hook
            module.cluster(match, cluster, protocol)
        self._applied.append((Target.CLUSTER, name, matches))

    def _route_match(self, kind: str, listener: _Listener, backends: tuple[TagsKey, ...]) -> Match | None:
        key = (kind, backends)
        try:
            return listener.routes[key]
        except KeyError:
            pass
        matches = [self._backend_match(kind, listener, b) for b in backends]
        found = listener.routes[key] = best_for_split(listener.candidates[kind], backends, matches)
        return found

    def route_shaper(
        self, listener_tags: Mapping[str, str], where: str, shaped: set[str] | None = None
    ) -> Callable[[Entry, route_components_pb2.Route], None] | None:
        """A `virtual_hosts.RouteShaper` for the routes of one virtual host (`where`: `<config>/<host>`), or
        None when no route-shaping kind has policies. `shaped` collects the kinds that shaped a route."""
        modules = self._by_target[Target.ROUTE]
        if not modules:
            return None

        listener = self._listener(listener_tags)

        def shape(entry: Entry, route: route_components_pb2.Route) -> None:
            backends = tuple(d.tags for d in entry.forward)
            for module in modules:
                match = self._route_match(module.kind, listener, backends)
                if match is not None:
                    assert module.route is not None
                    module.route(match, route)
                    self._applied.append(Applied(module.kind, Target.ROUTE, f"{where}/{entry.route}", match))
                    if shaped is not None:
                        shaped.add(module.kind)

        return shape

    def http_filters(self, shaped: set[str]) -> list[hcm_pb2.HttpFilter]:
        """The HTTP filters, in kind order, that the kinds in `shaped` (from `route_shaper`) need in the HCM in
        front of the routes they shaped. Empty when none: the HCM is then built as before the seam."""
        return [
            module.http_filter()
            for module in self._by_target[Target.ROUTE]
            if module.kind in shaped and module.http_filter is not None
        ]

    def access_logs(self, listener_tags: Mapping[str, str], site: LogSite, where: str) -> list[accesslog_pb2.AccessLog]:
        """The access logs of one gateway filter chain (`where`: `<listener>/<index>`), for its HCM or TCP proxy:
        each access-log kind's policy for the listener's tags and Kuma's pass-through destination."""
        out = []
        listener = self._listener(listener_tags)
        for module in self._by_target[Target.ACCESS_LOG]:
            match = self._backend_match(module.kind, listener, tags_key(PASS_THROUGH))
            if match is None:
                continue
            assert module.access_log is not None
            found = module.access_log(match, site)
            if found is not None:
                out.append(found)
                self._applied.append(Applied(module.kind, Target.ACCESS_LOG, where, match))
        return out

    def shape_proxy(self, proxy_tags: Mapping[str, str], name: str, resources: Resources) -> list[str]:
        """Applies each proxy-shaping kind's policy for a proxy with `proxy_tags` (its name `name`) to its
        whole generated config, last; returns the problems the hooks report."""
        problems: list[str] = []
        for module in self._by_target[Target.PROXY]:
            match = best_for_proxy(self._policies[module.kind], proxy_tags)
            if match is None:
                continue
            assert module.proxy is not None
            problems.extend(module.proxy(match.winner, resources))
            self._applied.append(Applied(module.kind, Target.PROXY, name, match))
        return problems

    def shape_dataplane(
        self, site: DataplaneSite, tag_sets: Sequence[Mapping[str, str]], resources: Resources
    ) -> list[str]:
        """Applies each dataplane-shaping kind's policy for the proxy (selected when any of its `tag_sets`
        matches: a gateway's tags, else each inbound's) to its generated config; returns the problems."""
        problems: list[str] = []
        for module in self._by_target[Target.DATAPLANE]:
            match = best_for_dataplane(self._policies[module.kind], tag_sets)
            if match is None:
                continue
            assert module.dataplane is not None
            problems.extend(module.dataplane(match, site, resources))
            self._applied.append(Applied(module.kind, Target.DATAPLANE, site.proxy.meta.name, match))
        return problems

    def shape_listener(
        self, listener: listener_pb2.Listener, listener_tags: Mapping[str, str], backends: Sequence[TagsKey]
    ) -> None:
        """Applies the listener-shaping kinds; `backends`: every backend of the listener's routes, in order."""
        view = self._listener(listener_tags)
        for module in self._by_target[Target.LISTENER]:
            match = self._route_match(module.kind, view, tuple(backends))
            if match is not None:
                assert module.listener is not None
                module.listener(match, listener)
                self._applied.append(Applied(module.kind, Target.LISTENER, listener.name, match))

    def report(self) -> PolicyReport:
        return PolicyReport(self._applied, self._ignored, tuple(self._denials))
