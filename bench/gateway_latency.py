"""Gateway benchmark: route change on the global -> traffic through a real Envoy, xDS build cost, zone memory.

Every figure is printed next to a baseline measured in the same run on the same machine:
  (a) PUT of a MeshGatewayRoute on the global until the gateway's Envoy (started by meshgate-dp against a zone)
      answers from the new backend, polled over HTTP every 1 ms; p50/p99 over --changes changes
      vs  the same change pushed directly over delta ADS: an in-process SnapshotStore + ADS server whose
      snapshots for both route targets are generated beforehand, feeding a second Envoy of the same binary and
      bootstrap; timed from `SnapshotStore.set` until its listener answers from the new backend.
  (b) full xDS build for --routes routes across --gateways gateway proxies with `meshgate.xds.generate`
      vs  constructing the same Envoy messages (Listener, RouteConfiguration/VirtualHost/Route/WeightedCluster,
      Cluster, ClusterLoadAssignment; same counts and fields) directly, names precomputed: no logic.
  (a') with --policies N: a FaultInjection on the global switching a route between aborting every request (503)
      and none (200), until the gateway's Envoy answers the new way, vs the same change pushed directly (as (a)).
  (b') with --policies N: the build of (b) with N policies in the mesh (Timeout, Retry, CircuitBreaker, HealthCheck:
      a wildcard of the first three, the others each naming one service, spread over the routes), vs the same
      messages constructed directly with the fields the winning policies set, winners and names precomputed
      (`bench/gateway_policies.py`).
  (c) the zone process's RSS (/proc/<pid>/status VmRSS) before and after the --routes routes (and --gateways
      MeshGateways) reached it over KDS, with the gateway Envoy connected.

Usage: python bench/gateway_latency.py [--changes 50] [--routes 10000] [--gateways 20] [--build-runs 3]
                                      [--policies 0]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gateway_policies import (  # noqa: E402
    FAULT,
    ClusterShape,
    PolicySet,
    RouteShape,
    abort_doc,
    fault_route,
    http_dataplane,
    route_action,
    scale_policies,
    shaped_cluster,
)
from meshgate.observability.logging import configure_logging  # noqa: E402
from meshgate.resources import codec  # noqa: E402
from meshgate.resources.model import Resource  # noqa: E402
from meshgate.resources.tags import TAG_SERVICE  # noqa: E402
from meshgate.testing.dp import zone_dp  # noqa: E402
from meshgate.testing.envoy import http_backend, running_envoy  # noqa: E402
from meshgate.testing.processes import CPProcess, free_port, process_group  # noqa: E402
from meshgate.transport.ads_server import ADS_SERVICE_NAME, AggregatedDiscoveryService, SnapshotStore, register_ads  # noqa: E402
from meshgate.transport.grpc_server import serve_grpc  # noqa: E402
from meshgate.xds import MeshContext, generate  # noqa: E402
from meshgate.xds.ads import ProxyId  # noqa: E402
from meshgate.xds.ads_registry import ProxyRegistry  # noqa: E402
from meshgate.xds.clusters import cluster_name  # noqa: E402
from meshgate.xds.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot  # noqa: E402

MESH = {"type": "Mesh", "name": "default"}
WARMUP = 3
POLL = 0.001
CHANGE_TIMEOUT = 30.0


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- resources -------------------------------------------------------------------------------------------------


def gateway_doc(name: str, service: str, port: int) -> dict[str, Any]:
    return {
        "type": "MeshGateway",
        "mesh": "default",
        "name": name,
        "selectors": [{"match": {"kuma.io/service": service}}],
        "conf": {"listeners": [{"port": port, "protocol": "HTTP", "hostname": "*"}]},
    }


def edge_route(service: str, target: str) -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": "edge-routes",
        "selectors": [{"match": {"kuma.io/service": service}}],
        "conf": {
            "http": {
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": "/a"}}],
                        "backends": [{"weight": 1, "destination": {"kuma.io/service": target}}],
                    }
                ]
            }
        },
    }


def backend_dataplane(name: str, port: int) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {"address": "127.0.0.1", "inbound": [{"port": port, "tags": {"kuma.io/service": name}}]},
    }


def gateway_dataplane(name: str, service: str) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": service}}},
    }


def scale_route(i: int, gateways: int) -> dict[str, Any]:
    """The propagation bench's route: one hostname, one prefix, a 90/10 split across two versions."""
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": f"route-{i:05d}",
        "selectors": [{"match": {"kuma.io/service": f"gateway-{i % gateways}"}}],
        "conf": {
            "http": {
                "hostnames": [f"app-{i}.example.com"],
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": f"/api/{i}"}}],
                        "backends": [
                            {"weight": 90, "destination": {"kuma.io/service": f"svc-{i}", "version": "v1"}},
                            {"weight": 10, "destination": {"kuma.io/service": f"svc-{i}", "version": "v2"}},
                        ],
                    }
                ],
            }
        },
    }


