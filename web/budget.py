"""How much a tablet socket may ask of the worker: token buckets, one per kind of request.

A tablet makes a handful of requests a minute (a snapshot after a gap, an acknowledgement
per order). A client that loops, or an attacker with a valid token, must not turn one
frame into megabytes of snapshots or a flood of Kafka writes, so each socket gets a
rate and a burst per kind of request. Requests over budget are refused one by one
with an error reply the client can retry; the socket stays open.

Buckets are created on first use: most tablets only ever ping, and thousands of them
share a worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from partner_stream.settings import Settings


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` on average, up to ``burst`` at once."""

    per_second: float
    burst: int


class TokenBucket:
    """Classic token bucket: starts full, refills at ``rate.per_second`` up to ``rate.burst``."""

    __slots__ = ("_rate", "_tokens", "_updated_at")

    def __init__(self, rate: Rate, now: float | None = None) -> None:
        self._rate = rate
        self._tokens = float(rate.burst)
        self._updated_at = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> bool:
        """Spend one token if there is one; False means the request is over budget."""
        now = time.monotonic() if now is None else now
        rate = self._rate
        elapsed = max(0.0, now - self._updated_at)
        self._tokens = min(float(rate.burst), self._tokens + elapsed * rate.per_second)
        self._updated_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def retry_after(self) -> float:
        """Seconds until the next token (for the refusal's text)."""
        return max(0.0, (1.0 - self._tokens) / self._rate.per_second)

    @property
    def rate(self) -> Rate:
        return self._rate


def over_budget(what: str, bucket: TokenBucket) -> str:
    """The refusal text: what was refused, the rate, and when to retry."""
    return f"too many {what} (at most {bucket.rate.per_second:g} per second); retry in {bucket.retry_after():.1f} s"


#: The SignalR codec's records-per-frame limit: one bad frame is answered in full.
REFUSALS_BURST = 100


@dataclass(frozen=True, slots=True)
class ClientBudget:
    """The rates every tablet socket gets (from settings)."""

    requests: Rate = Rate(per_second=20.0, burst=40)
    acknowledgements: Rate = Rate(per_second=5.0, burst=20)

    @property
    def refusals(self) -> Rate:
        """Refused requests answered before the socket is closed: a whole frame's worth at once, then the rate."""
        return Rate(per_second=self.requests.per_second, burst=max(REFUSALS_BURST, 2 * self.requests.burst))

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientBudget:
        return cls(
            requests=Rate(settings.hub_requests_per_second, settings.hub_request_burst),
            acknowledgements=Rate(settings.hub_acks_per_second, settings.hub_ack_burst),
        )


DEFAULT_BUDGET = ClientBudget()
