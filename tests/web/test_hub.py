"""The hub alone: injected table read, ack sink and ownership test; real Connections on fake sockets.

No Kafka and no Faust worker: the hub is driven by calling its methods, and each
tablet is a :class:`Connection` whose WebSocket only records what it was sent. The
end-to-end behaviour against real workers is covered in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import partner_stream_web.connection
from partner_stream.events import OrderAccepted, OrderCreated
from partner_stream_tables.memory import MemoryTable
from partner_stream_tables.model import RestaurantOrders, StorageUnavailable
from partner_stream_tables.transitions import Change, apply_event
from partner_stream_web.connection import Connection, ConnectionStatus
from partner_stream_web.hub import Hub
from partner_stream_web.protocols import PlainCodec, SignalRCodec
from partner_stream_web.protocols.disconnects import (
    CLIENT_TIMEOUT,
    NOT_OWNER,
    RESYNC,
    SHUTDOWN,
    SIGNALR_WS_CLOSE_CODE,
    UNAVAILABLE,
)
from partner_stream_web.protocols.messages import (
    Acknowledge,
    ClientClosed,
    ClientPing,
    HandshakeAccepted,
    InvalidInvocation,
    Push,
    Resume,
    ServerPing,
    SnapshotRequested,
)
from tests.support.codecs import drain

RS = "\x1e"
HANDSHAKE = '{"protocol":"json","version":1}' + RS
T0 = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
PROTOCOLS = ("plain", "signalr")


# -- fakes ---------------------------------------------------------------------------


class FakeWebSocket:
    """Records every text frame; with ``stuck=True`` ``send_str`` waits until :meth:`release` (never, if not called)."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.frames: list[str] = []
        self.closed: tuple[int, bytes] | None = None
        self.sends_started = 0
        self._gate = asyncio.Event()
        if not stuck:
            self._gate.set()

    async def send_str(self, text: str) -> None:
        self.sends_started += 1
        await self._gate.wait()
        self.frames.append(text)

    async def close(self, *, code: int, message: bytes = b"") -> bool:
        self.closed = (code, message)
        return True

    def release(self) -> None:
        self._gate.set()


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class Kitchen:
    """The pending-orders table the hub reads, plus the agent's job: apply an event, then publish."""

    def __init__(self) -> None:
        self.table = MemoryTable()

    def read_snapshot(self, restaurant_id: str) -> RestaurantOrders:
        return self.table.state_of(restaurant_id)

    def apply(self, event: OrderCreated | OrderAccepted) -> tuple[str, Change]:
        outcome = apply_event(self.table, event, resolved_memory=50)
        assert outcome.change is not None
        self.table.write(outcome)
        return event.restaurant_id, outcome.change

    def new_order(self, hub: Hub | None, restaurant_id: str, order_id: str) -> int:
        """Create an order as the agent would (table first, then publish in the same step); returns its seq."""
        _, change = self.apply(created(restaurant_id, order_id))
        if hub is not None:
            hub.publish(restaurant_id, change)
        return change.seq


def created(restaurant_id: str, order_id: str) -> OrderCreated:
    return OrderCreated.model_validate(
        {
            "OrderId": order_id,
            "RestaurantId": restaurant_id,
            "CustomerName": "Ana",
            "Items": [{"Name": "Pad Thai", "Quantity": 2, "UnitPrice": 9.5}],
            "TotalPrice": 19.0,
            "CreatedAt": (T0 + timedelta(seconds=len(order_id))).isoformat(),
        }
    )


