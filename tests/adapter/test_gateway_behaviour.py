"""Builtin and delegated gateway behaviour through a real Envoy (gateway.md, "Binding and routing").

The real pipeline minus processes (tests/support/gateway_harness.py): Universal resources loaded with
`codec.load`, `generate` for the gateway Dataplane, the snapshot served by the real delta ADS server, one
real Envoy for the whole module. Each test sends real requests (Host, SNI, path, method, headers, query)
and checks which backend answered, the status, the body, or the redirect `Location`.

Listeners of the module's gateway `edge`, one role each, told apart by a listener tag `listener`:

| listener | port | protocol | hostnames |
|---|---|---|---|
| main | main | HTTP | `*` (matching, ordering, filters, splits, zones); tag `tier: front` over the gateway's `edge` |
| va, vb, vstar, vempty | vhost | HTTP | a.example.com, b.example.com, `*`, empty.example.com |
| limit | limit | HTTP | `*`, connectionLimit 2 |
| sa, sb | https | HTTPS TERMINATE | a.example.com, b.example.com (one self-signed cert each) |
| tdb, tother | tls | TLS PASSTHROUGH | db.example.com, other.example.com |
| tcp | tcp | TCP | - |
| tterm | tlsterm | TLS TERMINATE | a.example.com (TLS ends at the gateway, TCP to the backend) |
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import pytest_asyncio

from meshgate.resources.model import Resource
from meshgate.xds import NO_ROUTE_BODY
from meshgate.xds.ads import ProxyId
from tests.support.envoy import Envoy, free_port, running_envoy
from tests.support.gateway_harness import (
    AdsServer,
    Cert,
    RecordingBackend,
    StreamBackend,
    ads_server,
    backend_dataplane,
    builtin_gateway_dataplane,
    gateway,
    http_route,
    load,
    ready_probe,
    recording_backend,
    rig_in_one_task,
    rule,
    self_signed,
    tcp_echo_backend,
    tcp_route,
    tls_backend,
    to,
)
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

EDGE = ProxyId("default", "edge-1")
LIMIT = 2


def path(kind: str, value: str, **more: Any) -> dict[str, Any]:
    return {"path": {"match": kind, "value": value}, **more}


def on(listener: str) -> dict[str, str]:
    return {"kuma.io/service": "edge", "listener": listener}


def main_routes() -> list[dict[str, Any]]:
    """Every route of the `main` listener (no hostnames: the `*` virtual host)."""
    sel = on("main")
    return [
        http_route(
            "order",
            [
                # Declared in the "wrong" order on purpose: Envoy sees Kuma's order, not this one.
                rule(path("PREFIX", "/o1"), backends=to("o1-prefix")),
                rule(path("EXACT", "/o1"), backends=to("o1-exact")),
                rule(path("PREFIX", "/o2"), backends=to("o2-short")),
                rule(path("PREFIX", "/o2/long"), backends=to("o2-long")),
                rule(path("PREFIX", "/api"), backends=to("api")),
                rule(path("REGEX", "/o3/.*"), backends=to("o3-regex")),
                rule(path("PREFIX", "/o3"), backends=to("o3-prefix")),
                rule(path("REGEX", "/re[0-9]+"), backends=to("regex")),
                rule(path("PREFIX", "/o4"), backends=to("o4-any")),
                rule(path("PREFIX", "/o4", method="POST"), backends=to("o4-post")),
                rule(path("PREFIX", "/o5", headers=[{"name": "x-a", "value": "1"}]), backends=to("o5-one")),
                rule(
                    path("PREFIX", "/o5", headers=[{"name": "x-a", "value": "1"}, {"name": "x-b", "match": "PRESENT"}]),
                    backends=to("o5-two"),
                ),
                rule(path("PREFIX", "/o6"), backends=to("o6-plain")),
                rule(path("PREFIX", "/o6", queryParameters=[{"name": "q", "value": "1"}]), backends=to("o6-query")),
            ],
            selector=sel,
        ),
        http_route(
            "matches",
            [
                rule(path("PREFIX", "/h/exact", headers=[{"name": "x-h", "value": "yes"}]), backends=to("h-exact")),
                rule(
                    path("PREFIX", "/h/regex", headers=[{"name": "x-r", "match": "REGEX", "value": "v[0-9]+"}]),
                    backends=to("h-regex"),
                ),
                rule(path("PREFIX", "/h/present", headers=[{"name": "x-p", "match": "PRESENT"}]),
                     backends=to("h-present")),
                rule(path("PREFIX", "/h/absent", headers=[{"name": "x-z", "match": "ABSENT"}]),
                     backends=to("h-absent")),
                rule(path("PREFIX", "/q/exact", queryParameters=[{"name": "q", "value": "1"}]), backends=to("q-exact")),
                rule(
                    path("PREFIX", "/q/regex", queryParameters=[{"name": "r", "match": "REGEX", "value": "a+"}]),
                    backends=to("q-regex"),
                ),
                rule(path("PREFIX", "/m", method="PUT"), backends=to("m-put")),
                # A match without a path: any path, decided by the header alone.
                rule({"headers": [{"name": "x-only", "value": "header"}]}, backends=to("h-only")),
            ],
            selector=sel,
        ),
        http_route(
            "filters",
            [
                rule(
                    path("PREFIX", "/reqh"),
                    backends=to("echo"),
                    filters=[
                        {
                            "requestHeader": {
                                "set": [{"name": "x-set", "value": "set-by-gateway"}],
                                "add": [{"name": "x-add", "value": "added"}],
                                "remove": ["x-drop"],
                            }
                        }
                    ],
                ),
                rule(
                    path("PREFIX", "/resph"),
                    backends=to("resph"),
                    filters=[{"responseHeader": {"set": [{"name": "x-resp", "value": "from-gateway"}]}}],
                ),
                rule(
                    path("EXACT", "/redir"),
                    filters=[
                        {"redirect": {"statusCode": 301, "hostname": "new.example.com",
                                      "path": {"replaceFull": "/new"}}}
                    ],
                ),
                rule(
                    path("PREFIX", "/rdp"),
                    filters=[{"redirect": {"statusCode": 302, "path": {"replacePrefixMatch": "/moved"}}}],
                ),
                rule(
                    path("PREFIX", "/reqhost"),
                    backends=to("echo"),
                    filters=[{"requestHeader": {"set": [{"name": "Host", "value": "internal.example.com"}]}}],
                ),
                rule(
                    path("EXACT", "/redir-port"),
                    filters=[{"redirect": {"statusCode": 307, "scheme": "https", "port": 8443}}],
                ),
                rule(
                    path("PREFIX", "/rw"),
                    backends=to("rewritten"),
                    filters=[{"rewrite": {"replacePrefixMatch": "/new"}}],
                ),
                rule(
                    path("EXACT", "/rwfull"),
                    backends=to("rewritten"),
                    filters=[{"rewrite": {"replaceFull": "/full/path"}}],
                ),
                rule(
                    path("PREFIX", "/mirror"),
                    backends=to("primary"),
                    filters=[
                        {"mirror": {"backend": {"destination": {"kuma.io/service": "shadow"}}, "percentage": 100}}
                    ],
                ),
            ],
            selector=sel,
        ),
        http_route(
            "backends",
            [
                rule(path("PREFIX", "/split"), backends=to(("w-a", 1), ("w-b", 3))),
                rule(path("PREFIX", "/zero-weight"), backends=to(("w-a", 1), ("w-b", 0))),
                rule(path("PREFIX", "/unknown"), backends=to("no-such-service")),
                rule(
                    path("PREFIX", "/zone2"),
                    backends=[{"weight": 1, "destination": {"kuma.io/service": "zoned", "kuma.io/zone": "zone-2"}}],
                ),
                rule(path("PREFIX", "/zone-any"), backends=to("zoned")),
                rule(path("PREFIX", "/remote-only"), backends=to("remote-only")),
                rule(path("PREFIX", "/half-unknown"), backends=to(("w-a", 1), ("no-such-service", 1))),
            ],
            selector=sel,
        ),
        # Route hostnames narrow the wildcard listener into virtual hosts of their own.
        http_route("narrow", [rule(path("PREFIX", "/narrow"), backends=to("narrow"))], selector=sel,
                   hostnames=["narrow.example.com"]),
        http_route("wild", [rule(path("PREFIX", "/wild"), backends=to("wild"))], selector=sel,
                   hostnames=["*.wild.example.com"]),
        # Tags merge dataplane, then gateway, then listener: main's tier "front" overrides the gateway's "edge".
        http_route("tier-front", [rule(path("PREFIX", "/tier"), backends=to("tier-front"))],
                   selector={"kuma.io/service": "edge", "tier": "front"}),
        http_route("tier-edge", [rule(path("PREFIX", "/tier-edge"), backends=to("tier-edge"))],
                   selector={"kuma.io/service": "edge", "tier": "edge", "listener": "main"}),
        http_route("tier-edge-va", [rule(path("PREFIX", "/tier-edge"), backends=to("tier-edge"))],
                   selector={"kuma.io/service": "edge", "tier": "edge", "listener": "va"}),
        # Not bound: the selector names another gateway service, or a listener tag no listener has.
        http_route("other-gateway", [rule(path("PREFIX", "/unbound"), backends=to("unbound"))],
                   selector={"kuma.io/service": "not-edge"}),
        http_route("other-listener", [rule(path("PREFIX", "/unbound2"), backends=to("unbound"))],
                   selector=on("nope")),
    ]  # fmt: skip


def other_routes() -> list[dict[str, Any]]:
    slash = path("PREFIX", "/")
    return [
        http_route("va", [rule(slash, backends=to("va"))], selector=on("va")),
        http_route("vb", [rule(slash, backends=to("vb"))], selector=on("vb")),
        http_route("vstar", [rule(slash, backends=to("vstar"))], selector=on("vstar")),
        http_route("limit", [rule(slash, backends=to("limited"))], selector=on("limit")),
        http_route("sa", [rule(slash, backends=to("sa"))], selector=on("sa")),
        http_route("sb", [rule(slash, backends=to("sb"))], selector=on("sb")),
        tcp_route("tdb", "tls-db", selector=on("tdb")),
        tcp_route("tother", "tls-other", selector=on("tother")),
        tcp_route("tcp", "tcp-echo", selector=on("tcp")),
        tcp_route("tterm", "tcp-echo", selector=on("tterm")),
    ]


HTTP_BACKENDS = sorted(
    {
        b["destination"]["kuma.io/service"]
        for r in main_routes() + other_routes()
        if "http" in r["conf"]
        for ru in r["conf"]["http"]["rules"]
        for b in ru.get("backends", [])
    }
    | {"shadow"}
)


@dataclass
class Gateway:
    ads: AdsServer
    envoy: Envoy
    ports: dict[str, int]
    http: dict[str, RecordingBackend]  # by backend name ("zoned-z1", "zoned-z2" for the service "zoned")
    streams: dict[str, StreamBackend]
    certs: dict[str, Cert]
    client: httpx.AsyncClient

    async def get(
        self, where: str, target: str, *, host: str = "gw.example.com", method: str = "GET", **kw: Any
    ) -> httpx.Response:
        headers = {"Host": host, **kw.pop("headers", {})}
        return await self.client.request(method, f"http://127.0.0.1:{self.ports[where]}{target}", headers=headers, **kw)

    async def who(self, target: str, **kw: Any) -> str:
        """The backend that answered on the main listener, or `<status>` when none did."""
        resp = await self.get("main", target, **kw)
        return resp.text.split(" ")[0] if resp.status_code == 200 else str(resp.status_code)


async def _build(stack: AsyncExitStack, workdir: Path) -> Gateway:
    certs = {h: self_signed(workdir / "certs", h) for h in ("a.example.com", "b.example.com", "db.example.com",
                                                             "other.example.com")}  # fmt: skip
    ads = await stack.enter_async_context(ads_server())
    http: dict[str, RecordingBackend] = {}
    dataplanes: list[dict[str, Any]] = []
    for name in HTTP_BACKENDS:
        if name in ("no-such-service", "zoned", "remote-only"):
            continue
        http[name] = await stack.enter_async_context(recording_backend(name))
        dataplanes.append(backend_dataplane(name, http[name].port, name))
    # One service in two zones: the local zone-1 (no label) and zone-2 (labelled, as if synced).
    for zone in ("z1", "z2"):
        b = http[f"zoned-{zone}"] = await stack.enter_async_context(recording_backend(f"zoned-{zone}"))
        dataplanes.append(backend_dataplane(f"zoned-{zone}", b.port, "zoned", zone=None if zone == "z1" else "zone-2"))
    remote = http["remote-only"] = await stack.enter_async_context(recording_backend("remote-only"))
    dataplanes.append(backend_dataplane("remote-only", remote.port, "remote-only", zone="zone-2"))
    streams = {
        "tls-db": await stack.enter_async_context(tls_backend("tls-db", certs["db.example.com"])),
        "tls-other": await stack.enter_async_context(tls_backend("tls-other", certs["other.example.com"])),
        "tcp-echo": await stack.enter_async_context(tcp_echo_backend("tcp-echo")),
    }
    dataplanes += [backend_dataplane(n, s.port, n) for n, s in streams.items()]

    ports = {k: free_port() for k in ("main", "vhost", "limit", "https", "tls", "tcp", "tlsterm")}

    def terminate(host: str) -> dict[str, Any]:
        return {"mode": "TERMINATE", "certificates": [{"inlineString": certs[host].pem}]}

    listeners = [
        {"port": ports["main"], "protocol": "HTTP", "hostname": "*", "tags": {"listener": "main", "tier": "front"}},
        {"port": ports["vhost"], "protocol": "HTTP", "hostname": "a.example.com", "tags": {"listener": "va"}},
        {"port": ports["vhost"], "protocol": "HTTP", "hostname": "b.example.com", "tags": {"listener": "vb"}},
        {"port": ports["vhost"], "protocol": "HTTP", "hostname": "*", "tags": {"listener": "vstar"}},
        {"port": ports["vhost"], "protocol": "HTTP", "hostname": "empty.example.com", "tags": {"listener": "vempty"}},
        {"port": ports["limit"], "protocol": "HTTP", "tags": {"listener": "limit"},
         "resources": {"connectionLimit": LIMIT}},
        {"port": ports["https"], "protocol": "HTTPS", "hostname": "a.example.com", "tags": {"listener": "sa"},
         "tls": terminate("a.example.com")},
        {"port": ports["https"], "protocol": "HTTPS", "hostname": "b.example.com", "tags": {"listener": "sb"},
         "tls": terminate("b.example.com")},
        {"port": ports["tls"], "protocol": "TLS", "hostname": "db.example.com", "tags": {"listener": "tdb"},
         "tls": {"mode": "PASSTHROUGH"}},
        {"port": ports["tls"], "protocol": "TLS", "hostname": "other.example.com", "tags": {"listener": "tother"},
         "tls": {"mode": "PASSTHROUGH"}},
        {"port": ports["tcp"], "protocol": "TCP", "tags": {"listener": "tcp"}},
        {"port": ports["tlsterm"], "protocol": "TLS", "hostname": "a.example.com", "tags": {"listener": "tterm"},
         "tls": terminate("a.example.com")},
    ]  # fmt: skip
    ads.push(
        load(builtin_gateway_dataplane("edge-1", "edge")),
        gateways=[load(gateway("edge", "edge", listeners, tags={"tier": "edge"}))],
        routes=[load(r) for r in main_routes() + other_routes()],
        dataplanes=[load(d) for d in dataplanes],
    )
    envoy = await stack.enter_async_context(running_envoy(workdir, str(EDGE), ads.port, name="edge"))
    client = await stack.enter_async_context(httpx.AsyncClient(timeout=5.0))
    gw = Gateway(ads, envoy, ports, http, streams, certs, client)
    expected = {f"edge:{p}:{ports[k]}" for k, p in
                (("main", "HTTP"), ("vhost", "HTTP"), ("limit", "HTTP"), ("https", "HTTPS"), ("tls", "TLS"),
                 ("tcp", "TCP"), ("tlsterm", "TLS"))}  # fmt: skip

    async def ready() -> bool:
        return await envoy.active_listeners() == expected and await gw.who("/o1") == "o1-exact"

    await ready_probe(ready, envoy, what="every gateway listener active and traffic through main")
    return gw


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """One gateway Envoy for the module. Its servers live in one background task, so the task groups and
    contexts they open are entered and left by the same task whatever task runs setup and teardown
    (`rig_in_one_task`)."""
    workdir = tmp_path_factory.mktemp("gateway")
    async with rig_in_one_task(lambda stack: _build(stack, workdir)) as gw:
        yield gw


# --- binding and hostnames -------------------------------------------------------------------------------


async def test_config_is_acked_and_every_type_delivered_without_nack(gw: Gateway) -> None:
    def settled() -> bool:
        types = gw.ads.types(EDGE)
        return bool(types) and all(t["inFlight"] is None and t["acked"] > 0 for t in types.values())

    await eventually(settled, what="every type ACKed")
    assert {k: t["nacked"] for k, t in gw.ads.types(EDGE).items()} == dict.fromkeys(gw.ads.types(EDGE), 0)


async def test_hostnames_are_virtual_hosts_and_other_hosts_get_the_wildcard(gw: Gateway) -> None:
    async def who(host: str) -> str:
        resp = await gw.get("vhost", "/x", host=host)
        return resp.text.split(" ")[0]

    assert await who("a.example.com") == "va"
    assert await who("b.example.com") == "vb"
    assert await who("c.example.com") == "vstar"
    assert await who("a.example.com:1234") == "va", "the port in Host plays no part"


async def test_route_hostnames_narrow_the_wildcard_listener(gw: Gateway) -> None:
    assert await gw.who("/narrow", host="narrow.example.com") == "narrow"
    assert await gw.who("/narrow", host="gw.example.com") == "404"
    assert await gw.who("/o1", host="narrow.example.com") == "o1-exact", "routes without hostnames apply too"
    assert await gw.who("/wild", host="x.wild.example.com") == "wild"
    assert await gw.who("/wild", host="wild.example.com") == "404", "*.a.b does not match a.b itself"


async def test_virtual_host_without_routes_answers_404_with_kumas_body(gw: Gateway) -> None:
    resp = await gw.get("vhost", "/anything", host="empty.example.com")
    assert resp.status_code == 404
    assert resp.text == NO_ROUTE_BODY


async def test_route_binds_only_when_its_selector_matches_the_listener(gw: Gateway) -> None:
    assert await gw.who("/unbound") == "404"  # selector names another gateway's service
    assert await gw.who("/unbound2") == "404"  # selector names a listener tag value no listener has
    assert gw.http["unbound"].requests == []


async def test_route_binding_sees_gateway_tags_overridden_by_listener_tags(gw: Gateway) -> None:
    assert await gw.who("/tier") == "tier-front", "the listener's tier: front"
    assert await gw.who("/tier-edge") == "404", "the gateway's tier: edge is overridden on main"
    resp = await gw.get("vhost", "/tier-edge", host="a.example.com")
    assert resp.text == "tier-edge /tier-edge", "and seen where the listener does not override it"


# --- ordering --------------------------------------------------------------------------------------------


async def test_exact_beats_prefix_and_longest_prefix_wins(gw: Gateway) -> None:
    assert await gw.who("/o1") == "o1-exact"
    assert await gw.who("/o1/x") == "o1-prefix"
    assert await gw.who("/o2/long/x") == "o2-long"
    assert await gw.who("/o2/long") == "o2-long"
    assert await gw.who("/o2/longer") == "o2-short", "prefixes match whole segments"
    assert await gw.who("/o2/x") == "o2-short"


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/api", "api"), ("/api/", "api"), ("/api/x", "api"), ("/api/x/y?z=1", "api"), ("/apix", "404"), ("/ap", "404")],
)
async def test_prefix_matches_whole_segments(gw: Gateway, target: str, expected: str) -> None:
    assert await gw.who(target) == expected


async def test_regex_comes_after_prefixes(gw: Gateway) -> None:
    assert await gw.who("/o3/x") == "o3-prefix", "regex /o3/.* matches too, but prefixes go first"
    assert await gw.who("/re42") == "regex"
    assert await gw.who("/re42x") == "404", "a regex matches the whole path"


async def test_method_match_comes_before_no_method(gw: Gateway) -> None:
    assert await gw.who("/o4", method="POST") == "o4-post"
    assert await gw.who("/o4", method="GET") == "o4-any"


async def test_more_header_matches_come_first(gw: Gateway) -> None:
    assert await gw.who("/o5", headers={"x-a": "1", "x-b": "anything"}) == "o5-two"
    assert await gw.who("/o5", headers={"x-a": "1"}) == "o5-one"
    assert await gw.who("/o5", headers={"x-a": "2", "x-b": "1"}) == "404"


async def test_query_match_comes_before_none(gw: Gateway) -> None:
    assert await gw.who("/o6?q=1") == "o6-query"
    assert await gw.who("/o6?q=2") == "o6-plain"
    assert await gw.who("/o6") == "o6-plain"


# --- matches ---------------------------------------------------------------------------------------------


async def test_header_matches_exact_regex_present_absent(gw: Gateway) -> None:
    assert await gw.who("/h/exact", headers={"x-h": "yes"}) == "h-exact"
    assert await gw.who("/h/exact", headers={"x-h": "no"}) == "404"
    assert await gw.who("/h/regex", headers={"x-r": "v12"}) == "h-regex"
    assert await gw.who("/h/regex", headers={"x-r": "v12x"}) == "404", "a header regex matches the whole value"
    assert await gw.who("/h/present", headers={"x-p": ""}) == "h-present"
    assert await gw.who("/h/present") == "404"
    assert await gw.who("/h/absent") == "h-absent"
    assert await gw.who("/h/absent", headers={"x-z": "1"}) == "404"
    assert await gw.who("/anywhere/at/all", headers={"x-only": "header"}) == "h-only"


async def test_query_matches_exact_and_regex(gw: Gateway) -> None:
    assert await gw.who("/q/exact?q=1") == "q-exact"
    assert await gw.who("/q/exact?q=11") == "404"
    assert await gw.who("/q/exact") == "404"
    assert await gw.who("/q/regex?r=aaa") == "q-regex"
    assert await gw.who("/q/regex?r=aab") == "404"


async def test_method_match(gw: Gateway) -> None:
    assert await gw.who("/m", method="PUT") == "m-put"
    assert await gw.who("/m", method="GET") == "404"


# --- filters ---------------------------------------------------------------------------------------------


async def test_request_header_filter_sets_adds_and_removes(gw: Gateway) -> None:
    echo = gw.http["echo"]
    resp = await gw.get("main", "/reqh", headers={"x-set": "from-client", "x-add": "from-client", "x-drop": "1"})
    assert resp.status_code == 200
    assert resp.text.startswith("echo ")
    seen = echo.requests[-1].headers
    assert seen["x-set"] == "set-by-gateway"
    assert "x-drop" not in seen
    assert seen["x-add"] == "from-client, added", "add appends to the client's value"
    resp = await gw.get("main", "/reqhost", host="gw.example.com")
    assert resp.status_code == 200
    assert echo.requests[-1].headers["host"] == "internal.example.com", "setting Host rewrites the authority"


async def test_response_header_filter(gw: Gateway) -> None:
    resp = await gw.get("main", "/resph")
    assert resp.status_code == 200
    assert resp.text.startswith("resph ")
    assert resp.headers["x-resp"] == "from-gateway"


async def test_redirect_keeps_the_listener_port_when_unset_and_strips_the_query(gw: Gateway) -> None:
    resp = await gw.get("main", "/redir?x=1", host="gw.example.com")
    assert resp.status_code == 301
    assert resp.headers["location"] == f"http://new.example.com:{gw.ports['main']}/new"


@pytest.mark.parametrize(("target", "location"), [("/rdp", "/moved"), ("/rdp/x?q=1", "/moved/x")])
async def test_redirect_replaces_the_prefix_by_whole_segments(gw: Gateway, target: str, location: str) -> None:
    resp = await gw.get("main", target, host="gw.example.com")
    assert resp.status_code == 302
    assert resp.headers["location"] == f"http://gw.example.com:{gw.ports['main']}{location}"


async def test_redirect_with_scheme_and_port(gw: Gateway) -> None:
    resp = await gw.get("main", "/redir-port?y=2", host="gw.example.com")
    assert resp.status_code == 307
    assert resp.headers["location"] == "https://gw.example.com:8443/redir-port"


@pytest.mark.parametrize(("target", "seen"), [("/rw", "/new"), ("/rw/", "/new/"), ("/rw/x/y", "/new/x/y"),
                                              ("/rw/x?q=1", "/new/x?q=1"), ("/rwfull", "/full/path")])  # fmt: skip
async def test_rewrite_prefix_and_full(gw: Gateway, target: str, seen: str) -> None:
    resp = await gw.get("main", target)
    assert resp.status_code == 200
    assert resp.text == f"rewritten {seen}"


async def test_mirror_sends_a_copy_to_the_mirror_backend(gw: Gateway) -> None:
    shadow = gw.http["shadow"]
    resp = await gw.get("main", "/mirror/copy-me")
    assert resp.status_code == 200
    assert resp.text == "primary /mirror/copy-me", "the answer comes from the primary backend"
    await eventually(lambda: any(s.path == "/mirror/copy-me" for s in shadow.requests), what="the mirrored copy")


# --- backends --------------------------------------------------------------------------------------------


async def test_weighted_backends_split_traffic_by_weight(gw: Gateway) -> None:
    n = 400
    counts = {"w-a": 0, "w-b": 0}
    for _ in range(n):
        counts[await gw.who("/split")] += 1
    # 1:3 over 400 requests: w-a gets 100 on average (sd 8.7); 15%..35% fails by chance < 1e-5 of runs.
    assert 0.15 * n <= counts["w-a"] <= 0.35 * n, counts
    assert sum(counts.values()) == n


async def test_a_backend_of_weight_zero_gets_no_traffic(gw: Gateway) -> None:
    before = len(gw.http["w-b"].requests)
    assert {await gw.who("/zero-weight") for _ in range(20)} == {"w-a"}
    assert len(gw.http["w-b"].requests) == before


async def test_unknown_backend_answers_500(gw: Gateway) -> None:
    resp = await gw.get("main", "/unknown")
    assert resp.status_code == 500


async def test_zone_in_a_destination_selects_only_that_zones_endpoints(gw: Gateway) -> None:
    # Both endpoints healthy; zone-2 only when the destination names it, zone-1 (local) first otherwise.
    assert {await gw.who("/zone2") for _ in range(20)} == {"zoned-z2"}
    assert {await gw.who("/zone-any") for _ in range(20)} == {"zoned-z1"}


async def test_a_service_with_no_local_endpoints_is_served_from_another_zone(gw: Gateway) -> None:
    assert await gw.who("/remote-only/x") == "remote-only"


async def test_an_unknown_backend_in_a_split_answers_500_for_its_share_only(gw: Gateway) -> None:
    seen = {await gw.who("/half-unknown") for _ in range(40)}
    assert seen == {"w-a", "500"}, "1:1 over 40 requests: each side is missed with probability 2**-40"


async def test_connection_limit_refuses_the_connection_over_the_limit(gw: Gateway) -> None:
    port = gw.ports["limit"]
    request = b"GET /held HTTP/1.1\r\nHost: gw.example.com\r\n\r\n"

    async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Sends one request; True once a response arrives, False when the connection is closed unanswered."""
        writer.write(request)
        await writer.drain()
        data = b""
        with anyio.fail_after(10):  # deadlock guard
            while b"limited /held" not in data:
                try:
                    chunk = await reader.read(4096)
                except ConnectionError:
                    return False
                if not chunk:
                    return False
                data += chunk
        return True

    held: list[asyncio.StreamWriter] = []

    async def close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    try:
        for _ in range(LIMIT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            held.append(writer)
            assert await answered(reader, writer)
        # Keep-alive connections stay open: the next one is over the limit and closed unanswered.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert not await answered(reader, writer)
        finally:
            await close(writer)
        await close(held.pop())

        async def a_new_one_fits() -> bool:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await answered(reader, writer)
            finally:
                await close(writer)

        await eventually(a_new_one_fits, what="a connection under the limit again")
    finally:
        for writer in held:
            await close(writer)


# --- TLS and TCP -----------------------------------------------------------------------------------------


async def test_https_terminates_with_the_certificate_chosen_by_sni(gw: Gateway) -> None:
    for host, backend in (("a.example.com", "sa"), ("b.example.com", "sb")):
        # The context trusts only this host's certificate: the handshake proves which filter chain answered.
        async with httpx.AsyncClient(verify=gw.certs[host].client_context(), timeout=5.0) as client:
            resp = await client.get(
                f"https://127.0.0.1:{gw.ports['https']}/secure",
                headers={"Host": host},
                extensions={"sni_hostname": host},
            )
        assert resp.status_code == 200
        assert resp.text == f"{backend} /secure"
        assert resp.headers["strict-transport-security"].startswith("max-age=")


async def test_https_with_an_unknown_sni_gets_no_handshake(gw: Gateway) -> None:
    # Verification off: only a connection the gateway closes (no filter chain for this SNI) fails here.
    anything = ssl.create_default_context()
    anything.check_hostname = False
    anything.verify_mode = ssl.CERT_NONE
    async with httpx.AsyncClient(verify=anything, timeout=5.0) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(
                f"https://127.0.0.1:{gw.ports['https']}/",
                headers={"Host": "c.example.com"},
                extensions={"sni_hostname": "c.example.com"},
            )


async def _tls_hello(port: int, cert: Cert) -> str:
    with anyio.fail_after(10):  # deadlock guard
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=cert.client_context(), server_hostname=cert.hostname
        )
        try:
            return (await reader.readline()).decode().strip()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


