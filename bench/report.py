"""Turn ``bench-results/*.json`` into ``benchmarks.md`` (tables, ratios to the floor, targets) and PNG plots.

Everything between the analysis markers of an existing benchmarks.md is kept as written by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .config import COST_SYSTEMS, DEFAULT_TABLET_MIX

ANALYSIS_START = "<!-- analysis:start (kept when the report is regenerated) -->"
ANALYSIS_END = "<!-- analysis:end -->"
PS = "partner-stream"
DASH = "\u2013"  # en dash, for ranges
TIMES = "\u00d7"
MICROS = " \u00b5s"
FLOOR = "floor"


def load_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    """The suite's scenario results; the other benches' files beside them (abuse, drain, ...) have no scenario."""
    found = {}
    for path in sorted(results_dir.glob("*.json")):
        document = json.loads(path.read_text())
        if "scenario" in document:
            found[document["scenario"]] = document
    return found


def previous_sustained_rate(results_dir: Path) -> float | None:
    path = results_dir / "throughput.json"
    if not path.exists():
        return None
    runs = json.loads(path.read_text())["runs"]
    return min(r["sustained_rate"] for r in runs) or None


# -- formatting ------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def span(values: list[float | None], digits: int = 1, unit: str = "") -> str:
    """A range over repetitions ("12\u201315 ms"), or one number when they agree."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "\u2013"
    low, high = min(values), max(values)
    same = _num(low, digits) == _num(high, digits)
    text = _num(low, digits) if same else f"{_num(low, digits)}{DASH}{_num(high, digits)}"
    return f"{text}{unit}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "\u2013" if ok is None else ("**met**" if ok else "**missed**")


# -- plots -----------------------------------------------------------------------------------


def _plt():  # matplotlib is an optional (bench) dependency
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency(document: dict[str, Any], out: Path) -> list[str]:
    plt = _plt()
    runs = document["runs"]
    made = []
    tablet_counts = sorted({r["tablets"] for r in runs})
    fig, axes = plt.subplots(1, len(tablet_counts), figsize=(5.5 * len(tablet_counts), 4), squeeze=False)
    for ax, tablets in zip(axes[0], tablet_counts, strict=True):
        for system, color in ((FLOOR, "tab:gray"), (PS, "tab:blue")):
            cells = sorted({r["rate"] for r in runs if r["tablets"] == tablets and r["system"] == system})
            for metric, style in (("p50", ":"), ("p99", "-")):
                lows, highs, mids = [], [], []
                for rate in cells:
                    values = [
                        r["latency_ms"].get(metric)
                        for r in runs
                        if r["tablets"] == tablets and r["system"] == system and r["rate"] == rate
                    ]
                    values = [v for v in values if v is not None]
                    lows.append(min(values) if values else math.nan)
                    highs.append(max(values) if values else math.nan)
                    mids.append(sum(values) / len(values) if values else math.nan)
                ax.plot(cells, mids, style, marker="o", color=color, label=f"{system} {metric}")
                ax.fill_between(cells, lows, highs, color=color, alpha=0.15)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events/s")
        ax.set_ylabel("produce \u2192 tablet latency (ms)")
        ax.set_title(f"{tablets:,} tablets over {document['meta']['config']['restaurants']} restaurants")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency-percentiles.png", dpi=110)
    plt.close(fig)
    made.append("latency-percentiles.png")

    # CDFs at every rate for the largest tablet count (rep 0).
    tablets = tablet_counts[-1]
    rates = sorted({r["rate"] for r in runs if r["tablets"] == tablets})
    fig, axes = plt.subplots(1, len(rates), figsize=(4.5 * len(rates), 3.6), squeeze=False)
    for ax, rate in zip(axes[0], rates, strict=True):
        for run in runs:
            if run["tablets"] != tablets or run["rate"] != rate or "cdf" not in run["latency_ms"]:
                continue
            cdf = run["latency_ms"]["cdf"]
            ys = [i / (len(cdf) - 1) for i in range(len(cdf))]
            color = "tab:gray" if run["system"] == FLOOR else "tab:blue"
            ax.plot(cdf, ys, color=color, alpha=0.8, label=f"{run['system']} rep {run['rep']}")
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms)")
        ax.set_title(f"{_num(rate)} ev/s, {tablets:,} tablets")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("share of pushes")
    fig.tight_layout()
    fig.savefig(out / "latency-cdf.png", dpi=110)
    plt.close(fig)
    made.append("latency-cdf.png")
    return made


def plot_throughput(document: dict[str, Any], out: Path) -> list[str]:
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run in document["runs"]:
        offered = [s["offered_rate"] for s in run["steps"]]
        left.plot(offered, [s["delivered_events_per_s"] for s in run["steps"]], marker="o", label=f"rep {run['rep']}")
        right.plot(offered, [s["p99_ms"] or math.nan for s in run["steps"]], marker="o", label=f"rep {run['rep']}")
    top = max((s["offered_rate"] for r in document["runs"] for s in r["steps"]), default=1)
    left.plot([0, top], [0, top], "k--", alpha=0.4, label="delivered = offered")
    left.set_xlabel("offered events/s")
    left.set_ylabel("events/s pushed to tablets (step + grace)")
    left.set_title("partner-stream, one worker")
    right.set_xlabel("offered events/s")
    right.set_ylabel("p99 latency in the step (ms)")
    right.set_yscale("log")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
    return ["throughput.png"]