@dataclass
class Env:
    hub: Hub
    kitchen: Kitchen
    acks: list[tuple[str, str]]
    moved: set[str]
    connections: list[Connection] = field(default_factory=list)

    def connect(
        self,
        restaurant_id: str,
        *,
        protocol: str = "plain",
        ws: FakeWebSocket | None = None,
        queue_size: int = 64,
        transport: FakeTransport | None = None,
        attach: bool = True,
    ) -> Connection:
        """A tablet as web/endpoints.py builds it: handshake answered, then attached."""
        ws = ws or FakeWebSocket()
        codec: PlainCodec | SignalRCodec
        if protocol == "signalr":
            codec = SignalRCodec()
            drain(codec, HANDSHAKE)
        else:
            codec = PlainCodec()
        connection = Connection(
            ws,  # type: ignore[arg-type]
            codec,
            restaurant_id=restaurant_id,
            protocol=protocol,
            queue_size=queue_size,
            batch_records=protocol == "signalr",
            transport=transport,  # type: ignore[arg-type]
        )
        if protocol == "signalr":
            connection.send_first(HandshakeAccepted())  # as the endpoint: ahead of anything queued
        self.connections.append(connection)
        if attach:
            self.hub.attach(connection)
        return connection


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    kitchen = Kitchen()
    acks: list[tuple[str, str]] = []
    moved: set[str] = set()

    async def submit_ack(restaurant_id: str, order_id: str) -> None:
        await asyncio.sleep(0)  # a real sink awaits the producer
        acks.append((restaurant_id, order_id))

    hub = Hub(
        read_snapshot=kitchen.read_snapshot,
        read_version=kitchen.table.version_of,
        submit_ack=submit_ack,
        owns=lambda restaurant_id: restaurant_id not in moved,
        ping_interval=10.0,
        client_timeout=30.0,
    )
    environment = Env(hub=hub, kitchen=kitchen, acks=acks, moved=moved)
    yield environment
    # Like the endpoint's finally: unregister, stop the writer; cut writers stuck on a socket.
    for connection in environment.connections:
        environment.hub.detach(connection)
        connection.peer_gone()
        writer = connection._writer
        if writer is not None and not writer.done():
            await asyncio.wait([writer], timeout=0.02)
            writer.cancel()
        await asyncio.wait_for(connection.wait_closed(), timeout=1.0)


# -- reading what a tablet received ------------------------------------------------------


def wire(connection: Connection) -> list[dict[str, Any]]:
    """Every message the fake socket was sent, JSON-decoded (SignalR frames split into records, the handshake
    reply checked to come first and left out)."""
    ws: FakeWebSocket = connection.ws  # type: ignore[assignment]
    messages: list[dict[str, Any]] = []
    for frame in ws.frames:
        if connection.protocol == "signalr":
            assert frame.endswith(RS), frame
            messages.extend(json.loads(record) for record in frame.split(RS)[:-1])
        else:
            messages.append(json.loads(frame))
    if connection.protocol == "signalr" and messages:
        assert messages[0] == {}, f"the handshake reply must come first: {messages[:2]}"
        del messages[0]
    return messages


@dataclass(frozen=True)
class Seen:
    """One received message in protocol-neutral form."""

    name: str
    seq: int | None = None
    payload: Any = None


def seen(connection: Connection) -> list[Seen]:
    result = []
    for message in wire(connection):
        if connection.protocol == "plain":
            if message["type"] in {"PendingOrders", "NewOrder", "OrderAccepted", "OrderRejected", "OrderAcknowledged"}:
                result.append(Seen(message["type"], message["seq"], message["data"]))
            else:
                result.append(Seen(message["type"], None, message))
        elif message["type"] == 1:
            [argument] = message["arguments"]
            result.append(Seen(message["target"], argument["seq"], argument))
        else:
            name = {3: "reply", 6: "ping", 7: "close"}[message["type"]]
            result.append(Seen(name, None, message))
    return result


def names(connection: Connection) -> list[str]:
    return [s.name for s in seen(connection)]


