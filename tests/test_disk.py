"""The data dir's free-space watch: one warning per low-space episode, a gauge at every scrape."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from partner_stream import disk


def test_low_space_warns_once_per_episode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    free = {"bytes": 100 * 2**20}
    monkeypatch.setattr(disk, "free_bytes", lambda path: free["bytes"])
    watch = disk.FreeSpaceWatch(lambda: tmp_path / "not-created-yet", low_free_mb=512)
    with caplog.at_level(logging.INFO, logger="partner_stream.disk"):
        assert watch.check() and watch.check()
        free["bytes"] = 600 * 2**20
        assert not watch.check()
        free["bytes"] = 10 * 2**20
        assert watch.check()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "LOW DISK SPACE: 100.0 MiB free" in warnings[0]
    assert str(tmp_path) in warnings[0]
    assert REGISTRY.get_sample_value("partner_stream_data_dir_free_bytes") == 10 * 2**20


def test_free_space_of_a_data_dir_not_created_yet_is_its_filesystems(tmp_path: Path) -> None:
    assert disk.free_bytes(tmp_path / "a" / "b") == disk.free_bytes(tmp_path) > 0
