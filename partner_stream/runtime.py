"""The stream's background work and its reactions to the group: every ``@app.task``, timer and signal of the stream.

- start: track the table's topics in the producer's metadata; tune the garbage collector once ready;
- every 30 s: the data dir's free space; every 0.5 s: heartbeats, for the fence; every 0.25 s: orders due
  for an OrderUnseen step (partner_stream/unseen.py);
- on assignment: re-read partition counts, watch the new partitions' orders; on revoke after a fence:
  distrust the local state.

Why the collector is tuned:

With thousands of sockets a worker holds hundreds of thousands of long-lived objects (aiohttp
requests, parsers, tasks, connections), and CPython's full collections rescan all of them: 400-700 ms
stop-the-world pauses were measured with 5,000 tablets, each one a latency spike for every tablet.
So: freeze what exists once startup is done (modules, the app, recovered state) and collect the young
generation less often. Cyclic garbage is still collected, only later.
"""

from __future__ import annotations

import gc
import logging
import time

from faust.exceptions import ConsumerNotStarted

from partner_stream_tables.model import PendingOrder
from partner_stream_tables.transitions import OrderAdded, Outcome, UnseenAnnouncement

from . import agents, event_loop, metrics, routing
from .app import app, pending_orders, settings
from .faust_patches import aiokafka_consumer
from .faust_patches.heartbeat import record_heartbeats
from .readiness import not_ready_reason, owns_partition
from .unseen import TICK_SECONDS, DueStep, UnseenSchedule

log = logging.getLogger(__name__)

#: gen-0 allocations between young collections (CPython: 700), then the usual 10/10 ratios made wider.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    log.info("garbage collector tuned: %d startup objects frozen, thresholds %s", gc.get_freeze_count(), GC_THRESHOLDS)


@app.task
async def tune_after_startup() -> None:
    """Faust runs app tasks once, after recovery: the startup objects exist by then."""
    tune_garbage_collector()
    log.info("event loop: %s", event_loop.loop_name())


@app.timer(interval=30.0)
async def watch_free_space() -> None:
    """Warn before the data dir's disk fills up (a full disk pauses event processing)."""
    if app.free_space is not None:
        app.free_space.check()


@app.timer(interval=0.5)
async def watch_heartbeats() -> None:
    """Fence this worker when it stops hearing from its group coordinator (partner_stream/fencing.py)."""
    app.fence.silence_limit = settings.fence_fraction * float(app.conf.broker_session_timeout)
    try:
        consumer = aiokafka_consumer(app)
    except ConsumerNotStarted:
        return
    record_heartbeats(getattr(consumer, "_coordinator", None), app.fence)
    app.fence.rebalancing(bool(app.rebalancing), float(app.conf.broker_rebalance_timeout))
    app.fence.check()


@app.on_partitions_revoked.connect
async def distrust_local_state_after_a_fence(sender: object, revoked: object, **kwargs: object) -> None:
    """A worker that fenced itself rebuilds its table from the whole changelog when it rejoins.

    Faust would resume each partition from the offset it persisted locally; after a cut that offset can lie
    past records the new owner wrote meanwhile (the late flush of our own buffered records moves it there),
    and the local store holds our own stale writes. Replaying everything, newest stamp winning, gives the true
    state. Runs at the start of the rebalance, before Faust reads the persisted offsets.
    """
    if not app.fence.local_state_suspect:
        return
    app.fence.local_state_suspect = False
    forgotten = pending_orders.forget_persisted_offsets()
    recovery = app.tables.recovery
    recovery.active_offsets.clear()
    recovery.standby_offsets.clear()
    log.warning("after being fenced: replaying the whole changelog into %d local partition store(s)", forgotten)


@app.task
async def track_table_topics() -> None:
    """Make the producer keep the metadata of the topics restaurant IDs are hashed against (routing.py)."""
    await routing.learn_table_partitions()


@app.on_partitions_assigned.connect
async def reread_partition_counts(sender: object, assigned: object, **kwargs: object) -> None:
    """A new assignment may follow a resized topic."""
    routing.forget_partition_counts()


# -- orders no tablet saw: the OrderUnseen watch ------------------------------------------------------

unseen_schedule = UnseenSchedule(settings.unseen_thresholds, settings.unseen_arrival_grace)
#: After a failed send of a due step, try again this much later (seconds).
UNSEEN_RETRY_SECONDS = 1.0


def next_unseen_step(order: PendingOrder, now: float) -> DueStep | None:
    """The order's next OrderUnseen step, given its record and the tablets connected now (None once it was seen)."""
    if order.acknowledged_at is not None:
        return None
    tablets = agents.count_tablets(order.restaurant_id)
    return unseen_schedule.next_step(created_at=order.created_at, announced=order.unseen_step, tablets=tablets, now=now)


def remind_of_next_unseen_step(order: PendingOrder, now: float) -> None:
    due = next_unseen_step(order, now)
    if due is not None:
        unseen_schedule.remind(order.restaurant_id, order.order_id, due.at)


def watch_for_unseen(restaurant_id: str, outcome: Outcome) -> None:
    """The agent wrote an outcome: an order that arrived, or one just announced, gets its next reminder."""
    if isinstance(outcome.change, OrderAdded):
        remind_of_next_unseen_step(outcome.change.order, time.time())
    elif isinstance(outcome.announcement, UnseenAnnouncement):
        remind_of_next_unseen_step(outcome.announcement.order, time.time())


agents.outcome_listeners.append(watch_for_unseen)


@app.on_partitions_assigned.connect
async def watch_assigned_orders(sender: object, assigned: object, **kwargs: object) -> None:
    """A new assignment: the reminders start again from the table once its partitions are recovered."""
    unseen_schedule.handed_partitions(time.time())


@app.timer(interval=TICK_SECONDS)
async def announce_unseen_orders() -> None:
    """Send each order whose OrderUnseen step is due to its partition, to be recorded and announced once.

    Only while this worker may serve its restaurants (recovered, in the group, its store taking writes): the
    records read here must be the true ones. A tick with nothing due reads nothing.
    """
    if not_ready_reason() is not None:
        return
    now = time.time()
    if unseen_schedule.needs_rebuild:
        unseen_schedule.needs_rebuild = False
        for order in pending_orders.pending_orders(owned=owns_partition):
            remind_of_next_unseen_step(order, now)
    for restaurant_id, order_id in unseen_schedule.pop_due(now):
        if not owns_partition(restaurant_id):
            continue
        order = pending_orders.order(restaurant_id, order_id)
        due = next_unseen_step(order, now) if isinstance(order, PendingOrder) else None
        if due is None:  # resolved, seen, or past its last step
            continue
        if due.reason is None:  # not yet: a later step, or tablets may still come back after a handover
            unseen_schedule.remind(restaurant_id, order_id, due.at)
            continue
        try:
            await agents.submit_unseen_due(restaurant_id, order_id, due.step, due.reason)
        except Exception:  # the broker is unreachable: the order stays due
            log.warning("could not send the due OrderUnseen step of %s/%s; retrying", restaurant_id, order_id)
            unseen_schedule.remind(restaurant_id, order_id, now + UNSEEN_RETRY_SECONDS)
    metrics.UNSEEN_WATCHED.set(len(unseen_schedule))
