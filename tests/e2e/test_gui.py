"""The GUI in a real browser (Debian's Chromium, driven by Playwright) against a real global and real zones.

Each test loads pages as a person would and checks what they would see: row colours, the words in a cell.
Screenshots go to `$MESHGATE_SCREENSHOTS` (or the test's tmp dir). Waits poll with a deadline (`eventually`),
never assert on elapsed time. A browser that cannot start fails the test (`meshgate.testing.browser`).
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.async_api import Browser, ConsoleMessage, Page

from meshgate.testing.browser import VIEWPORT, chromium, screenshot_dir, shoot
from tests.e2e.test_global_to_zone import MESH, gateway, get, put, store_an_invalid_gateway
from tests.support.dp import zone_dp
from tests.support.names import in_zone
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

# Short pings, so a zone that goes silent is offline within a second or two rather than the default 30.
FAST_HEALTH = ("--zone-health-interval", "0.5")
# The red of an offline zone's row (app.css --bad-bg), as the browser computes it.
RED = "rgb(253, 232, 230)"
NACK_REASON = "conf.listeners[0].port: port must be in the range [1, 65535]"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return screenshot_dir(tmp_path / "screenshots")


async def open_gui(browser: Browser, cp: CPProcess, page_path: str = "") -> tuple[Page, list[str]]:
    """A new tab on `cp`'s GUI; the returned list collects the page's script errors and the console's errors, a
    Content-Security-Policy violation among them (each test checks it). An HTTP error status the page shows the
    user (a 401 before signing in) is not one."""
    page = await browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", console)
    await page.goto(f"{cp.url()}/gui/#/{page_path}")
    return page, errors


async def text_of(page: Page, selector: str) -> str:
    loc = page.locator(selector)
    return await loc.first.inner_text() if await loc.count() else ""


async def attribute(page: Page, selector: str, name: str) -> str | None:
    loc = page.locator(selector)
    return await loc.first.get_attribute(name) if await loc.count() else None


async def background(page: Page, selector: str) -> str:
    return str(await page.locator(selector).first.evaluate("el => getComputedStyle(el).backgroundColor"))


def route_for(gateway_name: str, name: str, backend: str) -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": name,
        "selectors": [{"match": {"kuma.io/service": gateway_name}}],
        "conf": {
            "http": {
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": "/api"}}],
                        "backends": [
                            {"weight": 90, "destination": {"kuma.io/service": backend, "version": "v1"}},
                            {"weight": 10, "destination": {"kuma.io/service": backend, "version": "v2"}},
                        ],
                    }
                ]
            }
        },
    }


async def test_a_stopped_zone_turns_red_on_the_zones_page(procs: ProcessGroup, browser: Browser, shots: Path) -> None:
    g = await procs.global_cp("global", *FAST_HEALTH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    await procs.zone_cp("zone-2", g.ports["kds"])
    page, errors = await open_gui(browser, g, "zones")
    row = 'tr[data-zone="zone-1"]'

    async def both_online() -> bool:
        return all(
            [await attribute(page, f'tr[data-zone="{z}"]', "data-status") == "online" for z in ("zone-1", "zone-2")]
        )

    await eventually(both_online, what="both zones online on the page")
    assert await text_of(page, f"{row} td.status") == "online"
    assert await background(page, f"{row} td") != RED
    # The per-kind sync table: what went down to the zone, ACKed.
    mesh_row = await text_of(page, '[data-sync="zone-1"] tr[data-kind="Mesh"]')
    assert "/ 0" in mesh_row  # no NACK
    await shoot(page, shots, "zones-online")

    async def red() -> bool:
        return await attribute(page, row, "data-status") == "offline" and await background(page, f"{row} td") == RED

    # Frozen, by its handle: its connection stays open but it answers no ping, so only the missed pings
    # (every 0.5 s here) can turn it offline.
    z1.proc.send_signal(signal.SIGSTOP)
    try:
        await eventually(red, what="zone-1's row red once it stopped answering pings")
        assert await text_of(page, f"{row} td.status") == "offline"
        assert await attribute(page, 'tr[data-zone="zone-2"]', "data-status") == "online"
        assert await background(page, 'tr[data-zone="zone-2"] td') != RED
        await shoot(page, shots, "zones-offline")
    finally:
        z1.proc.send_signal(signal.SIGCONT)
    await eventually(both_online, what="zone-1 online again after it resumed")
    assert await background(page, f"{row} td") != RED

    z1.stop(signal.SIGKILL)  # a crash: the stream closes, and the row turns red again
    await eventually(red, what="zone-1's row red after it was killed")

    # With no stream open, its sync table shows where its last streams stood, marked as closed.
    async def last_streams_shown() -> bool:
        return await attribute(page, '[data-sync="zone-1"]', "data-closed") == "true"

    await eventually(last_streams_shown, what="zone-1's last closed streams in its sync table")
    card = await text_of(page, '[data-sync="zone-1"]')
    assert "as its last streams left it" in card
    assert ", closed " in card
    assert "/ 0" in await text_of(page, '[data-sync="zone-1"] tr[data-kind="Mesh"]')  # sent and ACKed, no NACK
    assert await attribute(page, '[data-sync="zone-2"]', "data-closed") == "false"
    await shoot(page, shots, "zones-killed")
    assert errors == []


async def test_a_nack_shows_with_its_reason(procs: ProcessGroup, browser: Browser, shots: Path) -> None:
    """The global's store gets an invalid gateway directly (a global with looser rules); the zone NACKs it."""
    kds_port = free_port()
    await store_an_invalid_gateway(procs, kds_port)
    g = await procs.global_cp(kds_port=kds_port)
    # A zone trusts what a global it authenticated accepted (issue 16): this one cannot verify the global's
    # certificate, so it validates again and NACKs the bad gateway by name.
    await procs.zone_cp("zone-1", g.ports["kds"], "--kds-tls-skip-verify")

    page, errors = await open_gui(browser, g, "zones")
    kind_row = '[data-sync="zone-1"] tr[data-kind="MeshGateway"]'

    async def nacked() -> bool:
        return "nack" in (await attribute(page, kind_row, "class") or "")

    await eventually(nacked, what="the MeshGateway row marked as NACKed")
    cell = await text_of(page, f"{kind_row} td.nack-reason")
    assert f"{in_zone('bad')}.default: {NACK_REASON}" in cell
    assert await background(page, f"{kind_row} td") == RED
    await shoot(page, shots, "zones-nack")

    # The trace page says the same, per zone, as `kds trace meshgateway bad` does.
    await page.goto(f"{g.url()}/gui/#/trace?kind=MeshGateway&name=bad&mesh=default")
    zone_row = '#trace-result tr[data-zone="zone-1"]'
    await eventually(lambda: attribute(page, zone_row, "data-verdict"), what="the trace's zone-1 row")
    assert await attribute(page, zone_row, "data-verdict") == "rejected"
    assert NACK_REASON in await text_of(page, zone_row)
    await shoot(page, shots, "trace-rejected")

    # kds watch replays the recent history: the NACK is there, with its reason.
    await page.goto(f"{g.url()}/gui/#/watch?kind=MeshGateway")
    nack_row = 'tr[data-event="nack"]'
    await eventually(lambda: text_of(page, nack_row), what="a nack event on the watch page")
    assert NACK_REASON in await text_of(page, nack_row)
    await shoot(page, shots, "watch-nack")
    assert errors == []


