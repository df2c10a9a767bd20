"""Free space where the worker keeps its RocksDB state: a gauge, a warning before writes fail, a check at start.

A full disk makes RocksDB refuse writes; the agents then hold the event and retry (:mod:`agents`). This
module is the early warning: ``partner_stream_data_dir_free_bytes`` at every scrape, and one WARNING when free
space falls under ``PARTNER_STREAM_DISK_LOW_FREE_MB`` (again only after it has recovered in between).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Gauge

log = logging.getLogger(__name__)

DATA_DIR_FREE = Gauge(
    "partner_stream_data_dir_free_bytes",
    "Free bytes on the filesystem of the worker's data dir (RocksDB state); 0 when it cannot be read.",
)


def free_bytes(data_dir: Path) -> int:
    """Free space for the data dir, measured at its nearest existing ancestor (it may not exist yet)."""
    path = data_dir.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


class FreeSpaceWatch:
    """Warns once per episode of low free space; ``check`` is cheap (one statvfs)."""

    def __init__(self, data_dir: Callable[[], Path], low_free_mb: int) -> None:
        #: Resolved when asked: Faust settles its data dir (``--datadir``, env) after the app is built.
        self._data_dir = data_dir
        self.low_free_bytes = low_free_mb * 1024 * 1024
        self.low = False
        DATA_DIR_FREE.set_function(lambda: free_bytes(self.data_dir))

    @property
    def data_dir(self) -> Path:
        return self._data_dir()

    def check(self) -> bool:
        """True while free space is low; logs on the way down and on the way back up."""
        free = free_bytes(self.data_dir)
        if free < self.low_free_bytes and not self.low:
            log.warning(
                "LOW DISK SPACE: %.1f MiB free for the data dir %s (warning below %d MiB). When it is full, "
                "event processing pauses until space returns.",
                free / 2**20,
                self.data_dir.resolve(),
                self.low_free_bytes // 2**20,
            )
        elif free >= self.low_free_bytes and self.low:
            log.info("disk space for the data dir %s is back: %.1f MiB free", self.data_dir.resolve(), free / 2**20)
        self.low = free < self.low_free_bytes
        return self.low

    def report_at_start(self) -> None:
        log.info("data dir %s: %.1f MiB free", self.data_dir.resolve(), free_bytes(self.data_dir) / 2**20)
        self.check()
