"""Stamps on stored records, so that no stale write can win.

Every record written to the table (and so to its changelog) starts with a 17-byte stamp: a marker byte, an
epoch, and the restaurant's ``seq`` after the event. The epoch is the consumer-group generation under which
the event was read, or the epoch of the restaurant's head if that is higher (a group whose metadata expired
on a real cluster starts again at generation 0; the epoch must not). Compared as (epoch, seq), stamps grow
along the one true history of a restaurant: a new owner reads its events in a later generation than any
owner before it. A worker cut off from Kafka (a *zombie*) that flushes
buffered records after the group moved on writes an older generation; readers of the changelog (recovery,
standby replicas) keep a key's newest stamp, not its last offset (:mod:`tables.store`). Values written before
stamps existed read as stamp (0, 0), older than any stamped one.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

MARK = b"\x01"
_LAYOUT = struct.Struct(">cQQ")
SIZE = _LAYOUT.size


class Stamp(NamedTuple):
    generation: int
    seq: int


UNSTAMPED = Stamp(0, 0)


def stamped(payload: bytes, stamp: Stamp) -> bytes:
    return _LAYOUT.pack(MARK, max(stamp.generation, 0), max(stamp.seq, 0)) + payload


def stamp_of(raw: bytes) -> Stamp:
    if raw[:1] != MARK or len(raw) < SIZE:
        return UNSTAMPED
    _, generation, seq = _LAYOUT.unpack_from(raw)
    return Stamp(generation, seq)


def payload_of(raw: bytes) -> bytes:
    """The record's bytes without its stamp (values written before stamps have none)."""
    return raw[SIZE:] if raw[:1] == MARK else raw


def next_stamp(generation: int, head_before: bytes | None, seq_after: int) -> Stamp:
    """The stamp of an event's records: never an older epoch than the restaurant's head already carries."""
    previous = stamp_of(head_before) if head_before is not None else UNSTAMPED
    return Stamp(max(generation, previous.generation), seq_after)