async def test_tls_passthrough_routes_by_sni_to_the_tls_backend(gw: Gateway) -> None:
    # The backend's own certificate is verified end to end: the gateway did not terminate TLS.
    assert await _tls_hello(gw.ports["tls"], gw.certs["db.example.com"]) == "tls-db"
    assert await _tls_hello(gw.ports["tls"], gw.certs["other.example.com"]) == "tls-other"


async def test_tcp_listener_proxies_to_the_tcp_backend(gw: Gateway) -> None:
    with anyio.fail_after(10):  # deadlock guard
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.ports["tcp"])
        try:
            writer.write(b"ping\n")
            await writer.drain()
            assert await reader.readline() == b"tcp-echo:ping\n"
            writer.write(b"again\n")
            await writer.drain()
            assert await reader.readline() == b"tcp-echo:again\n"
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_tls_terminate_on_a_tls_listener_proxies_plain_tcp(gw: Gateway) -> None:
    cert = gw.certs["a.example.com"]
    with anyio.fail_after(10):  # deadlock guard
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", gw.ports["tlsterm"], ssl=cert.client_context(), server_hostname=cert.hostname
        )
        try:
            writer.write(b"secret\n")
            await writer.drain()
            assert await reader.readline() == b"tcp-echo:secret\n", "the gateway's certificate, a plain backend"
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


