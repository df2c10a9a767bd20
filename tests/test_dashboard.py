"""The local monitoring stack: Prometheus, Grafana's provisioning and the partner-stream dashboard.

No Docker is needed. The files are checked against each other (compose mounts what the provisioning reads, the
dashboard uses the provisioned data source, Prometheus scrapes every worker) and every metric the dashboard queries
is checked against the /metrics of a real worker (the session's ``shared_worker``), so a renamed metric turns a
panel into "No data" here first, not on an operator's screen.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support.workers import Worker

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
DASHBOARD = DASHBOARDS / "partner-stream.json"

WEB_PORT = 5003
PROMETHEUS_PORT = 9090
GRID_COLUMNS = 24

#: Series Prometheus writes itself for every target; no worker exports them.
PROMETHEUS_SYNTHETIC = {"up"}
#: partner_stream_* families the worker exports that the dashboard deliberately leaves out (none so far). A new
#: metric fails the coverage test until it gets a panel or a line here.
NOT_ON_DASHBOARD: set[str] = set()

#: PromQL words that look like metric names: functions, aggregations, keywords. Anything else is a metric name.
# fmt: off
PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time",
    "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "deg", "delta", "deriv", "exp", "first_over_time", "floor",
    "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time",
    "minute", "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}
PROMQL_AGGREGATIONS = {
    "avg", "bottomk", "count", "count_values", "group", "limit_ratio", "limitk", "max", "min", "quantile", "stddev",
    "stdvar", "sum", "topk",
}
PROMQL_KEYWORDS = {
    "and", "atan2", "bool", "by", "group_left", "group_right", "ignoring", "inf", "le", "nan", "offset", "on", "or",
    "unless", "without",
}
# fmt: on
NOT_METRICS = PROMQL_FUNCTIONS | PROMQL_AGGREGATIONS | PROMQL_KEYWORDS
#: Functions whose argument must be a counter (or a histogram's cumulative _bucket/_sum/_count).
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}

#: Suffixes a family's samples carry, by the type its ``# TYPE`` line declares.
SAMPLE_SUFFIXES = {
    "counter": ("", "_total"),
    "gauge": ("",),
    "untyped": ("",),
    "unknown": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
}


# --------------------------------------------------------------------------- loading


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.relative_to(ROOT)} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def provisioning_files(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if p.suffix in {".yml", ".yaml"})
    assert files, f"no provisioning file in {directory.relative_to(ROOT)}"
    return files


@pytest.fixture(scope="module")
def datasources() -> list[dict[str, Any]]:
    out = []
    for path in provisioning_files(DATASOURCES):
        data = load_yaml(path)
        assert data.get("apiVersion") == 1, f"{path.name}: apiVersion must be 1"
        out += data.get("datasources") or []
    return out


@pytest.fixture(scope="module")
def providers() -> list[dict[str, Any]]:
    out = []
    for path in provisioning_files(DASHBOARD_PROVIDERS):
        data = load_yaml(path)
        assert data.get("apiVersion") == 1, f"{path.name}: apiVersion must be 1"
        out += data.get("providers") or []
    return out


def worker_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if name.startswith("worker")}


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (resolved against the repo) of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = (ROOT / volume["source"]).resolve()
            continue
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where on the host a container path of a service comes from, through its bind mounts."""
    mounts = bind_mounts(service)
    for target in sorted(mounts, key=len, reverse=True):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return mounts[target] / posixpath.relpath(container_path, target)
    return None


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in panels(dashboard) if p.get("type") != "row"]


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of the dashboard."""
    return [(p["title"], t["expr"]) for p in query_panels(dashboard) for t in p["targets"]]


# --------------------------------------------------------------------------- PromQL


def strip_promql(expr: str) -> str:
    """The expression without what cannot name a metric: strings, Grafana variables, label matchers, ranges,
    grouping label lists and numbers."""
    out = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)
    out = re.sub(r"\$\{[^}]*\}|\$\w+", " ", out)
    out = re.sub(r"\{[^{}]*\}", " ", out)
    out = re.sub(r"\[[^\[\]]*\]", " ", out)
    out = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", out)
    return re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[A-Za-z0-9]*", " ", out)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers followed by ``{`` or ``[`` or used bare."""
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", strip_promql(expr)))
    return {w for w in words if w.lower() not in NOT_METRICS}