def service_dataplane(i: int) -> dict[str, Any]:
    inbound = [{"port": 8000 + v, "tags": {"kuma.io/service": f"svc-{i}", "version": f"v{v + 1}"}} for v in range(2)]
    address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": f"svc-{i}",
        "networking": {"address": address, "inbound": inbound},
    }


# --- (a) route change -> traffic -----------------------------------------------------------------------------


async def answers(client: httpx.AsyncClient, url: str, name: str) -> bool:
    try:
        r = await client.get(url)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.text.startswith(name)


async def status_is(client: httpx.AsyncClient, url: str, status: str) -> bool:
    try:
        r = await client.get(url)
    except httpx.HTTPError:
        return False
    return r.status_code == int(status)


# Whether the answer at a URL is the one a target (a backend's name, a status) stands for.
Check = Callable[[httpx.AsyncClient, str, str], Awaitable[bool]]


async def moved(client: httpx.AsyncClient, url: str, name: str, t0: float, check: Check = answers) -> float:
    with anyio.fail_after(CHANGE_TIMEOUT):
        while not await check(client, url, name):
            await anyio.sleep(POLL)
    return time.perf_counter() - t0


async def measure_changes(
    changes: int, url: str, apply: Callable[[str], Any], targets: tuple[str, str], check: Check = answers
) -> list[float]:
    """Alternates the route between the two backends (or any two answers `check` tells apart); each sample is from
    `apply` to the first new answer."""
    times = []
    async with httpx.AsyncClient(timeout=2) as client:
        for n in range(WARMUP + changes):
            target = targets[(n + 1) % 2]
            t0 = time.perf_counter()
            await apply(target)
            dt = await moved(client, url, target, t0, check)
            if n >= WARMUP:
                times.append(dt)
    return times


async def put(client: httpx.AsyncClient, path: str, doc: dict[str, Any]) -> None:
    r = await client.put(path, json=doc)
    if r.status_code not in (200, 201):
        raise RuntimeError(f"PUT {path}: {r.status_code} {r.text}")


async def until(check: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.01) -> None:
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await anyio.sleep(interval)
    raise AssertionError(what)


async def zone_has(z: CPProcess, path: str, total: int | None = None) -> bool:
    async with httpx.AsyncClient(base_url=z.url(), timeout=10) as c:
        r = await c.get(path, params={"size": "1"} if total is not None else None)
    if r.status_code != 200:
        return False
    return total is None or r.json().get("total", 0) >= total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def baseline_push(work: Path, changes: int, backends: dict[str, int], listen: int) -> list[float]:
    """Direct delta-ADS push to a second Envoy: snapshots generated beforehand, timed from set() to traffic."""
    gw = codec.load(gateway_doc("edge-direct", "edge-direct", listen))
    proxy = codec.load(gateway_dataplane("edge-direct", "edge-direct"))
    dataplanes = [codec.load(backend_dataplane(n, p)) for n, p in backends.items()]
    snapshots = {
        target: generate(
            proxy,
            MeshContext.build(
                proxy.meta.mesh,
                gateways=[gw],
                routes=[codec.load(edge_route("edge-direct", target))],
                dataplanes=[proxy, *dataplanes],
                zone="bench",
            ),
        )
        for target in backends
    }
    targets = tuple(backends)
    url = f"http://127.0.0.1:{listen}/a/x"
    return await direct_push(work / "direct", changes, snapshots, (targets[0], targets[1]), url)


