"""One event-loop timer that closes every socket whose token expired (issue #14: idle tablet memory)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

from .connection import Connection
from .protocols.disconnects import TOKEN_EXPIRED


class TokenExpiries:
    """Closes each socket whose token expired, with one event-loop timer for all of them.

    A timer per socket (``call_later``) cost 0.5 KiB of every idle tablet's memory under uvloop (its
    TimerHandle, libuv timer, bound callback and context); an entry here is a small list. Deadlines are
    loop times computed as ``call_later`` computes them, so a socket closes when its own timer would
    have closed it.
    """

    #: Due within this much counts as due: loop timers fire up to their clock's resolution early.
    SLACK = 0.001

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []  # [deadline, tie-breaker, connection or None once cancelled]
        self._cancelled = 0
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """Sockets waiting for their token to expire."""
        return len(self._heap) - self._cancelled

    def add(self, delay: float, connection: Connection) -> list[Any]:
        """Close ``connection`` with ``TOKEN_EXPIRED`` in ``delay`` seconds; the entry is for :meth:`cancel`."""
        loop = asyncio.get_running_loop()
        entry = [loop.time() + delay, next(self._order), connection]
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._arm(loop)
        return entry

    def cancel(self, entry: list[Any]) -> None:
        """Forget a socket (it closed): its entry lets go of the connection at once."""
        if entry[2] is None:
            return  # expired, or cancelled already
        entry[2] = None
        self._cancelled += 1
        if self._cancelled * 2 > len(self._heap):
            # Mostly cancelled entries (tablets reconnect long before their tokens expire): rebuild.
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0
            if not self._heap and self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(self._heap[0][0], self._expire)

    def _expire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        heap = self._heap
        try:
            due = loop.time() + self.SLACK
            while heap and heap[0][0] <= due:
                entry = heapq.heappop(heap)
                connection = entry[2]
                if connection is None:
                    self._cancelled -= 1
                    continue
                entry[2] = None
                connection.disconnect(TOKEN_EXPIRED)
        finally:
            if heap:
                self._arm(loop)
