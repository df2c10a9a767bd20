"""When each pending order of this worker's restaurants is due for its next OrderUnseen step.

Only the owner of a restaurant's partition evaluates its orders. It keeps one reminder per order it owes an
announcement (a heap ordered by due time), so a tick with nothing due costs one comparison, however many
restaurants the worker holds. :mod:`partner_stream.announcer` feeds and reads it:

- an order is added: due at once when no tablet of the restaurant is connected (step 0,
  ``no-tablet-connected``), else at its first threshold;
- a step was recorded: the next step's threshold;
- the worker is handed partitions: every pending order of its active partitions, read from the table once the
  partitions are recovered (what the previous owner announced is in the records).

A reminder is not a decision: when it comes due, :meth:`UnseenSchedule.next_step` looks at the order's record
as it is *now* (which step was recorded?) and at the tablets connected now.

After a handover, tablets take a few seconds to reconnect: for ``arrival_grace`` nothing is due, so neither
``no-tablet-connected`` nor a tablet count is reported before they could come back.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .announcements import UnseenReason

#: How often the owner looks for due orders (seconds): an order with no tablet is announced within this.
TICK_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class DueStep:
    """The step an order is due for, and when."""

    at: float
    step: int
    reason: UnseenReason | None = None  # set once it is due (decided by who is connected then)


class UnseenSchedule:
    def __init__(self, thresholds: Sequence[float], arrival_grace: float) -> None:
        #: Seconds after CreatedAt of step 1, 2, … (step 0 is on arrival).
        self.thresholds = tuple(thresholds)
        self.arrival_grace = arrival_grace
        self._heap: list[tuple[float, str, str]] = []
        #: Until when an order with no tablet waits for tablets to come back (set on each handover).
        self._quiet_until = 0.0
        #: Set on a handover; cleared once the recovered table has been read.
        self.needs_rebuild = True

    def __len__(self) -> int:
        return len(self._heap)

    def threshold_of(self, step: int) -> float:
        return threshold_of(self.thresholds, step)

    # -- what feeds it ---------------------------------------------------------------------------

    def handed_partitions(self, now: float) -> None:
        """A rebalance handed this worker its partitions: forget every entry, read the table again once recovered."""
        self._heap.clear()
        self._quiet_until = now + self.arrival_grace
        self.needs_rebuild = True

    def remind(self, restaurant_id: str, order_id: str, at: float) -> None:
        heapq.heappush(self._heap, (at, restaurant_id, order_id))

    def pop_due(self, now: float, limit: int | None = None) -> list[tuple[str, str]]:
        """The (restaurant, order) reminders due by ``now`` (the ``limit`` earliest), removed from the heap."""
        due: list[tuple[str, str]] = []
        while self._heap and self._heap[0][0] <= now and (limit is None or len(due) < limit):
            _, restaurant_id, order_id = heapq.heappop(self._heap)
            due.append((restaurant_id, order_id))
        return due

    # -- the decision ------------------------------------------------------------------------------

    def next_step(self, *, created_at: datetime, announced: int | None, tablets: int, now: float) -> DueStep | None:
        """The next step of a pending, unacknowledged order, due now (with its reason) or later; None if no more.

        - A threshold step already passed wins, and only the latest one: after an outage the order is
          announced once, at the step it reached, not once per step it missed.
        - Step 0 only while nothing was announced, and only with no tablet connected.
        - Otherwise the next threshold, in the future.
        - During the grace after a handover nothing is due yet: whether tablets are connected is not known
          before they had the time to reconnect, and the reason depends on it.
        """
        created = created_at.timestamp()
        first = 1 if announced is None else announced + 1
        steps = range(first, len(self.thresholds) + 1)
        passed = [step for step in steps if created + self.threshold_of(step) <= now]
        if passed:
            step = passed[-1]
        elif announced is None and tablets == 0:
            step = 0
        elif first <= len(self.thresholds):
            return DueStep(at=created + self.threshold_of(first), step=first)
        else:
            return None
        if now < self._quiet_until:
            return DueStep(at=self._quiet_until, step=step)
        return DueStep(at=now, step=step, reason=_reason(tablets))


def threshold_of(thresholds: Sequence[float], step: int) -> float:
    """Seconds after CreatedAt at which ``step`` is due (0 for step 0, and for a step with no threshold here)."""
    return thresholds[step - 1] if 0 < step <= len(thresholds) else 0.0


def _reason(tablets: int) -> UnseenReason:
    return UnseenReason.NO_TABLET_CONNECTED if tablets == 0 else UnseenReason.NOT_ACKNOWLEDGED
