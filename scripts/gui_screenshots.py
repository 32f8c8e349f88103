"""Screenshots of the GUI for the docs, taken against `make demo`'s global and zone-1.

    make demo                      # in one terminal; wait for "Running until Ctrl-C."
    make gui-screenshots           # in another: writes docs/screenshots/*.png

`--global-api`, `--zone-api` and `--out` point it elsewhere. The browser is Debian's chromium, driven by
Playwright (meshgate/testing/browser.py), as in tests/e2e/test_gui.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio
from playwright.async_api import Page

from meshgate.testing.browser import VIEWPORT, chromium, shoot
from meshgate.testing.wait import eventually

ROOT = Path(__file__).resolve().parents[1]

# (file name, control plane, page, what must be on it before the shot)
SHOTS = (
    ("zones", "global", "zones", '[data-sync] tr[data-kind="MeshGateway"]'),
    ("gateways", "global", "gateways", "[data-gateway] tr[data-port]"),
    ("routes", "global", "routes", "tr[data-route]"),
    ("dataplanes", "global", "dataplanes", "tr[data-dataplane]"),
    ("names", "global", "names", "tr[data-name]"),
    ("trace", "global", "trace?kind=MeshGatewayRoute&name=edge-gateway-routes&mesh=default", "#trace-result tr"),
    ("trace-name", "global", "trace?name=echo.default.svc.80.mesh", "#trace-result tr"),
    ("watch", "global", "watch", "tr[data-event]"),
    ("yaml", "global", "yaml?path=/meshes/default/meshgatewayroutes/edge-gateway-routes", "#yaml"),
    ("zone-1", "zone", "zone", "tr[data-proxy]"),
    ("zone-1-gateways", "zone", "gateways", "[data-gateway] tr[data-port]"),
)


async def present(page: Page, selector: str) -> bool:
    return await page.locator(selector).count() > 0


async def main(apis: dict[str, str], out: Path) -> None:
    async with chromium() as browser:
        page = await browser.new_page(viewport=VIEWPORT)
        for name, plane, path, selector in SHOTS:
            await page.goto(f"{apis[plane]}/gui/#/{path}")
            await eventually(lambda s=selector: present(page, s), timeout=20, what=f"{selector} on {path}")
            # The watch page grows with every event: its first screenful is the picture.
            print(await shoot(page, out, name, full_page=name != "watch"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--global-api", default="http://127.0.0.1:5681")
    parser.add_argument("--zone-api", default="http://127.0.0.1:5691")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    anyio.run(main, {"global": args.global_api, "zone": args.zone_api}, args.out)