# --- a second proxy: delegated gateway, NACK ---------------------------------------------------------------


async def test_delegated_gateway_outbounds_reach_the_services(gw: Gateway, tmp_path: Path) -> None:
    """A DELEGATED Dataplane: no inbound listener, one listener per outbound on 127.0.0.1:<port>; an http
    service gets an HTTP connection manager, a tcp one a TCP proxy."""
    http_port, tcp_port = free_port(), free_port()
    proxy = load(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "api-gw",
            "networking": {
                "address": "127.0.0.1",
                "gateway": {"type": "DELEGATED", "tags": {"kuma.io/service": "api-gw"}},
                "outbound": [
                    {"port": http_port, "tags": {"kuma.io/service": "deleg"}},
                    {"port": tcp_port, "tags": {"kuma.io/service": "deleg-tcp"}},
                ],
            },
        }
    )
    async with recording_backend("deleg") as backend, tcp_echo_backend("deleg-tcp") as echo:
        dataplanes = [
            load(backend_dataplane("deleg", backend.port, "deleg", protocol="http")),
            load(backend_dataplane("deleg-tcp", echo.port, "deleg-tcp")),
        ]
        gw.ads.push(proxy, dataplanes=dataplanes)
        async with (
            running_envoy(tmp_path, "default.api-gw", gw.ads.port, name="delegated") as envoy,
            httpx.AsyncClient(timeout=5.0) as client,
        ):

            async def reached() -> bool:
                resp = await client.get(f"http://127.0.0.1:{http_port}/through/outbound", headers={"Host": "x"})
                return resp.text == "deleg /through/outbound"

            await ready_probe(reached, envoy, what="the service through the delegated outbound")
            assert backend.requests[-1].headers["host"] == "x", "the API gateway's Host goes through"
            assert await envoy.active_listeners() == {
                f"outbound:127.0.0.1:{http_port}",
                f"outbound:127.0.0.1:{tcp_port}",
            }, "outbound listeners only, no inbound"
            with anyio.fail_after(10):  # deadlock guard
                reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
                try:
                    writer.write(b"hello\n")
                    await writer.drain()
                    assert await reader.readline() == b"deleg-tcp:hello\n"
                finally:
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()


