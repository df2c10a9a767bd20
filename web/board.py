"""The order board and the browser client, served by every worker.

``/static/`` serves :file:`web/static` (``partner-client.js``, the board's CSS and JS) and
``/board/`` the board page itself. The board signs in with a tablet token and connects to
``/ws/partner`` on the same origin, so no CORS is involved in the stream.

The page carries the worker's unseen threshold (the first step of ``PARTNER_STREAM_UNSEEN_AFTER``) as
``<body data-unseen-after-seconds="60">``: the board marks an order that no tablet showed for longer
than that. :func:`board_route_installer` reads the page once, when it installs the routes.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
BOARD_PAGE = STATIC_DIR / "board" / "index.html"
BOARD_PATH = "/board/"
#: The page and its modules change with each deploy; make browsers revalidate instead of caching blindly.
NO_CACHE = {"Cache-Control": "no-cache"}
#: Replaced in :data:`BOARD_PAGE` by the threshold in seconds (the raw file keeps it: the board then uses 60).
UNSEEN_AFTER_PLACEHOLDER = "__UNSEEN_AFTER_SECONDS__"
DEFAULT_UNSEEN_AFTER_SECONDS = 60.0


def format_seconds(seconds: float) -> str:
    """A number JavaScript's ``Number()`` reads back: ``60``, ``0.5``, ``1e+20``; never any other text."""
    return str(int(seconds)) if seconds.is_integer() and abs(seconds) < 1e15 else repr(seconds)


def render_board_page(unseen_after_seconds: float) -> str:
    """The board page with the threshold substituted into ``data-unseen-after-seconds``."""
    page = BOARD_PAGE.read_text(encoding="utf-8")
    if page.count(UNSEEN_AFTER_PLACEHOLDER) != 1:
        raise RuntimeError(f"{BOARD_PAGE} must hold {UNSEEN_AFTER_PLACEHOLDER} exactly once")
    return page.replace(UNSEEN_AFTER_PLACEHOLDER, html.escape(format_seconds(unseen_after_seconds), quote=True))


def _checked_seconds(unseen_after_seconds: float) -> float:
    seconds = float(unseen_after_seconds)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"the unseen threshold must be a positive number of seconds, not {unseen_after_seconds!r}")
    return seconds


async def board_redirect(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(BOARD_PATH)


async def revalidate_static(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """A response-prepare signal, not a middleware: no frame held for every open tablet socket."""
    if request.path.startswith("/static/") and "Cache-Control" not in response.headers:
        response.headers.update(NO_CACHE)


def board_route_installer(unseen_after_seconds: float) -> Callable[[web.Application], None]:
    """An installer of ``/static/``, ``GET /board/`` (carrying ``unseen_after_seconds``) and ``/board`` → ``/board/``.

    Raises :class:`ValueError` at once unless the threshold is a positive, finite number of seconds.
    """
    seconds = _checked_seconds(unseen_after_seconds)

    def install_board_routes(web_app: web.Application) -> None:
        body = render_board_page(seconds).encode("utf-8")
        # no-cache makes browsers revalidate: answer them 304 while the page is the same.
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = {**NO_CACHE, "ETag": etag}

        async def board_page(request: web.Request) -> web.Response:
            wanted = request.headers.get("If-None-Match", "")
            if wanted.strip() == "*" or etag in (tag.strip().removeprefix("W/") for tag in wanted.split(",")):
                return web.Response(status=304, headers=headers)
            return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)

        web_app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
        web_app.router.add_get(BOARD_PATH, board_page)
        web_app.router.add_get(BOARD_PATH.rstrip("/"), board_redirect)
        web_app.on_response_prepare.append(revalidate_static)

    return install_board_routes


#: Add ``/static/``, ``GET /board/`` and a redirect from ``/board``, with the default threshold (60 s).
install_board_routes = board_route_installer(DEFAULT_UNSEEN_AFTER_SECONDS)
