"""Self-fencing decisions: fence after the heartbeat silence limit, never before a first heartbeat, unfence after."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from partner_stream.faust_patches.heartbeat import record_heartbeats
from partner_stream.fencing import Fence


def test_a_worker_fences_itself_after_the_silence_limit_and_comes_back_when_heartbeats_succeed() -> None:
    fence = Fence(silence_limit=4.5)
    fenced: list[bool] = []
    fence.on_fenced.append(lambda: fenced.append(True))
    assert not fence.check(now=100.0)  # no heartbeat yet: a worker still joining is not cut off
    fence.heartbeat_succeeded(now=100.0)
    assert not fence.check(now=104.0)
    assert fence.check(now=105.0) and fence.check(now=106.0)
    assert fenced == [True]  # the tablets are closed once per episode
    assert REGISTRY.get_sample_value("partner_stream_fenced") == 1
    assert "no heartbeat to the group coordinator for 6 s" in fence.reason(now=106.0)
    fence.heartbeat_succeeded(now=107.0)
    assert not fence.check(now=107.5)
    assert REGISTRY.get_sample_value("partner_stream_fenced") == 0


class Coordinator:
    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers

    async def _do_heartbeat(self) -> bool:
        return self.answers.pop(0)


def test_only_successful_heartbeats_count() -> None:
    fence = Fence(silence_limit=1.0)
    coordinator = Coordinator([False, True])
    record_heartbeats(coordinator, fence)
    record_heartbeats(coordinator, fence)  # wrapping twice would count twice: it is done once
    fence.last_heartbeat = 0.0
    assert asyncio.run(coordinator._do_heartbeat()) is False and fence.last_heartbeat == 0.0
    assert asyncio.run(coordinator._do_heartbeat()) is True and fence.last_heartbeat > 0.0


def test_the_silence_of_a_rejoin_does_not_fence_until_the_rebalance_has_lasted_its_timeout() -> None:
    fence = Fence(silence_limit=4.5)
    fence.heartbeat_succeeded(now=0.0)
    for now in (1.0, 3.0, 6.0, 9.0):  # JoinGroup held, then the assignment callback: no heartbeats
        fence.rebalancing(True, limit=10.0, now=now)
        assert not fence.check(now=now)
    fence.rebalancing(True, limit=10.0, now=12.0)  # stuck in the rebalance past its timeout
    assert fence.check(now=14.0)
    fence.rebalancing(False, limit=10.0, now=15.0)
    assert fence.rebalancing_since is None


def test_a_worker_fenced_past_the_restart_limit_is_stuck_until_its_table_is_rebuilt() -> None:
    fence = Fence(silence_limit=4.5)
    fence.heartbeat_succeeded(now=100.0)
    assert not fence.stuck(120.0, now=104.0)  # not even fenced
    assert fence.check(now=105.0)
    assert not fence.stuck(120.0, now=225.0) and fence.stuck(120.0, now=225.5)
    fence.heartbeat_succeeded(now=226.0)
    fence.check(now=226.0)
    assert fence.stuck(120.0, now=226.0)  # heard from the group again, but the table is not rebuilt yet
    fence.release_writes()
    assert not fence.stuck(120.0, now=400.0)


def test_writes_are_held_from_the_fence_until_released_and_an_unfence_is_told() -> None:
    fence = Fence(silence_limit=4.5)
    unfenced: list[bool] = []
    fence.on_unfenced.append(lambda: unfenced.append(True))
    fence.heartbeat_succeeded(now=100.0)
    assert not fence.writes_held
    fence.check(now=105.0)
    assert fence.writes_held and fence.held_since == 105.0
    fence.heartbeat_succeeded(now=106.0)
    assert not fence.check(now=106.0) and unfenced == [True]
    assert fence.writes_held  # heartbeats alone do not make the local store true again
    fence.check(now=111.0)  # a second fence before the rebuild keeps the first one's start
    assert fence.held_since == 105.0
    fence.release_writes()
    assert not fence.writes_held
