"""A real Chromium for the console's browser tests: Debian's package, driven by Playwright (whose own browser
download is never used), and screenshots written where a person (or CI) can look at them."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.stack import ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]  # fmt: skip
INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium"
ARTIFACTS = ROOT / "var" / "test-artifacts" / "console"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless. Its absence is a failure that says how to install it (`make test` does)."""
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        pytest.fail(f"Chromium is not installed; the console's browser tests need it: `{INSTALL}`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot under var/test-artifacts/console/ (git-ignored): the tests' pictures of each page."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, base_url: str, key: str, start: str = "/console/") -> None:
    """Open a console page and sign in on the form it sends us to; back on that page afterwards."""
    page.goto(base_url + start)
    assert "/console/sign-in" in page.url
    page.fill("#key", key)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(re.escape(base_url + start.split("?")[0])))


def fits_the_width(page: Page) -> bool:
    """Nothing sticks out sideways: the page scrolls only down (tables scroll inside their own box)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))
