"""On the embedded broker the worker's fetch waits 5 ms while records flow and 50 ms when idle
(partner_stream/faust_patches/fetch_pace.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from partner_stream.app import create_app
from partner_stream.faust_patches.fetch_pace import FetchPace, pace_fetcher
from partner_stream.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """The two methods of aiokafka's Fetcher that the pace wraps: each built request records its wait."""

    def __init__(self) -> None:
        self._fetch_max_wait_ms = 5
        self.requests: list[int] = []
        self.next_response_has_records = False

    def _get_actions_per_node(self, assignment: Any) -> tuple[list[Any], ...]:
        self.requests.append(self._fetch_max_wait_ms)
        return ([], [], 0, False, [])

    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        return self.next_response_has_records


async def fetch_once(fetcher: Fetcher, records: bool) -> int:
    """One request built and its response handled, as aiokafka's fetch routine does; the wait it asked for."""
    fetcher._get_actions_per_node(None)
    fetcher.next_response_has_records = records
    await fetcher._proc_fetch_request(None, 0, None)
    return fetcher.requests[-1]


async def test_the_wait_is_short_while_records_flow_and_long_once_idle() -> None:
    clock = Clock()
    fetcher = Fetcher()
    pace_fetcher(fetcher, FetchPace(busy_ms=5, idle_ms=50, idle_after=1.0, clock=clock))

    assert await fetch_once(fetcher, records=True) == 5  # a worker just started counts as busy
    clock.now += 0.9
    assert await fetch_once(fetcher, records=False) == 5
    clock.now += 0.2  # 1.1 s since the last records
    assert await fetch_once(fetcher, records=False) == 50
    clock.now += 30.0
    assert await fetch_once(fetcher, records=True) == 50  # this long wait is the one that finds the records
    assert await fetch_once(fetcher, records=False) == 5  # the very next request is short again


@pytest.mark.parametrize(
    ("settings", "paced"),
    [
        (Settings(broker_profile="embedded", broker_url="kafka://127.0.0.1:9092"), True),
        (Settings(broker_profile="embedded", broker_url="kafka://127.0.0.1:9092", fetch_max_wait_ms=20), False),
        (Settings(), False),  # Apache Kafka's long poll returns as soon as data arrives
    ],
)
async def test_only_the_embedded_profile_without_a_set_wait_paces_the_worker_fetch(
    settings: Settings, paced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetcher = Fetcher()
    stock_build = fetcher._get_actions_per_node

    async def started(thread: Any) -> None:
        thread._consumer = SimpleNamespace(_fetcher=fetcher)

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "on_start", started)
    app = create_app(settings)
    await app.consumer._thread.on_start()
    assert (fetcher._get_actions_per_node != stock_build) is paced
    if paced:  # a worker just started counts as busy: the profile's own fetch wait
        fetcher._get_actions_per_node(None)
        assert fetcher.requests == [settings.effective_fetch_max_wait_ms]