async def test_gateway_routes_and_data_planes_pages(procs: ProcessGroup, browser: Browser, shots: Path) -> None:
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    listen = free_port()
    await put(g, MESH)
    await put(g, gateway("edge", port=listen))
    await put(g, route_for("edge", "edge-api", "backend"))
    await eventually(lambda: get(z, in_zone_path("/meshes/default/meshgatewayroutes/edge-api")), what="route in zone")
    edge = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "edge-1",
        "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}},
    }
    dp = await zone_dp(procs, z, json.dumps(edge))
    try:
        page, errors = await open_gui(browser, g, "gateways")
        listener = f'[data-gateway="default/edge"] tr[data-port="{listen}"]'

        async def served() -> bool:
            return "edge-1 (zone-1" in await text_of(page, listener)

        await eventually(served, timeout=30, what=f"edge-1 serving the listener\n{dp.logs()[-2000:]}")
        cells = await text_of(page, listener)
        assert "HTTP" in cells
        assert "edge-api" in cells  # the route bound to the listener's hostname
        await shoot(page, shots, "gateways")

        await page.goto(f"{g.url()}/gui/#/routes")
        route_row = 'tr[data-route="default/edge-api"]'
        await eventually(lambda: text_of(page, route_row), what="the route's row")
        rule = "PREFIX /api → backend version=v1 (weight 90), backend version=v2 (weight 10)"
        assert rule in await text_of(page, route_row)

        await page.goto(f"{g.url()}/gui/#/dataplanes")
        await eventually(lambda: text_of(page, '[data-dp-zone="zone-1"]'), what="zone-1's data planes")
        assert "edge-1" in await text_of(page, '[data-dp-zone="zone-1"]')
        # The global shows the proxy's own state, from the DataplaneInsight its zone synced up.
        state = '[data-dp-zone="zone-1"] td[data-state]'

        async def proxy_online() -> bool:
            return await attribute(page, state, "data-state") == "online"

        await eventually(proxy_online, what="edge-1 online (its own state) on the global's data planes page")

        # The zone's own GUI knows the proxy's xDS stream: online, per type sent/ACK/NACK.
        zpage, zerrors = await open_gui(browser, z, "gateways")

        async def online_in_zone() -> bool:
            return "edge-1 (zone-1, online)" in await text_of(
                zpage, f'[data-gateway^="default/edge"] tr[data-port="{listen}"]'
            )

        await eventually(online_in_zone, what="edge-1 online in the zone's GUI")
        await zpage.goto(f"{z.url()}/gui/#/zone")
        await eventually(lambda: text_of(zpage, 'tr[data-zone="zone-1"]'), what="the zone page")
        assert await attribute(zpage, 'tr[data-zone="zone-1"]', "data-status") == "online"
        await eventually(lambda: text_of(zpage, 'tr[data-proxy="edge-1"]'), what="edge-1 on the zone page")
        await shoot(zpage, shots, "zone")
        assert errors == []
        assert zerrors == []
    finally:
        dp.stop()