async def until(condition: Callable[[], bool], *, timeout: float = 2.0, what: str = "condition") -> None:
    """Let the writers run until ``condition`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def settle(*connections: Connection) -> None:
    """Give the writers time to send everything queued (and prove nothing else arrives)."""
    await until(lambda: all(not c._queue for c in connections), what="queues to drain")
    for _ in range(5):
        await asyncio.sleep(0)


# -- snapshot then changes ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_snapshot_is_the_first_message_after_attach(env: Env, protocol: str) -> None:
    env.kitchen.new_order(None, "r1", "before-1")
    env.kitchen.new_order(None, "r1", "before-2")

    tablet = env.connect("r1", protocol=protocol)
    await settle(tablet)

    [first] = seen(tablet)
    assert first.name == "PendingOrders" and first.seq == 2
    if protocol == "plain":
        assert first.payload["restaurantId"] == "r1"
    else:
        assert first.payload["restaurantId"] == "r1" and first.payload["seq"] == 2
    assert sorted(o["orderId"] for o in first.payload["orders"]) == ["before-1", "before-2"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_change_published_after_attach_arrives_after_snapshot_with_next_seq(env: Env, protocol: str) -> None:
    env.kitchen.new_order(None, "r1", "before")
    tablet = env.connect("r1", protocol=protocol)

    seq = env.kitchen.new_order(env.hub, "r1", "after")
    await settle(tablet)

    snapshot, push = seen(tablet)
    assert snapshot.name == "PendingOrders" and [o["orderId"] for o in snapshot.payload["orders"]] == ["before"]
    assert push.name == "NewOrder" and push.seq == seq == snapshot.seq + 1
    assert push.payload["orderId"] == "after" and push.payload["seq"] == seq


async def test_change_published_before_the_writer_runs_is_still_queued_behind_the_snapshot(env: Env) -> None:
    tablet = env.connect("r1")
    # No await between attach and publish: the snapshot (seq 0) and the push (seq 1) are both queued.
    env.kitchen.new_order(env.hub, "r1", "o1")
    env.kitchen.new_order(env.hub, "r1", "o2")
    await settle(tablet)
    assert [(s.name, s.seq) for s in seen(tablet)] == [("PendingOrders", 0), ("NewOrder", 1), ("NewOrder", 2)]


async def test_publish_for_one_restaurant_never_reaches_another(env: Env) -> None:
    tablet_a = env.connect("A")
    tablet_b = env.connect("B")

    env.kitchen.new_order(env.hub, "A", "only-for-a")
    await settle(tablet_a, tablet_b)

    assert names(tablet_a) == ["PendingOrders", "NewOrder"]
    assert names(tablet_b) == ["PendingOrders"]
    assert seen(tablet_b)[0].payload["restaurantId"] == "B"


async def test_publish_for_restaurant_without_tablets_is_a_no_op(env: Env) -> None:
    tablet = env.connect("A")
    env.kitchen.new_order(env.hub, "nobody-here", "o1")
    await settle(tablet)
    assert names(tablet) == ["PendingOrders"]
    assert env.hub.restaurants() == ["A"]


async def test_every_tablet_of_a_restaurant_receives_each_change(env: Env) -> None:
    tablets = [env.connect("r1", protocol=p) for p in ("plain", "signalr", "plain")]
    assert set(env.hub.connections("r1")) == set(tablets)

    first = env.kitchen.new_order(env.hub, "r1", "o1")
    second = env.kitchen.new_order(env.hub, "r1", "o2")
    await settle(*tablets)

    for tablet in tablets:
        assert [(s.name, s.seq) for s in seen(tablet)] == [
            ("PendingOrders", 0),
            ("NewOrder", first),
            ("NewOrder", second),
        ]


async def test_detached_tablet_receives_nothing_more_and_empty_restaurant_is_forgotten(env: Env) -> None:
    tablet = env.connect("r1")
    await settle(tablet)
    env.hub.detach(tablet)
    env.hub.detach(tablet)  # idempotent

    env.kitchen.new_order(env.hub, "r1", "o1")
    await settle(tablet)

    assert names(tablet) == ["PendingOrders"]
    assert env.hub.restaurants() == [] and env.hub.connections() == []


async def test_a_closed_tablet_not_yet_detached_is_not_counted_as_watching(env: Env) -> None:
    """The announcer reads the count to say whether a tablet could see an order (partner_stream/announcer.py)."""
    open_tablet, closing = env.connect("r1"), env.connect("r1")
    await settle(open_tablet, closing)
    assert env.hub.count("r1") == 2
    closing.disconnect(RESYNC)  # its handler has not detached it yet
    assert env.hub.count("r1") == 1 and len(env.hub.connections("r1")) == 2


# -- slow and stuck tablets ------------------------------------------------------------------


async def test_tablet_whose_queue_overflows_is_closed_with_resync_and_others_keep_receiving(env: Env) -> None:
    slow_ws = FakeWebSocket(stuck=True)
    slow = env.connect("r1", ws=slow_ws, queue_size=8)
    fast = env.connect("r1", queue_size=8)
    await until(lambda: slow_ws.sends_started == 1, what="the slow writer to block on the snapshot")

    for n in range(12):
        env.kitchen.new_order(env.hub, "r1", f"o{n:02d}")
        await settle(fast)  # the healthy tablet keeps up

    assert slow.status is ConnectionStatus.CLOSING and slow.close_reason == RESYNC
    assert [s.seq for s in seen(fast)] == list(range(13))
    assert fast.is_open

    # Once the slow tablet reads again it gets the snapshot in flight, then the close, and nothing else.
    slow_ws.release()
    await asyncio.wait_for(slow.wait_closed(), timeout=1.0)
    snapshot, close = wire(slow)
    assert snapshot["type"] == "PendingOrders"
    assert close == {"type": "close", "code": 4001, "reason": RESYNC.reason, "reconnect": True}
    assert slow_ws.closed == (4001, RESYNC.reason.encode())
    assert slow.status is ConnectionStatus.CLOSED


async def test_publish_is_synchronous_and_never_waits_for_a_stuck_tablet(env: Env) -> None:
    assert not inspect.iscoroutinefunction(Hub.publish)
    stuck_ws = FakeWebSocket(stuck=True)
    env.connect("r1", ws=stuck_ws, queue_size=1000)
    healthy = env.connect("r1", queue_size=1000)
    await until(lambda: stuck_ws.sends_started == 1, what="the writer to block")

    started = time.monotonic()
    for n in range(200):
        assert env.hub.publish(*env.kitchen.apply(created("r1", f"o{n:03d}"))) is None
    assert time.monotonic() - started < 1.0

    await settle(healthy)
    assert len(seen(healthy)) == 201


async def test_stuck_writer_is_aborted_after_the_close_grace_period(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partner_stream_web.connection, "CLOSE_GRACE_SECONDS", 0.05)
    stuck_ws = FakeWebSocket(stuck=True)
    transport = FakeTransport()
    stuck = env.connect("r1", ws=stuck_ws, transport=transport, queue_size=8)
    await until(lambda: stuck_ws.sends_started == 1, what="the writer to block")

    for n in range(10):  # overflow: disconnect(RESYNC) while the writer cannot send the Close
        env.kitchen.new_order(env.hub, "r1", f"o{n}")
    assert stuck.status is ConnectionStatus.CLOSING and not transport.aborted

    await asyncio.wait_for(stuck.wait_closed(), timeout=1.0)
    assert transport.aborted
    assert stuck.status is ConnectionStatus.CLOSED
    assert stuck_ws.frames == [] and stuck_ws.closed is None
    assert not stuck.offer(ServerPing())


async def test_writer_that_closes_in_time_is_not_aborted(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partner_stream_web.connection, "CLOSE_GRACE_SECONDS", 0.05)
    transport = FakeTransport()
    tablet = env.connect("r1", transport=transport)
    tablet.disconnect(SHUTDOWN)
    await asyncio.wait_for(tablet.wait_closed(), timeout=1.0)
    await asyncio.sleep(0.1)  # past the grace period
    assert not transport.aborted
    assert tablet.ws.closed == (SHUTDOWN.code, SHUTDOWN.reason.encode())  # type: ignore[attr-defined]


class BrokenWebSocket(FakeWebSocket):
    async def send_str(self, text: str) -> None:
        raise ValueError("a bug in the send path")


async def test_a_writer_that_fails_unexpectedly_cuts_the_socket_so_the_tablet_resyncs(env: Env) -> None:
    """Messages were lost: a tablet kept open would silently miss them, so its socket is cut instead."""
    transport = FakeTransport()
    tablet = env.connect("r1", ws=BrokenWebSocket(), transport=transport)

    await until(lambda: transport.aborted, what="the transport to be aborted")
    assert tablet.status is ConnectionStatus.CLOSED and not tablet.writing
    assert not tablet.offer(ServerPing())


async def test_a_cancelled_writer_leaves_the_connection_closed(env: Env) -> None:
    stuck_ws = FakeWebSocket(stuck=True)
    tablet = env.connect("r1", ws=stuck_ws)  # the snapshot's send never finishes
    await until(lambda: stuck_ws.sends_started == 1, what="the snapshot send to start")
    writer = tablet._writer
    assert writer is not None
    writer.cancel()
    await asyncio.wait([writer], timeout=1.0)

    assert tablet.status is ConnectionStatus.CLOSED and not tablet.writing
    assert not tablet.offer(ServerPing())


# -- keep-alive ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_ping_all_sends_server_ping_to_tablets_heard_from_recently(env: Env, protocol: str) -> None:
    tablet = env.connect("r1", protocol=protocol)
    env.hub.ping_all(now=tablet.last_received + 1.0)
    await settle(tablet)
    assert names(tablet) == ["PendingOrders", "ping"]
    assert wire(tablet)[-1] == ({"type": "ping"} if protocol == "plain" else {"type": 6})
    assert tablet.is_open


async def test_ping_all_disconnects_tablets_silent_longer_than_client_timeout(env: Env) -> None:
    silent = env.connect("r1")
    chatty = env.connect("r2")
    now = time.monotonic() + 100.0
    silent.last_received = now - env.hub.client_timeout - 0.5
    chatty.last_received = now - env.hub.client_timeout + 0.5

    env.hub.ping_all(now=now)
    await asyncio.wait_for(silent.wait_closed(), timeout=1.0)
    await settle(chatty)

    assert silent.close_reason == CLIENT_TIMEOUT
    assert wire(silent)[-1] == {"type": "close", "code": 4004, "reason": CLIENT_TIMEOUT.reason, "reconnect": True}
    assert silent.ws.closed == (4004, CLIENT_TIMEOUT.reason.encode())  # type: ignore[attr-defined]
    assert names(chatty) == ["PendingOrders", "ping"] and chatty.is_open


# -- client messages -------------------------------------------------------------------------


async def test_acknowledge_submits_ack_and_records_last_ack_without_reply_when_no_id(env: Env) -> None:
    env.kitchen.new_order(None, "r1", "o1")
    tablet = env.connect("r1")
    before = time.time()

    await env.hub.handle(tablet, Acknowledge("o1"))
    await settle(tablet)

    assert env.acks == [("r1", "o1")]
    assert tablet.last_ack is not None and tablet.last_ack[0] == "o1" and tablet.last_ack[1] >= before
    assert names(tablet) == ["PendingOrders"]
    assert tablet.describe()["lastAck"] == {"orderId": "o1", "at": tablet.last_ack[1]}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_acknowledge_with_reply_to_replies_after_the_ack_is_submitted(env: Env, protocol: str) -> None:
    tablet = env.connect("r1", protocol=protocol)
    await env.hub.handle(tablet, Acknowledge("o1", reply_to="7"))
    await settle(tablet)

    assert env.acks == [("r1", "o1")] and tablet.last_ack is not None
    reply = wire(tablet)[-1]
    if protocol == "plain":
        assert reply == {"type": "reply", "id": "7", "result": None}
    else:
        assert reply == {"type": 3, "invocationId": "7", "result": None}


async def test_failed_acknowledge_replies_with_an_error_and_keeps_the_socket(env: Env) -> None:
    async def broker_down(restaurant_id: str, order_id: str) -> None:
        raise ConnectionError("broker unreachable")

    env.hub._submit_ack = broker_down
    tablet = env.connect("r1")
    await env.hub.handle(tablet, Acknowledge("o1", reply_to="9"))
    await settle(tablet)

    assert wire(tablet)[-1] == {"type": "reply", "id": "9", "error": "acknowledgement not recorded; retry"}
    assert tablet.is_open and tablet.last_ack is None


async def test_resume_with_current_seq_sends_nothing(env: Env) -> None:
    env.kitchen.new_order(None, "r1", "o1")
    tablet = env.connect("r1")
    await settle(tablet)

    await env.hub.handle(tablet, Resume(1))
    await settle(tablet)
    assert names(tablet) == ["PendingOrders"]


async def test_resume_with_older_seq_sends_a_fresh_snapshot(env: Env) -> None:
    tablet = env.connect("r1")
    env.kitchen.new_order(env.hub, "r1", "o1")
    env.kitchen.new_order(env.hub, "r1", "o2")
    await settle(tablet)

    await env.hub.handle(tablet, Resume(0))
    await settle(tablet)
    last = seen(tablet)[-1]
    assert last.name == "PendingOrders" and last.seq == 2
    assert [o["orderId"] for o in last.payload["orders"]] == ["o1", "o2"]


async def test_snapshot_requested_with_reply_to_answers_with_the_snapshot_payload(env: Env) -> None:
    env.kitchen.new_order(None, "r1", "o1")
    tablet = env.connect("r1", protocol="signalr")
    await env.hub.handle(tablet, SnapshotRequested(reply_to="3"))
    await settle(tablet)

    reply = wire(tablet)[-1]
    assert reply["type"] == 3 and reply["invocationId"] == "3"
    assert reply["result"]["restaurantId"] == "r1" and reply["result"]["seq"] == 1
    assert [o["orderId"] for o in reply["result"]["orders"]] == ["o1"]


async def test_snapshot_requested_without_reply_to_sends_a_snapshot_message(env: Env) -> None:
    tablet = env.connect("r1")
    await env.hub.handle(tablet, SnapshotRequested())
    await settle(tablet)
    assert names(tablet) == ["PendingOrders", "PendingOrders"]


async def test_invalid_invocation_with_reply_to_gets_an_error_reply(env: Env) -> None:
    tablet = env.connect("r1", protocol="signalr")
    await env.hub.handle(tablet, InvalidInvocation("9", "Unknown hub method 'Nope'"))
    await settle(tablet)
    assert wire(tablet)[-1] == {"type": 3, "invocationId": "9", "error": "Unknown hub method 'Nope'"}
    assert tablet.is_open


async def test_invalid_invocation_without_reply_to_and_pings_get_no_answer(env: Env) -> None:
    tablet = env.connect("r1", protocol="signalr")
    await env.hub.handle(tablet, InvalidInvocation(None, "Unknown hub method 'Nope'"))
    await env.hub.handle(tablet, ClientPing())
    await env.hub.handle(tablet, ClientClosed())
    await settle(tablet)
    assert names(tablet) == ["PendingOrders"] and env.acks == []


# -- shutdown and rebalance --------------------------------------------------------------------


async def test_close_all_sends_shutdown_close_and_every_writer_finishes(env: Env) -> None:
    plain = env.connect("r1")
    signalr = env.connect("r2", protocol="signalr")

    await asyncio.wait_for(env.hub.close_all(timeout=1.0), timeout=2.0)

    assert plain.status is ConnectionStatus.CLOSED and signalr.status is ConnectionStatus.CLOSED
    assert not plain.writing and not signalr.writing
    assert wire(plain)[-1] == {"type": "close", "code": 4000, "reason": SHUTDOWN.reason, "reconnect": True}
    assert plain.ws.closed == (4000, SHUTDOWN.reason.encode())  # type: ignore[attr-defined]
    assert wire(signalr)[-1] == {"type": 7, "error": SHUTDOWN.reason, "allowReconnect": True}
    assert signalr.ws.closed == (SIGNALR_WS_CLOSE_CODE, SHUTDOWN.reason.encode())  # type: ignore[attr-defined]


async def test_close_all_returns_within_its_timeout_despite_a_stuck_tablet(env: Env) -> None:
    stuck_ws = FakeWebSocket(stuck=True)
    stuck = env.connect("r1", ws=stuck_ws)
    healthy = env.connect("r1")
    await until(lambda: stuck_ws.sends_started == 1, what="the writer to block")

    started = time.monotonic()
    await env.hub.close_all(timeout=0.1)
    assert time.monotonic() - started < 1.0
    assert healthy.status is ConnectionStatus.CLOSED
    assert stuck.status is ConnectionStatus.CLOSING


async def test_disconnect_not_owned_closes_only_restaurants_owns_rejects(env: Env) -> None:
    moved_1 = env.connect("moved")
    moved_2 = env.connect("moved", protocol="signalr")
    staying = env.connect("staying")
    env.moved.add("moved")

    assert env.hub.disconnect_not_owned() == 2
    await asyncio.wait_for(asyncio.gather(moved_1.wait_closed(), moved_2.wait_closed()), timeout=1.0)

    assert moved_1.close_reason == NOT_OWNER and moved_2.close_reason == NOT_OWNER
    assert wire(moved_1)[-1] == {"type": "close", "code": 4002, "reason": NOT_OWNER.reason, "reconnect": True}
    assert wire(moved_2)[-1] == {"type": 7, "error": NOT_OWNER.reason, "allowReconnect": True}
    assert staying.is_open

    env.kitchen.new_order(env.hub, "staying", "o1")
    await settle(staying)
    assert names(staying) == ["PendingOrders", "NewOrder"]


async def test_disconnect_not_owned_with_everything_owned_closes_nothing(env: Env) -> None:
    tablet = env.connect("r1")
    assert env.hub.disconnect_not_owned() == 0
    assert tablet.is_open


async def test_a_keepalive_round_pings_only_tablets_that_were_sent_nothing_lately(env: Env) -> None:
    busy = env.connect("r1")
    idle = env.connect("r2")
    now = time.monotonic() + 60.0
    for tablet in (busy, idle):
        tablet.last_received = now - 1.0
    busy.last_sent = now - 1.0  # a push a second ago already told the client we are alive
    idle.last_sent = now - env.hub.ping_interval - 1.0

    env.hub._ping([busy, idle], now, only_idle=True)
    await settle(busy)
    await settle(idle)

    assert names(busy) == ["PendingOrders"]
    assert names(idle) == ["PendingOrders", "ping"]


async def test_tablets_reconnecting_at_the_same_seq_share_one_snapshot(env: Env) -> None:
    first = env.connect("r1")
    second = env.connect("r1")
    assert first._queue[0] is second._queue[0]  # built once, queued twice
    env.kitchen.new_order(env.hub, "r1", "o1")
    third = env.connect("r1")
    await settle(third)
    assert [o["orderId"] for o in wire(third)[0]["data"]["orders"]] == ["o1"]  # a new seq: rebuilt


async def test_a_tablet_reconnecting_at_the_cached_version_costs_one_key_read(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconnect storm: the orders are read and encoded once per version of the state, not once per tablet."""
    reads: list[str] = []

    def read_snapshot(restaurant_id: str) -> RestaurantOrders:
        reads.append(restaurant_id)
        return env.kitchen.read_snapshot(restaurant_id)

    monkeypatch.setattr(env.hub, "_read_snapshot", read_snapshot)
    env.kitchen.new_order(None, "r1", "o1")
    first = env.connect("r1")
    second = env.connect("r1")
    assert reads == ["r1"] and first._queue[0] is second._queue[0]
    env.kitchen.new_order(env.hub, "r1", "o2")
    third = env.connect("r1")
    await settle(third)
    assert reads == ["r1", "r1"]  # the seq moved: read again
    assert [o["orderId"] for o in wire(third)[0]["data"]["orders"]] == ["o1", "o2"]


