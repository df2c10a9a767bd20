"""Self-fencing: a worker cut off from Kafka stops serving before the group hands its partitions to another.

A worker that cannot reach the group coordinator keeps its tablets and its table, but the group moves its
partitions to another worker once the session times out, and it does not notice: it would serve snapshots
that miss every order since, and push nothing. So it watches its own heartbeats. When none has succeeded for
``fence_fraction`` times the session timeout (earlier than the group gives up on it, so two owners never serve
at once), it *fences* itself: its tablets are closed with a reconnect code, new connections and operator
queries get 503, and /readyz says why, until heartbeats succeed again and the worker has rejoined and
recovered (``web.ownership.worker_ready``).

From the fence until its table has been rebuilt after the rejoin, the worker also *holds its writes*
(:attr:`Fence.writes_held`): it applies no event, commits no offset, and drops the changelog records it had
buffered instead of sending them when the network heals, after the new owner's (partner_stream/runtime.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge

log = logging.getLogger(__name__)

FENCED = Gauge("partner_stream_fenced", "1 while this worker has fenced itself off (no heartbeat to the group).")


class Fence:
    """When this worker last heard from its group coordinator, and whether it has fenced itself."""

    def __init__(self, silence_limit: float) -> None:
        self.silence_limit = silence_limit
        self.last_heartbeat: float | None = None
        self.fenced_since: float | None = None
        #: When the current rebalance started (None outside one).
        self.rebalancing_since: float | None = None
        #: Set when the worker fences itself; the next rebalance then rebuilds the local store from the changelog.
        self.local_state_suspect = False
        #: Since when this worker holds its writes: set with the fence, cleared by :meth:`release_writes` once
        #: the table was rebuilt after the rejoin (heartbeats alone do not make the local store true again).
        self.held_since: float | None = None
        #: Called once each time the worker fences itself (the hub closes its tablets).
        self.on_fenced: list[Callable[[], None]] = []
        #: Called once each time heartbeats succeed again after a fence.
        self.on_unfenced: list[Callable[[], None]] = []

    @property
    def fenced(self) -> bool:
        return self.fenced_since is not None

    @property
    def writes_held(self) -> bool:
        """From the fence until the table was rebuilt: apply nothing, commit nothing, send no changelog record."""
        return self.held_since is not None

    def release_writes(self) -> None:
        self.held_since = None

    def heartbeat_succeeded(self, now: float | None = None) -> None:
        self.last_heartbeat = time.monotonic() if now is None else now

    def silence(self, now: float) -> float:
        return 0.0 if self.last_heartbeat is None else now - self.last_heartbeat

    def rebalancing(self, active: bool, limit: float, now: float | None = None) -> None:
        """A rejoin holds heartbeats (JoinGroup, SyncGroup, the assignment callback): silence then is no cut,
        until the rebalance has lasted ``limit`` (the group's rebalance timeout) and the worker is stuck."""
        now = time.monotonic() if now is None else now
        if not active:
            self.rebalancing_since = None
            return
        if self.rebalancing_since is None:
            self.rebalancing_since = now
        if now - self.rebalancing_since < limit and self.last_heartbeat is not None:
            self.last_heartbeat = max(self.last_heartbeat, now)

    def check(self, now: float | None = None) -> bool:
        """Fence or unfence from the heartbeat silence; True while fenced. Never fences before a first heartbeat."""
        now = time.monotonic() if now is None else now
        silence = self.silence(now)
        if not self.fenced and silence > self.silence_limit:
            self.fenced_since = now
            self.local_state_suspect = True
            if self.held_since is None:
                self.held_since = now
            FENCED.set(1)
            log.warning(
                "FENCED: no heartbeat to the group coordinator for %.1f s (limit %.1f s). This worker may no longer "
                "own its partitions: closing its tablets and answering 503 until it has rejoined the group.",
                silence,
                self.silence_limit,
            )
            for callback in self.on_fenced:
                callback()
        elif self.fenced and silence <= self.silence_limit:
            log.warning("heartbeats succeed again after %.1f s fenced: rejoining", now - (self.fenced_since or now))
            self.fenced_since = None
            FENCED.set(0)
            for callback in self.on_unfenced:
                callback()
        return self.fenced

    def stuck(self, limit: float, now: float | None = None) -> bool:
        """Writes held for longer than ``limit``: the worker has not managed to rejoin and rebuild its table (seen
        once: for 30 s it neither rejoined nor logged anything), and a restart is the way back."""
        now = time.monotonic() if now is None else now
        return self.held_since is not None and now - self.held_since > limit

    def reason(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        return f"cut off from Kafka: no heartbeat to the group coordinator for {self.silence(now):.0f} s"
