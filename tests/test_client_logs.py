"""The Kafka client's repeated errors are let through once per window, with a count of what was held back."""

from __future__ import annotations

import logging

import pytest

from partner_stream import client_logs


def test_repeats_are_held_back_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 100.0}
    monkeypatch.setattr(client_logs.time, "monotonic", lambda: clock["now"])
    limiter = client_logs.RepeatLimiter(window=10.0)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, ("node 111",), None)

    unable = "Unable connect to node with id %s"
    assert limiter.filter(record(unable))
    assert not any(limiter.filter(record(unable)) for _ in range(75))
    assert limiter.filter(record("Failed fetch messages from %s"))  # another message is not held back
    clock["now"] = 111.0
    again = record(unable)
    assert limiter.filter(again) and "[75 more like this in the last 10 s]" in again.getMessage()


def test_the_library_modules_own_loggers_are_limited_too(caplog: pytest.LogCaptureFixture) -> None:
    """aiokafka logs on each module's logger (aiokafka.consumer.fetcher, aiokafka.conn, ...): a filter on the
    ``aiokafka`` logger alone never saw those records (a worker cut off from Kafka logged 10 lines a second)."""
    import aiokafka.consumer.fetcher  # noqa: F401  (imported with the app in a worker)

    client_logs.limit_library_logs()
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    with caplog.at_level(logging.ERROR):
        for _ in range(20):
            fetcher.error("Failed fetch messages from %s: %s", 111, "NodeNotReadyError")
    assert len(caplog.records) == 1