async def test_the_same_seq_with_other_orders_after_a_rebuild_is_never_served_from_the_cache(env: Env) -> None:
    """After a fence the table is rebuilt and events applied again, maybe in another order: the same seq can
    come back holding other orders. Those writes carry a newer generation, so the cached snapshot is not used
    (a tablet kept registered by a blocked handler can keep the cache entry alive through the fence)."""
    table = env.kitchen.table
    table.write(apply_event(table, created("r1", "e1"), resolved_memory=50), generation=1)
    lingering = env.connect("r1")  # stays attached through what follows
    await settle(lingering)
    rebuilt = MemoryTable()
    rebuilt.write(apply_event(rebuilt, created("r1", "e2"), resolved_memory=50), generation=2)
    table.data = rebuilt.data  # seq 1 again, holding e2 instead of e1
    fresh = env.connect("r1")
    await settle(fresh)
    assert [o["orderId"] for o in wire(fresh)[0]["data"]["orders"]] == ["e2"]


# -- framing -----------------------------------------------------------------------------------


async def test_signalr_batches_queued_records_into_one_frame(env: Env) -> None:
    tablet = env.connect("r1", protocol="signalr")
    # Queued in one event-loop step: handshake reply, snapshot, two pushes, a ping -> one frame, five records.
    env.kitchen.new_order(env.hub, "r1", "o1")
    env.kitchen.new_order(env.hub, "r1", "o2")
    env.hub.ping_all(now=tablet.last_received)
    await settle(tablet)

    [frame] = tablet.ws.frames  # type: ignore[attr-defined]
    assert frame.startswith("{}" + RS) and frame.count(RS) == 5 and frame.endswith(RS)
    assert names(tablet) == ["PendingOrders", "NewOrder", "NewOrder", "ping"]


