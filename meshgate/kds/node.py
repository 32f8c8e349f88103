"""What a KDS peer says about itself: the `node` of every request, and the `features` it advertises.

Kuma 2.7 (pkg/kds/v2/client/stream.go, `DeltaDiscoveryRequest`) puts in the first request per kind
`node.id` = the client id (the zone name on GlobalToZoneSync; on ZoneToGlobalSync the global uses the zone's
name too, pkg/kds/global/components.go) and `node.metadata` = {`version`: a struct `{kumaCp: {version, gitTag,
gitCommit, buildDate}}`, `config`: the zone's configuration as JSON (the global sends ""),
`control-plane-id`: the sender's instance id, `features`: a list of strings}; its ACKs and NACKs carry
`node{id}` only. Kuma's request callbacks read `node` before anything fills in a missing one, so a request
without it crashes a Kuma peer: every request meshgate sends carries one.

Features also travel as gRPC metadata, one value per feature under the repeated key `features`
(pkg/kds/mux/client.go, `metadata.AppendToOutgoingContext`), and are matched exactly
(pkg/kds/features.go, `ContextHasFeature`). meshgate zones used to send one comma-joined value: the
reader accepts both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from envoy.config.core.v3 import base_pb2

from meshgate import __version__

__all__ = [
    "FEATURES_KEY",
    "FEATURE_HASH_SUFFIX",
    "FEATURE_ZONE_PING_HEALTH",
    "GLOBAL_FEATURES",
    "ZONE_FEATURES",
    "ack_node",
    "kds_node",
    "node_features",
    "parse_features",
]

FEATURES_KEY: Final = "features"
# The zone pings GlobalKDSService.HealthCheck (meshgate zones do).
FEATURE_ZONE_PING_HEALTH: Final = "zone-ping-health"
# The zone hash-suffixes the names it sends up and takes hash-suffixed names coming down
# (meshgate.kds.ownership); a zone without it gets Kuma's pre-2.6 naming both ways.
FEATURE_HASH_SUFFIX: Final = "hash-suffix"

# What each side really implements, and so advertises.
ZONE_FEATURES: Final[tuple[str, ...]] = (FEATURE_ZONE_PING_HEALTH, FEATURE_HASH_SUFFIX)
GLOBAL_FEATURES: Final[tuple[str, ...]] = ()


def kds_node(node_id: str, *, control_plane_id: str, features: Sequence[str], config: str = "") -> base_pb2.Node:
    """The `node` of a first request per kind, with the metadata Kuma's own sends."""
    node = base_pb2.Node(id=node_id)
    md = node.metadata
    md.fields["version"].struct_value.update(
        {"kumaCp": {"version": __version__, "gitTag": "", "gitCommit": "", "buildDate": ""}}
    )
    md.fields["config"].string_value = config
    md.fields["control-plane-id"].string_value = control_plane_id
    # SetInParent: an empty list is still a list value (extend([]) alone would leave the Value unset).
    md.fields[FEATURES_KEY].list_value.SetInParent()
    md.fields[FEATURES_KEY].list_value.extend(list(features))
    return node


def ack_node(node: base_pb2.Node) -> base_pb2.Node:
    """The `node` of an ACK or NACK: the id alone, as Kuma's `ACK`/`NACK` send it."""
    return base_pb2.Node(id=node.id)


def parse_features(values: Iterable[str]) -> list[str]:
    """Features from the gRPC metadata values of key `features`: one per value (Kuma), or comma-joined (what
    meshgate zones sent before), in order, without blanks or duplicates."""
    out: list[str] = []
    for value in values:
        for feature in value.split(","):
            feature = feature.strip()
            if feature and feature not in out:
                out.append(feature)
    return out


def node_features(node: base_pb2.Node) -> list[str]:
    """The features a request's `node.metadata.features` lists (strings only)."""
    value = node.metadata.fields.get(FEATURES_KEY)
    if value is None or value.WhichOneof("kind") != "list_value":
        return []
    return [v.string_value for v in value.list_value.values if v.WhichOneof("kind") == "string_value"]
