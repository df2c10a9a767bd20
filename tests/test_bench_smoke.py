"""The benchmark harness (bench/, issue 6) runs end to end with tiny sizes.

Not a benchmark: it asserts that the suite starts the embedded broker, the floor and a real worker, drives
SignalR and plain tablets, and writes JSON results and the Markdown report. It never asserts on timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_bench_runs_with_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            "latency",
            "storm",
            "table",
            "--smoke",
            "--out",
            str(out),
            "--logs",
            str(tmp_path / "logs"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    latency = json.loads((out / "bench-results" / "latency.json").read_text())
    systems = {run["system"] for run in latency["runs"]}
    assert systems == {"floor", "partner-stream"}
    for run in latency["runs"]:
        assert run["latency_ms"]["count"] > 0, run
        assert run["delivered_share"] is not None
    protocols = {
        p for run in latency["runs"] if run["system"] == "partner-stream" for p in run["latency_by_protocol_ms"]
    }
    assert protocols == {"signalr", "plain"}

    storm = json.loads((out / "bench-results" / "storm.json").read_text())
    for run in storm["runs"]:
        for storm_run in run["storms"].values():
            assert storm_run["reconnected"] == run["tablets"], run

    table = json.loads((out / "bench-results" / "table.json").read_text())
    assert [row["resolved"] for row in table["runs"][0]["rows"]] == [0, 10]

    report = (out / "benchmarks.md").read_text()
    assert "## 7. The table step alone" in report
    assert "## 1. End-to-end latency" in report
    assert "## 4. Reconnect storm" in report
    assert "partner-stream" in report and "floor" in report


@pytest.mark.timeout(180)
def test_drain_bench_runs_with_a_tiny_backlog(tmp_path: Path) -> None:
    out = tmp_path / "drain.json"
    command = [sys.executable, "-m", "bench.drain", "--events", "300", "--reps", "1", "--out", str(out)]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=170, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = json.loads(out.read_text())["runs"][0]
    for server in ("bare_faust", "partner_stream"):
        assert run[server]["events"] == 300 and run[server]["cpu_us_per_event"] > 0
    assert run["cpu_ratio_to_floor"] > 0


@pytest.mark.timeout(240)
def test_cost_bench_measures_partner_stream_and_both_floors(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    command = [sys.executable, "-m", "bench", "run", "cost", "--smoke", "--out", str(out)]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=230, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    cost = json.loads((out / "bench-results" / "cost.json").read_text())
    systems = {run["system"] for run in cost["runs"]}
    assert systems == {"partner-stream", "floor", "floor, no tablets", "bare faust", "bare faust, 5 ms fetch"}
    for run in cost["runs"]:
        for step in run["steps"]:
            assert step["events"] > 0 and step["caught_up_s"] is not None, run
            assert step["server_us_per_event"] > 0, run
    report = (out / "benchmarks.md").read_text()
    assert "## 2b. CPU per event at the live rates" in report
    assert "what any Faust worker that pushes needs" in report


def test_the_cost_bound_is_faust_plus_the_bridges_push_per_repetition() -> None:
    from bench.report import cost_bounds

    def run(system: str, rep: int, us: float) -> dict[str, object]:
        return {"system": system, "rep": rep, "steps": [{"offered_rate": 2000.0, "server_us_per_event": us}]}

    runs = [
        run("partner-stream", 0, 550.0),
        run("floor", 0, 160.0),
        run("floor, no tablets", 0, 130.0),
        run("bare faust", 0, 420.0),
        run("bare faust, 5 ms fetch", 0, 470.0),
        run("partner-stream", 1, 500.0),
        run("floor", 1, 170.0),
        run("floor, no tablets", 1, 150.0),
        run("bare faust", 1, 480.0),
    ]
    bounds = cost_bounds(runs)[2000.0]
    assert bounds["push"] == [30.0, 20.0]
    assert bounds["bound"] == [450.0, 500.0]
    assert bounds["ratio"] == [550.0 / 450.0, 1.0]
    assert bounds["bound_5ms"] == [500.0]  # the second repetition has no 5 ms run: no bound for it
    assert bounds["ratio_5ms"] == [1.1]