async def test_the_signalr_handshake_reply_rides_in_the_snapshots_frame(env: Env) -> None:
    """One write and one client message per connect, not two; the reply first, as the protocol requires."""
    tablet = env.connect("r1", protocol="signalr")
    await settle(tablet)

    [frame] = tablet.ws.frames  # type: ignore[attr-defined]
    reply, snapshot, rest = frame.split(RS)
    assert reply == "{}" and json.loads(snapshot)["target"] == "PendingOrders" and rest == ""


async def test_a_disconnect_before_the_first_write_sends_the_handshake_reply_alone_then_the_close(env: Env) -> None:
    """A SignalR client reads nothing before the handshake reply, a Close included: the disconnect keeps it. In one
    frame with the Close the official client's start() would fail; apart, the connection starts and then closes
    with the reason (and reconnects)."""
    tablet = env.connect("r1", protocol="signalr", attach=False)
    tablet.offer(Push(name="NewOrder", seq=1, data={"orderId": "o1", "seq": 1}))
    tablet.disconnect(RESYNC)  # drops what was queued, not the reply
    await settle(tablet)

    reply, close = tablet.ws.frames  # type: ignore[attr-defined]
    assert reply == "{}" + RS
    assert json.loads(close.removesuffix(RS))["type"] == 7 and close.count(RS) == 1
    assert tablet.ws.closed is not None  # type: ignore[attr-defined]


