"""`Builder`: what `generate` collects for one proxy (listeners, routes, clusters, endpoints, Secrets, problems),
and the clusters its routes name, built once each in `finish`.

A route's backend is resolved to a cluster name when the route is built (`resolve`, or `resolver` for a gateway
listener whose backends policies shape); the endpoints found then are kept, and `finish` builds each named
cluster once: a mesh service's (with the proxy's mesh mTLS, `sds.MeshTls`, when the mesh has it) or an
ExternalService's (`external_services`, which wins over the mesh's Dataplanes, as in Kuma's gateway cluster
generator). Gates (TrafficPermission) may deny a backend; its share then answers 403 (`policies.denial`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from meshgate.resources.model import Resource
from meshgate.resources.tags import TAG_SERVICE
from meshgate.xds import clusters
from meshgate.xds import routes as table
from meshgate.xds.egress import ZONE_EGRESS_SERVICE
from meshgate.xds.external_services import ExternalServiceError, ExternalServiceIndex, external_cluster
from meshgate.xds.external_services import protocol_of as protocol_of_external
from meshgate.xds.policies import Target, denial
from meshgate.xds.policies.shaper import ClusterMatches, Shaper, TagsKey, tags_key
from meshgate.xds.routes import UNRESOLVED_BACKEND, Destination
from meshgate.xds.sds import MeshTls
from meshgate.xds.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, Snapshot

__all__ = ["Builder", "service_of"]


class Builder:
    """Collects resources for one proxy, and the clusters that routes and proxies name."""

    def __init__(
        self,
        index: clusters.EndpointIndex,
        shaper: Shaper,
        external: ExternalServiceIndex | None = None,
        secrets: Mapping[str, bytes] | None = None,
        tls: MeshTls | None = None,
        egress: Sequence[clusters.Endpoint] | None = None,
    ) -> None:
        """`egress`: the zone's ZoneEgresses when the mesh routes ExternalServices through them."""
        self.index = index
        self.egress = tuple(egress) if egress is not None else None
        self.tls = tls  # the mesh's mTLS: clusters to its Dataplanes use it
        self.shaper = shaper
        self.external = external if external is not None else ExternalServiceIndex(())
        self.secrets = secrets or {}
        self.out: dict[str, dict[str, Message]] = {LISTENER: {}, ROUTE: {}, CLUSTER: {}, ENDPOINT: {}}
        self.problems: list[str] = []
        # A gate denied a backend of the listener being built (`policies.denial`): it needs the RBAC filter.
        self.forbidding = False
        # cluster name -> (destination tags, their endpoints, the policies that shape it): looked up once, when a
        # route first names them.
        self._destinations: dict[str, tuple[dict[str, str], list[clusters.Endpoint], ClusterMatches]] = {}
        # The same for destinations an ExternalService serves (`external_services`): they win over Dataplanes.
        self._external: dict[str, tuple[dict[str, str], list[Resource], ClusterMatches]] = {}
        self._resolved: dict[table.Tags, str] = {}
        # An HTTP outbound listener's destination service, by listener name (what TrafficTrace's Datadog
        # `splitService` names).
        self.destinations: dict[str, str] = {}
        self._shaped: dict[tuple[TagsKey, table.Tags], str] = {}

    def resolve(self, dest: Destination) -> str:
        """`EndpointIndex.resolve`, remembering the endpoints so that `finish` need not look them up again."""
        name = self._resolved.get(dest.tags)  # the weight plays no part in the cluster
        if name is None:
            name = self._target(dest.tag_map, ())
            self._resolved[dest.tags] = name
        return name

    def _target(self, tags: dict[str, str], matches: ClusterMatches) -> str:
        """The cluster of destination `tags` shaped by `matches`, remembered for `finish`; an ExternalService
        that matches wins over the mesh's Dataplanes (Kuma's gateway cluster generator)."""
        external = self.external.matching(tags) if self.external else []
        found = [] if external else self.index.matching(tags)
        if not external and not found:
            return UNRESOLVED_BACKEND
        name = clusters.cluster_name({**tags, **self.shaper.identity(matches)} if matches else tags)
        if external:
            self._external.setdefault(name, (tags, external, matches))
        else:
            self._destinations.setdefault(name, (tags, found, matches))
        return name

    def resolver(self, listener_tags: Mapping[str, str]) -> table.Resolver:
        """`resolve` for the routes of a gateway listener with `listener_tags`: a backend whose cluster a policy
        shapes gets a cluster of its own (`policies.shaper`). Without cluster-shaping policies, `resolve`."""
        base = self.resolve if not self.shaper.shapes(Target.CLUSTER) else self._shaped_resolver(listener_tags)
        if not self.shaper.gates:
            return base

        def gated(dest: Destination) -> str:
            # With mesh mTLS the destination's sidecar enforces TrafficPermission (`inbound.py`); the gate stays
            # for what has no sidecar: ExternalServices, where Kuma's gateway enforces it too.
            sidecar = self.tls is not None and not self.external.matching(dest.tag_map)
            if not sidecar and self.shaper.denied(listener_tags, dest.tags):
                self.forbidding = True
                return denial.forbidden_cluster(dest.tag_map.get(TAG_SERVICE, ""))
            return base(dest)

        return gated

    def _shaped_resolver(self, listener_tags: Mapping[str, str]) -> table.Resolver:
        key = tags_key(listener_tags)

        def resolve(dest: Destination) -> str:
            name = self._shaped.get((key, dest.tags))
            if name is None:
                name = self._resolve_shaped(listener_tags, dest)
                self._shaped[(key, dest.tags)] = name
            return name

        return resolve

    def _resolve_shaped(self, listener_tags: Mapping[str, str], dest: Destination) -> str:
        matches = self.shaper.cluster_matches(listener_tags, dest.tags)
        if not matches:
            return self.resolve(dest)
        return self._target(dest.tag_map, matches)

    def add(self, type_url: str, name: str, message: Message) -> None:
        self.out[type_url][name] = message

    def finish(self, proxy: Resource | None = None) -> Snapshot:
        """The snapshot; `proxy` (a builtin gateway): the proxy-shaping policies edit its whole config last."""
        for name, (tags, found, matches) in self._destinations.items():
            assignment = clusters.load_assignment(name, found, local_zone=self.index.zone)
            protocol = clusters.protocol_of(tags, found)
            if clusters.needs_dns_for(found):
                out = clusters.cluster(name, protocol, dns_assignment=assignment)
            else:
                out = clusters.cluster(name, protocol)
                self.add(ENDPOINT, name, assignment)
            if self.tls is not None:
                out.transport_socket.CopyFrom(self.tls.upstream(tags))
            if matches:
                self.shaper.shape_cluster(name, out, matches, protocol)
            self.add(CLUSTER, name, out)
        for name, (tags, services, matches) in self._external.items():
            protocol = protocol_of_external(tags, services)
            if self.egress is not None:
                out = self._through_egress(name, tags, protocol)
                if matches:
                    self.shaper.shape_cluster(name, out, matches, protocol)
                self.add(CLUSTER, name, out)
                continue
            try:
                out = external_cluster(name, services, protocol, secrets=self.secrets)
            except ExternalServiceError as err:
                # The routes name it: Envoy answers their share with the cluster-not-found status (500).
                self.problems.append(f"{err}; cluster {name} skipped")
                continue
            if matches:
                self.shaper.shape_cluster(name, out, matches, protocol)
            self.add(CLUSTER, name, out)
        if proxy is not None and self.shaper.shapes(Target.PROXY):
            tags = dict(proxy.spec.networking.gateway.tags)  # type: ignore[attr-defined]
            self.problems.extend(self.shaper.shape_proxy(tags, proxy.meta.name, self.out))
        if self.tls is not None and (secrets := self.tls.secrets()):
            self.out[SECRET] = dict(secrets)
        return Snapshot.of(self.out, tuple(self.problems), self.shaper.report())

    def _through_egress(self, name: str, tags: Mapping[str, str], protocol: str) -> Any:
        """An ExternalService's cluster through the zone's egress (`egress.py`): the ZoneEgresses as endpoints,
        mTLS as this proxy with SNI `<service>{mesh=<mesh>}`, the egress's identity the only SAN accepted. Never
        direct once the mesh says egress (Kuma then builds no direct ExternalService endpoints): without the
        proxy's mTLS (the CA not loaded yet) or without an egress, the cluster has no endpoints."""
        assert self.egress is not None
        if self.tls is None:
            self.problems.append(f"cluster {name}: ExternalServices go through the zone egress, over mTLS; no CA yet")
        elif not self.egress:
            self.problems.append(f"cluster {name}: ExternalServices go through a zone egress; this zone has none")
        endpoints = self.egress if self.tls is not None else ()
        assignment = clusters.load_assignment(name, endpoints, local_zone=self.index.zone)
        if clusters.needs_dns(assignment):
            out = clusters.cluster(name, protocol, dns_assignment=assignment)
        else:
            out = clusters.cluster(name, protocol)
            self.add(ENDPOINT, name, assignment)
        if self.tls is not None:
            service = {TAG_SERVICE: tags.get(TAG_SERVICE, "")}
            out.transport_socket.CopyFrom(self.tls.upstream(service, peer=ZONE_EGRESS_SERVICE))
        return out


def service_of(proxy: Resource) -> str:
    """The service a proxy is named by: its gateway's `kuma.io/service`, else its first inbound's, else its name."""
    spec: Any = proxy.spec
    tags = spec.networking.gateway.tags
    if TAG_SERVICE in tags:
        return str(tags[TAG_SERVICE])
    for inbound in spec.networking.inbound:
        if TAG_SERVICE in inbound.tags:
            return str(inbound.tags[TAG_SERVICE])
    return proxy.meta.name