def counter_arguments(expr: str) -> set[str]:
    """Metric names given to rate(), irate(), increase() or resets()."""
    stripped = strip_promql(expr)
    pattern = r"\b(?:" + "|".join(COUNTER_FUNCTIONS) + r")\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)"
    return set(re.findall(pattern, stripped))


def balanced(expr: str) -> bool:
    stack = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in strip_string_literals(expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def strip_string_literals(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.99, sum by (instance, le) (rate(h_bucket{job="x", le!="+Inf"}[$__rate_interval])))',
            {"h_bucket"},
        ),
        ('count(up{job="partner-stream"} == 0) or vector(0)', {"up"}),
        ("sum(increase(a_total[1h])) / ignoring(x) max by (y) (b) > 1e3", {"a_total", "b"}),
        ("sum without (instance) (rate(c_total[5m] offset 1h)) and on (z) d:rule", {"c_total", "d:rule"}),
        ("max(e) by (f) - 1-g", {"e", "g"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    """The extractor itself, on the shapes the dashboard uses."""
    assert metric_names(expr) == names


def test_counter_argument_extraction() -> None:
    expr = "sum(rate(a_total[5m])) + increase(b_bucket{le='1'}[1h]) - max(c)"
    assert counter_arguments(expr) == {"a_total", "b_bucket"}


# --------------------------------------------------------------------------- the real worker's /metrics


def exposition_names(text: str) -> tuple[set[str], dict[str, str]]:
    """(sample names, {family: type}) of a Prometheus text exposition.

    Labelled metrics that were never used print only their ``# HELP``/``# TYPE`` lines, so families count too.
    """
    samples: set[str] = set()
    families: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            families[name] = kind.strip()
        elif line.startswith("# HELP "):
            families.setdefault(line.split(maxsplit=3)[2], "untyped")
        elif line and not line.startswith("#"):
            samples.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)[0])
    return samples, families


def resolve(name: str, samples: set[str], families: dict[str, str]) -> tuple[str, str] | None:
    """(family, type) a series name belongs to, or None when the exposition has no such series."""
    for family, kind in families.items():
        for suffix in SAMPLE_SUFFIXES.get(kind, ("",)):
            if name == family + suffix:
                return family, kind
    if name in samples:
        return name, "untyped"
    return None


def is_created_companion(family: str, families: dict[str, str]) -> bool:
    """prometheus_client prints each counter's and histogram's creation time as a gauge family of its own
    (``a_total`` -> ``a_created``, ``h_seconds`` -> ``h_seconds_created``): not a metric to chart."""
    base = family.removesuffix("_created")
    return base != family and (
        families.get(base + "_total") == "counter" or families.get(base) in {"histogram", "summary"}
    )


@pytest.fixture(scope="module")
async def worker_metrics(shared_worker: Worker) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{shared_worker.base_url}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain", "Prometheus 3 fails scrapes of an unknown Content-Type"
        return await response.text()


def test_exposition_parser() -> None:
    text = (
        "# HELP a_total Things.\n# TYPE a_total counter\n"
        "# HELP h_seconds Latency.\n# TYPE h_seconds histogram\n"
        'h_seconds_bucket{le="+Inf"} 0.0\nh_seconds_count 0.0\nh_seconds_sum 0.0\n'
        "# HELP g Gauge.\n# TYPE g gauge\ng 1.0\n"
    )
    samples, families = exposition_names(text)
    assert resolve("a_total", samples, families) == ("a_total", "counter")  # labelled, never used: no sample line
    assert resolve("h_seconds_bucket", samples, families) == ("h_seconds", "histogram")
    assert resolve("h_seconds_sum", samples, families) == ("h_seconds", "histogram")
    assert resolve("g", samples, families) == ("g", "gauge")
    assert resolve("h_seconds", samples, families) is None  # a histogram has no bare series
    assert resolve("g_total", samples, families) is None
    assert is_created_companion("h_seconds_created", {**families, "h_seconds_created": "gauge"})
    assert not is_created_companion("g", families)


