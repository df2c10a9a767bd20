"""Sizes of every scenario: the defaults (a 2-core machine, minutes), ``--quick`` and ``--smoke``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: What partner-stream's tablets speak unless a scenario says otherwise: alternately SignalR (the official client's
#: defaults, negotiate first) and the plain protocol.
DEFAULT_TABLET_MIX: tuple[str, ...] = ("signalr", "plain")

#: The cost scenario's servers, (name, server kind, with tablets): partner-stream, the bridge with and without its
#: tablets (the difference is what pushing costs the bridge), and a stock Faust agent writing one table key per
#: event (a Faust worker's table step, no pushes), with Faust's 1.5 s fetch wait (its cheapest) and with the 5 ms a
#: worker that pushes within milliseconds needs on the embedded broker. Together they bound what any Faust
#: worker pays (bench/scenarios.py runs them, bench/report.py compares them).
COST_SYSTEMS: tuple[tuple[str, str, bool], ...] = (
    ("partner-stream", "partner-stream", True),
    ("floor", "floor", True),
    ("floor, no tablets", "floor", False),
    ("bare faust", "bare-faust", False),
    ("bare faust, 5 ms fetch", "bare-faust-5ms", False),
)


@dataclass
class Config:
    reps: int = 2
    #: Producer linger (ms). Part of every end-to-end figure (about linger / 2 of p50).
    linger_ms: int = 20
    #: Partitions of partner-stream's internal topic and table changelog (the worker default).
    partitions: int = 8
    restaurants: int = 500
    #: How the OrderService keys its records: ``restaurant`` (recommended: upstream topics get as many
    #: partitions as the table, so partner-stream applies each event where it lands, without the re-key
    #: hop) or ``order`` (every event takes the hop through the internal topic).
    upstream_key: str = "restaurant"
    #: Event loop of both servers: ``uvloop`` (partner-stream's default) or ``asyncio``.
    event_loop: str = "uvloop"
    #: A restaurant with this many open orders gets an OrderAccepted instead of a new order.
    max_pending: int = 8
    #: Wait (at most this long, s) before each run for the box to be below ``quiet_percent`` busy.
    quiet_wait: float = 5.0
    quiet_percent: float = 30.0

    # 1. end-to-end latency
    latency_rates: list[float] = field(default_factory=lambda: [100.0, 1000.0])
    #: Extra rate: partner-stream's highest sustained rate (from `throughput`) unless given.
    latency_high_rate: float | None = None
    latency_tablets: list[int] = field(default_factory=lambda: [1000, 5000])
    warmup_seconds: float = 2.0
    load_seconds: float = 10.0
    #: Longest wait after the load for late pushes (an overloaded system may never catch up).
    drain_seconds: float = 6.0

    # 2. sustained throughput per worker
    throughput_tablets: int = 1000
    throughput_steps: list[float] = field(
        default_factory=lambda: [
            100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0
        ]
    )  # fmt: skip
    step_seconds: float = 5.0
    #: A step is sustained (lag does not grow) if this share of its events reached the tablets within
    #: ``step_grace`` s after it.
    sustained_share: float = 0.98
    step_grace: float = 2.0
    #: ... and this share of them had already arrived when the producer finished the step. Without it a worker
    #: ~30 % short of the offered rate passed: its backlog at the end of a 5 s step still drained within the
    #: grace (measured: 1,000 ev/s offered, 730 pushed, p50 1 s). A worker that keeps up is only its latency
    #: behind at that moment (~1 % of a 5 s step).
    keep_up_share: float = 0.95
    #: A step counts only if processes the suite did not start used at most this share of the box meanwhile
    #: (issue #14: a run on a busy box measures the box, not the worker).
    max_others_share: float = 0.20
    #: 2b. CPU per event of partner-stream and both floors at these rates (``throughput_tablets`` tablets).
    cost_rates: list[float] = field(default_factory=lambda: [1000.0, 1500.0, 2000.0])

    # 3. idle tablet memory
    memory_tablets: list[int] = field(default_factory=lambda: [1000, 5000, 10000, 20000])
    #: RSS per tablet barely moves between repetitions and 20k sockets take minutes to open: one by default.
    memory_reps: int = 1
    memory_settle_seconds: float = 3.0

    # 4. reconnect storm
    storm_tablets: int = 5000
    storm_pending_per_restaurant: int = 4
    #: The second storm of each run keeps at most this many reconnects in flight (below the listen backlog).
    storm_paced_in_flight: int = 100
    #: Client processes sharing the storm's tablets: one Python client saturates its core before a server
    #: does (measured: the client at 90-95 % of a core while the worker was at 65-70 %).
    storm_fleets: int = 2
    #: partner-stream's tablet mixes in the storm, each its own run against the same repetition's floor; a mix's
    #: tablets alternate: "signalr" negotiates first (the official client's default), "signalr-direct" does not
    #: (its skipNegotiation), "plain" is the plain protocol. The first mix is the target's.
    storm_mixes: list[list[str]] = field(
        default_factory=lambda: [list(DEFAULT_TABLET_MIX), ["signalr-direct", "plain"]]
    )

    # 5. first push after idle
    idle_tablets: int = 1000
    idle_seconds: float = 15.0
    idle_probes: int = 2

    # 6. failover
    failover_tablets: int = 1000
    failover_rate: float = 100.0
    failover_before_kill: float = 5.0
    failover_after_reconnect: float = 3.0
    failover_deadline: float = 60.0
    #: After the load stops, how long the survivor's table may take to match the producer's open orders.
    failover_settle: float = 30.0

    # 7. table step alone (RocksDB in the bench process, no broker): (pending orders, remembered resolutions)
    table_history: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0), (100, 100), (2000, 500)])

    def with_overrides(self, **overrides: object) -> Config:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def quick() -> Config:
    """Every scenario, small: about 10 minutes on a busy 2-core box."""
    return Config(
        reps=2,
        quiet_wait=5.0,
        latency_rates=[100.0, 500.0],
        latency_tablets=[1000],
        warmup_seconds=2.0,
        load_seconds=6.0,
        drain_seconds=5.0,
        throughput_tablets=500,
        throughput_steps=[100.0, 200.0, 400.0, 700.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0],
        step_seconds=3.0,
        cost_rates=[500.0, 1000.0],
        memory_tablets=[1000, 3000],
        storm_tablets=500,
        idle_seconds=4.0,
        idle_probes=1,
        failover_tablets=300,
    )


def smoke() -> Config:
    """Tiny sizes for tests/test_bench_smoke.py: exercises the code paths, measures nothing."""
    return Config(
        reps=1,
        quiet_wait=0.0,
        restaurants=20,
        latency_rates=[50.0],
        latency_high_rate=50.0,
        latency_tablets=[40],
        warmup_seconds=0.5,
        load_seconds=1.5,
        drain_seconds=3.0,
        throughput_tablets=40,
        throughput_steps=[50.0, 100.0],
        step_seconds=1.0,
        step_grace=2.0,
        cost_rates=[50.0],
        memory_tablets=[20, 40],
        memory_reps=1,
        memory_settle_seconds=0.5,
        storm_tablets=40,
        storm_pending_per_restaurant=1,
        idle_tablets=40,
        idle_seconds=0.5,
        idle_probes=1,
        failover_tablets=40,
        failover_rate=20.0,
        failover_before_kill=1.0,
        failover_after_reconnect=0.5,
        table_history=[(0, 0), (50, 10)],
    )
