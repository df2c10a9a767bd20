"""Patch: tell the fence about every heartbeat aiokafka's group coordinator gets through, and rejoin on demand.

aiokafka has no hook for a successful heartbeat; :func:`record_heartbeats` wraps the
coordinator's private ``_do_heartbeat`` once per coordinator (partner_stream/fencing.py says
why a worker needs to know). :func:`request_rejoin` asks the coordinator for a rebalance: a worker
that fenced itself and then heard from the group again before it was dropped from it must still
rebuild its table and read its uncommitted events again, which happens in a rebalance.
"""

from __future__ import annotations

from typing import Any

from partner_stream.fencing import Fence


def record_heartbeats(coordinator: Any, fence: Fence) -> None:
    """Wrap aiokafka's heartbeat call on this coordinator (once) to tell the fence about each success.

    The coordinator lives on Faust's consumer thread; the wrapper only stores a float, which the main loop reads.
    """
    if coordinator is None or getattr(coordinator, "_partner_fence", None) is fence:
        return
    original = coordinator._do_heartbeat

    async def do_heartbeat() -> bool:
        succeeded = await original()
        if succeeded:
            fence.heartbeat_succeeded()
        return succeeded

    coordinator._do_heartbeat = do_heartbeat
    coordinator._partner_fence = fence
    fence.heartbeat_succeeded()  # joining just succeeded: the coordinator exists because we are in the group


def request_rejoin(faust_consumer: Any) -> None:
    """Make aiokafka rejoin the group (a rebalance) from the main thread: its coordinator lives on Faust's
    consumer thread, whose loop must run the request."""
    thread = faust_consumer._thread
    coordinator = thread._ensure_consumer()._coordinator
    thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)