def in_zone_path(path: str) -> str:
    """A mesh-scoped path on the global as the zone serves it (hash-suffixed name)."""
    head, name = path.rsplit("/", 1)
    return f"{head}/{in_zone(name)}"


async def test_yaml_page_prints_what_meshgatectl_get_prints(procs: ProcessGroup, browser: Browser, shots: Path) -> None:
    g = await procs.global_cp()
    examples = Path(__file__).resolve().parents[2] / "deploy" / "examples"
    docs = [
        yaml.safe_load((examples / f).read_text()) for f in ("mesh.yaml", "meshgateway.yaml", "meshgatewayroute.yaml")
    ]
    for doc in docs:
        assert (await put(g, doc)).status_code == 201
    page, errors = await open_gui(browser, g)
    for path in (
        "/meshes/default",
        "/meshes/default/meshgateways/edge-gateway",
        "/meshes/default/meshgatewayroutes/edge-gateway-routes",
    ):
        await page.goto(f"{g.url()}/gui/#/yaml?path={path}")
        await eventually(lambda: text_of(page, "#yaml"), what=f"the YAML of {path}")
        shown = await page.locator("#yaml").text_content()
        expected = await get(g, path)
        # meshgatectl get -o yaml: the API's JSON through yaml.safe_dump (meshgate/cli/output.py).
        assert shown == yaml.safe_dump(expected, sort_keys=False, allow_unicode=True), path
    await shoot(page, shots, "yaml")

    # The emitter itself, on the strings and numbers where PyYAML quotes, folds or keeps a float's ".0".
    text = json.dumps(TRICKY)
    shown = await page.evaluate("text => MG.yamlOfJson(text)", text)
    assert shown == yaml.safe_dump(json.loads(text), sort_keys=False, allow_unicode=True)
    assert errors == []