async def test_plain_sends_one_json_object_per_frame(env: Env) -> None:
    tablet = env.connect("r1")
    env.kitchen.new_order(env.hub, "r1", "o1")
    env.kitchen.new_order(env.hub, "r1", "o2")
    env.hub.ping_all(now=tablet.last_received)
    await settle(tablet)

    frames = tablet.ws.frames  # type: ignore[attr-defined]
    assert len(frames) == 4
    assert [json.loads(f)["type"] for f in frames] == ["PendingOrders", "NewOrder", "NewOrder", "ping"]


# -- as a service --------------------------------------------------------------------------------


@pytest.fixture
def quick_hub(env: Env) -> Iterator[Hub]:
    hub = Hub(
        read_snapshot=env.kitchen.read_snapshot,
        read_version=env.kitchen.table.version_of,
        submit_ack=env.hub._submit_ack,
        owns=env.hub._owns,
        ping_interval=0.02,
        client_timeout=30.0,
    )
    env.hub = hub
    yield hub


async def test_running_hub_pings_periodically_and_stopping_closes_every_tablet(env: Env, quick_hub: Hub) -> None:
    await quick_hub.start()
    try:
        tablet = env.connect("r1")
        await until(lambda: names(tablet).count("ping") >= 2, what="two keep-alive pings")
    finally:
        await asyncio.wait_for(quick_hub.stop(), timeout=5.0)
    assert tablet.status is ConnectionStatus.CLOSED
    assert wire(tablet)[-1]["type"] == "close" and wire(tablet)[-1]["code"] == SHUTDOWN.code


