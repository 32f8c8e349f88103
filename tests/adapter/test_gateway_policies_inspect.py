"""`GET /meshes/{mesh}/dataplanes/{name}/policies` and `meshgatectl inspect dataplane --type policies`, on a
zone and on the global, over a store holding competing Timeouts and an ignored TrafficRoute.

The mesh: gateway `edge` (HTTP on 8080) with one route splitting `/` across `api` and `web`. Timeouts:
`t-all` (any destination), `t-api` (destination `api`, more specific) and `t-other` (a source that is not
the gateway). `t-api` shapes the `api` cluster, `t-all` the `web` cluster; the route (two services) takes the
policy with a `*` destination, `t-all`. A TrafficRoute is reported as ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from meshgate.cli.inspect import render_policies
from meshgate.cli.meshgatectl import app
from meshgate.resources import codec
from meshgate.rest.app import create_api_app
from meshgate.rest.policy_inspect import global_policies_route, zone_policies_route
from meshgate.rest.testing import serving_in_thread
from meshgate.store.memory import MemoryStore
from meshgate.testing import factory
from meshgate.xds.policies.matching import LESS_SPECIFIC, NO_DESTINATION, NO_SOURCE, NOT_WILDCARD

runner = CliRunner()


def _docs(gateway_dp: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        factory.mesh(),
        factory.gateway("edge"),
        factory.http_route("split", backends=[factory.backend("api", 1), factory.backend("web", 1)]),
        factory.dataplane("api-1", "api", address="10.0.0.2"),
        factory.dataplane("web-1", "web", address="10.0.0.3"),
        gateway_dp,
        factory.timeout("t-all"),
        factory.timeout("t-api", destination="api"),
        factory.timeout("t-other", source="not-the-gateway"),
        factory.traffic_route("route-all"),
    ]


def _serve(role: str, gateway_dp: dict[str, Any]) -> Iterator[str]:
    store = MemoryStore()
    route = zone_policies_route(store, "zone-1") if role == "zone" else global_policies_route(store)
    with (
        capture_logs(),
        serving_in_thread(create_api_app(store, role=role, extra_routes=[route])) as (url, portal),  # type: ignore[arg-type]
    ):
        for doc in _docs(gateway_dp):
            portal.call(store.create, codec.load(doc))
        yield url


@pytest.fixture
def zone_url() -> Iterator[str]:
    yield from _serve("zone", factory.gateway_dataplane("edge-1"))


@pytest.fixture
def global_url() -> Iterator[str]:
    # On the global the zone's Dataplane is stored under a hash-suffixed name, with its zone and display name.
    labels = {"kuma.io/zone": "zone-1", "kuma.io/display-name": "edge-1", "kuma.io/origin": "zone"}
    yield from _serve("global", factory.gateway_dataplane("edge-1-9f8e7d", labels=labels))


def _by_target(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (a["target"], a["name"].split("-")[0] if a["target"] == "cluster" else a["name"]): a for a in body["applied"]
    }


def _check_report(body: dict[str, Any]) -> None:
    assert body["kind"] == "MeshGatewayDataplane"
    assert body["dataplane"] == {"mesh": "default", "name": "edge-1"}
    assert body["gateway"] == {"mesh": "default", "name": "edge"}
    applied = _by_target(body)
    # Timeout shapes clusters and, for the route's request timeout, routes: a split route (api and web) takes
    # the policy with a wildcard destination.
    assert {k for k in applied if k[0] == "cluster"} == {("cluster", "api"), ("cluster", "web")}
    routes = [a for (target, _), a in applied.items() if target == "route"]
    assert routes, body["applied"]
    assert {a["policy"]["name"] for a in routes} == {"t-all"}
    api, web = applied[("cluster", "api")], applied[("cluster", "web")]
    assert api["policy"]["name"] == "t-api"
    assert {lo["name"]: lo["reason"] for lo in api["losers"]} == {"t-all": LESS_SPECIFIC, "t-other": NO_SOURCE}
    assert web["policy"]["name"] == "t-all"
    assert {lo["name"]: lo["reason"] for lo in web["losers"]} == {"t-api": NO_DESTINATION, "t-other": NO_SOURCE}
    assert body["ignored"] == [
        {"type": "TrafficRoute", "policies": ["route-all"], "reason": "Kuma's builtin gateway ignores this kind"}
    ]
    assert body["problems"] == []


def test_zone_computes_the_report_from_its_store(zone_url: str) -> None:
    body = httpx.get(f"{zone_url}/meshes/default/dataplanes/edge-1/policies").json()
    _check_report(body)


def test_global_computes_the_same_report_by_display_name(global_url: str) -> None:
    body = httpx.get(f"{global_url}/meshes/default/dataplanes/edge-1/policies").json()
    _check_report(body)
    by_stored = httpx.get(f"{global_url}/meshes/default/dataplanes/edge-1-9f8e7d/policies").json()
    assert by_stored["applied"] == body["applied"]


def test_a_sidecar_gets_kumas_empty_sidecar_answer_and_a_missing_dataplane_404(zone_url: str) -> None:
    assert httpx.get(f"{zone_url}/meshes/default/dataplanes/api-1/policies").json() == {
        "kind": "SidecarDataplane",
        "total": 0,
        "items": [],
    }
    assert httpx.get(f"{zone_url}/meshes/default/dataplanes/ghost/policies").status_code == 404


def test_cli_prints_winner_losers_and_ignored_kinds(zone_url: str) -> None:
    result = runner.invoke(app, ["--api", zone_url, "inspect", "dataplane", "edge-1", "--type", "policies"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "MESHGATEWAY edge (mesh default):"
    assert lines[1] == "  Timeout"
    clusters = [line for line in lines if line.startswith("    CLUSTER ")]
    assert len(clusters) == 2
    assert any(line.startswith("    CLUSTER api-") and line.endswith(": t-api") for line in clusters)
    assert f"      lost: t-other: {NO_SOURCE}" in lines
    assert f"      lost: t-all: {LESS_SPECIFIC}" in lines
    assert "  TrafficRoute (ignored: Kuma's builtin gateway ignores this kind): route-all" in lines
    as_json = runner.invoke(
        app, ["--api", zone_url, "inspect", "dataplane", "edge-1", "--type", "policies", "-o", "json"]
    )
    assert as_json.exit_code == 0, as_json.output
    assert '"kind": "MeshGatewayDataplane"' in as_json.stdout


def test_render_groups_targets_by_kind_with_losers_and_problems() -> None:
    body = {
        "kind": "MeshGatewayDataplane",
        "gateway": {"mesh": "default", "name": "edge"},
        "applied": [
            {"type": "Retry", "target": "route", "name": "edge:HTTP:8080:*/*/split", "policy": {"name": "r-all"},
             "losers": [{"name": "r-api", "reason": NOT_WILDCARD}]},
            {"type": "Retry", "target": "listener", "name": "edge:HTTP:8080", "policy": {"name": "r-all"},
             "losers": []},
        ],
        "ignored": [],
        "problems": ["a problem"],
    }  # fmt: skip
    assert render_policies(body) == (
        "MESHGATEWAY edge (mesh default):\n"
        "  Retry\n"
        "    ROUTE edge:HTTP:8080:*/*/split: r-all\n"
        f"      lost: r-api: {NOT_WILDCARD}\n"
        "    LISTENER edge:HTTP:8080: r-all\n"
        "  problem: a problem\n"
    )
    assert render_policies({"kind": "SidecarDataplane"}).startswith("no policies")