def plot_memory(document: dict[str, Any], out: Path) -> list[str]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for system, color in ((FLOOR, "tab:gray"), (PS, "tab:blue")):
        for run in document["runs"]:
            if run["system"] != system:
                continue
            ax.plot(
                [p["tablets"] for p in run["points"]],
                [p["per_tablet_kib"] for p in run["points"]],
                marker="o",
                color=color,
                alpha=0.8,
                label=f"{system} rep {run['rep']}",
            )
    ax.axhline(16, color="tab:red", linestyle="--", label="target 16 KiB")
    ax.set_xscale("log")
    ax.set_xlabel("idle tablets connected")
    ax.set_ylabel("server RSS growth per tablet (KiB)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "memory.png", dpi=110)
    plt.close(fig)
    return ["memory.png"]


# -- sections --------------------------------------------------------------------------------


def _pairs(runs: list[dict[str, Any]], key: tuple) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(floor, partner-stream) runs of the same cell and repetition."""

    def cell(r: dict[str, Any]) -> tuple:
        return tuple(r[k] for k in key)

    floors = {(*cell(r), r["rep"]): r for r in runs if r["system"] == FLOOR}
    return [(floors[(*cell(r), r["rep"])], r) for r in runs if r["system"] == PS and (*cell(r), r["rep"]) in floors]


def latency_section(document: dict[str, Any], targets: list[list[str]]) -> str:
    runs = document["runs"]
    rows = []
    ratio_rows = []
    cells = sorted({(r["tablets"], r["rate"]) for r in runs})
    for tablets, rate in cells:
        for system in (FLOOR, PS):
            group = [r for r in runs if r["tablets"] == tablets and r["rate"] == rate and r["system"] == system]
            if not group:
                continue
            lat = [r["latency_ms"] for r in group]
            server = "worker" if system == PS else "floor"
            rows.append(
                [
                    f"{tablets:,}",
                    _num(rate),
                    system,
                    span([x.get("p50") for x in lat], unit=" ms"),
                    span([x.get("p90") for x in lat], unit=" ms"),
                    span([x.get("p99") for x in lat], unit=" ms"),
                    span([x.get("max") for x in lat], unit=" ms"),
                    span([100 * r["delivered_share"] for r in group if r["delivered_share"] is not None], 1, " %"),
                    span([r["cpu"]["cpu_percent_of_core"].get(server) for r in group], 0, " %"),
                    span([r["cpu"]["cpu_percent_of_core"].get("broker") for r in group], 0, " %"),
                    span([r["cpu"]["other_processes_percent_of_core"] for r in group], 0, " %"),
                ]
            )
        pairs = [(f, p) for f, p in _pairs(runs, ("tablets", "rate")) if f["tablets"] == tablets and f["rate"] == rate]
        if pairs:
            ratios = {
                m: [p["latency_ms"].get(m, math.nan) / f["latency_ms"].get(m, math.nan) for f, p in pairs]
                for m in ("p50", "p90", "p99", "max")
            }
            by_protocol = []
            for protocol in ("signalr", "plain"):
                values = [
                    p["latency_by_protocol_ms"].get(protocol, {}).get("p99", math.nan)
                    / f["latency_ms"].get("p99", math.nan)
                    for f, p in pairs
                ]
                by_protocol.append(span(values, 2, "\u00d7"))
            behind = any((p["delivered_share"] or 0) < 0.99 for _, p in pairs)
            label = _num(rate) + (" (*behind*)" if behind else "")
            ratio_rows.append([f"{tablets:,}", label, *(span(ratios[m], 2, "\u00d7") for m in ratios), *by_protocol])
    # Target: p99 <= 1.5 x floor at 1,000 ev/s with 5,000 tablets.
    target_pairs = [(f, p) for f, p in _pairs(runs, ("tablets", "rate")) if f["tablets"] == 5000 and f["rate"] == 1000]
    if target_pairs:
        behind = [p["delivered_share"] for _, p in target_pairs if (p["delivered_share"] or 0) < 0.99]
        ratios = [p["latency_ms"]["p99"] / f["latency_ms"]["p99"] for f, p in target_pairs]
        ok: bool | None = not behind and max(ratios) <= 1.5
        measured = span(ratios, 2, "\u00d7 floor")
        if behind:
            measured = (
                f"partner-stream fell behind: {span([100 * b for b in behind], 0, ' %')} of pushes delivered "
                f"(p99 of those {span([p['latency_ms']['p99'] / 1000 for _, p in target_pairs], 1, ' s')}, "
                f"floor {span([f['latency_ms']['p99'] / 1000 for f, _ in target_pairs], 1, ' s')})"
            )
    else:
        ok, measured = None, "not run (needs 1,000 ev/s with 5,000 tablets)"
    targets.append(["e2e p99 at 1,000 ev/s, 5,000 tablets", "\u2264 1.5\u00d7 floor p99", measured, _verdict(ok)])
    high = document.get("high_rate")
    text = [
        "## 1. End-to-end latency (produce \u2192 tablet receives)",
        "",
        f"Rates: {', '.join(_num(r) for r in sorted({r['rate'] for r in runs}))} events/s"
        + (f" ({_num(high)} ev/s is partner-stream's highest sustained rate from the throughput ramp)" if high else "")
        + f"; {document['meta']['config']['load_seconds']:.0f} s measured after "
        f"{document['meta']['config']['warmup_seconds']:.0f} s of warm-up; producer linger "
        f"{document['meta']['producer_linger_ms']} ms. partner-stream tablets are half SignalR, half plain. "
        "Ranges are min\u2013max over repetitions. *delivered* is pushes received \u00f7 pushes owed "
        "(events \u00d7 tablets of the restaurant) by the end of the drain window; CPU is % of one core over "
        "the measured load; *others* is CPU used on the box by processes the suite did not start.",
        "",
        _table(
            [
                "tablets",
                "ev/s",
                "system",
                "p50",
                "p90",
                "p99",
                "max",
                "delivered",
                "server CPU",
                "broker CPU",
                "others",
            ],
            rows,
        ),
        "",
        "Ratio partner-stream \u00f7 floor (same run of the suite, same repetition index). Where partner-stream "
        "delivered less than 99 % of its pushes in the window (it fell behind), its percentiles cover only what "
        "arrived, so the ratio flatters it (marked *behind*):",
        "",
        _table(["tablets", "ev/s", "p50", "p90", "p99", "max", "p99 SignalR tablets", "p99 plain tablets"], ratio_rows),
        "",
        "![latency percentiles](bench-results/latency-percentiles.png)",
        "",
        "![latency CDFs](bench-results/latency-cdf.png)",
    ]
    return "\n".join(text)


def throughput_target_of_issue_14(runs: list[dict[str, Any]], cfg: dict[str, Any]) -> list[str]:
    """>= 2,000 ev/s with 1,000 tablets, counted only on a quiet box, with the worker's CPU share said."""
    tablets = runs[0]["tablets"] if runs else 0
    valid = [r for r in runs if r.get("valid", False)]
    limit = cfg.get("max_others_share", 0.2)
    goal = f"\u2265 2,000 ev/s, {tablets:,} tablets, others \u2264 {100 * limit:.0f} % of the box"
    if not valid:
        return ["sustained events/s, quiet box (#14)", goal, f"no valid run of {len(runs)}", _verdict(None)]
    rates = [r["sustained_rate"] for r in valid]
    measured = (
        f"{span(rates, 0, ' ev/s')} ({len(valid)} of {len(runs)} runs valid); worker "
        f"{span([r.get('worker_cpu_at_sustained') for r in valid], 0, ' %')} of a core at that rate"
    )
    return ["sustained events/s, quiet box (#14)", goal, measured, _verdict(tablets >= 1000 and min(rates) >= 2000)]


def throughput_section(document: dict[str, Any], targets: list[list[str]]) -> str:
    runs = document["runs"]
    rows = []
    for run in runs:
        for step in run["steps"]:
            rows.append(
                [
                    str(run["rep"]),
                    _num(step["offered_rate"]),
                    _num(step["delivered_events_per_s"]),
                    f"{100 * step['delivered_share']:.1f} %",
                    f"{100 * step['kept_up_share']:.1f} %" if "kept_up_share" in step else "\u2013",
                    _num(step["lag_events"]),
                    _num(step["p50_ms"]),
                    _num(step["p99_ms"]),
                    _num(step["cpu"]["cpu_percent_of_core"].get("worker"), 0),
                    _num(step["cpu"]["other_processes_percent_of_core"], 0),
                    ("yes" if step["sustained"] else "**no**") + ("" if step.get("valid", True) else " (box busy)"),
                ]
            )
    sustained = [r["sustained_rate"] for r in runs]
    capacity = [r["capacity_under_backlog"] for r in runs]
    worst = min(sustained) if sustained else 0
    targets.append(
        ["sustained events/s per worker", "\u2265 5,000", span(sustained, 0, " ev/s"), _verdict(worst >= 5000)]
    )
    targets.append(throughput_target_of_issue_14(runs, document["meta"]["config"]))
    cfg = document["meta"]["config"]
    text = [
        "## 2. Sustained throughput per worker",
        "",
        f"One worker, {runs[0]['tablets']:,} tablets (every event is a table update and a push to 2 tablets), "
        f"offered load stepped up every {cfg['step_seconds']:.0f} s on one fresh broker per repetition. A step is "
        f"*sustained* when \u2265 {100 * cfg['sustained_share']:.0f} % of its pushes arrive within "
        f"{cfg['step_grace']:.0f} s after it and \u2265 {100 * cfg.get('keep_up_share', 0.0):.0f} % had already "
        "arrived when the producer finished the step (the lag does not grow); the ramp stops at the first step "
        "that is not.",
        "",
        f"**Highest sustained rate: {span(sustained, 0, ' events/s')}**; throughput while overloaded (events/s "
        f"actually pushed in the first failing step): {span(capacity, 0, ' events/s')}.",
        "",
        _table(
            [
                "rep",
                "offered ev/s",
                "pushed ev/s",
                "delivered",
                "arrived by the step's end",
                "lag (events)",
                "p50 ms",
                "p99 ms",
                "worker CPU",
                "others",
                "sustained",
            ],
            rows,
        ),
        "",
        "![throughput](bench-results/throughput.png)",
    ]
    return "\n".join(text)


def _cost_steps(runs: list[dict[str, Any]], system: str, rate: float) -> list[dict[str, Any]]:
    return [s for r in runs if r["system"] == system for s in r["steps"] if s["offered_rate"] == rate]


def _us(steps: list[dict[str, Any]]) -> list[float | None]:
    return [s["server_us_per_event"] for s in steps if s.get("valid", True)]


def cost_bounds(runs: list[dict[str, Any]]) -> dict[float, dict[str, list[float]]]:
    """Per rate and repetition: the bridge's push cost (with tablets minus without), and the bounds a Faust worker
    that pushes cannot go under: stock Faust's one-write agent plus that push cost, with Faust's 1.5 s fetch wait
    (*bound*, the cheapest) and with a 5 ms one (*bound_5ms*, what a worker pushing within milliseconds needs);
    and partner-stream against each."""
    bounds: dict[float, dict[str, list[float]]] = {}
    rates = sorted({s["offered_rate"] for r in runs for s in r["steps"]})
    reps = sorted({r["rep"] for r in runs})
    for rate in rates:
        found: dict[str, list[float]] = {"push": [], "bound": [], "ratio": [], "bound_5ms": [], "ratio_5ms": []}
        for rep in reps:
            one = [r for r in runs if r["rep"] == rep]
            us = {system: _us(_cost_steps(one, system, rate)) for system, _kind, _tablets in COST_SYSTEMS}
            needed = ("partner-stream", "floor", "floor, no tablets", "bare faust")
            if not all(len(us[system]) == 1 and us[system][0] for system in needed):
                continue
            ours = us["partner-stream"][0]
            pushing = us["floor"][0] - us["floor, no tablets"][0]
            found["push"].append(pushing)
            found["bound"].append(us["bare faust"][0] + pushing)
            found["ratio"].append(ours / found["bound"][-1])
            short_wait = us["bare faust, 5 ms fetch"]
            if len(short_wait) == 1 and short_wait[0]:
                found["bound_5ms"].append(short_wait[0] + pushing)
                found["ratio_5ms"].append(ours / found["bound_5ms"][-1])
        bounds[rate] = found
    return bounds


def _at_rate(values: list[float], rate: float) -> str:
    """CPU per event, and in brackets the share of a core that is at ``rate``."""
    return f"{span(values, 0, MICROS)} ({span([v * rate / 1e4 for v in values], 0, ' %')})"


def cost_section(document: dict[str, Any], targets: list[list[str]]) -> str:
    runs = document["runs"]
    bounds = cost_bounds(runs)
    rows = []
    for rate, bound in bounds.items():
        cells = [_num(rate, 0)]
        for system, _kind, _tablets in COST_SYSTEMS:
            cells.append(_at_rate([u for u in _us(_cost_steps(runs, system, rate)) if u], rate))
        cells += [
            span(bound["push"], 0, MICROS),
            _at_rate(bound["bound"], rate),
            _at_rate(bound["bound_5ms"], rate),
            f"{span(bound['ratio'], 2, TIMES)} / {span(bound['ratio_5ms'], 2, TIMES)}",
        ]
        rows.append(cells)
    top = max(bounds) if bounds else None
    if top is not None and bounds[top]["bound"]:
        cheapest = [b * top / 1e4 for b in bounds[top]["bound"]]
        latency_bound = [b * top / 1e4 for b in bounds[top]["bound_5ms"]]
        targets.append(
            [
                f"what any Faust worker that pushes needs at {top:,.0f} ev/s (#14 goal 2)",
                "well under a core, or its p99 cannot stay near the bridge's",
                f"\u2265 {span(cheapest, 0, ' %')} of a core (1.5 s fetch), \u2265 {span(latency_bound, 0, ' %')} "
                f"(5 ms fetch); partner-stream {span(bounds[top]['ratio_5ms'], 2, TIMES)} the latter",
                _verdict(None),
            ]
        )
    tablets = max((r["tablets"] for r in runs), default=0)
    text = [
        "## 2b. CPU per event at the live rates, against Faust's floor and the bridge's",
        "",
        f"Each server on its own fresh broker, at each rate for {document['meta']['config']['step_seconds']:.0f} s; "
        "its CPU counted from the step's first event until its own count has every event of the step (and, "
        "with tablets, every push arrived): CPU per event, and in brackets the share of a core that cost means at "
        f"that rate. *partner-stream* and *floor* push to {tablets:,} tablets; *floor, no tablets* is the same "
        "bridge with none, so the difference is what pushing costs it. *bare faust* is a stock Faust agent "
        "writing one table key per event (bench/bare_faust.py), with Faust's own 1.5 s fetch wait: its cheapest "
        "(larger batches), but a push would wait up to 1.5 s; *5 ms fetch* is the same agent with the wait "
        "partner-stream and the bridge use on this broker (Tansu's fetch does not return when data arrives). "
        "*bound* = bare faust + the bridge's push: what a Faust worker that writes its table once per event and "
        "pushes like the bridge cannot go under.",
        "",
        _table(
            [
                "ev/s",
                "partner-stream",
                "floor",
                "floor, no tablets",
                "bare faust",
                "bare faust, 5 ms fetch",
                "push (floor)",
                "bound",
                "bound, 5 ms fetch",
                "partner-stream \u00d7 bound / \u00d7 bound, 5 ms",
            ],
            rows,
        ),
    ]
    return "\n".join(text)


def memory_section(document: dict[str, Any], targets: list[list[str]]) -> str:
    runs = document["runs"]
    sizes = sorted({p["wanted"] for r in runs for p in r["points"]})
    rows = []
    for system in (FLOOR, PS):
        group = [r for r in runs if r["system"] == system]
        if not group:
            continue
        row = [system, span([r["baseline_rss_mib"] for r in group], 0, " MiB")]
        for size in sizes:
            points = [p for r in group for p in r["points"] if p["wanted"] == size]
            label = span([p["per_tablet_kib"] for p in points], 1, " KiB")
            if any(p["capped_by_fd_limit"] for p in points):
                label += f" (at {min(p['tablets'] for p in points):,})"
            row.append(label)
        rows.append(row)
    ps_points = [p for r in runs if r["system"] == PS for p in r["points"]]
    worst = max((p["per_tablet_kib"] for p in ps_points), default=None)
    targets.append(
        [
            "RSS per idle tablet",
            "\u2264 16 KiB",
            span([p["per_tablet_kib"] for p in ps_points], 1, " KiB"),
            _verdict(None if worst is None else worst <= 16),
        ]
    )
    limit = runs[0].get("fd_limit")
    text = [
        "## 3. Idle tablet memory",
        "",
        "Server RSS (VmRSS) growth over its idle baseline, divided by the connected tablets; tablets are added "
        "in steps on one server, idle except their 15 s keep-alive ping. partner-stream tablets are half "
        "SignalR, half plain. No `gc.collect()` in either server (the floor note's 20.1\u201320.5 KiB was measured "
        "after one).",
        "",
        _table(["system", "baseline", *(f"{s:,} tablets" for s in sizes)], rows),
        "",
        (
            f"The open-files limit here is {limit:,} per process (hard limit; not raisable in this sandbox), so the "
            "largest step is capped just under it."
            if limit and limit < max(sizes) + 400
            else ""
        ),
        "",
        "![memory](bench-results/memory.png)",
    ]
    return "\n".join(text)


def storm_section(document: dict[str, Any], targets: list[list[str]]) -> str:
    runs = document["runs"]
    rows = []
    modes = ("all at once", "paced")
    mixes = _storm_mixes(runs)
    for mode in modes:
        for system, mix in [(FLOOR, None)] + [(PS, m) for m in mixes]:
            same = [r for r in runs if r["system"] == system and (mix is None or _mix(r) == mix)]
            group = [r["storms"][mode] for r in same if mode in r.get("storms", {})]
            if not group:
                continue
            first = same[0]
            limit = group[0]["in_flight_limit"]
            server = "worker" if system == PS else "floor"
            rows.append(
                [
                    mode + (f" (\u2264 {limit} in flight)" if limit else ""),
                    system if mix is None else f"{system} ({' + '.join(mix)})",
                    f"{first['tablets']:,}",
                    str(first["pending_per_restaurant"]),
                    span([g["reconnects_per_s"] for g in group], 0, "/s"),
                    span([g["time_to_snapshot_s"].get("p50") for g in group], 2, " s"),
                    span([g["time_to_snapshot_s"].get("p99") for g in group], 2, " s"),
                    span([g["seconds"] for g in group], 2, " s"),
                    span([sum(g["failures"].values()) for g in group], 0),
                    span([g.get("server_cpu_ms_per_reconnect") for g in group], 2, " ms"),
                    span([g["cpu"]["cpu_percent_of_core"].get(server) for g in group], 0, " %"),
                    span([_client_cpu(g["cpu"]["cpu_percent_of_core"]) for g in group], 0, " %"),
                    span([g["cpu"].get("box_busy_percent") for g in group], 0, " %"),
                    span([g["cpu"]["other_processes_percent_of_core"] for g in group], 0, " %"),
                ]
            )
    for index, mix in enumerate(mixes):
        storms = [r["storms"]["all at once"] for r in runs if r["system"] == PS and _mix(r) == mix and "storms" in r]
        worst = min((g["reconnects_per_s"] or 0 for g in storms), default=None)
        ratios = _storm_ratios_to_floor(runs, mix)
        targets.append(
            [
                f"reconnect storm (all at once), {' + '.join(mix)} tablets"
                + (" (the target's)" if index == 0 and len(mixes) > 1 else ""),
                "\u2265 1,000 reconnects/s and \u2265 1.0\u00d7 the floor",
                span([g["reconnects_per_s"] for g in storms], 0, "/s")
                + (f", {span(ratios, 2, chr(0xD7))} the floor" if ratios else ""),
                _verdict(None if worst is None else worst >= 1000 and (not ratios or min(ratios) >= 1.0)),
            ]
        )
    text = [
        "## 4. Reconnect storm",
        "",
        "Every tablet's socket is aborted at once (no close frame, as a network drop), then every tablet "
        "reconnects: partner-stream SignalR tablets negotiate (HTTP POST + token check), open the socket "
        "(token check again) and handshake; *signalr-direct* tablets skip the negotiate, as the official client "
        "with `skipNegotiation: true`; plain tablets open the socket with their token. Each mix of tablets is its "
        "own run, against the floor of the same repetition. The clock stops when "
        "the tablet has its snapshot (`PendingOrders`). The floor has no auth and sends an empty snapshot. "
        "Failed attempts (refused or reset) are retried after 50 ms and counted. *All at once* is the storm as "
        "it happens; *paced* repeats it with the client keeping a bounded number of reconnects in flight, which "
        "shows what the server does when its listen queue does not overflow. The tablets are split over "
        "several client processes that drop theirs at the same moment (one Python client saturates its core "
        "first); *server CPU per reconnect* is the server's CPU time over the storm divided by the reconnects, "
        "the rate's cost without the box's limits.",
        "",
        _table(
            [
                "storm",
                "system",
                "tablets",
                "pending/restaurant",
                "reconnects/s",
                "p50 to snapshot",
                "p99 to snapshot",
                "all back",
                "failed attempts",
                "server CPU per reconnect",
                "server CPU",
                "client CPU",
                "box busy",
                "others",
            ],
            rows,
        ),
    ]
    return "\n".join(text)


def _mix(run: dict[str, Any]) -> tuple[str, ...]:
    return tuple(run.get("protocols") or DEFAULT_TABLET_MIX)  # runs from before mixes were recorded


def _storm_mixes(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """partner-stream's tablet mixes, in the order they ran (the first is the target's)."""
    return list(dict.fromkeys(_mix(r) for r in runs if r["system"] == PS))


def _storm_ratios_to_floor(runs: list[dict[str, Any]], mix: tuple[str, ...] = DEFAULT_TABLET_MIX) -> list[float]:
    """partner-stream's all-at-once storm rate with ``mix`` over the floor's, each repetition against its own."""
    floor = {
        r["rep"]: r["storms"]["all at once"]["reconnects_per_s"] for r in runs if r["system"] != PS and "storms" in r
    }
    return [
        r["storms"]["all at once"]["reconnects_per_s"] / floor[r["rep"]]
        for r in runs
        if r["system"] == PS
        and _mix(r) == mix
        and "storms" in r
        and floor.get(r["rep"])
        and r["storms"]["all at once"]["reconnects_per_s"]
    ]


def _client_cpu(per_process: dict[str, float]) -> float:
    """The bench's tablet clients, summed over their processes (% of one core)."""
    return sum(v for name, v in per_process.items() if name.startswith("fleet"))


def idle_section(document: dict[str, Any], targets: list[list[str]]) -> str:
    runs = document["runs"]
    rows = []
    last_by_system: dict[str, list[float]] = {}
    cpu_by_system: dict[str, list[float]] = {}
    for system in (FLOOR, PS):
        group = [r for r in runs if r["system"] == system]
        if not group:
            continue
        idle_last = [p["last_ms"] for r in group for p in r["probes"]]
        last_by_system[system] = idle_last
        idle_cpu = [
            p["idle_cpu"]["server_percent_of_core"]
            for r in group
            for p in r["probes"]
            if p.get("idle_cpu", {}).get("server_percent_of_core") is not None
        ]
        cpu_by_system[system] = idle_cpu
        rows.append(
            [
                system,
                span([r["warm"]["first_ms"] for r in group], 1, " ms"),
                span([r["warm"]["last_ms"] for r in group], 1, " ms"),
                span([p["first_ms"] for r in group for p in r["probes"]], 1, " ms"),
                span(idle_last, 1, " ms"),
                span(idle_cpu, 1, " %") if idle_cpu else "\u2013",
            ]
        )
    diffs = []
    for floor_run, ps_run in _pairs(runs, ()):
        for f, p in zip(floor_run["probes"], ps_run["probes"], strict=False):
            if f["last_ms"] is not None and p["last_ms"] is not None:
                diffs.append(p["last_ms"] - f["last_ms"])
    ok = None if not diffs else max(diffs) <= 100
    targets.append(
        [
            "first push after idle",
            "within 100 ms of the floor",
            span(diffs, 0, " ms slower than the floor") if diffs else "\u2013",
            _verdict(ok),
        ]
    )
    if cpu_by_system.get(PS):
        tablets = runs[0].get("tablets", 0)
        targets.append(
            [
                f"idle worker CPU, {tablets:,} tablets",
                "\u2264 5 % of a core",
                span(cpu_by_system[PS], 1, " % of a core"),
                _verdict(max(cpu_by_system[PS]) <= 5.0),
            ]
        )
    text = [
        "## 5. First push after a long idle period",
        "",
        f"{runs[0].get('idle_seconds', 0):.0f} s with no event at all (tablets connected and pinging), then one "
        "new order for one restaurant; *first*/*last* is the latency to the first/last of that restaurant's "
        "tablets. *warm* is the same probe right after a few seconds of 100 ev/s. *server CPU while idle* is the "
        "server process's CPU over the idle period, in % of one core.",
        "",
        _table(
            ["system", "warm first", "warm last", "after idle first", "after idle last", "server CPU while idle"],
            rows,
        ),
    ]
    return "\n".join(text)


def failover_section(document: dict[str, Any], targets: list[list[str]]) -> str:
    runs = document["runs"]
    rows = []
    for run in runs:
        rows.append(
            [
                str(run["rep"]),
                f"{run['tablets']:,}",
                str(run["tablets_on_killed_worker"]),
                f"{run['reconnected']}/{run['dropped']}",
                _num(run["all_back_after_kill_s"], 2) + " s",
                _num(run["per_tablet_gap_s"].get("p50"), 2) + " s",
                _num(run["per_tablet_gap_s"].get("p99"), 2) + " s",
                str(run["events_sent"]),
                f"{run['orders_lost_table']} / {run['orders_extra_table']}",
                f"{run['orders_missing_on_tablets']} / {run['orders_stale_on_tablets']}",
                str(run["seq_gaps_seen"]),
            ]
        )
    lost = sum(r["orders_lost_table"] + r["orders_extra_table"] + r["orders_missing_on_tablets"] for r in runs)
    targets.append(["orders lost in failover", "0", str(lost), _verdict(lost == 0)])
    cfg = document["meta"]["config"]
    text = [
        "## 6. Failover gap",
        "",
        "Two workers; each plain tablet connects straight to its restaurant's owner (asked of one worker with "
        "`GET /api/restaurants/{id}/endpoint` and the tablet's token; a worker without that route is asked "
        f"through the plain socket's 421 answer); {_num(cfg['failover_rate'])} ev/s throughout; one worker is "
        f"SIGKILLed {cfg['failover_before_kill']:.0f} s in and its tablets retry the survivor every 100 ms (refused "
        "until it has taken the partitions over). *all back* is kill \u2192 the last affected tablet has its snapshot. "
        "After the load stops, the producer's open orders are compared with the survivor's table (a fresh "
        "snapshot per restaurant, retried until it matches or "
        f"{cfg.get('failover_settle', 30):.0f} s pass) and with every connected tablet's view (snapshot + pushes). "
        "An order missing, or resolved upstream but still pending, counts as lost; *gap* is per affected tablet, "
        "socket closed \u2192 snapshot from the survivor.",
        "",
        _table(
            [
                "rep",
                "tablets",
                "on killed worker",
                "reconnected",
                "all back",
                "p50 gap",
                "p99 gap",
                "events",
                "table: missing / resolved but pending",
                "tablets: missing / stale",
                "seq gaps",
            ],
            rows,
        ),
    ]
    return "\n".join(text)


HOW_TO_RUN = """## How to run

```bash
pip install -e '.[bench]'                # matplotlib, for the plots (without it: tables only)
python -m bench run                      # everything, default sizes (about 20 minutes here)
python -m bench run --quick              # everything, small sizes (about 10 minutes)
python -m bench run latency storm        # named scenarios only; their JSON is replaced, the rest kept
python -m bench run latency --reps 3 --rates 100,2000 --tablets 1000 --high-rate 800
python -m bench report                   # rebuild this page and the plots from docs/bench-results/*.json
python -m bench run throughput --upstream-key order   # upstream keyed by order ID: every event re-keyed
python -m bench run throughput --event-loop asyncio   # both servers on asyncio's loop instead of uvloop
python -m bench run --help               # every size option
python -m bench run cost --reps 2        # CPU per event at 1,000-2,000 ev/s: partner-stream, the bridge, Faust
python -m bench.drain                    # catch-up after an outage: CPU per event against a bare Faust agent
python -m bench.drain --profile --logs /tmp/drain   # the same, with py-spy stacks of both servers
```

Scenarios: `throughput`, `cost`, `latency`, `memory`, `storm`, `idle`, `failover`, `table`. The suite is not part of
`scripts/test`; `tests/test_bench_smoke.py` runs it with tiny sizes into a temp dir (no timing asserted).

Protocol (the floor note's): a fresh embedded broker (Tansu, in memory) for every run; producer linger
20 ms; upstream records keyed by restaurant ID on topics with as many partitions as the table, as
docs/operations.md recommends (`--upstream-key order` keys them by order ID instead, so every event takes
partner-stream's re-key hop); both servers on uvloop, partner-stream's default (`--event-loop asyncio` runs both
on asyncio's loop); consumer fetch max wait 5 ms for both systems; the floor and partner-stream run
one after the other in the same invocation, cell by cell; \u2265 2 repetitions, reported as ranges. The floor is
`bench/floor.py`: one aiokafka consumer (no group) forwarding each event to the restaurant's aiohttp sockets
through a bounded queue and one writer task per socket; no table, no Faust, no auth. partner-stream is real
`faust -A partner_stream worker -l info` processes (as the Dockerfile runs them) with the `embedded` profile,
real JWTs, real sockets.
Tablets live in separate processes (`bench/fleet.py`), so server RSS and CPU are the server's own; they speak
SignalR (negotiate, `/partnerhub`, JSON handshake, `\\x1e` records) or plain JSON through raw aiohttp sockets
and keep the view a tablet keeps (snapshot, pushes, `seq` checked). Latency is `time.time()` just before the
producer's `send()` (carried in `CustomerName`/`AcceptedAt`) to the tablet's parse, same clock. Each event goes
to a random one of the restaurants; a restaurant with 8 open orders gets an `OrderAccepted` for its oldest
instead of a new order, so once warm the mix is about half new orders, half accepts (both are pushed and
timed). Before each run the suite waits (up to 5 s) for the box to be under 30 % busy, and every table
reports the CPU that other processes on the machine used during the measurement."""


def table_section(document: dict[str, Any], targets: list[list[str]]) -> str:
    runs = document["runs"]
    histories = sorted({(row["pending"], row["resolved"]) for run in runs for row in run["rows"]})
    rows = []
    for pending, resolved in histories:
        cells = [row for run in runs for row in run["rows"] if (row["pending"], row["resolved"]) == (pending, resolved)]
        rows.append(
            [
                f"{pending:,}",
                f"{resolved:,}",
                span([c["per_event_us"] for c in cells], 0, " \u00b5s"),
                span([c["vs_empty"] for c in cells], 2, "\u00d7"),
                span([c["records_per_event"] for c in cells], 1, ""),
                span([c["bytes_per_event"] for c in cells], 0, " B"),
            ]
        )
    worst = max((row["vs_empty"] for run in runs for row in run["rows"]), default=0.0)
    targets.append(
        [
            "table step, busiest restaurant vs an empty one",
            "\u2264 1.2\u00d7",
            f"{worst:.2f}\u00d7 at worst",
            _verdict(worst <= 1.2),
        ]
    )
    return "\n".join(
        [
            "## 7. The table step alone (read, apply, write)",
            "",
            "One restaurant with P pending orders and R remembered resolutions; each measured step is an "
            "OrderCreated and the OrderAccepted of the same order, applied to a real RocksDB database in the bench "
            "process (`bench/table_cost.py`), no broker: what the per-order records cost per event, and that the "
            "cost does not grow with the restaurant's history. *\u00d7 empty* compares with the first row of the "
            "same run.",
            "",
            _table(["pending", "resolved remembered", "per event", "\u00d7 empty", "records", "bytes written"], rows),
        ]
    )


def write_report(out: Path) -> Path:
    results_dir = out / "bench-results"
    documents = load_results(results_dir)
    path = out / "benchmarks.md"
    analysis = ""
    if path.exists():
        text = path.read_text()
        if ANALYSIS_START in text and ANALYSIS_END in text:
            analysis = text.split(ANALYSIS_START, 1)[1].split(ANALYSIS_END, 1)[0].strip("\n")
    targets: list[list[str]] = []
    sections = []
    builders = {
        "latency": (latency_section, plot_latency),
        "throughput": (throughput_section, plot_throughput),
        "cost": (cost_section, None),
        "memory": (memory_section, plot_memory),
        "storm": (storm_section, None),
        "idle": (idle_section, None),
        "failover": (failover_section, None),
        "table": (table_section, None),
    }
    try:
        _plt()
        plotting = True
    except ImportError:
        plotting = False
    for name in ("latency", "throughput", "cost", "memory", "storm", "idle", "failover", "table"):
        if name not in documents:
            continue
        section, plot = builders[name]
        text = section(documents[name], targets)
        if plot is not None and plotting:
            plot(documents[name], results_dir)
        elif plot is not None:
            text = "\n".join(line for line in text.splitlines() if not line.startswith("![")) + (
                "\n\n_(plots skipped: matplotlib is not installed; `pip install -e '.[bench]'`)_"
            )
        sections.append(text)
    metas = [d["meta"] for d in documents.values()]
    machine = metas[0]["machine"] if metas else {}
    runs_when = sorted({m["generated"] for m in metas})
    modes = sorted({m["mode"] for m in metas})
    header = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench run` (see [How to run](#how-to-run)); the tables and plots below are "
        "rebuilt from `docs/bench-results/*.json`.",
        "",
        f"Machine: {machine.get('cpus', '?')} cores ({machine.get('cpu_model', 'unknown CPU')}), "
        f"{machine.get('memory_gib', '?')} GiB, Python {machine.get('python', '?')}, commit "
        f"{machine.get('commit', '?')}; results from {', '.join(runs_when) or DASH} ({', '.join(modes)} sizes). "
        "Broker, servers, producer and tablet processes all share these cores.",
        "",
        "## Targets",
        "",
        _table(["target", "goal", "measured (range over repetitions)", "verdict"], targets) if targets else "",
        "",
        ANALYSIS_START,
        analysis or "_No analysis written yet._",
        ANALYSIS_END,
        "",
    ]
    body = "\n".join(header) + "\n" + "\n\n".join(sections) + "\n\n" + HOW_TO_RUN + "\n"
    path.write_text(body)
    return path