@pytest.mark.parametrize("reader", ["_read_snapshot", "_read_version"])
async def test_a_snapshot_request_while_the_store_refuses_writes_sends_the_tablet_away_to_retry(
    env: Env, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """No snapshot can be trusted while a partition database is closed: reconnect later, get a whole one. The
    version a cached snapshot is checked against is refused like the snapshot itself."""
    tablet = env.connect("r1")  # the snapshot is cached now
    await settle(tablet)
    env.kitchen.new_order(env.hub, "r1", "o1")  # and stale: the version moved

    def store_down(restaurant_id: str) -> RestaurantOrders:
        raise StorageUnavailable("IO error: No space left on device")

    monkeypatch.setattr(env.hub, reader, store_down)
    await env.hub.handle(tablet, SnapshotRequested())
    await asyncio.wait_for(tablet.wait_closed(), timeout=1.0)
    assert tablet.close_reason == UNAVAILABLE and wire(tablet)[-1]["code"] == UNAVAILABLE.code


@pytest.mark.parametrize("error", [BrokenPipeError, ConnectionAbortedError, ConnectionResetError])
async def test_a_tablet_that_vanishes_mid_write_is_routine_not_a_logged_failure(
    env: Env, error: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    """The probe found "writer failed" with a traceback for every tablet that disconnected mid-write."""

    class VanishingSocket(FakeWebSocket):
        async def send_str(self, text: str) -> None:
            raise error("peer gone")

    with caplog.at_level(logging.DEBUG, logger="partner_stream_web.connection"):
        tablet = env.connect("r1", ws=VanishingSocket())
        await until(lambda: not tablet.writing, what="the writer to stop")
    assert tablet.status is ConnectionStatus.CLOSED
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
