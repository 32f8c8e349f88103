"""The Grafana dashboards in deploy/grafana/ are valid JSON that Grafana's dashboard schema accepts.

The schema is tests/data/grafana/dashboard.schema.json: Grafana's own dashboard model as its `@grafana/schema`
npm package publishes it (TypeScript types generated from Grafana's CUE dashboard kind), turned into JSON Schema
by scripts/grafana-dashboard-schema, closed (no unknown fields). On top of it, what Grafana's model leaves
optional but an importable dashboard needs: a uid and title, a gridPos, data source and PromQL on every panel,
every `$variable` defined. That each queried metric exists in a real scrape is tests/e2e/test_dp_metrics.py.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
SCHEMA = json.loads((ROOT / "tests" / "data" / "grafana" / "dashboard.schema.json").read_text())
# Grafana's own variables, always defined.
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}
# PromQL: a metric name is what stands before a `{` selector (the dashboards write a selector on every one).
METRIC = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queried_metrics(doc: dict[str, Any]) -> set[str]:
    """Every metric name a panel or a template variable of `doc` queries."""
    exprs = [t["expr"] for p in panels(doc) for t in p.get("targets", [])]
    queries = [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    exprs += [q["query"] if isinstance(q, dict) else q for q in queries]
    exprs = [re.sub(r"label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*),", r"\1{},", e) for e in exprs]
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_both_dashboards_ship() -> None:
    assert [p.name for p in DASHBOARDS] == ["control-plane-dashboard.json", "gateway-dashboard.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_grafanas_dashboard_schema_accepts_it(path: Path) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(load(path))


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("dashboard", lambda d: d.pop("schemaVersion")),
        ("dashboard", lambda d: d.__setitem__("titel", "typo")),
        ("panel", lambda d: d["panels"][1].__setitem__("gridpos", {})),
        ("panel", lambda d: d["panels"][1]["gridPos"].pop("w")),
        ("panel", lambda d: d["panels"][1].pop("type")),
    ],
)
def test_the_schema_refuses_what_grafana_would(where: str, change: Any) -> None:
    """The check can fail: a missing required field or an unknown one is refused."""
    doc = copy.deepcopy(load(DASHBOARDS[0]))
    change(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(doc)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_is_placed_and_queries_prometheus(path: Path) -> None:
    doc = load(path)
    assert doc["uid"].startswith("meshgate-")
    assert doc["title"]
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels(doc):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"], panel["title"]
            assert METRIC.search(target["expr"]), target["expr"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_variable_used_is_defined(path: Path) -> None:
    doc = load(path)
    defined = {v["name"] for v in doc["templating"]["list"]} | BUILTIN_VARIABLES
    used = set(re.findall(r"\$\{?([a-zA-Z_]+)", json.dumps(doc)))
    assert used <= defined, used - defined


def test_the_gateway_dashboard_reads_envoys_and_the_data_planes_metrics() -> None:
    metrics = queried_metrics(load(ROOT / "deploy" / "grafana" / "gateway-dashboard.json"))
    assert {"envoy_http_downstream_rq_total", "envoy_cluster_upstream_rq_total"} <= metrics
    assert "process_resident_memory_bytes" in metrics  # meshgate-dp's own, merged in
