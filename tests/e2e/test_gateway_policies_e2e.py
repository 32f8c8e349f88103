"""Gateway traffic policies end to end: written on the global, synced to zone-1 over KDS (TLS, zone token), turned
into xDS by the zone and served (TLS, data plane token) to a real Envoy under `meshgate-dp`, which changes what a
client sees. Every effect is read from the gateway's answers (status and body), never from the config.

| test | on the global | what the gateway answers |
|---|---|---|
| fault injection | FaultInjection abort 100 % 503, then 0 %, 100 %, deleted | 503 "fault filter abort" / 200 in turn |
| timeout | Timeout `http.requestTimeout` 0.3 s, then deleted | a 1 s request: 504 "upstream request timeout" / 200 |
| one service split | aborts 501 (older) for version v1, 502 (newer) for v2 | the v1/v2 split: 501, the oldest's |
| services split | abort 501 (older) for svc-a, 502 (newer) for `*` | the a/b split: 502, the wildcard's |
| services split, Timeout | 0.3 s (older) for svc-a, 2 s (newer) for `*` | the a/b split times out at 2 s |

The split-route rules are Kuma's `BestConnectionPolicyForDestination` (meshgate/xds/policies/matching.py): each
backend's cluster winner is the most specific then newest policy; a route takes the oldest of those winners, or
of the wildcard ones among them when there are any. Kuma 2.7 applies it to a gateway route's Retry, Timeout and
RateLimit; meshgate also to FaultInjection (Kuma leaves FaultInjection on gateway routes as a TODO), whose aborts
tell policies apart in one request, so most of the split cases use it and the last repeats one with Timeout.

A policy's age on the zone is when the zone stored it: KDS carries no creation time (Kuma's `KumaResource.Meta`
has none, and `pkg/kds/store/sync.go` leaves it to the zone's store), so a test makes one policy older than
another by waiting for the first to act on traffic before it writes the second.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from meshgate.resources import registry
from meshgate.testing import factory
from tests.support.dp import DpProcess, zone_dp
from tests.support.envoy import DELAY_HEADER, http_backend
from tests.support.names import in_zone
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

Doc = dict[str, Any]
SERVICE, PROTOCOL = "kuma.io/service", "kuma.io/protocol"
HTTP = {PROTOCOL: "http"}  # Kuma's FaultInjection destinations must name an HTTP protocol
ABORTED = "fault filter abort"  # Envoy's body for a fault filter abort: not an upstream's 5xx
TIMED_OUT = "upstream request timeout"  # Envoy's body for a route timeout
SYNC = 60.0  # a deadlock guard for a change to go global -> zone -> Envoy, never a speed assertion
SHORT, LONG = "0.300s", "3s"  # two request timeouts
# Backend delays: past SHORT but within LONG; past LONG. Both under the routes' 5 s idle timeout and Envoy's 15 s
# default route timeout, so without a Timeout they are answered 200.
WITHIN_LONG, BEYOND_LONG = 1.0, 4.5


def rule(prefix: str, *backends: Doc) -> Doc:
    return {"matches": [{"path": {"match": "PREFIX", "value": prefix}}], "backends": list(backends)}


def to(service: str, **tags: str) -> Doc:
    """An equally weighted route backend of `service` (HTTP) with `tags`."""
    return factory.backend(service, 1, **HTTP, **tags)


def abort(name: str, status: int, destination: Mapping[str, str], percentage: int = 100) -> Doc:
    """A FaultInjection from anywhere aborting `percentage` % of the requests to `destination` with `status`."""
    return {
        "type": "FaultInjection",
        "mesh": "default",
        "name": name,
        "sources": [{"match": {SERVICE: "*"}}],
        "destinations": [{"match": {**destination, **HTTP}}],
        "conf": {"abort": {"percentage": percentage, "httpStatus": status}},
    }


def request_timeout(name: str, destination: str, timeout: str) -> Doc:
    return factory.timeout(
        name, destination=destination, conf={"connectTimeout": "1s", "http": {"requestTimeout": timeout}}
    )


def path_of(doc: Doc, name: str | None = None) -> str:
    return f"/meshes/default/{registry.get(doc['type']).plural}/{name or doc['name']}"


@dataclass
class Edge:
    """The gateway's listener on 127.0.0.1:`port`, served by the Envoy of `dp`, configured by zone `z` of global `g`."""

    g: CPProcess
    z: CPProcess
    port: int
    dp: DpProcess

    async def answer(self, path: str, delay: float | None = None) -> tuple[int, str]:
        """Status and body through the gateway; (0, error) when the listener is not there yet."""
        headers = {DELAY_HEADER: str(delay)} if delay is not None else {}
        try:
            async with httpx.AsyncClient(timeout=15) as c:
                r = await c.get(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        except httpx.HTTPError as exc:
            return 0, repr(exc)
        return r.status_code, r.text

    async def until(self, path: str, status: int, body: str, *, delay: float | None = None) -> None:
        """Polls until the gateway answers `path` with `status` and a body starting with `body`."""
        seen: list[tuple[int, str]] = []

        async def answered() -> bool:
            seen.append(await self.answer(path, delay))
            return seen[-1][0] == status and seen[-1][1].startswith(body)

        try:
            await eventually(answered, timeout=SYNC, interval=0.05, what=f"{path} -> {status} {body!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answers {seen[-3:]}\n{self.dp.logs()[-2000:]}") from None

    async def answers(self, path: str, times: int, delay: float | None = None) -> Counter[tuple[int, str]]:
        """`times` answers to `path`, counted by (status, first word of the body: the backend's name)."""
        out: Counter[tuple[int, str]] = Counter()
        for _ in range(times):
            status, text = await self.answer(path, delay)
            out[(status, text.split(" ")[0] if status == 200 else text)] += 1
        return out

    async def put_global(self, doc: Doc) -> None:
        async with httpx.AsyncClient(base_url=self.g.url()) as c:
            r = await c.put(path_of(doc), json=doc)
        assert r.status_code in (200, 201), r.text

    async def delete_global(self, doc: Doc) -> None:
        async with httpx.AsyncClient(base_url=self.g.url()) as c:
            r = await c.delete(path_of(doc))
        assert r.status_code == 200, r.text

    async def in_zone(self, doc: Doc) -> Doc | None:
        """The zone's copy of a policy written on the global (under its hash-suffixed name), or None."""
        async with httpx.AsyncClient(base_url=self.z.url()) as c:
            r = await c.get(path_of(doc, in_zone(doc["name"])))
        assert r.status_code in (200, 404), r.text
        return dict(r.json()) if r.status_code == 200 else None


async def _put(client: httpx.AsyncClient, path: str, doc: Doc) -> None:
    r = await client.put(path, json=doc)
    assert r.status_code in (200, 201), f"PUT {path}: {r.status_code} {r.text}"


async def _has_mesh(z: CPProcess) -> bool:
    async with httpx.AsyncClient(base_url=z.url()) as c:
        return (await c.get("/meshes/default")).status_code == 200


@asynccontextmanager
async def edge(procs: ProcessGroup, rules: list[Doc], backends: Mapping[str, Mapping[str, str]]) -> AsyncIterator[Edge]:
    """A global and zone-1 with their secure defaults; the mesh, a builtin MeshGateway `edge` (one HTTP listener)
    and a MeshGatewayRoute with `rules` applied on the global; an `http_backend` per name in `backends` registered
    in the zone as an HTTP Dataplane with those tags; a gateway Dataplane `edge-1` run by meshgate-dp and Envoy."""
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    port = free_port()
    async with httpx.AsyncClient(base_url=g.url()) as c:
        await _put(c, "/meshes/default", factory.mesh())
        gateway = factory.gateway("edge", listeners=[factory.listener(port, hostname="*")])
        await _put(c, "/meshes/default/meshgateways/edge", gateway)
        await _put(c, "/meshes/default/meshgatewayroutes/edge-routes", factory.http_route("edge-routes", rules=rules))
    await eventually(lambda: _has_mesh(z), timeout=SYNC, what="mesh default in zone-1")
    async with AsyncExitStack() as stack:
        async with httpx.AsyncClient(base_url=z.url()) as c:
            for name, tags in backends.items():
                backend = await stack.enter_async_context(http_backend(name))
                extra = {k: v for k, v in tags.items() if k != SERVICE}
                doc = factory.dataplane(name, tags[SERVICE], address="127.0.0.1", port=backend.port, tags=extra)
                await _put(c, f"/meshes/default/dataplanes/{name}", doc)
        gateway_dp = factory.gateway_dataplane("edge-1", "edge", address="127.0.0.1")
        dp = await zone_dp(procs, z, json.dumps(gateway_dp))
        stack.callback(dp.stop)
        yield Edge(g, z, port, dp)


# --- a policy written on the global changes the zone's gateway traffic --------------------------------------------


async def test_a_fault_injection_on_the_global_aborts_the_gateway_traffic_until_turned_off_or_deleted(
    procs: ProcessGroup,
) -> None:
    async with edge(procs, [rule("/f", to("echo"))], {"echo": {SERVICE: "echo", **HTTP}}) as gw:
        await gw.until("/f/x", 200, "echo /f/x")

        policy = abort("edge-abort", 503, {SERVICE: "echo"})
        await gw.put_global(policy)
        await gw.until("/f/x", 503, ABORTED)
        synced = await gw.in_zone(policy)
        assert synced is not None
        assert synced["labels"]["kuma.io/origin"] == "global"
        assert synced["labels"]["kuma.io/display-name"] == "edge-abort"
        assert synced["conf"] == {"abort": {"percentage": 100, "httpStatus": 503}}

        # The zone does not take the kind: neither over the global's copy nor as a zone-local policy.
        async with httpx.AsyncClient(base_url=gw.z.url()) as c:
            for name in (in_zone("edge-abort"), "zone-local"):
                doc = abort(name, 503, {SERVICE: "echo"}, percentage=0)
                refused = await c.put(path_of(doc), json=doc)
                assert refused.status_code == 405, refused.text
        assert await gw.answers("/f/x", 5) == Counter({(503, ABORTED): 5})  # the refused write changed nothing

        await gw.put_global(abort("edge-abort", 503, {SERVICE: "echo"}, percentage=0))
        await gw.until("/f/x", 200, "echo /f/x")
        synced = await gw.in_zone(policy)
        assert synced is not None
        assert synced["conf"]["abort"]["percentage"] == 0

        await gw.put_global(policy)
        await gw.until("/f/x", 503, ABORTED)
        await gw.delete_global(policy)
        await gw.until("/f/x", 200, "echo /f/x")
        assert await gw.in_zone(policy) is None


async def test_a_timeout_on_the_global_turns_a_slow_backend_into_504(procs: ProcessGroup) -> None:
    async with edge(procs, [rule("/slow", to("slow"))], {"slow": {SERVICE: "slow", **HTTP}}) as gw:
        await gw.until("/slow", 200, "slow /slow", delay=WITHIN_LONG)  # Envoy's default timeout lets 1 s pass

        policy = request_timeout("slow-timeout", "slow", SHORT)
        await gw.put_global(policy)
        await gw.until("/slow", 504, TIMED_OUT, delay=WITHIN_LONG)
        assert await gw.answer("/slow") == (200, "slow /slow")  # a request that is quick enough still passes
        synced = await gw.in_zone(policy)
        assert synced is not None
        assert synced["conf"]["http"]["requestTimeout"] == SHORT

        await gw.delete_global(policy)
        await gw.until("/slow", 200, "slow /slow", delay=WITHIN_LONG)


# --- the split-route heuristics, seen through Envoy ----------------------------------------------------------------


async def test_a_route_split_across_versions_of_one_service_takes_the_oldest_matching_policy(
    procs: ProcessGroup,
) -> None:
    """Each version's cluster has its own winner (the only policy naming that version); the route across both
    takes the older of the two, whatever their names ("split-old" sorts after "split-new")."""
    v1, v2 = {SERVICE: "echo", "version": "v1"}, {SERVICE: "echo", "version": "v2"}
    rules = [
        rule("/split", to("echo", version="v1"), to("echo", version="v2")),
        rule("/v1", to("echo", version="v1")),
        rule("/v2", to("echo", version="v2")),
    ]
    async with edge(procs, rules, {"echo-v1": {**v1, **HTTP}, "echo-v2": {**v2, **HTTP}}) as gw:
        await gw.until("/v1", 200, "echo-v1")
        await gw.until("/v2", 200, "echo-v2")
        split: set[str] = set()

        async def both_versions() -> bool:
            split.update(name for (status, name) in await gw.answers("/split", 4) if status == 200)
            return split == {"echo-v1", "echo-v2"}

        await eventually(both_versions, timeout=SYNC, what="/split reaching both versions")

        old, new = abort("split-old", 501, v1), abort("split-new", 502, v2)
        await gw.put_global(old)
        await gw.until("/v1", 501, ABORTED)  # stored on the zone: now the older of the two
        await gw.put_global(new)
        await gw.until("/v2", 502, ABORTED)
        # /v2 and /split are in one RouteConfiguration: the /split below is routed by the config holding both.
        assert await gw.answers("/split", 10) == Counter({(501, ABORTED): 10})
        assert await gw.answers("/v1", 3) == Counter({(501, ABORTED): 3})  # each still shapes its own version

        # Make split-old the newer one (same name and content, stored again): the route goes to split-new.
        await gw.delete_global(old)
        await gw.until("/v1", 200, "echo-v1")
        await gw.until("/split", 502, ABORTED)  # split-new alone
        await gw.put_global(old)
        await gw.until("/v1", 501, ABORTED)
        assert await gw.answers("/split", 10) == Counter({(502, ABORTED): 10})
        assert await gw.answers("/v2", 3) == Counter({(502, ABORTED): 3})


async def test_a_route_split_across_services_takes_the_wildcard_policy(procs: ProcessGroup) -> None:
    """svc-a's cluster is won by the policy naming svc-a (more specific), svc-b's by the `*` one; a route across
    both services takes the `*` one although it is newer. Without a `*` winner the oldest takes it again."""
    a, b = {SERVICE: "svc-a"}, {SERVICE: "svc-b"}
    rules = [rule("/split", to("svc-a"), to("svc-b")), rule("/a", to("svc-a")), rule("/b", to("svc-b"))]
    async with edge(procs, rules, {"svc-a": {**a, **HTTP}, "svc-b": {**b, **HTTP}}) as gw:
        await gw.until("/a", 200, "svc-a")
        await gw.until("/b", 200, "svc-b")

        only_a = abort("only-a", 501, a)
        await gw.put_global(only_a)
        await gw.until("/a", 501, ABORTED)
        assert await gw.answers("/split", 5) == Counter({(501, ABORTED): 5})  # the only policy any backend has
        assert await gw.answers("/b", 3) == Counter({(200, "svc-b"): 3})

        every = abort("every", 502, {SERVICE: "*"})
        await gw.put_global(every)
        await gw.until("/b", 502, ABORTED)  # svc-b's cluster: only `*` matches it
        assert await gw.answers("/split", 10) == Counter({(502, ABORTED): 10})  # the wildcard, newer as it is
        assert await gw.answers("/a", 3) == Counter({(501, ABORTED): 3})  # one service: the specific one wins

        # The same split with a newer policy naming svc-b instead of `*`: no wildcard, so the oldest (only-a).
        await gw.delete_global(every)
        await gw.until("/b", 200, "svc-b")
        await gw.put_global(abort("only-b", 502, b))
        await gw.until("/b", 502, ABORTED)
        assert await gw.answers("/split", 10) == Counter({(501, ABORTED): 10})


async def test_a_timeout_on_a_route_split_across_services_is_the_wildcard_one(procs: ProcessGroup) -> None:
    """Kuma's own route-level use of the heuristic: a Timeout of SHORT naming svc-a (older) and one of LONG for
    `*` (newer). A single-service route to svc-a times out at SHORT; the a/b split at LONG."""
    a, b = {SERVICE: "svc-a", **HTTP}, {SERVICE: "svc-b", **HTTP}
    rules = [rule("/split", to("svc-a"), to("svc-b")), rule("/a", to("svc-a")), rule("/b", to("svc-b"))]
    async with edge(procs, rules, {"svc-a": a, "svc-b": b}) as gw:
        await gw.until("/split", 200, "svc-", delay=WITHIN_LONG)

        await gw.put_global(request_timeout("short-a", "svc-a", SHORT))
        await gw.until("/a", 504, TIMED_OUT, delay=WITHIN_LONG)
        assert (await gw.answer("/split", WITHIN_LONG))[0] == 504  # short-a is the only winner of any backend

        await gw.put_global(request_timeout("long-all", "*", LONG))
        await gw.until("/b", 504, TIMED_OUT, delay=BEYOND_LONG)  # svc-b's route now has long-all's timeout
        within = await gw.answers("/split", 6, delay=WITHIN_LONG)
        assert set(within) <= {(200, "svc-a"), (200, "svc-b")}, within  # not SHORT any more
        assert await gw.answer("/split", BEYOND_LONG) == (504, TIMED_OUT)  # but LONG: long-all's
        assert await gw.answer("/a", WITHIN_LONG) == (504, TIMED_OUT)  # one service: short-a still
