"""A tablet with a valid token cannot make the worker send megabytes or write Kafka without limit.

Reproduces the amplification found by probing main: 100 GetPendingOrders in one frame on a
restaurant with 300 orders sent 100 snapshots (315 MB to ten tablets that did not read), and
every Acknowledge became a Kafka write.
"""

# ruff: noqa: F811 (pytest injects the env fixture imported from test_hub by its parameter name)
from __future__ import annotations

import json

import pytest

from partner_stream.settings import Settings
from partner_stream_web.budget import ClientBudget, Rate, TokenBucket
from partner_stream_web.connection import BATCH_BYTES, Connection
from partner_stream_web.protocols.messages import NEED_DATA, Acknowledge, ClientPing, Resume, SnapshotRequested
from tests.web.test_hub import Env, FakeWebSocket, env, settle, wire  # noqa: F401


def invocations(target: str, count: int, *args: object) -> str:
    return "".join(
        json.dumps({"type": 1, "invocationId": str(n), "target": target, "arguments": list(args)}) + "\x1e"
        for n in range(count)
    )


async def feed(env: Env, connection: Connection, frame: str) -> None:
    """What the endpoint's read loop does with one frame."""
    connection.codec.receive_text(frame)
    while (event := connection.codec.next_event()) is not NEED_DATA:
        await env.hub.handle(connection, event)


@pytest.fixture
def kitchen_with_300_orders(env: Env) -> Env:
    for n in range(300):
        env.kitchen.new_order(None, "busy", f"o{n:03}")
    return env


async def test_a_hundred_snapshot_requests_in_one_frame_queue_one_snapshot(kitchen_with_300_orders: Env) -> None:
    env = kitchen_with_300_orders
    ws = FakeWebSocket(stuck=True)  # a tablet that does not read
    tablet = env.connect("busy", protocol="signalr", ws=ws, queue_size=256)
    env.hub.budget = ClientBudget(requests=Rate(per_second=1000, burst=1000))  # isolate the coalescing
    await feed(env, tablet, invocations("GetPendingOrders", 100))

    queued = list(tablet._queue or ())
    snapshots = [m for m in queued if "Snapshot" in type(m).__name__ or getattr(m, "result", None)]
    assert len(snapshots) == 2  # the one every socket gets on connect, and one reply
    refusals = [m for m in queued if getattr(m, "error", None)]
    assert len(refusals) == 99 and all("already queued" in m.error for m in refusals)

    ws.release()
    await settle(tablet)
    completions = [m for m in wire(tablet) if m.get("type") == 3]
    assert len(completions) == 100
    assert sum(1 for m in completions if "result" in m) == 1
    assert len(next(m for m in completions if "result" in m)["result"]["orders"]) == 300


async def test_once_the_snapshot_left_a_new_request_gets_a_fresh_one(kitchen_with_300_orders: Env) -> None:
    env = kitchen_with_300_orders
    tablet = env.connect("busy", protocol="signalr")
    await env.hub.handle(tablet, SnapshotRequested("1"))
    await settle(tablet)
    env.kitchen.new_order(env.hub, "busy", "late")
    await env.hub.handle(tablet, SnapshotRequested("2"))
    await settle(tablet)
    replies = [m for m in wire(tablet) if m.get("type") == 3]
    assert [len(m["result"]["orders"]) for m in replies] == [300, 301]


async def test_resume_requests_do_not_stack_snapshots(env: Env) -> None:
    env.kitchen.new_order(None, "r1", "o1")
    ws = FakeWebSocket(stuck=True)
    tablet = env.connect("r1", ws=ws)
    for _ in range(30):
        await env.hub.handle(tablet, Resume(0))
    snapshots = [m for m in tablet._queue or () if type(m).__name__ == "Snapshot"]
    assert len(snapshots) == 2  # on connect, and the first resume
    ws.release()
    await settle(tablet)


