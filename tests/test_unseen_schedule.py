"""When an order is due for an OrderUnseen step, decided from its record and the tablets connected now."""

from __future__ import annotations

from datetime import UTC, datetime

from partner_stream.announcements import UnseenReason
from partner_stream.unseen import DueStep, UnseenSchedule, threshold_of

CREATED = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
T = CREATED.timestamp()
NO_TABLET = UnseenReason.NO_TABLET_CONNECTED
NOT_ACKED = UnseenReason.NOT_ACKNOWLEDGED


def schedule(*thresholds: float, grace: float = 10.0, handed_at: float | None = None) -> UnseenSchedule:
    plan = UnseenSchedule(thresholds or (60.0,), arrival_grace=grace)
    if handed_at is not None:
        plan.handed_partitions(handed_at)
    return plan


def test_an_order_for_a_restaurant_with_no_tablet_is_due_at_once() -> None:
    due = schedule().next_step(created_at=CREATED, announced=None, tablets=0, now=T + 0.1)
    assert due == DueStep(at=T + 0.1, step=0, reason=NO_TABLET)


def test_with_a_tablet_connected_the_first_threshold_is_next() -> None:
    assert schedule().next_step(created_at=CREATED, announced=None, tablets=2, now=T) == DueStep(at=T + 60, step=1)
    due = schedule().next_step(created_at=CREATED, announced=None, tablets=2, now=T + 60)
    assert due == DueStep(at=T + 60, step=1, reason=NOT_ACKED)


def test_a_step_past_its_threshold_with_no_tablet_says_so() -> None:
    due = schedule().next_step(created_at=CREATED, announced=0, tablets=0, now=T + 61)
    assert due == DueStep(at=T + 61, step=1, reason=NO_TABLET)


def test_after_an_outage_only_the_latest_passed_step_is_announced() -> None:
    plan = schedule(60, 300, 900)
    assert plan.next_step(created_at=CREATED, announced=None, tablets=1, now=T + 400).step == 2
    assert plan.next_step(created_at=CREATED, announced=None, tablets=0, now=T + 400).step == 2  # not step 0


def test_escalation_steps_follow_each_other_and_end() -> None:
    plan = schedule(60, 300)
    assert plan.next_step(created_at=CREATED, announced=1, tablets=1, now=T + 61) == DueStep(at=T + 300, step=2)
    assert plan.next_step(created_at=CREATED, announced=2, tablets=0, now=T + 10_000) is None


def test_after_a_handover_no_tablet_is_not_announced_before_tablets_could_reconnect() -> None:
    plan = schedule(grace=10.0, handed_at=T)
    assert plan.next_step(created_at=CREATED, announced=None, tablets=0, now=T + 1) == DueStep(at=T + 10, step=0)
    assert plan.next_step(created_at=CREATED, announced=None, tablets=0, now=T + 10).reason is NO_TABLET
    # Once the tablets are back, step 0 is skipped: the next reminder is the threshold.
    assert plan.next_step(created_at=CREATED, announced=None, tablets=1, now=T + 10) == DueStep(at=T + 60, step=1)


def test_reminders_come_out_in_due_order_and_only_when_due() -> None:
    plan = schedule()
    plan.remind("r1", "late", T + 5)
    plan.remind("r2", "early", T + 1)
    assert plan.pop_due(T) == [] and len(plan) == 2
    assert plan.pop_due(T + 5) == [("r2", "early"), ("r1", "late")] and len(plan) == 0


def test_a_handover_forgets_reminders_and_asks_for_the_table() -> None:
    plan = schedule()
    plan.needs_rebuild = False
    plan.remind("r1", "o", T)
    plan.handed_partitions(T)
    assert len(plan) == 0 and plan.needs_rebuild


def test_a_step_from_a_worker_with_more_steps_has_no_threshold_here() -> None:
    assert threshold_of((60.0,), 0) == 0.0 and threshold_of((60.0,), 1) == 60.0 and threshold_of((60.0,), 3) == 0.0
