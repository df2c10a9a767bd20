"""Whether a worker may keep its local table store when it starts: only if its last run stopped clean.

A write reaches the partition's RocksDB in the step that applies the event; its changelog records reach the
broker a few milliseconds later (tables/changelog.py). A worker killed in between (SIGKILL, the OOM killer, a
crash) starts again from its data dir holding changes its changelog lacks. Their events were not committed
(Faust flushes the producer before every commit), so the worker reads them again, but they change nothing now:
the store holds them already, so nothing writes them to the changelog. The next worker to build the partition
from the changelog (a failover, a standby replica, a new machine) would miss those orders for good.

So a worker that stops with every changelog record it produced delivered leaves a marker beside its stores, and
a worker that starts without finding one removes the stores before any of them opens: Faust rebuilds them from
the changelog, and the events read again write their changes to it. The marker is removed as the worker starts,
so a run that never reaches a clean stop leaves none. The cost of a crash is one rebuild from the changelog,
what a worker on a new machine pays anyway.

Removing stores is only safe while no other process uses them, so a worker first takes the table directory for
itself (:func:`hold_table_directory`: an ``flock`` the kernel releases when the process exits, SIGKILL
included). Before this, a second worker on the same data dir waited on RocksDB's own lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".stopped-clean"
LOCK_SUFFIX = ".lock"
#: How long a starting worker waits for another process to let go of the data dir (a rolling restart).
LOCK_WAIT_SECONDS = 120.0


class TableDirectoryInUse(RuntimeError):
    """Another process kept the table directory past the wait: two workers must never share a data dir."""


def marker_path(tabledir: Path, table: str) -> Path:
    return tabledir / f"{table}{MARKER_SUFFIX}"


def local_stores(tabledir: Path, table: str) -> list[Path]:
    """The table's RocksDB directories (one per partition, active or standby: Faust names them ``<table>-<n>.db``)."""
    return sorted(path for path in tabledir.glob(f"{table}-*.db") if path.name[len(table) + 1 : -3].isdigit())


async def hold_table_directory(tabledir: Path, table: str, *, wait: float = LOCK_WAIT_SECONDS) -> int:
    """Take the table directory for this process alone and return the descriptor that holds it (keep it open).

    Waits up to ``wait`` seconds for a process that still has it (the worker being replaced is still stopping).
    """
    path = tabledir / f"{table}{LOCK_SUFFIX}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise TableDirectoryInUse(
                    f"another process holds {path} (a worker on the same data dir?): each worker needs its own"
                ) from None
            if not told:
                log.warning("waiting for another process to let go of %s (a worker on the same data dir?)", path)
                told = True
            await asyncio.sleep(0.5)  # the other process is stopping: poll, never block the loop


def forget_unless_stopped_clean(tabledir: Path, table: str) -> list[Path]:
    """At start, before any store opens: keep the stores if the last run stopped clean, else remove them.

    Returns the stores removed. Either way no marker is left: this run has to earn its own.
    """
    marker = marker_path(tabledir, table)
    if marker.exists():
        marker.unlink()
        _sync_directory(tabledir)
        return []
    stores = local_stores(tabledir, table)
    for store in stores:
        shutil.rmtree(store)
    if stores:
        _sync_directory(tabledir)
    return stores


def mark_stopped_clean(tabledir: Path, table: str) -> None:
    """Leave the marker, durably (raises OSError if it cannot be written: the next start then rebuilds)."""
    marker = marker_path(tabledir, table)
    with open(marker, "wb") as file:
        file.write(b"every changelog record of this store was delivered when the worker stopped\n")
        file.flush()
        os.fsync(file.fileno())
    _sync_directory(tabledir)


def _sync_directory(path: Path) -> None:
    """Make a file's creation or removal in ``path`` survive a power loss, not only a killed process."""
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened for fsync
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
