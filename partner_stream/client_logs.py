"""Rate-limited logs of the Kafka client library.

While a broker connection is refused or reset, aiokafka logs the same few ERROR lines about 76 times a second
(measured on ff17dc6), which buries everything else and fills disks. Each distinct message (its format
string) is let through once per window; the next one after a quiet window says how many were held back.
"""

from __future__ import annotations

import logging
import time

from .faust_patches.producer import DROPPED_TEXT

#: Loggers whose repeats are held back.
LIBRARY_LOGGERS = ("aiokafka", "kafka")
WINDOW_SECONDS = 10.0


class RepeatLimiter(logging.Filter):
    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        super().__init__()
        self.window = window
        #: (logger, format string) -> (window start, records held back in it)
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        started, held = self._seen.get(key, (None, 0))
        if started is not None and now - started < self.window:
            self._seen[key] = (started, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {self.window:.0f} s]"
        self._seen[key] = (now, 0)
        if len(self._seen) > 1000:  # formats are few; this only bounds the unexpected
            self._seen.clear()
        return True


def library_logger_names() -> list[str]:
    """The client library's loggers and every child that exists by now (each aiokafka module logs on its own
    ``__name__``, and a logger's filters do not apply to its children's records). The library is imported with
    the app, before the worker starts, so its modules' loggers exist when this runs."""
    existing = list(logging.root.manager.loggerDict)
    return [
        name
        for name in {*LIBRARY_LOGGERS, *existing}
        if any(name == prefix or name.startswith(prefix + ".") for prefix in LIBRARY_LOGGERS)
    ]


class MuteDroppedRecordWarnings(logging.Filter):
    """Faust warns once per failed record, with its bytes; for the records a fenced worker drops, the worker says
    once how many (partner_stream/runtime.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return DROPPED_TEXT not in str(record.msg)


def limit_library_logs() -> None:
    """Install the limiter on the client library's loggers, and mute Faust's warning per dropped record
    (idempotent)."""
    limiter = RepeatLimiter()
    for name in library_logger_names():
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatLimiter) for f in logger.filters):
            logger.addFilter(limiter)
    topics_logger = logging.getLogger("faust.topics")
    if not any(isinstance(f, MuteDroppedRecordWarnings) for f in topics_logger.filters):
        topics_logger.addFilter(MuteDroppedRecordWarnings())
