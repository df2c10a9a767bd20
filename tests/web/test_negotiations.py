"""Pending SignalR negotiations stay bounded: by age (even with no more traffic), per worker, per restaurant."""

from __future__ import annotations

import pytest

from partner_stream_web.negotiations import NegotiationRefused, PendingNegotiations
from tests.support.polling import eventually


async def test_a_negotiation_is_redeemed_once_and_only_for_its_restaurant() -> None:
    pending = PendingNegotiations(ttl=30, limit=10, per_restaurant=5)
    token = pending.open("r1")
    assert not pending.redeem(token, "r2")  # used up by the wrong restaurant, too
    assert not pending.redeem(token, "r1")
    again = pending.open("r1")
    assert pending.redeem(again, "r1")
    assert len(pending) == 0


async def test_unused_negotiations_are_purged_by_a_timer_without_further_traffic() -> None:
    pending = PendingNegotiations(ttl=0.05, limit=1000, per_restaurant=1000)
    for _ in range(200):
        pending.open("r1")
    assert len(pending) == 200

    async def remaining() -> int:
        return len(pending)

    await eventually(remaining, lambda n: n == 0, what="the purge timer", timeout=5)
    pending.open("r1")  # the counts were released with the entries
    pending.close()


async def test_one_restaurant_cannot_take_every_slot_of_the_worker() -> None:
    pending = PendingNegotiations(ttl=30, limit=100, per_restaurant=3)
    for _ in range(3):
        pending.open("greedy")
    with pytest.raises(NegotiationRefused) as refused:
        pending.open("greedy")
    assert refused.value.per_restaurant and "this restaurant" in refused.value.reason
    pending.open("another")  # others still get in
    pending.close()


async def test_the_worker_cap_refuses_when_full_and_frees_as_entries_are_used() -> None:
    pending = PendingNegotiations(ttl=30, limit=4, per_restaurant=4)
    tokens = [pending.open(f"r{n}") for n in range(4)]
    with pytest.raises(NegotiationRefused) as refused:
        pending.open("r9")
    assert not refused.value.per_restaurant
    assert pending.redeem(tokens[0], "r0")
    pending.open("r9")
    pending.close()