async def test_config_envoy_rejects_shows_up_as_a_nack_and_envoy_keeps_the_last_good_one(
    gw: Gateway, tmp_path: Path
) -> None:
    """A REGEX path that is not RE2 passes validation (Kuma checks only that it is not empty) and reaches
    Envoy, which rejects the route configuration: the registry must show it as a NACK."""
    port = free_port()
    proxy = ProxyId("default", "nack-1")
    dp = load(builtin_gateway_dataplane("nack-1", "nack-gw"))
    gws = [load(gateway("nack", "nack-gw", [{"port": port, "protocol": "HTTP"}]))]

    def routes(regex: str) -> list[Resource]:
        sel = {"kuma.io/service": "nack-gw"}
        return [
            load(http_route("r", [rule(path("REGEX", regex), backends=to("target"))], selector=sel)),
        ]

    async with recording_backend("target") as backend:
        dps = [load(backend_dataplane("target", backend.port, "target"))]
        gw.ads.push(dp, gateways=gws, routes=routes("/good.*"), dataplanes=dps)
        async with (
            running_envoy(tmp_path, str(proxy), gw.ads.port, name="nack") as envoy,
            httpx.AsyncClient(timeout=5.0) as client,
        ):

            async def answer(target: str) -> str:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}{target}")).text
                except httpx.TransportError:
                    return ""

            async def good_served() -> bool:
                return await answer("/good1") == "target /good1"

            await ready_probe(good_served, envoy, what="the good route served")

            gw.ads.push(dp, gateways=gws, routes=routes("/bad(.*"), dataplanes=dps)
            await eventually(lambda: gw.ads.types(proxy)["RouteConfiguration"]["nacked"] >= 1, what="a NACK")
            rds = gw.ads.types(proxy)["RouteConfiguration"]
            route_name = f"nack:HTTP:{port}:*"
            assert rds["lastNack"]["rejected"] == [route_name]
            assert rds["lastNack"]["error"]
            assert route_name in rds["rejected"]
            assert await answer("/good2") == "target /good2", "Envoy keeps serving the last good config"

            gw.ads.push(dp, gateways=gws, routes=routes("/fixed.*"), dataplanes=dps)

            async def fixed_served() -> bool:
                return await answer("/fixed1") == "target /fixed1"

            await eventually(fixed_served, what="the fixed route served")
            await eventually(lambda: not gw.ads.types(proxy)["RouteConfiguration"]["rejected"], what="cleared")