TRICKY: dict[str, Any] = {
    "strings": ["yes", "No", "on", "1.5", "0755", "1_000", ".5", "1e3", "~", "null", "", "*", "&a", "!t", "%p", "@x"],
    "indicators": [
        "a: b",
        "a:b",
        "x #y",
        "x#y",
        "#x",
        "- x",
        "-x",
        "? x",
        ":x",
        "it's",
        '"q"',
        "---",
        "...",
        "<<",
        "=",
    ],
    "spaces": [" lead", "trail ", "two  spaces", "tab\there"],
    "times": ["2026-12-05T23:43:32.369125Z", "2026-12-05", "23:43"],
    "long": "a reason a zone gives when it rejects a resource, long enough that PyYAML folds it onto more lines",
    "long quoted": "it's a reason a zone gives when it rejects a resource, long enough that PyYAML folds it: yes",
    "lines": "first line\nsecond line\n\nafter a blank",
    "unicode": ["é", "→ arrow", "日本"],
    "numbers": [0, -1, 2048.0, 0.5, 1e-05, 1.5e16, 19.822],
    "nested": [[1, [2, 3]], {"a": [], "b": {}, "c": [{"d": None, "e": True}]}],
    "on": {"yes": "no", "": "empty key", "a b": "c"},
}


async def test_mesh_names_with_their_vips_per_zone(procs: ProcessGroup, browser: Browser, shots: Path) -> None:
    g = await procs.global_cp()
    zones = [await procs.zone_cp(z, g.ports["kds"]) for z in ("zone-1", "zone-2")]
    await put(g, MESH)
    await eventually(lambda: get(zones[1], "/meshes/default"), what="mesh in zone-2")
    echo = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy/examples/delegated/echo.yaml").read_text())
    async with httpx.AsyncClient(base_url=zones[1].url()) as c:
        assert (await c.put("/meshes/default/dataplanes/echo-1", json=echo)).status_code == 201
    page, errors = await open_gui(browser, g, "names")
    name = "echo.default.svc.80.mesh"

    async def in_both() -> bool:
        return all([await text_of(page, f'tr[data-name="{name}"][data-zone="{z}"]') for z in ("zone-1", "zone-2")])

    await eventually(in_both, what=f"{name} with a VIP in both zones")
    for z in zones:
        zone_vips = await get(z, "/vips")
        assert zone_vips is not None
        (entry,) = [i for i in zone_vips["items"] if i["name"] == name]
        assert entry["vip"] in await text_of(page, f'tr[data-name="{name}"][data-zone="{z.name}"]')
    await shoot(page, shots, "names")

    # The name's trace: which resource makes it, and per zone whether it arrived and its VIP.
    await page.locator(f'tr[data-name="{name}"][data-zone="zone-1"] a').click()
    await eventually(lambda: text_of(page, '#trace-result tr[data-zone="zone-1"]'), what="the name's trace")
    assert "echo-1" in await text_of(page, "#trace-result")
    assert await attribute(page, '#trace-result tr[data-zone="zone-2"]', "data-verdict") == "origin"
    await shoot(page, shots, "trace-name")
    assert errors == []


async def test_without_localhost_admin_the_page_asks_for_a_token(procs: ProcessGroup, browser: Browser) -> None:
    """The page itself is public and static; its data needs the API's authentication, here a pasted token."""
    g = await procs.global_cp("global", "--api-localhost-is-admin=false")
    async with httpx.AsyncClient(base_url=g.url()) as c:
        shell = await c.get("/gui/")
        assert shell.status_code == 200
        assert "frame-ancestors 'none'" in shell.headers["Content-Security-Policy"]
        assert (await c.get("/zones/_overview")).status_code == 401
        assert (await c.get("/gui/../zones/_overview")).status_code == 401
        assert (await c.get("/gui/secrets.json")).status_code == 404
    page, errors = await open_gui(browser, g, "meshes")
    await eventually(lambda: text_of(page, "#problem"), what="the sign-in prompt")
    assert (await text_of(page, "#problem")).startswith("Sign in")
    token = g.admin_headers()["Authorization"].removeprefix("Bearer ")
    await page.fill("#token", token)
    await page.click("#auth button[type=submit]")
    await eventually(lambda: text_of(page, '[data-page="meshes"] h2'), what="the meshes page after signing in")
    assert await page.locator("#problem").is_hidden()
    assert await page.evaluate("sessionStorage.getItem('meshgate.token')") == token
    assert errors == []
