"""The stream's background work and its reactions to the group: every ``@app.task``, timer and signal of the stream.

- start: track the table's topics in the producer's metadata; tune the garbage collector once ready;
- every 30 s: the data dir's free space; every 0.5 s: heartbeats, for the fence; every 0.25 s: the
  announcements that are due (partner_stream/announcer.py);
- on assignment: re-read partition counts, watch the new partitions' orders; on revoke after a fence:
  rebuild the local state from the changelog; after a fence that no rebalance followed: ask for one.

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
import os
import time
from collections.abc import Awaitable
from typing import Any

from faust.exceptions import ConsumerNotStarted

from . import agents, event_loop, metrics, routing
from .announcements import OrderSeen, OrderUnseen
from .announcer import Announcer, Ports
from .app import app, order_seen_topic, order_unseen_topic, pending_orders, settings
from .faust_patches import aiokafka_consumer
from .faust_patches.heartbeat import record_heartbeats, request_rejoin
from .faust_patches.producer import drop_changelog_while_held
from .readiness import not_ready_reason, owns_partition
from .unseen import TICK_SECONDS, UnseenSchedule

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
    if app.fence.stuck(settings.fence_restart_after):
        await restart_when_stuck_fenced()
    drop_changelog_while_held(
        app.producer,
        topics=lambda: pending_orders.changelog_topic.topics,
        held=changelog_held,
        dropped=report_dropped_records,
    )


def changelog_held() -> bool:
    """Asked by the producer before each drain. The fence is checked here too, not only every 0.5 s: a worker
    thawed after a freeze (SIGSTOP, a suspended VM) fences itself before its sender flushes what it buffered."""
    app.fence.check()
    return app.fence.writes_held


def report_dropped_records(count: int) -> None:
    metrics.CHANGELOG_RECORDS_DROPPED.inc(count)
    log.warning(
        "fenced: dropped %d changelog record(s) buffered before the fence instead of sending them after the new "
        "owner's; their events are read again from the last committed offset",
        count,
    )


def rejoin_unless_a_rebalance_followed() -> None:
    """Heartbeats succeed again and the group never dropped this worker: no rebalance will come by itself, but
    the worker must still rebuild its table and read its uncommitted events again, which a rebalance does."""
    if app.fence.local_state_suspect:
        log.warning("heartbeats succeed again without a rebalance: rejoining to rebuild the table after the fence")
        request_rejoin(app.consumer)


app.fence.on_unfenced.append(rejoin_unless_a_rebalance_followed)


async def restart_when_stuck_fenced() -> None:
    """Exit with code 1 after emptying the local store, so the restart rebuilds the table from the changelog.

    A restarted process no longer knows it was fenced, and Faust would resume each partition from the offset it
    persisted, which a cut-off worker's late flush can have moved past the new owner's records; its store also
    holds writes whose changelog records it dropped. The exit is immediate, as after a SIGKILL (which the design
    survives): a graceful stop would wait a minute on the broker it cannot reach (flush, commit, leave the
    group), and its tablets were closed when it fenced itself.
    """
    wiped = pending_orders.wipe_local_store()
    message = (
        f"FENCED FOR MORE THAN {settings.fence_restart_after:.0f} s: this worker has not rejoined its group. It "
        f"emptied {wiped} local partition store(s) and exits with code 1; restart it (its supervisor does) and it "
        "rebuilds its table from the changelog."
    )
    log.error(message)
    logging.shutdown()
    os._exit(1)


@app.on_partitions_revoked.connect
async def rebuild_local_state_after_a_fence(sender: object, revoked: object, **kwargs: object) -> None:
    """A worker that fenced itself rebuilds its table from the changelog alone when it rejoins.

    Its local store holds writes whose changelog records it dropped, and our own stale writes; Faust would
    resume each partition from the offset it persisted, which can lie past records the new owner wrote
    meanwhile. Emptied, the store is rebuilt from the whole changelog (newest stamp winning), and the events
    left uncommitted are read again. Runs at the end of the revoke, after Faust's flush and before it reads the
    persisted offsets or closes a partition's database.
    """
    if not app.fence.local_state_suspect:
        return
    app.fence.local_state_suspect = False
    wiped = pending_orders.wipe_local_store()
    recovery = app.tables.recovery
    recovery.active_offsets.clear()
    recovery.standby_offsets.clear()
    log.warning("after being fenced: rebuilding %d local partition store(s) from the whole changelog", wiped)


@app.on_rebalance_complete.connect
async def write_again_once_rebuilt(sender: object, **kwargs: object) -> None:
    """The rebalance that followed the fence has rebuilt the table from the changelog: release the writes.

    Here, not later: Faust resumes the partitions right after this signal, and an event read while writes are
    still held would be skipped, then committed with the next offset (seen: a backlog of the rejoin, gone).
    """
    if app.fence.writes_held and not app.fence.fenced and not app.fence.local_state_suspect:
        app.fence.release_writes()
        log.warning("the table was rebuilt after the fence: applying events and committing offsets again")


@app.task
async def track_table_topics() -> None:
    """Make the producer keep the metadata of the topics restaurant IDs are hashed against (routing.py)."""
    await routing.learn_table_partitions()


@app.on_partitions_assigned.connect
async def reread_partition_counts(sender: object, assigned: object, **kwargs: object) -> None:
    """A new assignment may follow a resized topic."""
    routing.forget_partition_counts()


# -- did the kitchen see it: the announcer (partner_stream/announcer.py) -----------------------------------


async def publish_announcement(announcement: OrderSeen | OrderUnseen) -> Awaitable[Any]:
    topic = order_seen_topic if isinstance(announcement, OrderSeen) else order_unseen_topic
    return await topic.send(key=announcement.restaurant_id, value=announcement.to_bytes())


def no_tablets(restaurant_id: str) -> int:
    return 0


announcer = Announcer(
    UnseenSchedule(settings.unseen_thresholds, settings.unseen_arrival_grace),
    Ports(
        read_order=pending_orders.order,
        pending_orders=lambda: pending_orders.pending_orders(owned=owns_partition),
        owns=owns_partition,
        ready=lambda: not_ready_reason() is None,
        backlog=lambda: sum(lag for _, lag in metrics.stream_lags(app)),
        count_tablets=no_tablets,  # the stream alone has none; the composition root binds the hub's count
        publish=publish_announcement,
        record=agents.record_announcement,
    ),
)
agents.outcome_listeners.append(lambda event, outcome: announcer.on_outcome(event, outcome, time.time()))


@app.on_partitions_assigned.connect
async def watch_assigned_orders(sender: object, assigned: object, **kwargs: object) -> None:
    """A new assignment: the reminders start again from the table once its partitions are recovered."""
    announcer.handed_partitions(time.time())


@app.timer(interval=TICK_SECONDS)
async def announce_orders() -> None:
    """Publish the OrderSeen / OrderUnseen that are due. A tick with nothing due reads nothing."""
    try:
        await announcer.tick(time.time())
    except Exception:  # a timer that raises crashes the worker: announcements are never worth that
        log.exception("the announcer failed a round; its reminders stay and are tried again")
