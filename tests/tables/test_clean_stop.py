"""A worker keeps its local stores across a restart only if its last run stopped with every changelog record
delivered (tables/clean_stop.py). The crash it guards against runs for real in tests/integration/test_zombie.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from partner_stream_tables.clean_stop import (
    TableDirectoryInUse,
    forget_unless_stopped_clean,
    hold_table_directory,
    local_stores,
    mark_stopped_clean,
    marker_path,
)


def make_stores(tabledir: Path, *names: str) -> None:
    for name in names:
        (tabledir / name).mkdir()
        (tabledir / name / "CURRENT").write_text("MANIFEST-000001\n")


def test_only_the_tables_partition_stores_count(tmp_path: Path) -> None:
    make_stores(tmp_path, "pending-orders-0.db", "pending-orders-11.db", "pending-orders-backups", "other-0.db")
    assert [p.name for p in local_stores(tmp_path, "pending-orders")] == ["pending-orders-0.db", "pending-orders-11.db"]


def test_a_start_after_a_crash_removes_the_stores_and_nothing_else(tmp_path: Path) -> None:
    make_stores(tmp_path, "pending-orders-0.db", "pending-orders-1.db", "pending-orders-backups", "other-0.db")
    removed = forget_unless_stopped_clean(tmp_path, "pending-orders")
    assert [p.name for p in removed] == ["pending-orders-0.db", "pending-orders-1.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-0.db", "pending-orders-backups"]


def test_a_start_after_a_clean_stop_keeps_the_stores_and_takes_the_marker(tmp_path: Path) -> None:
    make_stores(tmp_path, "pending-orders-0.db")
    mark_stopped_clean(tmp_path, "pending-orders")
    assert forget_unless_stopped_clean(tmp_path, "pending-orders") == []
    assert (tmp_path / "pending-orders-0.db" / "CURRENT").exists()
    assert not marker_path(tmp_path, "pending-orders").exists()  # this run must earn its own
    assert [p.name for p in forget_unless_stopped_clean(tmp_path, "pending-orders")] == ["pending-orders-0.db"]


def test_a_first_start_has_nothing_to_remove(tmp_path: Path) -> None:
    assert forget_unless_stopped_clean(tmp_path, "pending-orders") == []


async def test_a_second_process_on_the_same_data_dir_waits_and_then_is_refused(tmp_path: Path) -> None:
    """Removing stores another worker has open would break it: the directory is one process's at a time."""
    first = await hold_table_directory(tmp_path, "pending-orders")
    with pytest.raises(TableDirectoryInUse, match="each worker needs its own"):
        await hold_table_directory(tmp_path, "pending-orders", wait=0.6)
    os.close(first)  # the first worker exited (the kernel lets go of the lock, SIGKILL included)
    second = await hold_table_directory(tmp_path, "pending-orders", wait=0.6)
    os.close(second)
