"""One proxy's desired Envoy configuration: resources by type URL and name, what the ADS stream is offered.

`generate` returns it (the four types it makes always present, sorted by name, with the `problems` it
skipped); the ADS stream reads it through the delta engine's `Snapshots` protocol: `get(type_url)` packs
each message once into an `Entry` versioned by the engine's content hash (meshgate.delta.entry), and
`followers(CLUSTER)` names the ClusterLoadAssignment to re-send with each EDS cluster. Regenerating an
unchanged config changes no version, so nothing is sent; a reconnecting Envoy that reports its versions is
sent only what changed. Immutable by convention; the caches fill on first read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from meshgate.delta import Entry, KindSnapshot
from meshgate.xds.policies.module import EMPTY_REPORT, PolicyReport

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "GENERATED",
    "LISTENER",
    "PUSH_ORDER",
    "ROUTE",
    "SECRET",
    "Snapshot",
]

_PREFIX = "type.googleapis.com/"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
# Envoy's safe order (xDS "eventual consistency considerations"): a cluster before its endpoints, both (and
# the secrets they use) before the listeners and routes naming them. Types not listed go last, in name order.
PUSH_ORDER = (CLUSTER, ENDPOINT, SECRET, LISTENER, ROUTE)
# The types `generate` makes, always present in its snapshots.
GENERATED = (CLUSTER, ENDPOINT, LISTENER, ROUTE)


def _frozen(items: Mapping[str, Message]) -> Mapping[str, Message]:
    return MappingProxyType({name: items[name] for name in sorted(items)})


def _eds_name(name: str, message: Message) -> str | None:
    if isinstance(message, cluster_pb2.Cluster) and message.type == cluster_pb2.Cluster.EDS:
        return message.eds_cluster_config.service_name or name
    return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    resources: Mapping[str, Mapping[str, Message]]
    problems: tuple[str, ...] = ()
    # Which policy shaped what, and the kinds ignored (meshgate.xds.policies): diagnostics, never sent.
    policies: PolicyReport = field(default_factory=lambda: EMPTY_REPORT, compare=False)
    _kinds: dict[str, KindSnapshot] = field(default_factory=dict, compare=False, repr=False)
    _followers: dict[str, Mapping[str, tuple[str, str]]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        resources: Mapping[str, Mapping[str, Message]],
        problems: tuple[str, ...] = (),
        policies: PolicyReport = EMPTY_REPORT,
    ) -> Snapshot:
        """From type URL -> {name: Envoy message}; every message must be of its key's type (ValueError)."""
        for type_url, named in resources.items():
            for name, message in named.items():
                actual = _PREFIX + message.DESCRIPTOR.full_name
                if actual != type_url:
                    raise ValueError(f"{name!r} is a {actual}, filed under {type_url}")
        types = (*GENERATED, *sorted(t for t in resources if t not in GENERATED))
        return cls(MappingProxyType({t: _frozen(resources.get(t, {})) for t in types}), problems, policies)

    def __getitem__(self, type_url: str) -> Mapping[str, Message]:
        return self.resources[type_url]

    def __iter__(self) -> Iterator[str]:
        return iter(self.resources)

    def get(self, type_url: str) -> KindSnapshot:
        """The type's entries, packed and hashed once."""
        kind = self._kinds.get(type_url)
        if kind is None:
            named = self.resources.get(type_url, {})
            kind = KindSnapshot.of(type_url, (Entry.pack(name, msg) for name, msg in named.items()))
            self._kinds[type_url] = kind
        return kind

    def followers(self, type_url: str) -> Mapping[str, tuple[str, str]]:
        """Every time a cluster is (re)sent, its ClusterLoadAssignment is re-sent too, even unchanged: Envoy
        keeps an updated EDS cluster warming until it receives its endpoints again."""
        if type_url != CLUSTER:
            return {}
        out = self._followers.get(type_url)
        if out is None:
            out = {}
            for name, message in self.resources.get(CLUSTER, {}).items():
                eds = _eds_name(name, message)
                if eds is not None:
                    out[name] = (ENDPOINT, eds)
            self._followers[type_url] = out
        return out

    def entries(self, type_url: str) -> Mapping[str, Entry]:
        return self.get(type_url).entries

    def versions(self, type_url: str) -> dict[str, str]:
        """name -> content hash."""
        return self.get(type_url).versions()

    @property
    def eds_names(self) -> dict[str, str]:
        """Cluster name -> the EDS name Envoy subscribes to for it (EDS clusters only)."""
        return {name: eds for name, (_, eds) in self.followers(CLUSTER).items()}

    @property
    def listeners(self) -> Mapping[str, Message]:
        return self.resources[LISTENER]

    @property
    def routes(self) -> Mapping[str, Message]:
        return self.resources[ROUTE]

    @property
    def clusters(self) -> Mapping[str, Message]:
        return self.resources[CLUSTER]

    @property
    def endpoints(self) -> Mapping[str, Message]:
        return self.resources[ENDPOINT]
