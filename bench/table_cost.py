"""CPU per event for the table step alone: read the records an event touches, apply it, write the outcome.

A restaurant's state is a head and one record per order (tables/keys.py), so what an event reads and writes
should not depend on how many orders it holds or how many resolutions it remembers. This measures that,
on a real RocksDB database (rocksdict, as the worker's store) in the bench process: no broker, no Faust.
Each measured step is an OrderCreated and the OrderAccepted of the same order, so the restaurant's history
stays the size it was built with.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rocksdict import Options, Rdict

from partner_stream.events import OrderAccepted, OrderCreated
from partner_stream_tables.memory import MemoryTable
from partner_stream_tables.model import encode_record
from partner_stream_tables.transitions import apply_event

RESOLVED_MEMORY = 500


def _created(order_id: str, minute: int) -> OrderCreated:
    return OrderCreated.model_validate(
        {
            "OrderId": order_id,
            "RestaurantId": "r1",
            "CustomerName": "Ana María Fernández",
            "Items": [{"Name": "Pad Thai", "Quantity": 2, "UnitPrice": 9.5, "Notes": "no peanuts"}],
            "TotalPrice": 19.0,
            "CreatedAt": (datetime(2026, 11, 26, tzinfo=UTC) + timedelta(minutes=minute)).isoformat(),
        }
    )


def _accepted(order_id: str) -> OrderAccepted:
    return OrderAccepted.model_validate({"OrderId": order_id, "RestaurantId": "r1"})


def _step(table: MemoryTable, event: Any) -> tuple[int, int]:
    """What the agent does per event; returns (records written or deleted, bytes written)."""
    outcome = apply_event(table, event, resolved_memory=RESOLVED_MEMORY)
    table.write(outcome)
    return len(outcome.writes) + len(outcome.deletes), sum(len(encode_record(r)) for _, r in outcome.writes)


def restaurant_with_history(table: MemoryTable, pending: int, resolved: int) -> None:
    """``resolved`` remembered resolutions (GUID-sized ids), then ``pending`` open orders."""
    for i in range(resolved):
        _step(table, _accepted(f"{i:08d}-0b7e-4f2a-9c3d-5e6f7a8b9c0d"))
    for i in range(pending):
        _step(table, _created(f"open-{i:05d}-4f2a-9c3d-5e6f7a8b9c0d", i))


#: New order IDs for every measured step, never reused (a reused ID would be a no-op duplicate).
_new_ids = itertools.count()


def _measure(table: MemoryTable, budget_s: float) -> dict[str, float]:
    events = records = written = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < budget_s or events < 10:
        order_id = f"new-{next(_new_ids):08d}"
        for event in (_created(order_id, 10_000 + events), _accepted(order_id)):
            count, size = _step(table, event)
            records += count
            written += size
            events += 1
    return {
        "per_event_us": elapsed / events * 1e6,
        "records_per_event": records / events,
        "bytes_per_event": written / events,
    }


#: Each history is measured in this many slices, interleaved with the other histories, and the median slice
#: kept: other processes on a shared box then slow every history alike instead of whichever ran last.
SLICES = 9


def table_cost_run(history: list[tuple[int, int]], rep: int, budget_s: float = 0.5) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        tables = []
        for pending, resolved in history:
            path = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-table-"))
            db = Rdict(path, options=Options(raw_mode=True))
            stack.callback(db.close)
            table = MemoryTable(db)
            restaurant_with_history(table, pending, resolved)
            _measure(table, budget_s / SLICES)  # warm-up: imports, caches, RocksDB's memtable
            tables.append(table)
        slices: list[list[dict[str, float]]] = [[] for _ in tables]
        for _ in range(SLICES):
            for n, table in enumerate(tables):
                slices[n].append(_measure(table, budget_s / SLICES))
        rows = []
        for (pending, resolved), table, measured in zip(history, tables, slices, strict=True):
            median = _median(measured)
            rows.append(
                {
                    "pending": pending,
                    "resolved": resolved,
                    "snapshot_orders": len(table.state_of("r1").pending),
                    **median,
                }
            )
    base = rows[0]["per_event_us"]
    for row in rows:
        row["vs_empty"] = row["per_event_us"] / base
    return {"rep": rep, "slices": SLICES, "rows": rows}


def _median(measured: list[dict[str, float]]) -> dict[str, float]:
    """The slice with the median cost per event."""
    return sorted(measured, key=lambda m: m["per_event_us"])[len(measured) // 2]
