"""The agents' promise, without a broker: every record is applied, dead-lettered or held, never dropped.

The real-worker versions of these (one per poison class) are in tests/integration/test_poison.py; here a
failing transition and a store that refuses writes are injected, which a real worker cannot be made to do.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from partner_stream import agents
from partner_stream.events import OrderAccepted, OrderCreated, encode_internal
from partner_stream_tables.memory import MemoryTable
from partner_stream_tables.storage import StorageWriteFailed
from partner_stream_tables.transitions import Change, Outcome
from tests.support.hostile import valid_created


@dataclass
class Message:
    value: bytes | None
    key: bytes | None = b"42"
    topic: str = "partner-stream-orders-by-restaurant"
    partition: int = 3
    offset: int = 17
    timestamp: float | None = 1_764_000_000.0
    generation_id: int = 7


@dataclass
class Event:
    message: Message


@dataclass
class DeadLetters:
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, **record: Any) -> None:
        self.sent.append(record)


@pytest.fixture
def dead_letters(monkeypatch: pytest.MonkeyPatch) -> DeadLetters:
    sink = DeadLetters()
    monkeypatch.setattr(agents, "dead_letter_topic", sink)
    return sink


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Change]]:
    changes: list[tuple[str, Change]] = []
    monkeypatch.setattr(agents, "change_listeners", [lambda r, c: changes.append((r, c))])
    return changes


def internal_created(order: str = "o1") -> Event:
    event = OrderCreated.model_validate({**valid_created("42", order), "CreatedAt": "2026-12-04T18:00:00Z"})
    return Event(Message(value=encode_internal(event)))


def poison_count(exception: str) -> float:
    return REGISTRY.get_sample_value("partner_stream_poison_events_total", {"exception": exception}) or 0.0


async def test_an_event_whose_transition_raises_is_dead_lettered_and_the_next_one_applied(
    monkeypatch: pytest.MonkeyPatch, dead_letters: DeadLetters, published: list[tuple[str, Change]]
) -> None:
    table = MemoryTable()
    monkeypatch.setattr(agents, "pending_orders", table)
    real_apply = agents.apply_event

    def apply_or_explode(records: Any, event: Any, **kw: Any) -> Outcome:
        if event.order_id == "poison":
            raise ZeroDivisionError("a bug in a transition")
        return real_apply(records, event, **kw)

    monkeypatch.setattr(agents, "apply_event", apply_or_explode)
    before = poison_count("ZeroDivisionError")

    await agents.handle_internal(internal_created("poison"))
    await agents.handle_internal(internal_created("good"))

    (letter,) = dead_letters.sent
    headers = dict(letter["headers"])
    assert headers["x-exception-class"] == b"ZeroDivisionError"
    assert headers["x-dead-letter-reason"] == b"could not apply: ZeroDivisionError: a bug in a transition"
    assert letter["value"] == internal_created("poison").message.value
    assert poison_count("ZeroDivisionError") == before + 1
    assert [o.order_id for o in table.state_of("42").pending] == ["good"]
    assert [c.order.order_id for _, c in published] == ["good"]


async def test_an_undecodable_internal_record_is_dead_lettered_with_its_reason(dead_letters: DeadLetters) -> None:
    await agents.handle_internal(Event(Message(value=orjson.dumps({"kind": "OrderCreated", "event": {}}))))
    (letter,) = dead_letters.sent
    assert dict(letter["headers"])["x-dead-letter-reason"].startswith(b"invalid internal event")


class RefusingTable(MemoryTable):
    """A store that refuses the first ``failures`` writes, as RocksDB does while the disk is full."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.storage_failure: str | None = None

    def write(self, outcome: Outcome, generation: int = 0, partition: int = 0, source: object = None) -> None:
        if self.failures:
            self.failures -= 1
            self.storage_failure = "IO error: No space left on device"
            raise StorageWriteFailed(self.storage_failure)
        self.storage_failure = None
        super().write(outcome, generation, partition, source)


