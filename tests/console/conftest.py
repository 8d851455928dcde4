"""Fixtures for the console's tests: a platform of its own (one attempt per job, short
leases, so a killed worker dead-letters its jobs), `sluice console` in front of it, and
Debian's chromium driven headless by playwright."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import wait_for_languages
from tests.support.admin import AdminClient
from tests.support.broker import RunVhost
from tests.support.platform import Platform

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Set, the tests save the main pages' screenshots in docs/console/ (for the README).
SCREENSHOTS = os.environ.get("SLUICE_CONSOLE_SCREENSHOTS") == "1"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"


@dataclass
class Console:
    platform: Platform
    url: str
    admin: AdminClient
    log: Path

    def __post_init__(self) -> None:
        self.workers = ["worker-1"]

    def replace_worker(self) -> str:
        """Kills the worker (its running jobs, with one attempt each, are dead-lettered
        once their leases run out) and starts another."""
        self.platform.kill(self.workers.pop())
        self.workers.append(self.platform.start_worker())
        return self.workers[-1]


@pytest.fixture(scope="module")
async def console(vhost: RunVhost, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[Console]:
    workdir = tmp_path_factory.mktemp("console")
    platform = Platform(workdir, vhost.amqp_url(), prefix=workdir.name, extra_env={
        "SLUICE_MAX_ATTEMPTS": "1", "SLUICE_LEASE_TIMEOUT_MS": "3000",
        "SLUICE_WORKER_SLOTS": "4", "SLUICE_WORKER_REPORT_INTERVAL_S": "0.5"})
    try:
        await asyncio.to_thread(platform.start_control_plane)
        platform.start_worker()
        url = await asyncio.to_thread(platform.start_console)
        await asyncio.to_thread(wait_for_languages, platform, platform.admin_key)
        async with AdminClient(platform.api_target, platform.admin_key) as admin:
            yield Console(platform, url, admin, workdir / "console.log")
    finally:
        await asyncio.to_thread(platform.stop)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as driver:
        chromium = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                headless=True)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    yield page
    await context.close()


async def sign_in(page: Page, console: Console, key: str) -> None:
    await page.goto(f"{console.url}/")
    assert page.url.endswith("/signin")
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{console.url}/")
    await page.wait_for_selector("#who:has-text('key')")


async def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        DOCS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(DOCS / f"{name}.png"), full_page=False)