async def direct_push(
    workdir: Path,
    changes: int,
    snapshots: dict[str, Snapshot],
    targets: tuple[str, str],
    url: str,
    check: Check = answers,
) -> list[float]:
    """`measure_changes` on an Envoy fed by an in-process ADS server, each change one `SnapshotStore.set`."""
    store = SnapshotStore()
    ads = AggregatedDiscoveryService(store, ProxyRegistry())
    pid = ProxyId("default", "edge-direct")
    store.set(pid, snapshots[targets[0]])
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_grpc, [register_ads(ads)], [ADS_SERVICE_NAME], "127.0.0.1", 0)
        async with running_envoy(workdir, "default.edge-direct", port, name=workdir.name):
            async with httpx.AsyncClient(timeout=2) as c:
                await until(lambda: check(c, url, targets[0]), "direct Envoy serving")

            async def apply(target: str) -> None:
                store.set(pid, snapshots[target])

            times = await measure_changes(changes, url, apply, targets, check)
        tg.cancel_scope.cancel()
    return times


# --- (a') policy change -> traffic -----------------------------------------------------------------------------

ABORT_PATH = "/meshes/default/fault-injections/edge-abort"
ABORTING, PASSING = "503", "200"


async def policy_changes(
    gc_: httpx.AsyncClient, z: CPProcess, work: Path, changes: int, backends: dict[str, int], listen: int
) -> tuple[list[float], list[float]]:
    """(a'): a route to echo-a (as the service FAULT) whose FaultInjection aborts all or none of its requests,
    switched on the global and timed until the gateway answers the new way; then the same over a direct push."""
    echo_port = backends["echo-a"]
    async with httpx.AsyncClient(base_url=z.url()) as zc:
        await put(zc, f"/meshes/default/dataplanes/{FAULT}", http_dataplane(FAULT, echo_port))
    await put(gc_, "/meshes/default/meshgatewayroutes/edge-faults", fault_route("edge"))
    await put(gc_, ABORT_PATH, abort_doc(100))
    url = f"http://127.0.0.1:{listen}/f/x"
    async with httpx.AsyncClient(timeout=2) as c:
        await until(lambda: status_is(c, url, ABORTING), "the abort reaching the gateway")

    async def apply(target: str) -> None:
        await put(gc_, ABORT_PATH, abort_doc(100 if target == ABORTING else 0))

    ours = await measure_changes(changes, url, apply, (ABORTING, PASSING), status_is)

    direct_listen = free_port()
    gw = codec.load(gateway_doc("edge-direct", "edge-direct", direct_listen))
    proxy = codec.load(gateway_dataplane("edge-direct", "edge-direct"))
    dataplanes = [proxy, *(codec.load(backend_dataplane(n, p)) for n, p in backends.items())]
    dataplanes.append(codec.load(http_dataplane(FAULT, echo_port)))
    routes = [codec.load(edge_route("edge-direct", "echo-a")), codec.load(fault_route("edge-direct"))]
    snapshots = {
        state: generate(
            proxy,
            MeshContext.build(
                "default",
                gateways=[gw],
                routes=routes,
                dataplanes=dataplanes,
                policies={"FaultInjection": [codec.load(abort_doc(percentage))]},
                zone="bench",
            ),
        )
        for state, percentage in ((ABORTING, 100), (PASSING, 0))
    }
    direct_url = f"http://127.0.0.1:{direct_listen}/f/x"
    base = await direct_push(work / "direct-policy", changes, snapshots, (ABORTING, PASSING), direct_url, status_is)
    return ours, base


