"""Prometheus metrics of the stream side (the hub adds its own)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from faust.exceptions import ConsumerNotStarted
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from .faust_patches import read_offsets

EVENTS_APPLIED = Counter(
    "partner_stream_events_applied_total",
    "Order events applied to the pending-orders table.",
    ["kind", "changed"],
)
EVENTS_ROUTED = Counter(
    "partner_stream_events_routed_total",
    "Valid upstream events by route: `direct` (already on the restaurant's partition) or `rekeyed`.",
    ["route"],
)
#: Bound once: ``labels()`` takes a lock and validates label values, on every event otherwise.
ROUTED_DIRECT = EVENTS_ROUTED.labels(route="direct")
ROUTED_REKEYED = EVENTS_ROUTED.labels(route="rekeyed")
DEAD_LETTERS = Counter(
    "partner_stream_dead_letters_total",
    "Events sent to the dead-letter topic because they can never be applied.",
    ["source_topic"],
)
POISON_EVENTS = Counter(
    "partner_stream_poison_events_total",
    "Events whose processing raised (dead-lettered with the exception class; the stream moved on).",
    ["exception"],
)
STORAGE_WRITE_FAILING = Gauge(
    "partner_stream_storage_write_failing",
    "1 while the local store (RocksDB in the data dir) refuses writes, e.g. a full disk; processing is paused.",
)
STORAGE_WRITE_FAILURES = Counter(
    "partner_stream_storage_write_failures_total",
    "Table writes the local store refused (each is retried; no event is skipped).",
)
PUSH_LATENCY = Histogram(
    "partner_stream_push_latency_seconds",
    "From the upstream event's Kafka timestamp until the change is handed to this worker's tablets.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ANNOUNCEMENTS = Counter(
    "partner_stream_order_announcements_total",
    "OrderSeen / OrderUnseen published to Kafka (`reason` is empty for OrderSeen).",
    ["announcement", "reason"],
)
ANNOUNCEMENT_FAILURES = Counter(
    "partner_stream_order_announcement_failures_total",
    "OrderSeen / OrderUnseen the broker did not take in time; each is published again after a back-off.",
)
UNSEEN_WATCHED = Gauge(
    "partner_stream_unseen_watched_orders",
    "Reminders this worker holds of orders owed an announcement (OrderSeen, or their next OrderUnseen step).",
)
EVENTS_LEFT_WHILE_FENCED = Counter(
    "partner_stream_events_left_while_fenced_total",
    "Events this worker neither applied nor committed while fenced; they are read again after the rejoin.",
)
CHANGELOG_RECORDS_RESENT = Counter(
    "partner_stream_changelog_records_resent_total",
    "Records sent to the changelog again for an event read again that changed nothing (after a crash, the "
    "changelog may lack what it wrote).",
)
CHANGELOG_RECORDS_DROPPED = Counter(
    "partner_stream_changelog_records_dropped_total",
    "Changelog records a fenced worker had buffered and dropped instead of sending them after the new owner's.",
)
OFFSET_HOLES = Counter(
    "partner_stream_broker_offset_holes_total",
    "Embedded broker only: offsets a fetch skipped because the broker had not stored them yet "
    "(partner_stream/faust_patches/offset_holes.py), by outcome: `waited` (fetched again), `filled` "
    "(then read), `skipped` (never stored; read on after the grace).",
    ["outcome"],
)
OFFSET_HOLES_WAITED = OFFSET_HOLES.labels(outcome="waited")
OFFSET_HOLES_FILLED = OFFSET_HOLES.labels(outcome="filled")
OFFSET_HOLES_SKIPPED = OFFSET_HOLES.labels(outcome="skipped")
REBALANCES = Counter("partner_stream_rebalances_total", "Partition rebalances this worker took part in.")
#: EVENTS_APPLIED's children, bound once per label value: ``labels()`` takes a lock and validates.
events_applied = cache(EVENTS_APPLIED.labels)
poison_events = cache(POISON_EVENTS.labels)
announcements = cache(ANNOUNCEMENTS.labels)


class ConsumerLagCollector:
    """Prometheus collector: per source partition, highwater minus the next offset to read, at scrape time.

    Table changelogs are left out: a worker reads them only to recover or to keep a standby warm, and
    their "lag" would grow with every write this worker makes, so a "lag growing" alarm would fire on a
    healthy worker.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "partner_stream_consumer_lag",
            "Records not yet read, per assigned partition.",
            labels=["topic", "partition"],
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for tp, lag in stream_lags(self.app):
            family.add_metric([tp.topic, str(tp.partition)], lag)
        yield family


def stream_lags(app: Any) -> Iterator[tuple[Any, int]]:
    """Records not yet read of each assigned stream partition (changelogs left out), where the highwater is known."""
    consumer = app.consumer
    offsets = read_offsets(consumer)
    try:
        assignment = sorted(consumer.assignment())
    except ConsumerNotStarted:
        return
    changelogs = app.tables.changelog_topics
    for tp in assignment:
        if tp.topic in changelogs:
            continue
        try:
            highwater = consumer.highwater(tp)
        except (KeyError, AssertionError, ConsumerNotStarted):
            continue
        if highwater is None:
            continue
        read = offsets.get(tp)
        yield tp, max(0, highwater - (read + 1 if read is not None else 0))