async def test_requests_over_the_rate_are_refused_one_by_one_and_the_socket_stays(env: Env) -> None:
    env.hub.budget = ClientBudget(requests=Rate(per_second=1, burst=5))
    tablet = env.connect("r1", protocol="signalr")
    await settle(tablet)
    await feed(env, tablet, invocations("Nonexistent", 20))
    await settle(tablet)
    completions = [m for m in wire(tablet) if m.get("type") == 3]
    assert len(completions) == 20
    over = [m for m in completions if "too many requests" in m["error"]]
    assert len(over) == 15 and "per second" in over[0]["error"]
    assert tablet.is_open
    for _ in range(100):
        await env.hub.handle(tablet, ClientPing())  # pings are free: a tablet is never cut for keeping alive
    assert tablet.is_open


async def test_a_client_that_keeps_flooding_past_its_refusals_is_sent_away_to_back_off(env: Env) -> None:
    """Refusals cost replies: past a frame's worth of them the socket closes with a reconnect code."""
    env.hub.budget = ClientBudget(requests=Rate(per_second=1, burst=5))
    tablet = env.connect("r1", protocol="signalr", queue_size=256)  # the default queue: replies fit
    await settle(tablet)
    for _ in range(3):
        await feed(env, tablet, invocations("Nonexistent", 100))
    await settle(tablet)
    close = wire(tablet)[-1]
    assert close["type"] == 7 and close["allowReconnect"] is True and "too many requests" in close["error"]
    assert tablet.close_reason is not None and tablet.close_reason.code == 4007
    assert len(tablet._queue or ()) == 0


async def test_acknowledgements_are_rate_limited_and_repeats_are_not_written_again(env: Env) -> None:
    env.hub.budget = ClientBudget(acknowledgements=Rate(per_second=0.001, burst=3))
    tablet = env.connect("r1", protocol="signalr")
    for n in range(3):
        await env.hub.handle(tablet, Acknowledge(f"o{n}", reply_to=f"a{n}"))
    await env.hub.handle(tablet, Acknowledge("o2", reply_to="again"))  # the client retrying: no second write
    await env.hub.handle(tablet, Acknowledge("o9", reply_to="over"))
    await settle(tablet)
    assert env.acks == [("r1", "o0"), ("r1", "o1"), ("r1", "o2")]
    replies = {m["invocationId"]: m for m in wire(tablet) if m.get("type") == 3}
    assert "error" not in replies["again"]
    assert "too many acknowledgements" in replies["over"]["error"]


async def test_one_write_gathers_at_most_a_batch_of_text(kitchen_with_300_orders: Env) -> None:
    """A big backlog goes out in bounded writes: never one string holding everything queued."""
    env = kitchen_with_300_orders
    env.hub.budget = ClientBudget(requests=Rate(per_second=1000, burst=1000))
    ws = FakeWebSocket(stuck=True)
    tablet = env.connect("busy", protocol="signalr", ws=ws, queue_size=1024)
    for n in range(600):
        env.kitchen.new_order(env.hub, "busy", f"new{n}")
    ws.release()
    await settle(tablet)
    _snapshot, *push_frames = ws.frames
    assert len(push_frames) >= 2
    assert sum(frame.count("NewOrder") for frame in push_frames) == 600
    assert all(len(frame) < BATCH_BYTES + 4096 for frame in push_frames)


def test_a_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(Rate(per_second=2, burst=3), now=0.0)
    assert [bucket.take(now=0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    assert bucket.take(now=0.5) and not bucket.take(now=0.5)
    assert [bucket.take(now=100.0) for _ in range(4)] == [True, True, True, False]


def test_the_budget_is_read_from_settings() -> None:
    settings = Settings(jwt_secret="x" * 32, hub_requests_per_second=3, hub_request_burst=4, hub_acks_per_second=1)
    budget = ClientBudget.from_settings(settings)
    assert budget.requests == Rate(3, 4) and budget.acknowledgements == Rate(1, settings.hub_ack_burst)
