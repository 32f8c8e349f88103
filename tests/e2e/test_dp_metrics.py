"""Gateway metrics as Kuma provides them (issue 15): `Mesh.metrics` with a prometheus backend makes a builtin
gateway's meshgate-dp serve Envoy's stats merged with its own at `<address>:<port><path>`, scraped here with a
plain HTTP client as Prometheus would; the zone's diagnostics `/metrics` counts xDS per proxy.

Real processes: a global and a zone, meshgate-dp running the real Envoy, an HTTP backend. The endpoint goes
through Envoy's `kuma:metrics:prometheus` listener to meshgate-dp's Unix socket (meshgate.dp.metrics), so a
scrape that answers proves every hop."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshgate.dp.metrics import AGGREGATE_HEADER
from tests.adapter.test_dp_metrics_hijacker import app_endpoint
from tests.support.dp import zone_dp
from tests.support.envoy import http_backend
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually
from tests.unit.test_grafana_dashboards import queried_metrics

pytestmark = pytest.mark.e2e

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "grafana"

EDGE = json.dumps(
    {
        "type": "Dataplane",
        "mesh": "default",
        "name": "edge-1",
        "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}},
    }
)


def mesh(metrics_port: int | None, *, used_only: bool = False, app_port: int | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "Mesh", "name": "default"}
    if metrics_port is not None:
        conf: dict[str, Any] = {"port": metrics_port, "path": "/stats-here", "envoy": {"usedOnly": used_only}}
        if app_port is not None:
            conf["aggregate"] = [{"name": "orders", "port": app_port, "path": "/metrics"}]
        doc["metrics"] = {
            "enabledBackend": "prom-1",
            "backends": [{"name": "prom-1", "type": "prometheus", "conf": conf}],
        }
    return doc


def gateway(port: int) -> dict[str, Any]:
    return {
        "type": "MeshGateway",
        "mesh": "default",
        "name": "edge",
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {"listeners": [{"port": port, "protocol": "HTTP", "hostname": "*"}]},
    }


def route() -> dict[str, Any]:
    rule = {
        "matches": [{"path": {"match": "PREFIX", "value": "/"}}],
        "backends": [{"weight": 1, "destination": {"kuma.io/service": "echo"}}],
    }
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": "edge-routes",
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {"http": {"rules": [rule]}},
    }


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.put(path, json=doc)
    assert r.status_code in (200, 201), r.text


async def scrape(port: int, path: str = "/stats-here", headers: dict[str, str] | None = None) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            return await c.get(f"http://127.0.0.1:{port}{path}", headers=headers)
    except httpx.TransportError:
        return None


def samples(text: str, name: str) -> dict[str, float]:
    """Every sample of family `name`: its label text (`{...}` or "") -> value."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(\{{.*\}})? (\S+)", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def families(text: str) -> set[str]:
    """The metric names an exposition holds: its samples' names and its `# TYPE` families (a family with no
    sample yet, a counter nothing has counted, is still one a dashboard can query)."""
    out: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out.add(name)
            if kind == "histogram":
                out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            out.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return out


def dashboard_metrics(name: str) -> set[str]:
    return queried_metrics(json.loads((DEPLOY / name).read_text()))


def requests_to_edge(text: str) -> float:
    """The gateway HCM's request count (its stat prefix is the gateway's service, `edge`)."""
    found = samples(text, "envoy_http_downstream_rq_total")
    return sum(v for labels, v in found.items() if 'envoy_http_conn_manager_prefix="edge"' in labels)


