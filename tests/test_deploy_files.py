"""Static checks of the deployment files: Dockerfile, docker-compose.yml, .dockerignore.

No Docker daemon is needed; these pin the structure a deployer relies on (the worker
finds Kafka, waits for it, is reachable on 5003, and is configured only through
settings that exist).
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
import shlex
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from partner_stream.settings import ENV_PREFIX, Settings  # noqa: E402

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

#: Top-level packages the distribution ships (pyproject may add to this).
PACKAGES = {"partner_stream", "tables", "web"}
WEB_PORT = 5003


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def kafka(compose: dict) -> dict:
    return compose["services"]["kafka"]


WORKER_SERVICES = sorted(name for name in yaml.safe_load(COMPOSE.read_text())["services"] if name.startswith("worker"))


@pytest.fixture(scope="module", params=WORKER_SERVICES)
def worker(compose: dict, request: pytest.FixtureRequest) -> dict:
    return compose["services"][request.param]


def test_compose_runs_several_workers_with_distinct_addresses(compose: dict) -> None:
    workers = [compose["services"][name] for name in WORKER_SERVICES]
    assert len(workers) >= 2, "the deployment example shows scaling out"
    for key in ("PARTNER_STREAM_WEB_HOST", "PARTNER_STREAM_PUBLIC_URL"):
        values = [env_of(w)[key] for w in workers]
        assert len(set(values)) == len(values), f"each worker needs its own {key}"
    host_ports = [p.split(":")[0] for w in workers for p in w["ports"]]
    assert len(set(host_ports)) == len(host_ports)
    assert len({env_of(w)["PARTNER_STREAM_APP_ID"] for w in workers}) == 1, "one consumer group"


def env_of(service: dict) -> dict[str, str]:
    """A service's ``environment`` as str->str, whichever compose syntax is used."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {k: v for k, v in pairs}
    return {k: "" if v is None else str(v) for k, v in env.items()}


def csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in csv(value):
        m = re.fullmatch(r"([A-Za-z0-9_-]+)://([^:]*):(\d+)", item)
        assert m, f"unparseable listener {item!r}"
        out[m[1]] = (m[2], int(m[3]))
    return out


