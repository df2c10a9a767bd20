"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser), real workers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from partner_stream.dev.broker import EmbeddedBroker
from tests.conftest import new_worker
from tests.support.tablets import tablet_token
from tests.support.workers import Worker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A 10.9" tablet in landscape.
TABLET_VIEWPORT = {"width": 1180, "height": 820}
DEV_HUB_ENV = {"PARTNER_STREAM_DEV_STACK": "1"}

expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test, or apt-get install -y --no-install-recommends chromium")
    return str(CHROMIUM)


@pytest.fixture(scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture(scope="session")
async def board_worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> AsyncIterator[Worker]:
    """A dev-like worker (embedded broker + the CentralHub stand-in) shared by the board tests."""
    worker = new_worker(broker, tmp_path_factory.mktemp("board"), artifacts_dir, "board", extra_env=DEV_HUB_ENV)
    await worker.start()
    yield worker
    await worker.stop()


@pytest.fixture
async def contexts(browser: Browser, artifacts_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[list]:
    """Browser contexts opened by a test; closed after it, with a screenshot of each page if it failed."""
    opened: list[BrowserContext] = []
    yield opened
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for index, context in enumerate(opened):
        if failed:
            for number, page in enumerate(context.pages):
                path = artifacts_dir / f"failed-{request.node.name}-{index}-{number}.png"
                with contextlib.suppress(Exception):
                    await page.screenshot(path=str(path), full_page=True)
        await context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


OpenBoard = Callable[..., Awaitable[Page]]


@pytest.fixture
def page_errors() -> Iterator[list[str]]:
    """Uncaught JavaScript errors of the pages a test opened; any one fails the test."""
    errors: list[str] = []
    yield errors
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture
def open_board(browser: Browser, contexts: list[BrowserContext], page_errors: list[str]) -> OpenBoard:
    """Open /board/ of ``worker`` in a fresh tablet-sized context and sign in for ``restaurant``."""

    async def open_(
        worker: Worker, restaurant: str, *, token: str | None = None, hub_url: str | None = None, live: bool = True
    ) -> Page:
        context = await browser.new_context(viewport=TABLET_VIEWPORT, locale="en-US", timezone_id="UTC")
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        await page.goto(f"{worker.base_url}/board/")
        if hub_url is not None:
            await page.get_by_role("button", name="Settings").click()
            await page.get_by_label("CentralHub URL").fill(hub_url)
            await page.get_by_role("button", name="Save").click()
        await page.get_by_label("Tablet token").fill(token or tablet_token(restaurant))
        await page.get_by_role("button", name="Sign in").click()
        if live:
            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        return page

    return open_