# --- (b) build time ------------------------------------------------------------------------------------------


def scale_inputs(routes: int, gateways: int) -> tuple[list[Resource], list[Resource], list[Resource], list[Resource]]:
    gws = [codec.load(gateway_doc(f"gateway-{g}", f"gateway-{g}", 8080)) for g in range(gateways)]
    rts = [codec.load(scale_route(i, gateways)) for i in range(routes)]
    proxies = [codec.load(gateway_dataplane(f"gw-{g}", f"gateway-{g}")) for g in range(gateways)]
    services = [codec.load(service_dataplane(i)) for i in range(routes)]
    return gws, rts, proxies, services


def build_generate(
    gws: list[Resource],
    rts: list[Resource],
    proxies: list[Resource],
    dps: list[Resource],
    policies: dict[str, list[Resource]] | None = None,
) -> list[Snapshot]:
    # As the zone does (zone_cp/xds.py): one context per mesh (its indexes included), shared by all its proxies.
    ctx = MeshContext.build(
        proxies[0].meta.mesh, gateways=gws, routes=rts, dataplanes=dps, policies=policies, zone="bench"
    )
    return [generate(p, ctx) for p in proxies]


def _duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def _ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def build_direct(plan: Plan, listener_port: int) -> list[dict[str, dict[str, Any]]]:
    """The same messages, constructed straight from a precomputed plan: per proxy, (i, host, v1 cluster, v2 cluster,
    and with policies what they set on each)."""
    out = []
    for g, items in enumerate(plan):
        lname = f"gateway-{g}:HTTP:{listener_port}"
        rname = f"{lname}:*"
        hcm = http_connection_manager_pb2.HttpConnectionManager(
            stat_prefix=f"gateway-{g}",
            rds=http_connection_manager_pb2.Rds(config_source=_ads_source(), route_config_name=rname),
        )
        typed = any_pb2.Any()
        typed.Pack(hcm)
        listener = listener_pb2.Listener(
            name=lname,
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=listener_port)
            ),
            filter_chains=[
                listener_components_pb2.FilterChain(
                    filters=[
                        listener_components_pb2.Filter(
                            name="envoy.filters.network.http_connection_manager", typed_config=typed
                        )
                    ]
                )
            ],
            per_connection_buffer_limit_bytes=wrappers_pb2.UInt32Value(value=32768),
            traffic_direction=base_pb2.INBOUND,
            enable_reuse_port=wrappers_pb2.BoolValue(value=True),
        )
        vhosts = []
        clusters: dict[str, Any] = {}
        endpoints: dict[str, Any] = {}
        for i, host, split, route_shape in items:
            weighted = route_components_pb2.WeightedCluster(
                clusters=[
                    route_components_pb2.WeightedCluster.ClusterWeight(name=c, weight=wrappers_pb2.UInt32Value(value=w))
                    for c, w, _, _ in split
                ]
            )
            if route_shape is None:
                action = route_components_pb2.RouteAction(
                    weighted_clusters=weighted,
                    cluster_not_found_response_code=route_components_pb2.RouteAction.INTERNAL_SERVER_ERROR,
                    idle_timeout=_duration(5),
                )
            else:
                action = route_action(weighted, route_shape)
            name = f"route-{i:05d}"
            vhosts.append(
                route_components_pb2.VirtualHost(
                    name=host,
                    domains=[host],
                    routes=[
                        route_components_pb2.Route(
                            name=name, match=route_components_pb2.RouteMatch(path=f"/api/{i}"), route=action
                        ),
                        route_components_pb2.Route(
                            name=name, match=route_components_pb2.RouteMatch(prefix=f"/api/{i}/"), route=action
                        ),
                    ],
                )
            )
            address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            for cname, _, port, cluster_shape in split:
                if cluster_shape is None:
                    clusters[cname] = cluster_pb2.Cluster(
                        name=cname,
                        type=cluster_pb2.Cluster.EDS,
                        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads_source()),
                        connect_timeout=_duration(5),
                        per_connection_buffer_limit_bytes=wrappers_pb2.UInt32Value(value=32768),
                    )
                else:
                    clusters[cname] = shaped_cluster(cname, cluster_shape, _ads_source)
                endpoints[cname] = endpoint_pb2.ClusterLoadAssignment(
                    cluster_name=cname,
                    endpoints=[
                        endpoint_components_pb2.LocalityLbEndpoints(
                            locality=base_pb2.Locality(zone="bench"),
                            lb_endpoints=[
                                endpoint_components_pb2.LbEndpoint(
                                    endpoint=endpoint_components_pb2.Endpoint(
                                        address=address_pb2.Address(
                                            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
                                        )
                                    ),
                                    health_status=health_check_pb2.HEALTHY,
                                )
                            ],
                        )
                    ],
                )
        vhosts.append(
            route_components_pb2.VirtualHost(
                name="*",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        direct_response=route_components_pb2.DirectResponseAction(
                            status=404,
                            body=base_pb2.DataSource(
                                inline_string="This is a Kuma MeshGateway. No routes match this MeshGateway!\n"
                            ),
                        ),
                    )
                ],
            )
        )
        rc = route_pb2.RouteConfiguration(
            name=rname,
            virtual_hosts=vhosts,
            validate_clusters=wrappers_pb2.BoolValue(),
            ignore_port_in_host_matching=True,
        )
        out.append({LISTENER: {lname: listener}, ROUTE: {rname: rc}, CLUSTER: clusters, ENDPOINT: endpoints})
    return out


