"""Faust's fetch loop hands a record to the agents' queues inline when nothing can make that wait, and through
``wait_first`` (four tasks, interruptible by a rebalance) otherwise (partner_stream/faust_patches/transport.py).
Every integration test runs the real loop through it; these pin the rule."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from partner_stream.faust_patches.transport import TunedFetchConsumer, delivery_cannot_wait, is_flow_wait


def consumer() -> Any:
    """The parts of Faust's consumer, app and conductor that ``on_message`` can wait on."""
    flow = FlowControlEvent(initially_suspended=False)
    queue: FlowControlQueue[Any] = FlowControlQueue(maxsize=2, flow_control=flow)
    conductor = SimpleNamespace(_tp_to_callback_lock=asyncio.Lock(), _topics=[SimpleNamespace(queue=queue)])
    buffer = SimpleNamespace(pending=asyncio.Queue(), max_messages=2)
    app = SimpleNamespace(
        flow_control=flow,
        topics=conductor,
        producer=SimpleNamespace(buffer=buffer),
        conf=SimpleNamespace(producer_threaded=False),
    )
    return SimpleNamespace(
        app=app, suspend_flow=asyncio.Event(), _stopped=asyncio.Event(), _crashed=asyncio.Event(), queue=queue
    )


async def test_a_record_nothing_can_hold_up_is_delivered_inline() -> None:
    fake = consumer()
    delivered: list[str] = []

    async def deliver() -> str:
        delivered.append("record")
        return "done"

    waiting = asyncio.ensure_future(TunedFetchConsumer.wait_first(fake, deliver(), fake.suspend_flow.wait()))
    await asyncio.sleep(0)  # one step: wait_first would still be scheduling its four tasks
    assert delivered == ["record"] and (await waiting).results == ["done"]


def hold_up(fake: Any, what: str) -> None:
    match what:
        case "rebalance":
            fake.app.flow_control.suspend()
        case "flow suspended":
            fake.suspend_flow.set()
        case "stopping":
            fake._stopped.set()
        case "crashed":
            fake._crashed.set()
        case "full queue":
            fake.queue.put_nowait(1)
            fake.queue.put_nowait(2)
        case "full producer buffer":
            for message in range(3):
                fake.app.producer.buffer.pending.put_nowait(message)


@pytest.mark.parametrize(
    "what", ["rebalance", "flow suspended", "stopping", "crashed", "full queue", "full producer buffer"]
)
async def test_anything_that_can_hold_a_delivery_up_leaves_it_to_faust(what: str) -> None:
    """Faust's way lets a rebalance interrupt a delivery that waits; an inline one would block the fetch loop."""
    fake = consumer()
    assert delivery_cannot_wait(fake)
    hold_up(fake, what)
    assert not delivery_cannot_wait(fake)


async def test_a_resubscription_holding_the_conductor_lock_leaves_it_to_faust() -> None:
    fake = consumer()
    async with fake.app.topics._tp_to_callback_lock:
        assert not delivery_cannot_wait(fake)


async def test_a_delivery_that_raises_raises_out_of_the_fetch_loops_wait_as_with_faust() -> None:
    fake = consumer()

    async def deliver() -> None:
        raise ValueError("a decode error Faust did not catch")

    with pytest.raises(ValueError, match="decode error"):
        await TunedFetchConsumer.wait_first(fake, deliver(), fake.suspend_flow.wait())


async def test_only_the_fetch_loops_wait_for_a_suspended_flow_is_recognised() -> None:
    flow_wait, other = asyncio.Event().wait(), asyncio.sleep(0)
    assert is_flow_wait(flow_wait) and not is_flow_wait(other) and not is_flow_wait(asyncio.Event())
    flow_wait.close()
    other.close()