async def test_every_dashboard_metric_is_exported_by_a_real_worker(
    dashboard: dict[str, Any], worker_metrics: str
) -> None:
    samples, families = exposition_names(worker_metrics)
    used: dict[str, set[str]] = {}
    for title, expr in exprs(dashboard):
        assert balanced(expr), f"{title!r}: unbalanced brackets in {expr!r}"
        names = metric_names(expr)
        assert names, f"{title!r}: no metric in {expr!r}"
        for name in names:
            used.setdefault(name, set()).add(title)
        for name in counter_arguments(expr):
            if name in PROMETHEUS_SYNTHETIC:
                continue
            found = resolve(name, samples, families)
            assert found and found[1] in {"counter", "histogram", "summary"}, (
                f"{title!r}: {name} is given to rate()/increase() but is not a counter: {found}"
            )
    missing = {
        name: sorted(titles)
        for name, titles in used.items()
        if name not in PROMETHEUS_SYNTHETIC and resolve(name, samples, families) is None
    }
    assert not missing, f"the dashboard queries series no worker exports: {missing}"
    # and it covers what the worker exports (a new metric should get a panel, or be listed here as not needed)
    exported = {f for f in families if f.startswith("partner_stream_") and not is_created_companion(f, families)}
    shown = {resolve(name, samples, families)[0] for name in used if name not in PROMETHEUS_SYNTHETIC}
    assert exported - shown - NOT_ON_DASHBOARD == set(), "metrics the worker exports but the dashboard never shows"


# --------------------------------------------------------------------------- dashboard structure


def test_dashboard_structure(dashboard: dict[str, Any], datasources: list[dict[str, Any]]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard.get("id") is None, "a provisioned dashboard is matched by uid; a fixed id can clash"
    uids = {ds["uid"] for ds in datasources if ds.get("type") == "prometheus"}
    assert len(uids) == 1, "exactly one provisioned Prometheus data source, with a fixed uid"
    uid = uids.pop()

    ids = [p["id"] for p in panels(dashboard)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "panel ids must be unique"

    occupied: dict[tuple[int, int], str] = {}
    queries = query_panels(dashboard)
    assert len(queries) >= 10
    for panel in panels(dashboard):
        title = panel.get("title", "")
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and all(isinstance(grid[k], int) for k in "hwxy"), title
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, title
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{title!r} overlaps {occupied[(x, y)]!r}"
                occupied[(x, y)] = title
    for panel in queries:
        title = panel["title"]
        assert title and panel["type"] in {"stat", "timeseries", "state-timeline", "gauge", "bargauge", "table"}
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, f"{title!r}: not the provisioned source"
        targets = panel["targets"]
        assert targets, f"{title!r} has no query"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{title!r}: duplicate refId"
        for t in targets:
            assert isinstance(t.get("expr"), str) and t["expr"].strip(), f"{title!r}: empty expr"
            assert t.get("datasource", panel["datasource"])["uid"] == uid, f"{title!r}: target on another source"


# --------------------------------------------------------------------------- provisioning files


def test_datasource_provisioning(compose: dict[str, Any], datasources: list[dict[str, Any]]) -> None:
    (prometheus,) = [ds for ds in datasources if ds["type"] == "prometheus"]
    assert prometheus["name"] and prometheus["uid"]
    assert prometheus["access"] == "proxy", "Grafana's backend reaches Prometheus on the compose network"
    url = re.fullmatch(r"http://([\w.-]+):(\d+)/?", prometheus["url"])
    assert url, prometheus["url"]
    assert url[1] in compose["services"] and int(url[2]) == PROMETHEUS_PORT
    scrape = load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    assert prometheus.get("jsonData", {}).get("timeInterval") == scrape, "$__rate_interval assumes the scrape interval"


def test_dashboard_provider_reads_the_folder_compose_mounts(
    compose: dict[str, Any], providers: list[dict[str, Any]]
) -> None:
    grafana = compose["services"]["grafana"]
    assert len(providers) == 1
    (provider,) = providers
    assert provider["name"] and provider.get("type", "file") == "file"
    path = provider["options"]["path"]
    assert posixpath.isabs(path)
    assert host_path(grafana, path) == DASHBOARDS.resolve(), f"compose does not mount the dashboards at {path}"
    assert DASHBOARD.exists()
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert host_path(grafana, home) == DASHBOARD.resolve(), "the home dashboard is not the mounted file"


def test_prometheus_scrapes_every_worker(compose: dict[str, Any]) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    interval = config["global"]["scrape_interval"]
    assert re.fullmatch(r"\d+[smh]", interval)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "partner-stream"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scheme", "http") == "http"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    workers = worker_services(compose)
    expected = {f"{svc.get('hostname', name)}:{WEB_PORT}" for name, svc in workers.items()}
    assert targets == expected, "scrape one target per compose worker, on its in-network web port"
    # The dashboard's `up{job=...}` panel depends on the job name.
    assert job["job_name"] in DASHBOARD.read_text()


# --------------------------------------------------------------------------- docker-compose.yml


@pytest.mark.parametrize(
    ("service", "pattern"),
    [("prometheus", r"prom/prometheus:v\d+\.\d+\.\d+"), ("grafana", r"grafana/grafana:\d+\.\d+\.\d+")],
)
def test_monitoring_images_are_official_and_pinned(compose: dict[str, Any], service: str, pattern: str) -> None:
    image = compose["services"][service]["image"]
    assert re.fullmatch(pattern, image), f"{service}: use the official image with an exact version, got {image!r}"
    assert "latest" not in image


def test_compose_mounts_the_monitoring_files(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert host_path(prometheus, "/etc/prometheus/prometheus.yml") == PROMETHEUS_CONFIG.resolve()
    grafana = compose["services"]["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning/datasources") == DATASOURCES.resolve()
    assert host_path(grafana, "/etc/grafana/provisioning/dashboards") == DASHBOARD_PROVIDERS.resolve()
    for service in (prometheus, grafana):
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{target} is mounted from {source}, which is not in the repo"
            assert source.is_relative_to(DEPLOY), f"{target}: mount only deploy/ files into the monitoring stack"


def test_grafana_has_no_default_admin_password_and_read_only_anonymous_access(compose: dict[str, Any]) -> None:
    env = compose["services"]["grafana"]["environment"]
    password = env.get("GF_SECURITY_ADMIN_PASSWORD", "")
    login_off = str(env.get("GF_AUTH_DISABLE_LOGIN_FORM", "")).lower() == "true"
    assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", password) or login_off, (
        "the admin password must come from a required variable (${VAR:?why}), never a default"
    )
    if str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "")).lower() == "true":
        assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer", "anonymous users may only view"
    for service in ("grafana", "prometheus"):
        for port in compose["services"][service].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{service} has no real authentication: publish on loopback"


