"""Every place partner-stream reaches into aiohttp beyond its public API, in one module.

aiohttp serves a WebSocket from inside the HTTP request that upgraded it, so its connection
handler (``RequestHandler``) keeps what it built to read HTTP for as long as the socket is open,
though a socket never reads HTTP again. :func:`release_http_machinery`, called once the upgrade
is done, drops what nothing can use any more (per idle tablet, server RSS, issue #14):

- the HTTP parser (``RequestHandler._parser``) and, with it, its lists of the upgrade request's
  headers (1.9 KiB): once upgraded, the handler feeds every byte to the WebSocket reader
  (``_payload_parser``) and reaches the parser only behind ``not self._upgraded`` or
  ``self._parser is not None`` (``connection_lost`` drops it the same way);
- the queue of pipelined requests (``RequestHandler._messages``), an empty deque (0.8 KiB): only
  HTTP parsing appends to it, and a WebSocket turned keep-alive off, so the handler's loop ends
  with the socket. What remains reads it with ``not``/``len()`` only; an empty tuple answers those,
  and anything else would fail loudly rather than share state between connections;
- the writer's own masking-key function (``WebSocketWriter.get_random_bits``, a ``partial`` per
  socket, 0.3 KiB): only a client masks its frames, so a server writer never calls it; every
  writer shares one instead (aiohttp's writers already share one ``random.Random``).

What this cannot release, and why: the parsed upgrade request itself (headers, raw headers, URL:
~2.5 KiB more). ``RequestHandler.start`` holds it in its ``message`` local while it awaits the
handler's task, that is for the socket's whole life, and ``RawRequestMessage`` and its
``raw_headers`` are immutable. Only a copy of ``start`` could drop it.

Written for the aiohttp version in :data:`WRITTEN_FOR`. On any other version nothing is released
(one warning says so): sockets work as before and only cost more. tests/web/test_socket_memory.py
fails until this module was reviewed for the new version.
"""

from __future__ import annotations

import logging
import random
from functools import partial
from importlib.metadata import version
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

#: The versions this module was written and tested for.
WRITTEN_FOR = {"aiohttp": "3.14.5"}


def version_problem(installed: dict[str, str] | None = None) -> str | None:
    """Why the releases are off (an installed version they were not written for), or None."""
    found = installed or {name: version(name) for name in WRITTEN_FOR}
    wrong = {name: found.get(name) for name, expected in WRITTEN_FOR.items() if found.get(name) != expected}
    if not wrong:
        return None
    listed = ", ".join(f"{name} {have} (written for {WRITTEN_FOR[name]})" for name, have in wrong.items())
    return f"{listed}: review web/aiohttp_patches.py; until then an idle socket keeps aiohttp's HTTP state"


_PROBLEM = version_problem()
_warned = False

#: Stands in for the pipelined-request deque: a tuple, so a use this module did not foresee raises.
_NO_MESSAGES: tuple[Any, ...] = ()
#: The one masking-key function every server writer gets (and never calls).
_SHARED_RANDOM_BITS = partial(random.Random().getrandbits, 32)


def release_http_machinery(request: web.BaseRequest, ws: web.WebSocketResponse) -> None:
    """After ``ws.prepare(request)``: drop the HTTP state aiohttp would keep for the socket's life."""
    global _warned
    if _PROBLEM is not None:
        if not _warned:
            _warned = True
            log.warning("%s", _PROBLEM)
        return
    handler: Any = request.protocol
    # Only once the protocol has switched: the WebSocket reader installed, the HTTP parser bypassed.
    if handler is None or not handler._upgraded or handler._payload_parser is None:
        return
    handler._parser = None
    if not handler._messages:
        handler._messages = _NO_MESSAGES
    writer: Any = ws._writer
    if writer is not None and not writer.use_mask:
        writer.get_random_bits = _SHARED_RANDOM_BITS