def container_ports(service: dict) -> set[int]:
    ports = set()
    for p in service.get("ports", []):
        if isinstance(p, dict):
            ports.add(int(p["target"]))
        else:
            ports.add(int(str(p).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends in a line continuation"
    return out


def exec_or_shell(args: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD arguments as an argv list."""
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


def strip_flags(args: str) -> list[str]:
    return [a for a in shlex.split(args) if not a.startswith("--")]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for instr, args in dockerfile_instructions():
        if instr != "ENV":
            continue
        tokens = shlex.split(args)
        if tokens and "=" not in tokens[0]:  # legacy `ENV KEY value`
            env[tokens[0]] = " ".join(tokens[1:])
        else:
            env.update(t.split("=", 1) for t in tokens)
    return env


def pyproject() -> dict:
    if not PYPROJECT.exists():
        pytest.skip("pyproject.toml not written yet")
    return tomllib.loads(PYPROJECT.read_text())


def declared_packages(data: dict) -> set[str]:
    """Top-level package names pyproject declares, for the common build backends."""
    tool = data.get("tool", {})
    names: list[str] = []
    packages = tool.get("setuptools", {}).get("packages")
    if isinstance(packages, list):
        names += packages
    elif isinstance(packages, dict):
        names += packages.get("find", {}).get("include", [])
    names += tool.get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {}).get("packages", [])
    # "partner_stream*" / "src/web" / "tables.sub" -> top-level package name -> its directory (package-dir)
    top = {n.split("/")[-1].split(".")[0].rstrip("*") for n in names}
    directories = tool.get("setuptools", {}).get("package-dir", {})
    return {directories.get(n, n) for n in top if n}


# --------------------------------------------------------------------------- compose: kafka


def test_kafka_uses_pinned_official_image(kafka: dict) -> None:
    image = kafka["image"]
    m = re.fullmatch(r"apache/kafka:(\d+)\.(\d+)\.(\d+)", image)
    assert m, f"kafka image must be the official apache/kafka with an exact X.Y.Z tag, got {image!r}"
    assert (int(m[1]), int(m[2])) >= (3, 9), "KRaft-only settings here need apache/kafka >= 3.9"


def test_kafka_is_single_node_kraft(kafka: dict) -> None:
    env = env_of(kafka)
    assert set(csv(env["KAFKA_PROCESS_ROLES"])) == {"broker", "controller"}
    assert env.get("CLUSTER_ID"), "the image refuses to start in KRaft mode without CLUSTER_ID"
    node_id = env["KAFKA_NODE_ID"]
    voters = csv(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
    assert [v.split("@", 1)[0] for v in voters] == [node_id], "the only voter must be this node"

    bound = listeners(env["KAFKA_LISTENERS"])
    controller_names = csv(env["KAFKA_CONTROLLER_LISTENER_NAMES"])
    for name in controller_names:
        assert name in bound, f"controller listener {name} is not bound"
        voter_port = int(voters[0].rsplit(":", 1)[1])
        assert bound[name][1] == voter_port, "quorum voter port must be the controller listener's port"

    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocol_map = dict(item.split(":", 1) for item in csv(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]))
    for name in bound:
        assert name in protocol_map, f"listener {name} has no security protocol"
    for name, (_, port) in advertised.items():
        assert name not in controller_names, "a controller listener must not be advertised to clients"
        assert name in bound and bound[name][1] == port, f"advertised {name} port does not match its bound port"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised


def test_kafka_single_broker_settings(kafka: dict) -> None:
    env = env_of(kafka)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "true"
    # env-only config replaces server.properties, so log.dirs must be set and persisted
    log_dir = env["KAFKA_LOG_DIRS"]
    targets = [str(v).split(":")[1] for v in kafka.get("volumes", []) if not isinstance(v, dict)]
    assert log_dir in targets, "Kafka's log dir must be on a volume"


def test_kafka_has_healthcheck(kafka: dict) -> None:
    test = kafka["healthcheck"]["test"]
    command = " ".join(test) if isinstance(test, list) else test
    assert re.search(r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh", command)
    assert "--bootstrap-server" in command


# --------------------------------------------------------------------------- compose: worker


def test_worker_broker_url_matches_an_advertised_listener(compose: dict, kafka: dict, worker: dict) -> None:
    kenv = env_of(kafka)
    advertised = listeners(kenv["KAFKA_ADVERTISED_LISTENERS"]).values()
    url = env_of(worker)["PARTNER_STREAM_BROKER_URL"]
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        assert parsed.scheme == "kafka", f"unexpected broker scheme in {part!r}"
        assert (parsed.hostname, parsed.port) in advertised, (
            f"worker bootstraps from {parsed.hostname}:{parsed.port}, "
            f"but Kafka advertises {sorted(advertised)}; clients reconnect to the advertised address"
        )
        assert parsed.hostname in {"kafka", kafka.get("hostname")} | set(compose["services"]), (
            "the broker host must be a compose service name, reachable from the worker container"
        )


def test_worker_runs_against_real_kafka_profile(worker: dict) -> None:
    assert env_of(worker).get("PARTNER_STREAM_BROKER_PROFILE", "kafka") == "kafka"


def test_worker_waits_for_healthy_kafka(worker: dict) -> None:
    depends = worker["depends_on"]
    assert isinstance(depends, dict), "depends_on must use the long form to wait on health"
    assert depends["kafka"]["condition"] == "service_healthy"


def test_worker_publishes_web_port(worker: dict) -> None:
    env = env_of(worker)
    port = int(env.get("PARTNER_STREAM_WEB_PORT", WEB_PORT))
    assert port == WEB_PORT
    assert WEB_PORT in container_ports(worker)
    assert env.get("PARTNER_STREAM_WEB_BIND", "0.0.0.0") == "0.0.0.0", "must bind all interfaces to be published"
    assert env["PARTNER_STREAM_WEB_HOST"] in {"worker", worker.get("hostname")}


def test_worker_state_on_named_volume(compose: dict, worker: dict) -> None:
    datadir = env_of(worker)["PARTNER_STREAM_APP_DATADIR"]
    named = set(compose.get("volumes") or {})
    mounts = {}
    for v in worker.get("volumes", []):
        if isinstance(v, dict):
            mounts[v["target"]] = v.get("source")
        else:
            source, target = str(v).split(":")[:2]
            mounts[target] = source
    assert datadir in mounts, "the RocksDB data dir must be a mounted volume"
    assert mounts[datadir] in named, "the data dir must be a named volume"


def test_worker_built_from_repo_and_restarts(worker: dict) -> None:
    build = worker["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert Path(ROOT, context).resolve() == ROOT
    assert worker["restart"] == "unless-stopped"


def test_every_partner_stream_variable_is_a_setting(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings ignores unknown variables (extra="ignore"), so a typo would be silently dropped."""
    fields = set(Settings.model_fields)
    seen: dict[str, str] = {}
    sources = {f"compose service {name}": env_of(svc) for name, svc in compose["services"].items()}
    sources["Dockerfile ENV"] = dockerfile_env()
    for where, env in sources.items():
        for key, value in env.items():
            if key.startswith(ENV_PREFIX):
                field = key.removeprefix(ENV_PREFIX).lower()
                assert field in fields, f"{key} ({where}) is not a Settings field: {sorted(fields)}"
                seen[key] = value
    assert seen, "expected PARTNER_STREAM_* variables in the deployment files"

    # and the values the worker gets actually validate (Dockerfile ENV overridden by compose)
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in {**sources["Dockerfile ENV"], **env_of(compose["services"][WORKER_SERVICES[0]])}.items():
        if key.startswith(ENV_PREFIX):
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.broker_profile == "kafka"
    assert settings.web_port == WEB_PORT


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_user_port() -> None:
    instrs = dockerfile_instructions()
    froms = [args for instr, args in instrs if instr == "FROM"]
    assert froms and strip_flags(froms[-1])[0].startswith("python:3.11-slim")
    users = [args for instr, args in instrs if instr == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the worker must not run as root"
    exposed = {int(p.split("/")[0]) for instr, args in instrs if instr == "EXPOSE" for p in args.split()}
    assert WEB_PORT in exposed


def test_dockerfile_cmd_runs_the_worker() -> None:
    cmds = [args for instr, args in dockerfile_instructions() if instr == "CMD"]
    assert cmds, "no CMD"
    argv = exec_or_shell(cmds[-1])
    assert cmds[-1].startswith("["), "use exec form so the worker is PID 1 and receives SIGTERM"
    faust_form = argv[:1] == ["faust"] and "partner_stream" in argv and "worker" in argv
    faust_form = faust_form and argv[argv.index("partner_stream") - 1] in {"-A", "--app"}
    script_form = argv[:2] == ["partner-stream", "worker"]
    assert faust_form or script_form, f"CMD does not start the partner_stream worker: {argv}"


def test_dockerfile_healthcheck_hits_healthz() -> None:
    checks = [args for instr, args in dockerfile_instructions() if instr == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    command = checks[-1]
    assert "/healthz" in command and "127.0.0.1" in command
    assert str(WEB_PORT) in command


def _copies() -> list[tuple[list[str], str, str]]:
    """(sources, dest, workdir-at-that-point) for each COPY/ADD from the build context."""
    out = []
    workdir = "/"
    for instr, args in dockerfile_instructions():
        if instr == "WORKDIR":
            workdir = posixpath.join(workdir, args.strip())
        elif instr in {"COPY", "ADD"} and "--from" not in args:
            parts = strip_flags(args)
            out.append((parts[:-1], parts[-1], workdir))
    return out


def _resolve(path: str, workdir: str) -> str:
    return posixpath.normpath(posixpath.join(workdir, path))


def test_dockerfile_copies_each_package() -> None:
    copies = _copies()
    whole_context = any("." in srcs or "./" in srcs for srcs, _, _ in copies)
    for pkg in sorted(PACKAGES):
        assert (ROOT / pkg).is_dir(), f"package directory {pkg}/ missing from the repo"
        if whole_context:
            continue
        hits = [(srcs, dest) for srcs, dest, _ in copies if pkg in {s.rstrip("/") for s in srcs}]
        assert hits, f"Dockerfile does not COPY {pkg}/"
        for srcs, dest in hits:
            # COPY of a directory copies its *contents*; the destination must name the package.
            assert len(srcs) == 1 and posixpath.basename(dest.rstrip("/")) == pkg, (
                f"COPY {' '.join(srcs)} {dest} would not recreate {pkg}/ in the image"
            )


def test_dockerfile_copies_packages_pyproject_declares() -> None:
    data = pyproject()
    assert data["project"]["name"] == "partner-stream"
    declared = declared_packages(data)
    copied = {s.rstrip("/") for srcs, _, _ in _copies() for s in srcs}
    whole_context = "." in copied
    for pkg in sorted(declared | PACKAGES):
        assert (ROOT / pkg).is_dir(), f"pyproject declares {pkg}, which is not a directory"
        assert whole_context or pkg in copied, f"Dockerfile does not COPY {pkg}/ (declared in pyproject)"
    readme = data["project"].get("readme")
    readme_file = readme if isinstance(readme, str) else (readme or {}).get("file")
    if readme_file:
        assert whole_context or readme_file in copied, f"pyproject needs {readme_file} at build time"


def _project_dirs(copies: list[tuple[list[str], str, str]]) -> set[str]:
    """Image directories that hold the copied pyproject.toml."""
    dirs = set()
    for srcs, dest, workdir in copies:
        target = _resolve(dest, workdir)
        if "." in srcs or "./" in srcs:
            dirs.add(target)
        elif "pyproject.toml" in srcs:
            into_dir = len(srcs) > 1 or dest.endswith("/") or dest in {".", "./"}
            dirs.add(target if into_dir else posixpath.dirname(target))
    return dirs


def test_dockerfile_installs_the_project() -> None:
    project_dirs = _project_dirs(_copies())
    assert project_dirs, "Dockerfile does not COPY pyproject.toml"
    workdir = "/"
    installed = False
    for instr, args in dockerfile_instructions():
        if instr == "WORKDIR":
            workdir = posixpath.join(workdir, args.strip())
        if instr != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            tokens = shlex.split(command)
            if "install" not in tokens or not any("pip" in t for t in tokens[: tokens.index("install")]):
                continue
            targets = [t for t in tokens[tokens.index("install") + 1 :] if not t.startswith("-")]
            installed |= any(_resolve(t, workdir) in project_dirs for t in targets)
    assert installed, f"no RUN pip install of the copied project in {sorted(project_dirs)}"


# --------------------------------------------------------------------------- .dockerignore


def _ignored(name: str, patterns: list[str]) -> bool:
    result = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        if fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(name, pat.removeprefix("**/")):
            result = not negate
    return result


def test_dockerignore_keeps_sources_and_drops_local_state() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    for needed in ["pyproject.toml", "README.md", *sorted(PACKAGES)]:
        assert not _ignored(needed, patterns), f".dockerignore excludes {needed}, which the build COPYs"
    for local in [".git", ".venv", "partner-stream-data", "__pycache__"]:
        assert _ignored(local, patterns), f".dockerignore should exclude {local}"
