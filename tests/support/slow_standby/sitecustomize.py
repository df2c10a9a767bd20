"""Test-only: hold a takeover's two race windows open in a worker process (issue #17).

Python imports ``sitecustomize`` at start-up from the first ``sys.path`` entry that has one; the test
(tests/integration/test_takeover_backlog.py) puts this folder first on the worker's ``PYTHONPATH``. The
venv has no sitecustomize of its own to shadow. Nothing happens unless one of the variables below is
set; they are deliberately outside the ``PARTNER_STREAM_`` prefix, which the settings and Faust read.

``PS_TEST_SLOW_STANDBY_SECONDS``: a slow ListOffsets for the standby highwaters. Faust's
``Recovery._restart_recovery`` logs "Done reading from changelog topics", pauses the active changelog
partitions (the consumer's live set of active partitions is then empty), seeks the standby changelog
partitions, builds their highwaters and only then resumes them. The standby seek makes aiokafka fetch
the standby changelog again, which wakes a fetch still waiting on that live set. Sleeping before the
standby ``_build_highwaters`` keeps the set empty meanwhile, so that fetch always completes in the window.

``PS_TEST_SLOW_SEEK_SECONDS``: a slow OffsetFetch when the end of a rebalance seeks the stream
partitions to their committed offsets (Faust's ``Consumer.seek_to_committed``; the sleep comes before
the request, as a late answer would). Until 96967de the recovery resumed the stream partitions first
and kept what the fetcher read meanwhile.

Faust is patched right after Python executes each module: importing it here breaks ``python -m faust``.
"""

from __future__ import annotations

import os

_STANDBY = os.environ.get("PS_TEST_SLOW_STANDBY_SECONDS")
_SEEK = os.environ.get("PS_TEST_SLOW_SEEK_SECONDS")

if _STANDBY or _SEEK:
    import asyncio
    import importlib.abc
    import importlib.machinery
    import sys
    import time
    from types import ModuleType
    from typing import Any

    def _say(text: str) -> None:
        print(f"[slow-takeover {time.strftime('%X')}] {text}", file=sys.stderr, flush=True)

    def _slow_standby_highwaters(module: ModuleType, hold: float) -> None:
        original = module.Recovery._build_highwaters

        async def build_highwaters(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
            if title == "standby" and tps:
                package = sys.modules.get("partner_stream")
                _say(
                    f"holding the standby highwaters for {hold} s: {len(tps)} standby partitions, "
                    f"{len(consumer._active_partitions or ())} active partitions, "
                    f"partner_stream from {getattr(package, '__file__', '?')}"
                )
                await asyncio.sleep(hold)
                _say("standby highwaters released")
            return await original(self, consumer, tps, destination, title)

        module.Recovery._build_highwaters = build_highwaters

    def _slow_seek_to_committed(module: ModuleType, hold: float) -> None:
        original = module.ThreadDelegateConsumer.seek_to_committed

        async def seek_to_committed(self: Any) -> Any:
            _say(f"holding the seek to committed offsets for {hold} s")
            await asyncio.sleep(hold)
            return await original(self)

        module.ThreadDelegateConsumer.seek_to_committed = seek_to_committed

    _PATCHES: dict[str, Any] = {}
    if _STANDBY:
        _PATCHES["faust.tables.recovery"] = lambda module: _slow_standby_highwaters(module, float(_STANDBY))
    if _SEEK:
        _PATCHES["faust.transport.consumer"] = lambda module: _slow_seek_to_committed(module, float(_SEEK))

    class _PatchAfterImport(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            patch = _PATCHES.get(fullname)
            if patch is None:
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None:
                return None
            exec_module = spec.loader.exec_module

            def exec_and_patch(module: ModuleType) -> None:
                exec_module(module)
                patch(module)
                _say(f"{fullname} slowed")

            spec.loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, _PatchAfterImport())
