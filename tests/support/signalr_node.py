"""Drive the real ``@microsoft/signalr`` npm client (Node) from pytest.

Usage::

    ensure_node_modules()  # once per session (e.g. in a session fixture)

    client = await NodeSignalRClient.start(
        {"url": f"http://127.0.0.1:{port}/partnerhub", "restaurantId": "r1", "token": jwt}
    )
    try:
        order = await client.wait_for("NewOrder")
        pending = await client.invoke("GetPendingOrders")
        await client.send("AcknowledgeOrder", "o-1")
        await client.stop()
    finally:
        await client.close()

``start`` waits for the client's ``started``/``startFailed`` line; with ``expect_success=False``
a failed start is returned (see ``start_error`` and ``wait_exit()``) instead of raised.

Events are dicts printed by ``tests/node/signalr-client.mjs``, e.g.
``{"event": "NewOrder", "args": [...]}``, ``{"event": "started", "connectionId": ...}``,
``{"event": "reconnecting", "error": ...}``, ``{"event": "closed", "error": ...}``.

A tablet that renews its token and never stops reconnecting (see :func:`renewing_token_config`)::

    config = {"url": ..., "restaurantId": "r1", **renewing_token_config(TEST_JWT_SECRET, ttl_seconds=3)}

mints a fresh JWT on every ``accessTokenFactory`` call (``tokenMinted`` events, ``tokens_minted``)
and reconnects with a retry-forever policy (a ``retry`` event per policy call, with its reason).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
CLIENT_SCRIPT = NODE_DIR / "signalr-client.mjs"

_STDOUT_LIMIT = 16 * 1024 * 1024  # big PendingOrders payloads arrive as one line
_STDERR_TAIL = 200

Event = dict[str, Any]
Predicate = Callable[[Event], bool] | str


def ensure_node_modules() -> None:
    """Install tests/node dependencies from the lockfile if they are missing."""
    if (NODE_DIR / "node_modules" / "@microsoft" / "signalr" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found on PATH; it is needed for the SignalR client tests")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)


def renewing_token_config(
    secret: str,
    *,
    ttl_seconds: int = 3,
    subject: str | None = None,
    retry_base_ms: int = 1000,
    retry_max_ms: int = 5000,
) -> dict[str, Any]:
    """Client config keys for ``mintToken`` (fresh HS256 JWT per factory call) + ``retryForever``."""
    mint: dict[str, Any] = {"secret": secret, "ttlSeconds": ttl_seconds}
    if subject is not None:
        mint["sub"] = subject
    return {"mintToken": mint, "retryForever": {"baseMs": retry_base_ms, "maxMs": retry_max_ms}}


class HubInvocationError(Exception):
    """The hub method invocation completed with an error (client's ``error`` event)."""


class NodeClientStartFailed(AssertionError):
    """The Node client printed ``startFailed`` (or exited) instead of ``started``."""

    def __init__(self, message: str, error: str | None):
        super().__init__(message)
        self.error = error


def _as_predicate(predicate: Predicate) -> Callable[[Event], bool]:
    if isinstance(predicate, str):
        name = predicate
        return lambda ev: ev.get("event") == name
    return predicate


class NodeSignalRClient:
    """One ``node signalr-client.mjs`` process = one real SignalR hub connection."""

    def __init__(self, config: dict[str, Any], proc: asyncio.subprocess.Process):
        self.config = config
        self.events: list[Event] = []
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self._proc = proc
        self._cond = asyncio.Condition()
        self._exited = False
        self._ids = itertools.count(1)
        self._stderr_task = asyncio.create_task(self._read_stderr())
        self._stdout_task = asyncio.create_task(self._read_stdout())

    # ------------------------------------------------------------------ start

    @classmethod
    async def start(
        cls,
        config: dict[str, Any],
        *,
        wait: bool = True,
        expect_success: bool = True,
        timeout: float = 20.0,
        node: str = "node",
    ) -> NodeSignalRClient:
        """Spawn the client. With ``wait``, return once it printed started/startFailed.

        With ``expect_success`` (default) a failed start closes the process and raises
        ``NodeClientStartFailed``; otherwise the client is returned and ``start_error`` is set.
        """
        proc = await asyncio.create_subprocess_exec(
            node,
            str(CLIENT_SCRIPT),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=NODE_DIR,
            env={**os.environ, "NO_COLOR": "1"},
            limit=_STDOUT_LIMIT,
        )
        client = cls(config, proc)
        if not wait:
            return client
        try:
            ev = await client.wait_for(lambda e: e.get("event") in ("started", "startFailed"), timeout=timeout)
        except BaseException:
            await client.close()
            raise
        if ev["event"] == "startFailed" and expect_success:
            diag = client._diagnostics()
            await client.close()
            raise NodeClientStartFailed(f"SignalR client failed to start: {ev.get('error')}\n{diag}", ev.get("error"))
        return client

    # ------------------------------------------------------------ properties

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def connection_id(self) -> str | None:
        for ev in reversed(self.events):
            if ev.get("event") in ("started", "reconnected"):
                return ev.get("connectionId")
        return None

    @property
    def start_error(self) -> str | None:
        for ev in self.events:
            if ev.get("event") == "startFailed":
                return ev.get("error")
        return None

    @property
    def tokens_minted(self) -> int:
        """How many tokens the ``mintToken`` factory has minted so far (0 with a fixed token)."""
        return max((ev.get("count", 0) for ev in self.events_named("tokenMinted")), default=0)

    def events_named(self, name: str) -> list[Event]:
        return [ev for ev in self.events if ev.get("event") == name]

    # --------------------------------------------------------------- readers

    async def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        try:
            while True:
                line = await self._proc.stdout.readline()
                if not line:
                    break
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if not text:
                    continue
                try:
                    ev = json.loads(text)
                    if not isinstance(ev, dict):
                        ev = {"event": "_raw", "line": text}
                except ValueError:
                    ev = {"event": "_raw", "line": text}
                async with self._cond:
                    self.events.append(ev)
                    self._cond.notify_all()
        finally:
            await self._proc.wait()
            # let stderr drain so the diagnostics are complete
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), 2.0)
            async with self._cond:
                self._exited = True
                self._cond.notify_all()

    async def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        while True:
            line = await self._proc.stderr.readline()
            if not line:
                return
            self.stderr_tail.append(line.decode("utf-8", "replace").rstrip("\r\n"))

    # --------------------------------------------------------------- waiting

    def _diagnostics(self, limit: int = 50) -> str:
        shown = self.events[-limit:]
        skipped = len(self.events) - len(shown)
        lines = [f"returncode: {self._proc.returncode}"]
        lines.append(f"events ({len(self.events)}{f', first {skipped} omitted' if skipped else ''}):")
        lines += [f"  {json.dumps(ev)}" for ev in shown]
        lines.append("stderr tail:")
        lines += [f"  {line}" for line in list(self.stderr_tail)[-40:]]
        return "\n".join(lines)

    async def wait_for(self, predicate: Predicate, timeout: float = 20.0, *, since: int = 0) -> Event:
        """Return the first event (at index >= ``since``) matching ``predicate``.

        ``predicate`` is a callable on the event dict, or an event name. Raises AssertionError
        (with events seen and stderr tail) on timeout or if the process exits first.
        """
        match = _as_predicate(predicate)
        found: list[Event] = []

        def check() -> bool:
            for ev in self.events[since:]:
                if match(ev):
                    found.append(ev)
                    return True
            return self._exited

        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(check), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {_describe(predicate)}\n{self._diagnostics()}"
                ) from None
        if found:
            return found[0]
        raise AssertionError(f"node client exited while waiting for {_describe(predicate)}\n{self._diagnostics()}")

    async def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            return await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"node client did not exit within {timeout}s\n{self._diagnostics()}") from None

    # -------------------------------------------------------------- commands

    async def _command(self, cmd: dict[str, Any]) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing() or self._proc.returncode is not None:
            raise AssertionError(f"node client is not running; cannot send {cmd}\n{self._diagnostics()}")
        try:
            stdin.write((json.dumps(cmd) + "\n").encode())
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise AssertionError(f"node client stdin closed ({exc}); cmd {cmd}\n{self._diagnostics()}") from exc

    async def _call(self, kind: str, method: str, args: tuple[Any, ...], timeout: float) -> Event:
        cid = f"{kind}-{next(self._ids)}"
        await self._command({"cmd": kind, "id": cid, "method": method, "args": list(args)})
        return await self.wait_for(
            lambda e: e.get("id") == cid and e.get("event") in ("result", "sent", "error"),
            timeout=timeout,
        )

    async def invoke(self, method: str, *args: Any, timeout: float = 20.0) -> Any:
        """``connection.invoke(method, ...args)``; returns the result or raises HubInvocationError."""
        ev = await self._call("invoke", method, args, timeout)
        if ev["event"] == "error":
            raise HubInvocationError(ev.get("error"))
        return ev.get("result")

    async def send(self, method: str, *args: Any, timeout: float = 20.0) -> None:
        """``connection.send(method, ...args)`` (fire and forget); waits until it was written."""
        ev = await self._call("send", method, args, timeout)
        if ev["event"] == "error":
            raise HubInvocationError(ev.get("error"))

    async def stop(self, timeout: float = 20.0) -> int:
        """``connection.stop()``; waits for the ``stopped`` line and the process exit code."""
        if self._proc.returncode is None and not self._exited:
            await self._command({"cmd": "stop"})
            await self.wait_for("stopped", timeout=timeout)
        return await self.wait_exit(timeout)

    async def close(self, grace: float = 5.0) -> None:
        """Make sure the process is gone: close stdin (graceful stop), then terminate, then kill."""
        proc = self._proc
        if proc.returncode is None and proc.stdin is not None and not proc.stdin.is_closing():
            with contextlib.suppress(Exception):
                proc.stdin.close()
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(Exception):
                    proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except TimeoutError:
                    with contextlib.suppress(Exception):
                        proc.kill()
                    await proc.wait()
        for task in (self._stdout_task, self._stderr_task):
            try:
                await asyncio.wait_for(task, grace)
            except TimeoutError:
                task.cancel()

    async def __aenter__(self) -> NodeSignalRClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _describe(predicate: Predicate) -> str:
    if isinstance(predicate, str):
        return f"event {predicate!r}"
    return getattr(predicate, "__name__", repr(predicate))
