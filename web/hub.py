"""The hub: which tablets are connected to this worker, per restaurant, and what they get.

Like Centrifuge's Hub it knows no wire protocol: it speaks the neutral messages of
:mod:`web.protocols.messages` and leaves encoding to each connection's codec. It
knows no Faust either: the table read, the ownership test and the acknowledgement
sink are injected, so the hub can be tested alone.

Zero loss by construction: the agent changes a restaurant's value and calls
:meth:`Hub.publish` in the same event-loop step, and :meth:`Hub.attach` reads the
snapshot and registers the connection in one step too. So every change is either
in the snapshot a tablet receives or queued after it, never neither; ``seq`` lets
the tablet verify that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable

import mode

from partner_stream_tables.model import RestaurantOrders, StorageUnavailable
from partner_stream_tables.queries import change_name, change_payload, snapshot_payload
from partner_stream_tables.transitions import Change

from . import metrics
from .budget import DEFAULT_BUDGET, ClientBudget, TokenBucket, over_budget
from .connection import Connection
from .protocols.disconnects import CLIENT_TIMEOUT, NOT_OWNER, SHUTDOWN, TOO_MANY_REQUESTS, UNAVAILABLE, Disconnect
from .protocols.messages import (
    Acknowledge,
    ClientClosed,
    ClientPing,
    Inbound,
    InvalidInvocation,
    Push,
    Reply,
    Resume,
    ServerPing,
    Snapshot,
    SnapshotRequested,
)

log = logging.getLogger(__name__)

#: A keep-alive round is spread over this many slices of the ping interval.
PING_SLICES = 20
SNAPSHOT_QUEUED = "a snapshot is already queued for this connection; it arrives before any later change"

SnapshotReader = Callable[[str], RestaurantOrders]
#: The version of a restaurant's state (its head's stamp), or None if it has none: read the whole state.
VersionReader = Callable[[str], Hashable | None]
AckSink = Callable[[str, str], Awaitable[None]]
OwnershipTest = Callable[[str], bool]


def snapshot_message(state: RestaurantOrders) -> Snapshot:
    payload = snapshot_payload(state)
    return Snapshot(restaurant_id=state.restaurant_id, seq=state.seq, orders=tuple(payload["orders"]))


def snapshot_reply(snapshot: Snapshot) -> dict[str, object]:
    """The GetPendingOrders result: the same content as the snapshot push."""
    return {"restaurantId": snapshot.restaurant_id, "seq": snapshot.seq, "orders": list(snapshot.orders)}


class Hub(mode.Service):
    """Tracks this worker's tablet connections and fans changes out to them."""

    def __init__(
        self,
        *,
        read_snapshot: SnapshotReader,
        read_version: VersionReader,
        submit_ack: AckSink,
        owns: OwnershipTest,
        ping_interval: float = 10.0,
        client_timeout: float = 30.0,
        budget: ClientBudget = DEFAULT_BUDGET,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.budget = budget
        self._read_snapshot = read_snapshot
        self._read_version = read_version
        self._submit_ack = submit_ack
        self._owns = owns
        self.ping_interval = ping_interval
        self.client_timeout = client_timeout
        #: Open connections by restaurant ID.
        self._by_restaurant: dict[str, set[Connection]] = defaultdict(set)
        #: The last snapshot built per connected restaurant, with the version it was built at: every tablet
        #: reconnecting at the same version (a storm after a deploy) shares one build.
        self._snapshots: dict[str, tuple[Hashable | None, Snapshot]] = {}

    # -- registry -------------------------------------------------------------------

    def attach(self, connection: Connection) -> None:
        """Register a connection and queue its snapshot, atomically with respect to publish()."""
        snapshot = self._snapshot(connection.restaurant_id)
        self._by_restaurant[connection.restaurant_id].add(connection)
        metrics.connections(protocol=connection.protocol).inc()
        # Not counted as a requested snapshot: a client may ask for one right after connecting.
        connection.offer(snapshot)

    def detach(self, connection: Connection) -> None:
        connections = self._by_restaurant.get(connection.restaurant_id)
        if connections is None or connection not in connections:
            return
        connections.discard(connection)
        metrics.connections(protocol=connection.protocol).dec()
        if not connections:
            del self._by_restaurant[connection.restaurant_id]
            self._snapshots.pop(connection.restaurant_id, None)

    def connections(self, restaurant_id: str | None = None) -> list[Connection]:
        if restaurant_id is not None:
            return list(self._by_restaurant.get(restaurant_id, ()))
        return [c for group in self._by_restaurant.values() for c in group]

    def count(self, restaurant_id: str) -> int:
        """Open tablets of the restaurant connected here, directly or relayed by another worker.

        A closing or closed tablet stays registered until its handler ends (which can take a while, e.g. behind
        an acknowledgement waiting for the broker); the announcer must not count it as watching the orders.
        """
        return sum(1 for connection in self._by_restaurant.get(restaurant_id, ()) if connection.is_open)

    def restaurants(self) -> list[str]:
        return list(self._by_restaurant)

    def _snapshot(self, restaurant_id: str) -> Snapshot:
        """The restaurant's current snapshot, rebuilt only when its state's version moved.

        A tablet reconnecting at the cached version costs one key read instead of reading and decoding every
        order (a reconnect storm is mostly that); a state without a version is read whole.
        """
        version = self._read_version(restaurant_id)
        cached = self._snapshots.get(restaurant_id)
        if cached is not None and version is not None and cached[0] == version:
            return cached[1]
        snapshot = snapshot_message(self._read_snapshot(restaurant_id))
        self._snapshots[restaurant_id] = (version, snapshot)
        return snapshot

    # -- stream side ----------------------------------------------------------------

    def publish(self, restaurant_id: str, change: Change) -> None:
        """Hand a change to the restaurant's local tablets; never awaits (called from the agent)."""
        connections = self._by_restaurant.get(restaurant_id)
        if not connections:
            return
        push = Push(name=change_name(change), seq=change.seq, data=change_payload(change))
        delivered = 0
        for connection in list(connections):
            if connection.offer(push):
                delivered += 1
        metrics.pushes(name=push.name).inc(delivered)

    def disconnect_all(self, reason: Disconnect) -> int:
        """Close every tablet with ``reason`` (a reconnect code), without waiting for them to go."""
        connections = self.connections()
        for connection in connections:
            connection.disconnect(reason)
        return len(connections)

    def disconnect_not_owned(self, reason: Disconnect = NOT_OWNER) -> int:
        """Close tablets of restaurants this worker no longer owns (after a rebalance)."""
        closed = 0
        for restaurant_id in list(self._by_restaurant):
            if not self._owns(restaurant_id):
                for connection in self.connections(restaurant_id):
                    connection.disconnect(reason)
                    closed += 1
        if closed:
            log.info("closed %d tablet connection(s) of restaurants that moved to another worker", closed)
        return closed

    # -- client side ----------------------------------------------------------------

    async def handle(self, connection: Connection, message: Inbound) -> None:
        """React to one decoded client message."""
        try:
            await self._react(connection, message)
        except StorageUnavailable:
            # No snapshot can be trusted until the store takes writes again: the tablet reconnects (503s
            # meanwhile) and gets a whole snapshot then; pushes of held events follow that.
            connection.disconnect(UNAVAILABLE)

    async def _react(self, connection: Connection, message: Inbound) -> None:
        match message:
            case ClientPing() | ClientClosed():
                return  # free: a ping only proves the client is alive; the reader ends on close
            case _ if not self._within_budget(connection):
                assert connection.request_budget is not None
                self._refuse(connection, message, "requests", over_budget("requests", connection.request_budget))
            case SnapshotRequested(reply_to=reply_to):
                self._send_snapshot(connection, reply_to)
            case Resume(seq=seq):
                if seq != self._snapshot(connection.restaurant_id).seq:
                    self._send_snapshot(connection, None)
            case Acknowledge(order_id=order_id, reply_to=reply_to):
                await self._acknowledge(connection, order_id, reply_to)
            case InvalidInvocation(reply_to=reply_to, error=error):
                if reply_to is not None:
                    connection.offer(Reply(reply_to, error=error))

    def _send_snapshot(self, connection: Connection, reply_to: str | None) -> None:
        """Queue the restaurant's snapshot, unless one is already queued for this socket (then refuse a reply)."""
        if connection.snapshot_queued:
            # What is queued is as good (every later change is queued behind it); only say so if asked.
            self._refuse(connection, SnapshotRequested(reply_to), "snapshot_queued", SNAPSHOT_QUEUED)
            return
        snapshot = self._snapshot(connection.restaurant_id)
        connection.offer_snapshot(snapshot if reply_to is None else Reply(reply_to, result=snapshot_reply(snapshot)))

    async def _acknowledge(self, connection: Connection, order_id: str, reply_to: str | None) -> None:
        if connection.last_ack is not None and connection.last_ack[0] == order_id:
            # A repeat (a client retrying a reply it missed): already on its way to the table, no second write.
            if reply_to is not None:
                connection.offer(Reply(reply_to, result=None))
            return
        if connection.ack_budget is None:
            connection.ack_budget = TokenBucket(self.budget.acknowledgements)
        if not connection.ack_budget.take():
            reason = over_budget("acknowledgements", connection.ack_budget)
            self._refuse(connection, Acknowledge(order_id, reply_to), "acknowledgements", reason)
            return
        try:
            await self._submit_ack(connection.restaurant_id, order_id)
        except Exception:  # the broker is unreachable: tell the tablet, keep the socket
            log.exception("could not record acknowledgement of %s for %r", order_id, connection)
            if reply_to is not None:
                connection.offer(Reply(reply_to, error="acknowledgement not recorded; retry"))
            return
        connection.last_ack = (order_id, time.time())
        if reply_to is not None:
            connection.offer(Reply(reply_to, result=None))

    def _within_budget(self, connection: Connection) -> bool:
        if connection.request_budget is None:
            connection.request_budget = TokenBucket(self.budget.requests)
        return connection.request_budget.take()

    def _refuse(self, connection: Connection, message: Inbound, reason_label: str, error: str) -> None:
        """Answer a refused request with an error if it asked for an answer; count it either way.

        Refusals have a budget too (a frame's worth at once): a client that keeps going past its
        budget would otherwise fill its own outbound queue with error replies. It is disconnected
        with a reconnect code instead, and comes back after its back-off.
        """
        metrics.refused_requests(reason=reason_label).inc()
        if connection.refusal_budget is None:
            connection.refusal_budget = TokenBucket(self.budget.refusals)
        if not connection.refusal_budget.take():
            log.info("%r: disconnected, it kept sending requests over its budget", connection)
            connection.disconnect(TOO_MANY_REQUESTS)
            return
        reply_to = getattr(message, "reply_to", None)
        if reply_to is not None:
            connection.offer(Reply(reply_to, error=error))

    # -- keep-alive and shutdown ----------------------------------------------------------

    @mode.Service.task
    async def _keepalive(self) -> None:
        """Ping tablets (SignalR clients time out after 30 s of silence) and drop silent ones.

        One round per ``ping_interval``, in :data:`PING_SLICES` slices: pinging 5,000 tablets in one
        pass stalled pushes for ~0.8 s. A tablet that was sent anything during the last interval needs
        no ping (any message resets the client's timer). Tablets that connect during a round are
        covered by the next one, well inside the client's timeout.
        """
        slice_seconds = self.ping_interval / PING_SLICES
        while not self.should_stop:
            connections = self.connections()
            for index in range(PING_SLICES):
                await self.sleep(slice_seconds)
                if self.should_stop:
                    return
                self._ping(connections[index::PING_SLICES], time.monotonic(), only_idle=True)

    def ping_all(self, now: float | None = None) -> None:
        """Ping every tablet now (and drop the silent ones), whatever was sent to them lately."""
        self._ping(self.connections(), time.monotonic() if now is None else now, only_idle=False)

    def _ping(self, connections: Iterable[Connection], now: float, *, only_idle: bool) -> None:
        for connection in connections:
            if not connection.is_open:
                continue
            if now - connection.last_received > self.client_timeout:
                connection.disconnect(CLIENT_TIMEOUT)
            elif not only_idle or now - connection.last_sent >= self.ping_interval:
                connection.offer(ServerPing())

    async def close_all(self, reason: Disconnect = SHUTDOWN, timeout: float = 5.0) -> None:
        """Tell every tablet to reconnect elsewhere; without this a stop waits for clients to leave."""
        connections = self.connections()
        self.disconnect_all(reason)
        await _wait_all((c.wait_closed() for c in connections), timeout)

    async def on_stop(self) -> None:
        await self.close_all()


async def _wait_all(waiters: Iterable[Awaitable[None]], timeout: float) -> None:
    tasks = [asyncio.ensure_future(w) for w in waiters]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