async def test_a_prometheus_backend_makes_the_gateway_serve_envoy_and_dp_metrics(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    listen, metrics_port = free_port(), free_port()
    await put(g, "/meshes/default", mesh(None))
    await put(g, "/meshes/default/meshgateways/edge", gateway(listen))
    await put(g, "/meshes/default/meshgatewayroutes/edge-routes", route())
    async with http_backend("echo") as echo, app_endpoint() as app_port:

        async def mesh_in_zone() -> bool:
            async with httpx.AsyncClient(base_url=z.url()) as c:
                return (await c.get("/meshes/default")).status_code == 200

        await eventually(mesh_in_zone, what="mesh in zone-1")
        backend = {
            "type": "Dataplane",
            "mesh": "default",
            "name": "echo",
            "networking": {
                "address": "127.0.0.1",
                "inbound": [{"port": echo.port, "tags": {"kuma.io/service": "echo"}}],
            },
        }
        await put(z, "/meshes/default/dataplanes/echo", backend)
        dp = await zone_dp(procs, z, EDGE)
        try:
            async with httpx.AsyncClient(timeout=5) as client:

                async def through() -> bool:
                    try:
                        return (await client.get(f"http://127.0.0.1:{listen}/x")).status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(through, what=f"traffic through the gateway\n{dp.logs()[-2000:]}")
                # No backend: nothing listens on the metrics port (no listener was generated).
                assert await scrape(metrics_port) is None

                await put(g, "/meshes/default", mesh(metrics_port))

                async def served() -> bool:
                    resp = await scrape(metrics_port)
                    return resp is not None and resp.status_code == 200

                await eventually(served, what=f"the metrics endpoint on :{metrics_port}\n{dp.logs()[-3000:]}")

                first = await scrape(metrics_port)
                assert first is not None
                assert first.headers["content-type"].startswith("text/plain")
                before = requests_to_edge(first.text)
                for _ in range(5):
                    assert (await client.get(f"http://127.0.0.1:{listen}/x")).status_code == 200
                second = await scrape(metrics_port)
                assert second is not None
                # Envoy's counters, in Prometheus form, rise with the requests sent through the gateway.
                assert requests_to_edge(second.text) >= before + 5, second.text[:3000]
                # Kuma's rewrite: the backend's cluster (`echo-<hash>`) counted under its service, as mesh traffic.
                upstream = samples(second.text, "envoy_cluster_upstream_rq_total")
                assert upstream['{envoy_cluster_name="echo",kuma_io_mesh_traffic="true"}'] >= 5, upstream
                # meshgate-dp's own metrics, in the same answer.

                assert samples(second.text, "process_resident_memory_bytes")
                assert samples(second.text, "meshgate_dp_metrics_scrape_errors_total") == {'{application="envoy"}': 0.0}
                # Every metric the gateway dashboard queries is in this real scrape.
                missing = dashboard_metrics("gateway-dashboard.json") - families(second.text)
                assert not missing, f"the gateway dashboard queries metrics the scrape lacks: {sorted(missing)}"
                # A counter nothing has touched is there, as 0, until usedOnly leaves it out.
                assert 0.0 in samples(second.text, "envoy_cluster_upstream_cx_overflow").values()
                await put(g, "/meshes/default", mesh(metrics_port, used_only=True))

                async def used_only() -> bool:
                    resp = await scrape(metrics_port)
                    return resp is not None and "envoy_cluster_upstream_cx_overflow" not in families(resp.text)

                await eventually(used_only, what="Envoy's stats filtered to the used ones (usedOnly)")
                third = await scrape(metrics_port)
                assert third is not None
                assert requests_to_edge(third.text) >= before + 5
                # A scraper cannot make meshgate-dp fetch an address of its choosing: the route drops the header.
                apps = [{"name": "x", "address": "127.0.0.1", "port": app_port, "path": "/metrics"}]
                sneaky = await scrape(metrics_port, headers={AGGREGATE_HEADER: json.dumps(apps)})
                assert sneaky is not None
                assert "my_app_orders_total" not in sneaky.text
                # aggregate: the application's own metrics join the answer (its address: the Dataplane's).
                await put(g, "/meshes/default", mesh(metrics_port, used_only=True, app_port=app_port))

                async def aggregated() -> bool:
                    resp = await scrape(metrics_port)
                    return resp is not None and "my_app_orders_total 7" in resp.text

                await eventually(aggregated, what="the application's metrics merged in (aggregate)")
                # Only the configured path is routed.
                other = await scrape(metrics_port, "/elsewhere")
                assert other is not None
                assert other.status_code == 404

            # The zone's /metrics: xDS counters per proxy, under Kuma's names.
            async with httpx.AsyncClient(base_url=z.url("diagnostics")) as c:
                zone_metrics = (await c.get("/metrics")).text
            async with httpx.AsyncClient(base_url=g.url("diagnostics")) as c:
                global_metrics = (await c.get("/metrics")).text
            missing = dashboard_metrics("control-plane-dashboard.json") - families(zone_metrics + global_metrics)
            assert not missing, (
                f"the control plane dashboard queries metrics no control plane exports: {sorted(missing)}"
            )
            acks = samples(zone_metrics, "xds_requests_received")
            listener_acks = [
                v
                for labels, v in acks.items()
                if 'dataplane="edge-1"' in labels
                and 'mesh="default"' in labels
                and "type.googleapis.com/envoy.config.listener.v3.Listener" in labels
                and 'confirmation="ACK"' in labels
            ]
            assert listener_acks
            assert listener_acks[0] >= 2
            sent = samples(zone_metrics, "xds_responses_sent")
            assert any('dataplane="edge-1"' in labels and v >= 2 for labels, v in sent.items())
            assert samples(zone_metrics, "xds_streams_active")[""] >= 1

            # The backend disabled again: the listener goes, and nothing listens.
            await put(g, "/meshes/default", mesh(None))

            async def gone() -> bool:
                return await scrape(metrics_port) is None

            await eventually(gone, what="the metrics endpoint removed")
        finally:
            dp.stop()
