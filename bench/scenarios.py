"""The six scenarios of issue 6. Each run gets a fresh broker; partner-stream and the floor run side by side.

A run returns a plain dict (it goes to JSON as is); :mod:`bench.report` turns lists of runs into tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from . import procs
from .config import COST_SYSTEMS, DEFAULT_TABLET_MIX, Config
from .fleet import summarize_values
from .load import LoadResult, OrderLoad, restaurant_ids

log = logging.getLogger("bench")

#: Most sockets one fleet process holds (its open-files limit must cover them).
FLEET_MAX = 9000
SYSTEMS = ("floor", "partner-stream")


def protocols_for(system: str, mix: list[str] | None = None) -> list[str]:
    """What a system's tablets speak: the floor's frames, or partner-stream's ``mix`` (default SignalR and plain)."""
    return ["floor"] if system == "floor" else mix or list(DEFAULT_TABLET_MIX)


def tablet_specs(
    system: str,
    base_url: str,
    count: int,
    restaurants: list[str],
    offset: int = 0,
    protocols: list[str] | None = None,
) -> list[list[str]]:
    """``count`` tablets spread evenly over ``restaurants``; partner-stream alternates SignalR and plain, or
    ``protocols``."""
    protocols = protocols_for(system, protocols)
    specs = []
    for i in range(offset, offset + count):
        restaurant = restaurants[i % len(restaurants)]
        specs.append([restaurant, protocols[(i // len(restaurants)) % len(protocols)], base_url])
    return specs


def per_restaurant(specs: list[list[str]]) -> dict[str, int]:
    return dict(Counter(spec[0] for spec in specs))


class Stack:
    """One run's world: a fresh broker with the upstream topics, a producer, servers and tablet fleets."""

    def __init__(self, cfg: Config, log_dir: Path, name: str) -> None:
        self.cfg = cfg
        self.log_dir = log_dir / name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.broker: Any = None
        self.producer: Any = None
        self.load: OrderLoad | None = None
        self.servers: list[procs.Server] = []
        self.fleets: list[procs.Fleet] = []
        self.restaurants = restaurant_ids(cfg.restaurants)
        self.quiet_before: float | None = None

    async def __aenter__(self) -> Stack:
        if self.cfg.quiet_wait > 0:
            self.quiet_before = await procs.wait_for_quiet(self.cfg.quiet_percent, self.cfg.quiet_wait)
        self.broker = procs.start_broker(self.log_dir)
        await procs.create_upstream_topics(self.broker.bootstrap, self.cfg.partitions)
        self.producer = await procs.new_producer(self.broker.bootstrap, self.cfg.linger_ms)
        self.load = OrderLoad(
            self.producer, self.restaurants, max_pending=self.cfg.max_pending, key_by=self.cfg.upstream_key
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for fleet in self.fleets:
            with contextlib.suppress(Exception):
                await fleet.stop()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        if self.broker is not None:
            self.broker.stop()

    async def server(self, system: str, name: str | None = None) -> procs.Server:
        if system == "floor":
            server = procs.floor(self.broker, self.log_dir, name=name or "floor", loop=self.cfg.event_loop)
        elif system == "bare-faust":
            server = procs.bare_faust(self.broker, self.log_dir, name=name or "bare-faust")
        elif system == "bare-faust-5ms":
            wait = procs.FETCH_MAX_WAIT_MS
            server = procs.bare_faust(self.broker, self.log_dir, name=name or "bare-faust", fetch_max_wait_ms=wait)
        else:
            server = procs.worker(
                self.broker,
                self.log_dir,
                name=name or "worker",
                partitions=self.cfg.partitions,
                loop=self.cfg.event_loop,
            )
        self.servers.append(server.start())
        server.extra["ready_seconds"] = round(await server.wait_ready(), 2)
        return server

    async def fleet_for(self, count: int, *, at_least: int = 1) -> list[procs.Fleet]:
        """Enough fleet processes for ``count`` sockets in total, and ``at_least`` (started once, reused)."""
        needed = max(1, at_least, math.ceil(count / FLEET_MAX))
        while len(self.fleets) < needed:
            self.fleets.append(await procs.Fleet(self.log_dir, f"fleet{len(self.fleets)}").start())
        return self.fleets[:needed]

    async def connect(self, specs: list[list[str]], fleets: list[procs.Fleet] | None = None) -> dict[str, Any]:
        """Open tablets (split over the fleets, in parallel); every one must get its snapshot."""
        fleets = fleets or await self.fleet_for(len(specs))
        chunks = [specs[i :: len(fleets)] for i in range(len(fleets))]
        t0 = time.monotonic()
        replies = await asyncio.gather(
            *(
                f.call("connect", tablets=c, secret=procs.BENCH_JWT_SECRET, timeout=120)
                for f, c in zip(fleets, chunks, strict=True)
            )
        )
        seconds = time.monotonic() - t0
        failures: Counter[str] = Counter()
        for reply in replies:
            failures.update(reply["failures"])
        connected = sum(r["connected"] for r in replies)
        if connected < len(specs):
            log.warning("only %d of %d tablets connected: %s", connected, len(specs), dict(failures))
        return {
            "connected": connected,
            "wanted": len(specs),
            "seconds": round(seconds, 2),
            "per_second": round(connected / seconds, 1) if seconds else None,
            "failures": dict(failures),
        }

    async def fleets_call(self, op: str, **args: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(f.call(op, **args) for f in self.fleets)))

    async def frames(self) -> int:
        return sum(r["frames"] for r in await self.fleets_call("count"))

    async def wait_frames(self, expected: int, timeout: float) -> int:
        """Wait until the fleets received ``expected`` frames (or ``timeout``); return what arrived."""
        deadline = time.monotonic() + timeout
        while True:
            got = await self.frames()
            if got >= expected or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.1)

    def meter(self) -> procs.BoxMeter:
        pids = {s.name: s.pid for s in self.servers if s.process and s.process.poll() is None}
        pids["broker"] = self.broker.process.pid
        for fleet in self.fleets:
            pids[fleet.name] = fleet.pid
        return procs.BoxMeter(procs.CpuMeter(pids))


def merged_stats(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """Fleet stats are per process; with one fleet (the latency runs) take it as is."""
    if len(replies) == 1:
        return replies[0]
    raise NotImplementedError("latency runs use one fleet process")


# -- 1. end-to-end latency --------------------------------------------------------------------


async def latency_run(cfg: Config, log_dir: Path, system: str, rate: float, tablets: int, rep: int) -> dict[str, Any]:
    name = f"latency-{system}-{int(rate)}eps-{tablets}t-r{rep}"
    async with Stack(cfg, log_dir, name) as stack:
        server = await stack.server(system)
        specs = tablet_specs(system, server.base_url, tablets, stack.restaurants)
        fleets = await stack.fleet_for(min(tablets, FLEET_MAX))
        fleets = fleets[:1]
        connect = await stack.connect(specs, fleets)
        load = stack.load
        assert load is not None
        await load.run(rate, cfg.warmup_seconds)
        tablets_of = per_restaurant(specs)
        await stack.wait_frames(load.expected_frames({}, tablets_of), cfg.drain_seconds)
        await stack.fleets_call("reset")
        await stack.fleets_call("record", on=True)
        mark = load.mark()
        meter = stack.meter()
        meter.start()
        result = await load.run(rate, cfg.load_seconds)
        cpu = meter.stop()
        expected = load.expected_frames(mark, tablets_of)
        got = await stack.wait_frames(expected, cfg.drain_seconds)
        stats = merged_stats(await stack.fleets_call("stats"))
        rss = server.rss()
    return {
        "system": system,
        "rate": rate,
        "tablets": tablets,
        "rep": rep,
        "linger_ms": cfg.linger_ms,
        "load": result.as_dict(),
        "connect": connect,
        "ready_seconds": server.extra.get("ready_seconds"),
        "delivered_share": round(got / expected, 4) if expected else None,
        "expected_frames": expected,
        "latency_ms": stats["all"],
        "latency_by_protocol_ms": stats["protocols"],
        "gaps": stats["gaps"],
        "server_closes": stats["server_closes"],
        "cpu": cpu,
        "quiet_before": stack.quiet_before,
        "server_rss_mib": round(rss / 2**20, 1),
    }


# -- 2. sustained throughput per worker ------------------------------------------------------


async def throughput_run(cfg: Config, log_dir: Path, rep: int) -> dict[str, Any]:
    async with Stack(cfg, log_dir, f"throughput-r{rep}") as stack:
        server = await stack.server("partner-stream")
        specs = tablet_specs("partner-stream", server.base_url, cfg.throughput_tablets, stack.restaurants)
        fleets = (await stack.fleet_for(len(specs)))[:1]
        await stack.connect(specs, fleets)
        tablets_of = per_restaurant(specs)
        per_event = len(specs) / len(stack.restaurants)
        load = stack.load
        assert load is not None
        steps: list[dict[str, Any]] = []
        await stack.fleets_call("record", on=True)
        for rate in cfg.throughput_steps:
            await stack.fleets_call("reset")
            mark = load.mark()
            frames0 = await stack.frames()
            meter = stack.meter()
            meter.start()
            t0 = time.monotonic()
            sent = await load.run(rate, cfg.step_seconds)
            expected = load.expected_frames(mark, tablets_of)
            # Read as the producer finishes: a worker that keeps up is only its latency behind here.
            in_step = await stack.frames() - frames0
            got = await stack.wait_frames(frames0 + expected, cfg.step_grace) - frames0
            elapsed = time.monotonic() - t0
            cpu = meter.stop()
            stats = merged_stats(await stack.fleets_call("stats", series=False))["all"]
            share = got / expected if expected else 1.0
            kept_up = in_step / expected if expected else 1.0
            sustained = share >= cfg.sustained_share and kept_up >= cfg.keep_up_share
            others_share = cpu["other_processes_percent_of_core"] / (100.0 * (os.cpu_count() or 1))
            steps.append(
                {
                    "offered_rate": rate,
                    "achieved_rate": sent.as_dict()["achieved_rate"],
                    "delivered_share": round(share, 4),
                    "kept_up_share": round(kept_up, 4),
                    "delivered_events_per_s": round(got / per_event / elapsed, 1),
                    "lag_events": round((expected - got) / per_event),
                    "p50_ms": stats.get("p50"),
                    "p99_ms": stats.get("p99"),
                    "cpu": cpu,
                    "sustained": sustained,
                    "others_share_of_box": round(others_share, 3),
                    "valid": others_share <= cfg.max_others_share,
                }
            )
            log.info("throughput step %s ev/s: share %.3f p99 %s ms", rate, share, stats.get("p99"))
            if not sustained:
                break
        sustained_rates = [s["offered_rate"] for s in steps if s["sustained"] and s["valid"]]
        # What the worker did while it could not keep up: its processing capacity under backlog.
        overloaded = [s for s in steps if not s["sustained"]]
        rss = server.rss()
    return {
        "rep": rep,
        "tablets": cfg.throughput_tablets,
        "linger_ms": cfg.linger_ms,
        "steps": steps,
        "sustained_rate": max(sustained_rates) if sustained_rates else 0.0,
        "capacity_under_backlog": overloaded[0]["delivered_events_per_s"] if overloaded else None,
        # Valid only if the box was quiet in every step up to the one that ended the ramp.
        "valid": all(s["valid"] for s in steps),
        "worker_cpu_at_sustained": next(
            (s["cpu"]["cpu_percent_of_core"].get("worker") for s in reversed(steps) if s["sustained"]), None
        ),
        "quiet_before": stack.quiet_before,
        "server_rss_mib": round(rss / 2**20, 1),
    }


# -- 2b. CPU per event at the live rates, against both floors (issue #14, goal 2) --------------

#: Longest wait after a step for its events to be taken in (stock Faust fetches with a 1.5 s wait).
COST_CATCH_UP_SECONDS = 15.0


async def cost_run(cfg: Config, log_dir: Path, system: str, rep: int) -> dict[str, Any]:
    """The server's CPU per event at each of ``cfg.cost_rates``, counted until it took in every event of a step.

    The window runs from the step's first event until the server's own count has every one of them (and, with
    tablets, every push arrived), so a server that batches by fetching late (stock Faust waits 1.5 s) pays for
    all of its events, and one that falls behind shows it in ``caught_up_s``.
    """
    kind, tablets = next((kind, tablets) for name, kind, tablets in COST_SYSTEMS if name == system)
    slug = system.replace(", ", "-").replace(" ", "-")
    async with Stack(cfg, log_dir, f"cost-{slug}-r{rep}") as stack:
        server = await stack.server(kind)
        tablets_of: dict[str, int] = {}
        if tablets:
            specs = tablet_specs(kind, server.base_url, cfg.throughput_tablets, stack.restaurants)
            await stack.connect(specs, (await stack.fleet_for(len(specs)))[:1])
            tablets_of = per_restaurant(specs)
        load = stack.load
        assert load is not None
        await _run_and_take_in(stack, server, tablets_of, cfg.cost_rates[0], cfg.warmup_seconds)
        steps = []
        for rate in cfg.cost_rates:
            meter = stack.meter()
            meter.start()
            sent, caught_up = await _run_and_take_in(stack, server, tablets_of, rate, cfg.step_seconds)
            cpu = meter.stop()
            seconds = cpu["cpu_seconds"][server.name]
            us_per_event = seconds / sent.sent * 1e6 if sent.sent else None
            others_share = cpu["other_processes_percent_of_core"] / (100.0 * (os.cpu_count() or 1))
            steps.append(
                {
                    "offered_rate": rate,
                    "achieved_rate": sent.as_dict()["achieved_rate"],
                    "events": sent.sent,
                    "caught_up_s": None if caught_up is None else round(caught_up, 2),
                    "server_us_per_event": round(us_per_event, 1) if us_per_event else None,
                    "cpu": cpu,
                    "others_share_of_box": round(others_share, 3),
                    "valid": others_share <= cfg.max_others_share and caught_up is not None,
                }
            )
            log.info("cost %s at %s ev/s: %s us/event", system, rate, steps[-1]["server_us_per_event"])
    return {"system": system, "rep": rep, "tablets": cfg.throughput_tablets if tablets else 0, "steps": steps}


async def _run_and_take_in(
    stack: Stack, server: procs.Server, tablets_of: dict[str, int], rate: float, seconds: float
) -> tuple[LoadResult, float | None]:
    """Send ``rate`` events/s for ``seconds``, then wait until the server counted all of them and the tablets got
    every push; return the load and the seconds that took after the last send (None: not within
    COST_CATCH_UP_SECONDS). The server's count is polled every 0.25 s: a worker's /metrics costs it ~1 ms."""
    load = stack.load
    assert load is not None
    mark = load.mark()
    consumed0 = await procs.consumed(server)
    frames0 = await stack.frames() if tablets_of else 0
    sent = await load.run(rate, seconds)
    sent_at = time.monotonic()
    frames_wanted = frames0 + load.expected_frames(mark, tablets_of)
    while time.monotonic() - sent_at < COST_CATCH_UP_SECONDS:
        pushed = not tablets_of or await stack.frames() >= frames_wanted
        if pushed and await procs.consumed(server) >= consumed0 + sent.sent:
            return sent, time.monotonic() - sent_at
        await asyncio.sleep(0.25)
    return sent, None


# -- 3. idle tablet memory -------------------------------------------------------------------


async def memory_run(cfg: Config, log_dir: Path, system: str, rep: int) -> dict[str, Any]:
    limit = procs.fd_limit()
    async with Stack(cfg, log_dir, f"memory-{system}-r{rep}") as stack:
        server = await stack.server(system)
        await asyncio.sleep(cfg.memory_settle_seconds)
        baseline = server.rss()
        points = []
        connected = 0
        for wanted in sorted(cfg.memory_tablets):
            # The server holds one descriptor per tablet: stay under its open-files limit.
            target = min(wanted, limit - 400)
            if target <= connected:
                continue
            specs = tablet_specs(system, server.base_url, target - connected, stack.restaurants, offset=connected)
            fleets = await stack.fleet_for(target)
            # Spread the new tablets over every fleet so none passes its own descriptor limit.
            chunks = [specs[i :: len(fleets)] for i in range(len(fleets))]
            replies = await asyncio.gather(
                *(
                    f.call("connect", tablets=c, secret=procs.BENCH_JWT_SECRET, timeout=180)
                    for f, c in zip(fleets, chunks, strict=True)
                    if c
                )
            )
            connected += sum(r["connected"] for r in replies)
            await asyncio.sleep(cfg.memory_settle_seconds)
            rss = server.rss()
            points.append(
                {
                    "wanted": wanted,
                    "tablets": connected,
                    "capped_by_fd_limit": target < wanted,
                    "rss_mib": round(rss / 2**20, 1),
                    "per_tablet_kib": round((rss - baseline) / connected / 1024, 2) if connected else None,
                }
            )
            log.info("memory %s: %d tablets, %.2f KiB each", system, connected, points[-1]["per_tablet_kib"])
    return {
        "system": system,
        "rep": rep,
        "baseline_rss_mib": round(baseline / 2**20, 1),
        "points": points,
        "fd_limit": limit,
    }


# -- 4. reconnect storm ----------------------------------------------------------------------


async def _prefill(stack: Stack, tablets_of: dict[str, int], per_restaurant_orders: int) -> int:
    """Give every restaurant a few pending orders (so snapshots carry something); wait until tablets have them."""
    load = stack.load
    assert load is not None
    mark = load.mark()
    for _ in range(per_restaurant_orders):
        for restaurant in stack.restaurants:
            await load.send_one(restaurant, create=True)
    await stack.producer.flush()
    expected = load.expected_frames(mark, tablets_of)
    return await stack.wait_frames(expected, 120.0)


async def storm_run(
    cfg: Config, log_dir: Path, system: str, rep: int, protocols: list[str] | None = None
) -> dict[str, Any]:
    protocols = protocols_for(system, protocols)
    async with Stack(cfg, log_dir, f"storm-{system}-{'-'.join(protocols)}-r{rep}") as stack:
        server = await stack.server(system)
        specs = tablet_specs(system, server.base_url, cfg.storm_tablets, stack.restaurants, protocols=protocols)
        fleets = await stack.fleet_for(len(specs), at_least=min(cfg.storm_fleets, len(specs)))
        connect = await stack.connect(specs, fleets)
        await _prefill(stack, per_restaurant(specs), cfg.storm_pending_per_restaurant)
        await asyncio.sleep(1.0)
        storms = {}
        for mode, in_flight in (("all at once", 0), ("paced", cfg.storm_paced_in_flight)):
            meter = stack.meter()
            meter.start()
            storm = await _storm(fleets, in_flight)
            cpu = meter.stop()
            seconds = storm["seconds"]
            server_cpu_seconds = cpu["cpu_seconds"].get(server.name, 0.0)
            storms[mode] = {
                "in_flight_limit": in_flight or None,
                "fleets": len(fleets),
                "reconnected": storm["reconnected"],
                "failures": storm["failures"],
                "seconds": seconds,
                "reconnects_per_s": round(storm["reconnected"] / seconds, 1) if seconds else None,
                "time_to_snapshot_s": storm["time_to_snapshot"],
                "server_cpu_ms_per_reconnect": (
                    round(server_cpu_seconds * 1000 / storm["reconnected"], 3) if storm["reconnected"] else None
                ),
                "cpu": cpu,
            }
            await asyncio.sleep(1.0)
    return {
        "system": system,
        "rep": rep,
        "tablets": cfg.storm_tablets,
        "pending_per_restaurant": cfg.storm_pending_per_restaurant if system != "floor" else 0,
        "protocols": protocols,
        "initial_connect": connect,
        "storms": storms,
        "quiet_before": stack.quiet_before,
    }


async def _storm(fleets: list[procs.Fleet], in_flight: int) -> dict[str, Any]:
    """Every fleet drops its tablets at the same moment and reconnects them; merged as one storm."""
    start_at = time.time() + 0.1  # the request reaches every fleet well within this
    per_fleet = math.ceil(in_flight / len(fleets)) if in_flight else 0
    replies = await asyncio.gather(
        *(f.call("storm", concurrency=per_fleet, start_at=start_at, timeout=600) for f in fleets)
    )
    for fleet, reply in zip(fleets, replies, strict=True):
        if reply.get("late_by", 0.0) > 0.02:
            log.warning("%s started the storm %.0f ms late (its times include it)", fleet.name, 1000 * reply["late_by"])
    times = sorted(t for reply in replies for t in reply["times"])
    failures: Counter[str] = Counter()
    for reply in replies:
        failures.update(reply["failures"])
    return {
        "reconnected": len(times),
        "failures": dict(failures),
        "seconds": times[-1] if times else None,
        "time_to_snapshot": summarize_values(times),
    }


# -- 5. first push after idle ----------------------------------------------------------------


async def idle_run(cfg: Config, log_dir: Path, system: str, rep: int) -> dict[str, Any]:
    async with Stack(cfg, log_dir, f"idle-{system}-r{rep}") as stack:
        server = await stack.server(system)
        specs = tablet_specs(system, server.base_url, cfg.idle_tablets, stack.restaurants)
        fleets = (await stack.fleet_for(len(specs)))[:1]
        await stack.connect(specs, fleets)
        tablets_of = per_restaurant(specs)
        load = stack.load
        assert load is not None
        await load.run(100.0, cfg.warmup_seconds)
        await stack.wait_frames(load.expected_frames({}, tablets_of), cfg.drain_seconds)
        await stack.fleets_call("record", on=True)

        async def probe(index: int) -> dict[str, Any]:
            restaurant = stack.restaurants[index % len(stack.restaurants)]
            await stack.fleets_call("reset")
            await load.send_one(restaurant, create=True)
            await stack.producer.flush()
            await stack.wait_frames(tablets_of[restaurant], 10.0)
            stats = merged_stats(await stack.fleets_call("stats", series=False))
            return {
                "restaurant": restaurant,
                "first_ms": _min(stats),
                "last_ms": stats["all"].get("max"),
                "tablets": stats["all"].get("count", 0),
            }

        warm = await probe(0)
        probes = []
        for i in range(cfg.idle_probes):
            # The idle period itself is measured: what a connected but quiet worker costs (goal: <= 5 % of a core).
            meter = stack.meter()
            meter.start()
            await asyncio.sleep(cfg.idle_seconds)
            cpu = meter.stop()
            probed = await probe(i + 1)
            probed["idle_cpu"] = {
                "server_percent_of_core": cpu["cpu_percent_of_core"].get(server.name),
                "broker_percent_of_core": cpu["cpu_percent_of_core"].get("broker"),
                "box_busy_percent": cpu["box_busy_percent"],
            }
            probes.append(probed)
    return {
        "system": system,
        "rep": rep,
        "idle_seconds": cfg.idle_seconds,
        "tablets": cfg.idle_tablets,
        "warm": warm,
        "probes": probes,
    }


def _min(stats: dict[str, Any]) -> float | None:
    cdf = stats["all"].get("cdf")
    return cdf[0] if cdf else None


# -- 6. failover -----------------------------------------------------------------------------


def _token(restaurant: str) -> str:
    now = int(time.time())
    payload = {"restaurantId": restaurant, "sub": f"tablet:{restaurant}", "iat": now, "exp": now + 3600}
    return jwt.encode(payload, procs.BENCH_JWT_SECRET, algorithm="HS256")


async def owners(workers: list[procs.Server], restaurants: list[str]) -> dict[str, str]:
    """Each restaurant's owner, asked of the first worker with the restaurant's tablet token.

    ``GET /api/restaurants/{id}/endpoint`` names the owner where the worker has it; otherwise a worker that does
    not own the restaurant answers the plain socket with 421 and ``{"owner": url}``.
    """
    found: dict[str, str] = {}
    urls = {w.base_url for w in workers}
    first = workers[0].base_url
    async with aiohttp.ClientSession() as session:
        for restaurant in restaurants:
            token = _token(restaurant)
            for _attempt in range(150):
                url = f"{first}/api/restaurants/{restaurant}/endpoint"
                async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
                    body = await response.json(content_type=None) if response.status in (200, 421, 503) else {}
                    worker = str(body.get("worker", "")).rstrip("/")
                    if response.status == 200 and worker in urls:
                        found[restaurant] = worker
                        break
                if response.status == 404:
                    url = f"{first}/ws/partner?restaurantId={restaurant}&access_token={token}"
                    async with session.get(url) as response:
                        body = await response.json(content_type=None) if response.status == 421 else {}
                        if response.status == 421 and body.get("owner", "").rstrip("/") in urls:
                            found[restaurant] = body["owner"].rstrip("/")
                            break
                        if response.status == 400:  # admitted, then refused the non-WebSocket GET: it owns it
                            found[restaurant] = first
                            break
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"no owner found for {restaurant}")
    return found


async def failover_run(cfg: Config, log_dir: Path, rep: int) -> dict[str, Any]:
    async with Stack(cfg, log_dir, f"failover-r{rep}") as stack:
        first = await stack.server("partner-stream", "worker-a")
        second = await stack.server("partner-stream", "worker-b")
        await first.wait_ready()
        await second.wait_ready()
        owner = await owners([first, second], stack.restaurants)
        specs = []
        for i in range(cfg.failover_tablets):
            restaurant = stack.restaurants[i % len(stack.restaurants)]
            specs.append([restaurant, "plain", owner[restaurant]])
        fleets = (await stack.fleet_for(len(specs)))[:1]
        connect = await stack.connect(specs, fleets)
        fleet = fleets[0]
        load = stack.load
        assert load is not None
        on_victim = sum(1 for s in specs if s[2] == first.base_url)
        stop = asyncio.Event()
        load_task = asyncio.get_running_loop().create_task(load.run(cfg.failover_rate, 3600, stop))
        await fleet.call("follow", bases=[second.base_url], interval=0.1, deadline=cfg.failover_deadline)
        await asyncio.sleep(cfg.failover_before_kill)
        killed_at = time.time()
        created_before_kill = load.counter
        first.kill()
        status: dict[str, Any] = {}
        deadline = time.monotonic() + cfg.failover_deadline
        while time.monotonic() < deadline:
            status = await fleet.call("follow_status")
            if status["dropped"] >= on_victim and status["reconnected"] >= status["dropped"]:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(cfg.failover_after_reconnect)
        stop.set()
        sent = await load_task
        # Let the last events through, then compare the producer's truth with the table and every tablet.
        expected = load.expected_pending()
        # The table as a new tablet of each restaurant sees it now (a snapshot from the survivor), until it
        # matches the producer's truth or the settle window ends: what is still off then is lost (or stuck).
        probe = [[restaurant, "plain", second.base_url] for restaurant in stack.restaurants]
        settle_started = time.monotonic()
        while True:
            reply = await fleet.call("snapshots", tablets=probe, secret=procs.BENCH_JWT_SECRET)
            snapshots = reply["snapshots"]
            table_missing = table_extra = 0
            sample: list[str] = []
            for restaurant in stack.restaurants:
                orders = set(snapshots.get(restaurant, ()))
                table_missing += len(expected[restaurant] - orders)
                table_extra += len(orders - expected[restaurant])
                sample += [f"missing {o}" for o in expected[restaurant] - orders]
                sample += [f"still pending {o}" for o in orders - expected[restaurant]]
            if not sample or time.monotonic() - settle_started > cfg.failover_settle:
                break
            await asyncio.sleep(1.0)
        settled_after = round(time.monotonic() - settle_started, 1)
        unreadable = len(stack.restaurants) - len(snapshots)
        await asyncio.sleep(1.0)  # the connected tablets get the same last pushes
        views = (await fleet.call("views"))["views"]
        tablet_missing = sum(len(expected[r] - set(v)) for r, vs in views.items() for v in vs)
        tablet_stale = sum(len(set(v) - expected[r]) for r, vs in views.items() for v in vs)
        stats = await fleet.call("stats", series=False)
    gap = status.get("gap_seconds", {})
    last = status.get("last_snapshot")
    return {
        "rep": rep,
        "tablets": cfg.failover_tablets,
        "rate": cfg.failover_rate,
        "initial_connect": connect,
        "tablets_on_killed_worker": on_victim,
        "dropped": status.get("dropped"),
        "reconnected": status.get("reconnected"),
        "all_back_after_kill_s": round(last - killed_at, 2) if last else None,
        "per_tablet_gap_s": gap,
        "events_sent": sent.sent,
        "orders_lost_table": table_missing,
        "restaurants_unreadable": unreadable,
        "orders_extra_table": table_extra,
        "table_mismatch_sample": sorted(sample, key=lambda x: int(x.split(" o")[1].split("-")[0]))[:20],
        "orders_created_before_kill": created_before_kill,
        "table_checked_after_s": settled_after,
        "orders_missing_on_tablets": tablet_missing,
        "orders_stale_on_tablets": tablet_stale,
        "seq_gaps_seen": stats["gaps"],
    }