Split = tuple[tuple[str, int, int, ClusterShape | None], ...]  # (cluster, weight, port, what policies set)
Plan = list[list[tuple[int, str, Split, RouteShape | None]]]


def direct_plan(routes: int, gateways: int, policies: PolicySet | None = None) -> Plan:
    plan: Plan = [[] for _ in range(gateways)]
    for i in range(routes):
        # A cluster a policy shapes is named with its winners too (`policies.shaper`).
        identity = policies.cluster_identity(i) if policies else {}
        shape = policies.cluster_shape(i) if policies else None
        split = sorted(
            (
                (cluster_name({TAG_SERVICE: f"svc-{i}", "version": f"v{v + 1}", **identity}), weight, 8000 + v, shape)
                for v, weight in enumerate((90, 10))
            ),
            key=lambda item: item[0],
        )
        route_shape = policies.route_shape(i) if policies else None
        plan[i % gateways].append((i, f"app-{i}.example.com", tuple(split), route_shape))
    for items in plan:  # the order generate emits virtual hosts in, worked out here, outside the timing
        items.sort(key=lambda item: item[1], reverse=True)
    return plan


def counts(resources: Sequence[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in resources:
        for t in (LISTENER, ROUTE, CLUSTER, ENDPOINT):
            key = t.rsplit(".", 1)[-1]
            out[key] = out.get(key, 0) + len(r[t])
            if t == ROUTE:
                for rc in r[t].values():
                    out["VirtualHost"] = out.get("VirtualHost", 0) + len(rc.virtual_hosts)
                    out["Route"] = out.get("Route", 0) + sum(len(vh.routes) for vh in rc.virtual_hosts)
    return out


def measure_build(
    routes: int, gateways: int, runs: int, policies: PolicySet | None = None
) -> tuple[float, float, dict[str, int], dict[str, int]]:
    gws, rts, proxies, dps = scale_inputs(routes, gateways)
    plan = direct_plan(routes, gateways, policies)
    by_kind: dict[str, list[Resource]] = {}
    for doc in policies.docs if policies else ():
        by_kind.setdefault(doc["type"], []).append(codec.load(doc))
    ours, base = [], []
    got: list[Snapshot] = []
    direct: list[dict[str, dict[str, Any]]] = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        got = build_generate(gws, rts, proxies, dps, by_kind or None)
        ours.append(time.perf_counter() - t0)
        gc.collect()
        t0 = time.perf_counter()
        direct = build_direct(plan, 8080)
        base.append(time.perf_counter() - t0)
    # The two sides must have built the same thing, or the ratio means nothing.
    c_ours, c_base = counts(got), counts(direct)
    assert c_ours == c_base, (c_ours, c_base)
    for g in range(gateways):
        assert got[g][ROUTE] == direct[g][ROUTE], f"the route configurations of gateway-{g} differ"
        assert got[g][CLUSTER] == direct[g][CLUSTER], f"the clusters of gateway-{g} differ"
        assert got[g][ENDPOINT] == direct[g][ENDPOINT], f"the endpoints of gateway-{g} differ"
    return statistics.median(ours), statistics.median(base), c_ours, c_base


# --- main ----------------------------------------------------------------------------------------------------


async def main(changes: int, routes: int, gateways: int, build_runs: int, policies: int) -> None:
    configure_logging("console", "warning")
    work = Path(tempfile.mkdtemp(prefix="meshgate-gw-bench-"))
    print(f"(b) xDS build: {routes} routes across {gateways} gateway proxies, {build_runs} runs each", flush=True)
    b_ours, b_base, b_counts, _ = measure_build(routes, gateways, build_runs)
    pset = scale_policies(policies, routes) if policies else None
    if pset is not None:
        mix = ", ".join(f"{k} {v}" for k, v in sorted(pset.by_kind().items()))
        print(f"(b') the same with {policies} policies ({mix}), {build_runs} runs each", flush=True)
        p_ours, p_base, p_counts, _ = measure_build(routes, gateways, build_runs, pset)

    print(f"(a) route change -> traffic: {changes} changes (+{WARMUP} warm-up) each, polled every 1 ms", flush=True)
    with process_group(work) as procs:
        g = await procs.global_cp("global", "--log-level", "warning")
        z = await procs.zone_cp("zone-1", g.ports["kds"], "--log-level", "warning")
        listen, direct_listen = free_port(), free_port()
        async with http_backend("echo-a") as a, http_backend("echo-b") as b, httpx.AsyncClient(base_url=g.url()) as gc_:
            backends = {a.name: a.port, b.name: b.port}
            await put(gc_, "/meshes/default", MESH)
            await put(gc_, "/meshes/default/meshgateways/edge", gateway_doc("edge", "edge", listen))
            await put(gc_, "/meshes/default/meshgatewayroutes/edge-routes", edge_route("edge", "echo-a"))
            await until(lambda: zone_has(z, "/meshes/default"), "mesh in the zone")
            async with httpx.AsyncClient(base_url=z.url()) as zc:
                for name, port in backends.items():
                    await put(zc, f"/meshes/default/dataplanes/{name}", backend_dataplane(name, port))
            # Secure defaults: TLS with the zone's CA and a data plane token, as any meshgate-dp.
            dp = await zone_dp(procs, z, json.dumps(gateway_dataplane("edge-1", "edge")), workdir=work)
            try:
                url = f"http://127.0.0.1:{listen}/a/x"
                async with httpx.AsyncClient(timeout=2) as c:
                    await until(lambda: answers(c, url, "echo-a"), f"gateway serving\n{dp.logs()[-2000:]}")

                async def apply(target: str) -> None:
                    await put(gc_, "/meshes/default/meshgatewayroutes/edge-routes", edge_route("edge", target))

                ours_a = await measure_changes(changes, url, apply, ("echo-a", "echo-b"))
                base_a = await baseline_push(work, changes, backends, direct_listen)
                if pset is not None:
                    print(f"(a') policy change -> traffic: {changes} changes (+{WARMUP} warm-up) each", flush=True)
                    ours_p, base_p = await policy_changes(gc_, z, work, changes, backends, listen)

                print(
                    f"(c) zone memory: loading {routes} routes and {gateways} MeshGateways through the global",
                    flush=True,
                )
                rss_before = rss_kib(z.proc.pid)
                for gi in range(gateways):
                    await put(
                        gc_,
                        f"/meshes/default/meshgateways/gateway-{gi}",
                        gateway_doc(f"gateway-{gi}", f"gateway-{gi}", 8080),
                    )
                t0 = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    limiter = anyio.CapacityLimiter(16)

                    async def one(i: int) -> None:
                        async with limiter:
                            await put(gc_, f"/meshes/default/meshgatewayroutes/route-{i:05d}", scale_route(i, gateways))

                    for i in range(routes):
                        tg.start_soon(one, i)
                await until(
                    lambda: zone_has(z, "/meshes/default/meshgatewayroutes", routes + 1), "routes in the zone", 600, 0.2
                )
                load_s = time.perf_counter() - t0
                # Let the zone settle (regeneration for the connected gateway, GC) before reading RSS.
                await anyio.sleep(2)
                rss_after = rss_kib(z.proc.pid)
                async with httpx.AsyncClient(timeout=2) as c:
                    still = await answers(c, url, "echo-a") or await answers(c, url, "echo-b")
            finally:
                dp.stop()

    print()
    print(f"{'measure':<52}{'meshgate':>12}{'baseline':>12}{'ratio':>8}  target")
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        o, bb = pct(ours_a, q), pct(base_a, q)
        print(
            f"{f'(a) PUT on global -> traffic moved, {name}':<52}{o * 1e3:>10.1f}ms{bb * 1e3:>10.1f}ms"
            f"{o / bb:>7.2f}x  <= 10x"
        )
    if pset is not None:
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            o, bb = pct(ours_p, q), pct(base_p, q)
            label = f"(a') policy PUT on global -> answer changed, {name}"
            print(f"{label:<52}{o * 1e3:>10.1f}ms{bb * 1e3:>10.1f}ms{o / bb:>7.2f}x  <= 10x")
    print(
        f"{f'(b) xDS build, {routes} routes / {gateways} proxies':<52}{b_ours * 1e3:>10.0f}ms{b_base * 1e3:>10.0f}ms"
        f"{b_ours / b_base:>7.2f}x  <= 2x"
    )
    print(f"    built per run: {', '.join(f'{k} {v}' for k, v in b_counts.items())}")
    if pset is not None:
        label = f"(b') xDS build, the same + {policies} policies"
        print(f"{label:<52}{p_ours * 1e3:>10.0f}ms{p_base * 1e3:>10.0f}ms{p_ours / p_base:>7.2f}x  <= 2x")
        print(f"    built per run: {', '.join(f'{k} {v}' for k, v in p_counts.items())}")
    print(
        f"(c) zone RSS: {rss_before / 1024:.0f} MiB before, {rss_after / 1024:.0f} MiB after {routes} routes "
        f"(+{(rss_after - rss_before) / 1024:.0f} MiB; loaded in {load_s:.1f}s; gateway still serving: {still})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--gateways", type=int, default=20)
    parser.add_argument("--build-runs", type=int, default=3)
    parser.add_argument("--policies", type=int, default=0, help="adds cases (a') and (b') with this many policies")
    args = parser.parse_args()
    if args.changes < 1 or args.routes < 1 or args.gateways < 1:
        parser.error("sizes must be positive")
    if not 0 <= args.policies <= args.routes:
        parser.error("--policies must be between 0 and --routes (each service is named by one policy at most)")
    anyio.run(main, args.changes, args.routes, args.gateways, args.build_runs, args.policies)
