"""One proxy's desired Envoy configuration: resources by type URL and name, with content-hash versions.

Versions are hashes of the deterministic serialization, so a reconnecting Envoy that reports its versions
is sent only what changed, and regenerating an unchanged config changes nothing. `Snapshot.resources` has
the shape `ads.ProxySnapshot.of` takes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.message import Message

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "PUSH_ORDER",
    "ROUTE",
    "Snapshot",
    "version_of",
]

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
# Envoy's safe order: a cluster before its endpoints, both before the listeners and routes naming them.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE)


def version_of(message: Message) -> str:
    """Content hash of the message's deterministic serialization.

    The same function as `ads.content_version`, so a version computed here is the one the ADS server sends.
    """
    return hashlib.blake2b(message.SerializeToString(deterministic=True), digest_size=10).hexdigest()


def _frozen(items: Mapping[str, Message]) -> Mapping[str, Message]:
    return MappingProxyType({name: items[name] for name in sorted(items)})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Resources of each type (all four always present), sorted by name; `problems` lists what was skipped."""

    resources: Mapping[str, Mapping[str, Message]]
    problems: tuple[str, ...] = ()
    _versions: dict[str, Mapping[str, str]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, resources: Mapping[str, Mapping[str, Message]], problems: tuple[str, ...] = ()) -> Snapshot:
        return cls(MappingProxyType({t: _frozen(resources.get(t, {})) for t in PUSH_ORDER}), problems)

    def __getitem__(self, type_url: str) -> Mapping[str, Message]:
        return self.resources[type_url]

    def __iter__(self) -> Iterator[str]:
        return iter(PUSH_ORDER)

    def versions(self, type_url: str) -> Mapping[str, str]:
        """name -> content hash, computed once per type."""
        cached = self._versions.get(type_url)
        if cached is None:
            cached = MappingProxyType({name: version_of(msg) for name, msg in self.resources[type_url].items()})
            self._versions[type_url] = cached
        return cached

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