async def test_a_store_that_refuses_writes_holds_the_event_until_it_is_written(
    monkeypatch: pytest.MonkeyPatch,
    dead_letters: DeadLetters,
    published: list[tuple[str, Change]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = RefusingTable(failures=3)
    monkeypatch.setattr(agents, "pending_orders", table)
    monkeypatch.setattr(agents, "STORE_RETRY_FIRST", 0.01)

    await agents.handle_internal(internal_created("o1"))

    assert dead_letters.sent == []  # held and retried, not dead-lettered
    assert [o.order_id for o in table.state_of("42").pending] == ["o1"]
    assert [c.order.order_id for _, c in published] == ["o1"]  # pushed once, after it was stored
    assert "STORAGE WRITE FAILED" in caplog.text
    assert REGISTRY.get_sample_value("partner_stream_storage_write_failing") == 0


async def test_while_one_agent_holds_a_refused_event_the_other_waits_and_applies_after_it(
    monkeypatch: pytest.MonkeyPatch, dead_letters: DeadLetters, published: list[tuple[str, Change]]
) -> None:
    """Two agents write one store: the later event must see the held one's records, never be overwritten."""
    table = RefusingTable(failures=2)
    monkeypatch.setattr(agents, "pending_orders", table)
    monkeypatch.setattr(agents, "STORE_RETRY_FIRST", 0.01)
    accept = OrderAccepted.model_validate({"OrderId": "o1", "RestaurantId": "42"})

    holding = asyncio.ensure_future(agents.handle_internal(internal_created("o1")))
    await asyncio.sleep(0)  # the create is refused and held
    await agents.handle_internal(Event(Message(value=encode_internal(accept))))
    await holding

    assert table.state_of("42").pending == () and table.state_of("42").seq == 2
    assert [type(c).__name__ for _, c in published] == ["OrderAdded", "OrderResolved"]


class RereadingTable(MemoryTable):
    """Records where writes came from and what was asked to be sent again; pretends two records went out."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[object] = []
        self.resends: list[tuple[str, str, int, object]] = []
        self.handed_over = 0

    def write(self, outcome: Outcome, generation: int = 0, partition: int = 0, source: object = None) -> None:
        self.sources.append(source)
        super().write(outcome, generation, partition, source)

    def resend_if_read_again(self, restaurant_id: str, order_id: str, partition: int, source: object) -> int:
        self.resends.append((restaurant_id, order_id, partition, source))
        return 2

    async def send_written(self) -> None:
        self.handed_over += 1


async def test_an_event_that_changes_nothing_asks_the_table_to_send_its_records_again_before_it_is_done(
    monkeypatch: pytest.MonkeyPatch, dead_letters: DeadLetters, published: list[tuple[str, Change]]
) -> None:
    """The agent's half of tables/storage.py ``resend_if_read_again``: the event's place goes with every write,
    and an event that changed nothing hands what the table queued to the producer before it is acknowledged."""
    table = RereadingTable()
    monkeypatch.setattr(agents, "pending_orders", table)
    place = ("partner-stream-orders-by-restaurant", 3, 17)
    resent = REGISTRY.get_sample_value("partner_stream_changelog_records_resent_total") or 0.0

    await agents.handle_internal(internal_created("o1"))
    assert table.sources == [place] and table.resends == [] and table.handed_over == 1

    await agents.handle_internal(internal_created("o1"))  # read again: changes nothing
    assert table.sources == [place] and table.resends == [("42", "o1", 3, place)] and table.handed_over == 2
    assert REGISTRY.get_sample_value("partner_stream_changelog_records_resent_total") == resent + 2
    assert len(published) == 1 and dead_letters.sent == []


class ClosedPartitionTable(MemoryTable):
    """A partition whose database is still closed after a full disk while the store as a whole takes writes
    again (another partition's write cleared ``storage_failure``): its first reads refuse, as
    tables/storage.py ``_ClosedPartition`` does, until it is reopened."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = True

    def raw(self, key: str) -> bytes | None:
        if self.closed:
            raise StorageWriteFailed("partition store closed after a failed write: No space left on device")
        return super().raw(key)

    def reopen(self, partition: int) -> None:
        self.closed = False


async def test_an_event_on_a_partition_still_closed_after_a_full_disk_is_held_not_dead_lettered(
    monkeypatch: pytest.MonkeyPatch, dead_letters: DeadLetters, published: list[tuple[str, Change]]
) -> None:
    """Reading the event's records fails like the write would: it is the store's fault, not the event's."""
    table = ClosedPartitionTable()
    monkeypatch.setattr(agents, "pending_orders", table)
    monkeypatch.setattr(agents, "STORE_RETRY_FIRST", 0.01)

    await agents.handle_internal(internal_created("o1"))

    assert dead_letters.sent == []
    assert [o.order_id for o in table.state_of("42").pending] == ["o1"]
    assert [c.order.order_id for _, c in published] == ["o1"]
