"""Every place partner-stream reaches into Faust or aiokafka beyond their public API, in one package.

Each was written for the versions pinned in pyproject.toml and is checked at start
(:func:`check_versions`): an upgrade must come here first and re-run ``tests/test_faust_patches.py``
and the modules' own tests.

- ``transport``, the worker consumer's fetch: Faust's live set of active partitions, empty mid-fetch
  during a takeover, made aiokafka drain and drop a paused partition's backlog (issue #17); and a
  configurable fetch wait for the embedded broker. Tested in tests/test_transport.py.
- ``recovery``, ``Recovery.on_recovery_completed``: seek while paused, then resume, and keep the
  agents' queues (upstream's order skipped records). Tested in tests/test_recovery.py.
- ``heartbeat``, aiokafka's ``Coordinator._do_heartbeat``: the fence needs each successful
  heartbeat; and ``request_rejoin`` from the main thread. Tested in tests/test_fencing.py.
- ``producer``, aiokafka's ``MessageAccumulator.drain_by_nodes``: a fenced worker drops the
  changelog records it buffered instead of sending them late. Tested in tests/test_fenced_writes.py.
- ``offset_holes``, aiokafka's ``PartitionRecords`` (embedded broker only): Tansu shows a batch's offset
  before it stores the batch, and a fetch in between stepped over it for good; the fetch now stops at the
  hole and asks again. Tested in tests/test_offset_holes.py and tests/integration/test_offset_holes_on_tansu.py.
- ``fetch_pace``, aiokafka's ``Fetcher`` request building and response handling (embedded broker only):
  the fetch wait is 5 ms while records flow and 50 ms when idle. Tested in tests/test_fetch_pace.py.
- ``end_offsets``, via ``transport``'s consumer ``_highwaters`` (embedded broker only): Tansu's ListOffsets counts
  a partition's newest multi-record batch as one record; recovery takes the end from a Fetch of that batch.
  Tested in tests/integration/test_end_offsets_on_tansu.py.
- ``transport``'s consumer ``wait_first`` (every profile): the fetch loop delivers a record inline when nothing can
  make the delivery wait, instead of four tasks per record. Tested in tests/test_inline_delivery.py.
- ``transport``'s consumer ``_commit``: nothing is committed while the worker holds its writes.
- ``connection``, aiokafka's ``AIOKafkaConnection.send``: uvloop's RuntimeError on a closed transport is
  a broken connection (retried), not a crash of the Fetcher. Tested in tests/test_faust_patches.py.
- :func:`aiokafka_consumer`, :func:`aiokafka_producer_client`, :func:`read_offsets`: the aiokafka
  objects Faust wraps, and Faust's read offsets (partition metadata, tracked topics, lag). Tested in
  tests/test_faust_patches.py.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

#: The versions these patches were written and tested for.
WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


class UnsupportedVersion(RuntimeError):
    """An installed Faust or aiokafka is not the one these patches were written for."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Refuse to build the app on versions the patches were not written for (they touch private code)."""
    found = installed or {name: version(name) for name in WRITTEN_FOR}
    wrong = {name: found[name] for name, expected in WRITTEN_FOR.items() if found.get(name) != expected}
    if wrong:
        listed = ", ".join(f"{name} {have} (written for {WRITTEN_FOR[name]})" for name, have in wrong.items())
        raise UnsupportedVersion(f"{listed}: review partner_stream/faust_patches before upgrading")


def aiokafka_consumer(app: Any) -> Any:
    """The aiokafka consumer Faust runs on its consumer thread (raises ConsumerNotStarted before it exists)."""
    return app.consumer._thread._ensure_consumer()


def aiokafka_producer_client(app: Any) -> Any:
    """The client of the aiokafka producer Faust wraps."""
    return app.producer._ensure_producer().client


def read_offsets(faust_consumer: Any) -> Any:
    """Faust's last read offset per partition (read-only use)."""
    return getattr(faust_consumer, "_read_offset", {})
