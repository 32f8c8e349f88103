"""Headless Chromium for the GUI's tests and screenshots: Debian's `chromium`, driven by Playwright.

Playwright's own browser downloads are never used: `launch(executable_path=...)` runs the program the
`CHROMIUM` tool finds (scripts/ensure-system-packages installs it). A missing program raises `ToolMissingError`
(a skip on a developer machine, a failure under CI); a browser that is there but cannot start raises, and the
test fails. The browser is closed by its own handle when the block ends, even on failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from meshgate.testing.tools import CHROMIUM, require

__all__ = ["VIEWPORT", "chromium", "screenshot_dir", "shoot"]

# Wide enough for the zones page's sync table without wrapping.
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    path = require(CHROMIUM)
    # Chromium refuses to run its sandbox as root (CI runs as root); the pages it loads are our own.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(path), headless=True, args=args)
        try:
            yield browser
        finally:
            await browser.close()


def screenshot_dir(default: Path) -> Path:
    """Where screenshots go: `$MESHGATE_SCREENSHOTS` when set, else `default` (a test's tmp dir)."""
    out = Path(os.environ.get("MESHGATE_SCREENSHOTS") or default)
    out.mkdir(parents=True, exist_ok=True)
    return out


async def shoot(page: Page, directory: Path, name: str, *, full_page: bool = True) -> Path:
    path = directory / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
