"""The order board and the browser client, served by every worker.

``/static/`` serves :file:`web/static` (``partner-client.js``, the board's CSS and JS) and
``/board/`` the board page itself. The board signs in with a tablet token and connects to
``/ws/partner`` on the same origin, so no CORS is involved in the stream.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
BOARD_PAGE = STATIC_DIR / "board" / "index.html"
BOARD_PATH = "/board/"
#: The page and its modules change with each deploy; make browsers revalidate instead of caching blindly.
NO_CACHE = {"Cache-Control": "no-cache"}


async def board_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(BOARD_PAGE, headers=NO_CACHE)


async def board_redirect(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(BOARD_PATH)


async def revalidate_static(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """A response-prepare signal, not a middleware: no frame held for every open tablet socket."""
    if request.path.startswith("/static/") and "Cache-Control" not in response.headers:
        response.headers.update(NO_CACHE)


def install_board_routes(web_app: web.Application) -> None:
    """Add ``/static/`` (the ``web/static`` dir), ``GET /board/`` and a redirect from ``/board``."""
    web_app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    web_app.router.add_get(BOARD_PATH, board_page)
    web_app.router.add_get(BOARD_PATH.rstrip("/"), board_redirect)
    web_app.on_response_prepare.append(revalidate_static)