# --------------------------------------------------------------------------- the worker's container healthcheck


def worker_healthcheck(compose: dict[str, Any]) -> list[str]:
    checks = {name: svc.get("healthcheck", {}).get("test") for name, svc in worker_services(compose).items()}
    assert all(checks.values()), f"every worker needs a healthcheck: {checks}"
    (test,) = {tuple(t) for t in checks.values()}
    assert test[0] == "CMD", "exec form: no shell in the probe"
    return list(test[1:])


def test_worker_healthcheck_is_readiness(compose: dict[str, Any]) -> None:
    command = " ".join(worker_healthcheck(compose))
    assert "/readyz" in command and "/healthz" not in command
    for name, svc in worker_services(compose).items():
        # restart policies act on exits, not health, so an unhealthy (recovering) worker is never restarted
        assert svc["restart"] == "unless-stopped", name


class _NotReady(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b'{"ready": false}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


def run_probe(argv: list[str], port: int) -> int:
    assert argv[0] == "python"
    return subprocess.run(
        [sys.executable, *argv[1:]],
        env={"PARTNER_STREAM_WEB_PORT": str(port)},
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


async def test_worker_healthcheck_passes_on_a_ready_worker_and_fails_on_503(
    compose: dict[str, Any], shared_worker: Worker
) -> None:
    argv = worker_healthcheck(compose)
    assert await asyncio.to_thread(run_probe, argv, shared_worker.web_port) == 0
    server = HTTPServer(("127.0.0.1", 0), _NotReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(run_probe, argv, server.server_address[1]) != 0
    finally:
        server.shutdown()
        server.server_close()
