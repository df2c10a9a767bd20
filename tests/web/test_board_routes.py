"""The board's files are served with revalidation, so a deploy reaches every browser on its next load."""

from __future__ import annotations

import re

import aiohttp
import pytest
from aiohttp import web

from partner_stream_web.board import (
    BOARD_PAGE,
    UNSEEN_AFTER_PLACEHOLDER,
    board_route_installer,
    install_board_routes,
)
from tests.support.local_http import served

THRESHOLD = re.compile(r'<body data-unseen-after-seconds="([^"]*)">')


async def test_static_files_and_the_board_page_must_be_revalidated() -> None:
    app = web.Application()
    install_board_routes(app)
    async with served(app) as base_url, aiohttp.ClientSession() as session:
        for path in ("/static/partner-client.js", "/board/"):
            async with session.get(f"{base_url}{path}") as response:
                assert response.status == 200, path
                assert response.headers["Cache-Control"] == "no-cache", path
        async with session.get(f"{base_url}/board", allow_redirects=False) as response:
            assert response.status == 308 and response.headers["Location"] == "/board/"


async def test_the_default_installer_serves_the_page_with_a_60_second_threshold() -> None:
    app = web.Application()
    install_board_routes(app)
    async with (
        served(app) as base_url,
        aiohttp.ClientSession() as session,
        session.get(f"{base_url}/board/") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/html" and response.charset == "utf-8"
        page = await response.text()
    assert "Order board" in page
    assert THRESHOLD.findall(page) == ["60"]
    assert UNSEEN_AFTER_PLACEHOLDER not in page


@pytest.mark.parametrize(("seconds", "attribute"), [(90.0, "90"), (300, "300"), (1.5, "1.5"), (0.25, "0.25")], ids=str)
async def test_the_page_carries_the_configured_threshold(seconds: float, attribute: str) -> None:
    app = web.Application()
    board_route_installer(seconds)(app)
    async with served(app) as base_url, aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/board/") as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-cache"
            etag = response.headers["ETag"]
            page = await response.text()
        # Revalidation (no-cache) of an unchanged page is answered without the body.
        async with session.get(f"{base_url}/board/", headers={"If-None-Match": etag}) as response:
            assert response.status == 304
            assert response.headers["Cache-Control"] == "no-cache"
        async with session.get(f"{base_url}/static/board/board.js") as response:
            assert response.status == 200 and response.headers["Cache-Control"] == "no-cache"
        async with session.get(f"{base_url}/board", allow_redirects=False) as response:
            assert response.status == 308 and response.headers["Location"] == "/board/"
    assert THRESHOLD.findall(page) == [attribute]
    # Everything but the attribute is the file as it is on disk.
    assert page == BOARD_PAGE.read_text(encoding="utf-8").replace(UNSEEN_AFTER_PLACEHOLDER, attribute)


async def test_two_installers_serve_their_own_thresholds() -> None:
    pages = []
    for seconds in (45.0, 600.0):
        app = web.Application()
        board_route_installer(seconds)(app)
        async with (
            served(app) as base_url,
            aiohttp.ClientSession() as session,
            session.get(f"{base_url}/board/") as response,
        ):
            pages.append(await response.text())
    assert [THRESHOLD.findall(page) for page in pages] == [["45"], ["600"]]


@pytest.mark.parametrize("seconds", [0.0, -5.0, float("nan"), float("inf")], ids=str)
def test_a_threshold_that_is_not_a_positive_duration_is_refused_at_once(seconds: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        board_route_installer(seconds)
