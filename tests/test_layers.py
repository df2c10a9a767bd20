"""The layers import one way: the contract, the state, the codecs and the hub build no app and read no environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from partner_stream.dev.local import REPO_ROOT

PURE_MODULES = [
    "partner_stream",
    "partner_stream.events",
    "partner_stream.settings",
    "partner_stream_tables.model",
    "partner_stream_tables.transitions",
    "partner_stream_tables.queries",
    "partner_stream_web.protocols",
    "partner_stream_web.protocols.signalr",
    "partner_stream_web.protocols.plain",
    "partner_stream_web.hub",
    "partner_stream_web.connection",
    "partner_stream_web.endpoints",
    "partner_stream_web.auth",
    "partner_stream_web.cors",
    "partner_stream_web.budget",
    "partner_stream_web.negotiations",
    "partner_stream_web.placement",
    "partner_stream_web.errors",
    "partner_stream.durations",
]


#: Modules whose import builds the app (or is Faust itself).
BUILDERS = {"faust", "partner_stream.app", "partner_stream.service", "partner_stream_web.views"}


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_STREAM_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_pure_modules_build_no_app_and_read_no_environment() -> None:
    # Settings that cannot be parsed: reading the environment anywhere would fail the import.
    result = run(
        f"""
        import importlib, sys
        for name in {PURE_MODULES!r}:
            importlib.import_module(name)
        built = sorted(m for m in sys.modules if m in {BUILDERS!r})
        print("BUILT", built)
        """,
        PARTNER_STREAM_WEB_PORT="not-a-port",
        PARTNER_STREAM_JWT_SECRET="short",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BUILT []" in result.stdout, result.stdout


def test_faust_finds_the_wired_app_in_the_package() -> None:
    result = run(
        """
        from faust.cli.base import find_app
        app = find_app("partner_stream")
        print(type(app).__name__, sorted(app.agents))
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PartnerStreamApp ['apply-to-pending-orders', 'rekey-by-restaurant']" in result.stdout
