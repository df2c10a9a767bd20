"""The board's files are served with revalidation, so a deploy reaches every browser on its next load."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from partner_stream_web.board import install_board_routes
from tests.support.local_http import served


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
