"""Delta ADS for Envoy: the delta engine (meshgate.delta) configured for Envoy, one `AdsStream` per
`DeltaAggregatedResources` call. Requests go in (`receive`), events and responses come out (`respond`, given
the proxy's current `Snapshot`). The states and the transition table are the engine's; what is Envoy's own:

- subscriptions follow the delta xDS rules: the first request of a wildcard-capable type (CDS, LDS) that
  names nothing is a "legacy wildcard" subscription; `*` subscribes to everything explicitly; EDS and RDS are
  asked for by name, as Envoy discovers the clusters and route configurations that need them; later
  requests without a nonce UPDATE the subscription, and an ACK or NACK may carry changes too;
- a NACK names what it rejects in its message: Envoy applies the good resources of a delta and lists the
  bad ones as `Error adding/updating listener(s) NAME: reason, NAME: reason`; when no sent name appears that
  way, the whole response is taken as rejected;
- ordering, so Envoy never references what it does not hold (xDS "eventual consistency considerations"):
  pushes go out in the order CDS, EDS, (SDS), LDS, RDS, one response in flight per type; LDS and RDS upserts
  wait while CDS has a response in flight or upserts still to send, so a listener or a route never names a
  cluster Envoy has not ACKed; CDS and EDS removals wait while LDS or RDS are not in step, so a cluster (or
  its endpoints) goes only after what referenced it; every time a cluster is (re)sent, its
  ClusterLoadAssignment is re-sent too, even unchanged (`Snapshot.followers`);
- the first response of a wildcard subscription goes out even when empty: Envoy waits for it (up to
  initial_fetch_timeout) before it moves on from CDS to LDS.

Errors: `ProtocolError` (the peer broke the protocol; fatal for the stream) and `ValueError` from
`ProxyId.parse` / `Snapshot.of` for malformed input from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from meshgate.delta import (
    DeltaStream,
    Input,
    ProtocolError,
    Sent,
    State,
    StreamConfig,
    Subscription,
    TypeState,
    TypeStats,
    classify,
    compute_delta,
)
from meshgate.xds.snapshot import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, SECRET, Snapshot

__all__ = [
    "ADS",
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "PUSH_ORDER",
    "ROUTE",
    "SECRET",
    "AdsStream",
    "Input",
    "ProtocolError",
    "ProxyId",
    "Snapshot",
    "State",
    "Subscription",
    "TypeState",
    "TypeStats",
    "classify",
    "compute_delta",
    "short_type",
]


def short_type(type_url: str) -> str:
    """`Cluster` for `type.googleapis.com/envoy.config.cluster.v3.Cluster`: for logs and the read API."""
    return type_url.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True, order=True)
class ProxyId:
    """A proxy as Kuma names it in `node.id`: `<mesh>.<dataplane name>` (the name may contain dots), or
    `.<name>` for a ZoneIngress or ZoneEgress, which are in no mesh (Kuma's ParseProxyIdFromString,
    pkg/core/xds/types.go:358; which of the two it is, its node metadata says)."""

    mesh: str
    name: str

    @classmethod
    def parse(cls, node_id: str) -> ProxyId:
        mesh, dot, name = node_id.partition(".")
        if not dot or not name:
            raise ValueError(f"node.id {node_id!r} is not <mesh>.<dataplane name> nor .<zone proxy name>")
        return cls(mesh, name)

    @property
    def is_zone_proxy(self) -> bool:
        return not self.mesh

    def __str__(self) -> str:
        return f"{self.mesh}.{self.name}"


def _nack_names(
    req: discovery_pb2.DeltaDiscoveryRequest, upserts: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    message = req.error_detail.message
    named = [n for n in upserts if f"{n}: " in message]
    bad = dict.fromkeys(named or upserts, message)
    return bad, bad


_REFERRERS = (LISTENER, ROUTE)

ADS = StreamConfig(
    order=PUSH_ORDER,
    named=True,
    legacy_wildcard=frozenset({CLUSTER, LISTENER}),
    nack_names=_nack_names,
    hold_upserts={LISTENER: (CLUSTER,), ROUTE: (CLUSTER,)},
    hold_removals={CLUSTER: _REFERRERS, ENDPOINT: _REFERRERS},
    label=short_type,
)


class AdsStream(DeltaStream):
    """The state of one delta ADS stream: feed it requests and snapshots, send what it returns."""

    def __init__(self, proxy: ProxyId) -> None:
        super().__init__(ADS)
        self.proxy = proxy

    def next_responses(self, snapshot: Snapshot | None, now: float) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """Every response to send now, in push order (`respond` without the other events)."""
        return [e.response for e in self.respond(snapshot, now) if isinstance(e, Sent)]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready view per type, for `/xds/proxies` and tests."""
        out: dict[str, Any] = {}
        for ts in self._ordered():
            st = ts.stats
            nack = st.last_nack
            out[short_type(ts.type_url)] = {
                "typeUrl": ts.type_url,
                "state": ts.state.value,
                "subscription": {"wildcard": ts.subscription.wildcard, "names": sorted(ts.subscription.names)},
                "sent": st.responses_sent,
                "acked": st.acks,
                "nacked": st.nacks,
                "resourcesSent": st.resources_sent,
                "removalsSent": st.removals_sent,
                "lastNonce": st.last_nonce,
                "inFlight": ts.in_flight.nonce if ts.in_flight else None,
                "lastAckLatencyMs": None if st.last_ack_latency is None else round(st.last_ack_latency * 1000, 3),
                "lastNack": None
                if nack is None
                else {"nonce": nack.nonce, "error": nack.error, "rejected": list(nack.names), "at": nack.at},
                "versions": dict(sorted(ts.confirmed.items())),
                "rejected": {n: {"version": v, "error": e} for n, (v, e) in sorted(ts.rejected.items())},
            }
        return out
