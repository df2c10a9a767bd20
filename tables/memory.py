"""The pending-orders table in a dict: the same keys, bytes and reads as :mod:`tables.storage`, no Faust.

For tests and benchmarks of the transitions, the hub and the decoders: every record goes through the real
encoding, so a round-trip bug shows up here too. ``data`` may be any mutable mapping of bytes, such as a
``rocksdict.Rdict`` (the bench's table scenario uses one, to pay what RocksDB costs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, MutableMapping

from .model import RestaurantOrders, encode_record
from .reader import RecordReader
from .stamps import Stamp, next_stamp, stamped
from .transitions import Outcome


class MemoryTable(RecordReader):
    #: A dict never refuses a write (tests set this to play a full disk).
    storage_failure: str | None = None

    def __init__(self, data: MutableMapping[bytes, bytes] | None = None) -> None:
        self.data: MutableMapping[bytes, bytes] = data if data is not None else {}
        #: As on the real table: True while the worker is fenced (tests set it to play one).
        self.writes_held: Callable[[], bool] = lambda: False

    def raw(self, key: str) -> bytes | None:
        return self.data.get(key.encode())

    def raw_with_prefix(self, prefix: bytes) -> Iterator[bytes]:
        return (raw for key, raw in list(self.data.items()) if key.startswith(prefix))

    def write(self, outcome: Outcome, generation: int = 0, partition: int = 0, source: object = None) -> None:
        for key in outcome.deletes:
            with contextlib.suppress(KeyError):
                del self.data[key.encode()]
        head_before = self.data.get(outcome.head_key.encode()) if outcome.head_key is not None else None
        stamp = next_stamp(generation, head_before, outcome.seq_after)
        for key, record in outcome.writes:
            self.data[key.encode()] = stamped(encode_record(record), stamp)

    @contextlib.contextmanager
    def applying(self, partition: int) -> Iterator[None]:
        """A dict has no partitions to read from: every read is direct already."""
        yield

    def resend_if_read_again(self, restaurant_id: str, order_id: str, partition: int, source: object) -> int:
        """A dict has no changelog that could lack a write."""
        return 0

    def reopen(self, partition: int) -> None:
        """Nothing to reopen in a dict."""

    async def send_written(self) -> None:
        """A dict has no changelog to send to."""

    def state_of(self, restaurant_id: str) -> RestaurantOrders:
        return self.read_state(restaurant_id)

    def version_of(self, restaurant_id: str) -> Stamp | None:
        return self.read_version(restaurant_id)
