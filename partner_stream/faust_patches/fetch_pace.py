"""On the embedded broker, the worker's fetch waits 5 ms while records flow and 50 ms once it has been idle.

Tansu's fetch does not return when data arrives: it re-polls after sleeping half of the remaining wait. So the
embedded profile fetches with a 5 ms wait to keep a push fast, and an idle worker then sends 126-147 empty Fetch
requests a second, each ~1 ms of aiokafka's Python: 12.5-16 % of a core with nothing to do (issue #14, goal 3:
<= 5 %). After a second without records the wait becomes 50 ms; the first response with records sets it back
to 5 ms before the next request is built. What it costs: a record arriving at an idle worker waits for Tansu's
next re-poll, ~10 ms on average.

Apache Kafka's long poll returns as soon as data arrives, so a real cluster keeps Faust's fixed wait and none of
this is installed there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: The fetch wait once no record came for IDLE_AFTER seconds (while records flow: the profile's fetch wait).
IDLE_WAIT_MS = 50
IDLE_AFTER = 1.0


class FetchPace:
    """The fetch wait to ask for next, from when records last arrived (used on the consumer thread only)."""

    def __init__(
        self,
        busy_ms: int,
        idle_ms: int = IDLE_WAIT_MS,
        idle_after: float = IDLE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.busy_ms = busy_ms
        self.idle_ms = idle_ms
        self.idle_after = idle_after
        self._clock = clock
        self._last_records = clock()

    def records_arrived(self) -> None:
        self._last_records = self._clock()

    def wait_ms(self) -> int:
        return self.busy_ms if self._clock() - self._last_records < self.idle_after else self.idle_ms


def pace_fetcher(fetcher: Any, pace: FetchPace) -> None:
    """Make an aiokafka ``Fetcher`` ask for :meth:`FetchPace.wait_ms` in each request it builds.

    aiokafka 0.14.0 builds every Fetch request in ``_get_actions_per_node`` from ``_fetch_max_wait_ms``, and
    ``_proc_fetch_request`` answers True when a response added records (or an error) to hand over: the
    request built after that one is already a busy one.
    """
    build_requests = fetcher._get_actions_per_node
    handle_response = fetcher._proc_fetch_request

    def get_actions_per_node(assignment: Any) -> Any:
        fetcher._fetch_max_wait_ms = pace.wait_ms()
        return build_requests(assignment)

    async def proc_fetch_request(assignment: Any, node_id: int, request: Any) -> bool:
        handed_over = await handle_response(assignment, node_id, request)
        if handed_over:
            pace.records_arrived()
        return bool(handed_over)

    fetcher._get_actions_per_node = get_actions_per_node
    fetcher._proc_fetch_request = proc_fetch_request
