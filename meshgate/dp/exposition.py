"""Envoy's Prometheus text as kuma-dp rewrites it before serving (`app/kuma-dp/pkg/dataplane/metrics/merge.go`,
`MergeClustersForPrometheus`). Pure: text in, text out.

    envoy_cluster_name="echo-5fb50345cfb50345"  -> "echo"   a cluster named `<service>-<16 hex>` (every mesh
                                                            service's cluster: meshgate.xds.clusters.cluster_name)
                                                            is counted under its service; samples that become
                                                            equal are summed (histogram buckets per `le` alike)
    kuma_io_mesh_traffic="true"                             added to a cluster's samples unless the cluster is
                                                            Envoy's own (the xDS cluster, the metrics hijacker), and
                                                            to an HTTP connection manager's unless it is the admin's
                                                            or the metrics endpoint's

So a dashboard reads `envoy_cluster_upstream_rq_total{envoy_cluster_name="echo"}` whatever policies split the
service's cluster into. Lines this does not understand pass through unchanged, so a sample is never lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["merge_clusters"]

CLUSTER_LABEL = "envoy_cluster_name"
HCM_LABEL = "envoy_http_conn_manager_prefix"
MESH_TRAFFIC_LABEL = "kuma_io_mesh_traffic"
# Envoy's own clusters, as their names appear in stats (`:` becomes `_`): the bootstrap's xDS cluster and the
# Prometheus endpoint's (Kuma's list: its bootstrap clusters, kuma_envoy_admin, kuma_metrics_hijacker).
_OWN_CLUSTERS = frozenset({"xds_cluster", "kuma_envoy_admin", "kuma_metrics_hijacker"})
_OWN_HCMS = frozenset({"admin", "kuma_envoy_admin", "kuma_metrics_prometheus"})
_MERGEABLE = re.compile(r"(?P<prefix>.*)-[0-9A-Fa-f]{16}")
_SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
_LABEL = re.compile(r'\s*(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"\s*(?:,|$)')

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _Sample:
    name: str
    labels: Labels
    value: str
    merged: list[str] = field(default_factory=list)

    def render(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        value = _sum([self.value, *self.merged])
        return f"{self.name}{{{inner}}} {value}" if inner else f"{self.name} {value}"


def _labels(text: str) -> Labels | None:
    """`k="v",...` as pairs (values kept escaped, as written), or None when it does not parse."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if m is None or m.end() == pos:
            return None
        out.append((m["key"], m["value"]))
        pos = m.end()
    return tuple(out)


def _sum(values: list[str]) -> str:
    if len(values) == 1:
        return values[0]
    if all(re.fullmatch(r"-?\d+", v) for v in values):
        return str(sum(int(v) for v in values))
    try:
        return repr(sum(float(v) for v in values))
    except ValueError:
        return values[0]  # not a number Envoy writes: keep the first rather than invent one


def _rewrite(labels: Labels) -> Labels:
    out = []
    extra: tuple[tuple[str, str], ...] = ()
    for key, value in labels:
        if key == CLUSTER_LABEL:
            if m := _MERGEABLE.fullmatch(value):
                value = m["prefix"]
            if value not in _OWN_CLUSTERS:
                extra = ((MESH_TRAFFIC_LABEL, "true"),)
        elif key == HCM_LABEL and value not in _OWN_HCMS:
            extra = ((MESH_TRAFFIC_LABEL, "true"),)
        out.append((key, value))
    return (*out, *extra)


def merge_clusters(text: str) -> str:
    """Envoy's `/stats?format=prometheus` answer with Kuma's cluster merge and mesh traffic label applied."""
    out: list[str | _Sample] = []
    index: dict[tuple[str, Labels], _Sample] = {}
    for line in text.splitlines():
        m = _SAMPLE.fullmatch(line)
        labels = _labels(m["labels"]) if m is not None and m["labels"] else None
        if m is None or labels is None:
            out.append(line)
            continue
        labels = _rewrite(labels)
        key = (m["name"], tuple(sorted(labels)))
        if (seen := index.get(key)) is not None:
            seen.merged.append(m["value"])
            continue
        sample = index[key] = _Sample(m["name"], labels, m["value"])
        out.append(sample)
    rendered = [item if isinstance(item, str) else item.render() for item in out]
    return "\n".join(rendered) + ("\n" if rendered else "")
