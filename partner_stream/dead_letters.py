"""Dead letters: the record that could not be applied, where it came from and why, always small enough to send.

A dead letter carries the original key and value unchanged, unless either is past its limit: then it carries
the first bytes of it, and headers give the original size and SHA-256 so the whole record can be found
upstream (``x-dead-letter-truncated`` names what was cut). The reason is capped too. So a dead letter always
fits in one Kafka request, whatever arrived.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .events import cap_reason

#: Bytes of the original value kept in a dead letter (Kafka's default request limit is 1,000,000).
VALUE_BYTES = 256 * 1024
#: Bytes of the original key kept.
KEY_BYTES = 1024

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: Headers


def dead_letter(
    *,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp: float | None,
    exception: BaseException | None = None,
) -> DeadLetter:
    """The dead letter of one source record; ``exception`` when applying it failed (a poison event)."""
    headers: Headers = [
        ("x-dead-letter-reason", cap_reason(reason).encode()),
        ("x-source-topic", topic.encode()),
        ("x-source-partition", str(partition).encode()),
        ("x-source-offset", str(offset).encode()),
        ("x-source-timestamp-ms", str(_timestamp_ms(timestamp)).encode()),
    ]
    if exception is not None:
        headers.append(("x-exception-class", type(exception).__qualname__.encode()))
    truncated = []
    kept_key = _keep(key, KEY_BYTES, "key", headers, truncated)
    kept_value = _keep(value, VALUE_BYTES, "value", headers, truncated)
    if truncated:
        headers.append(("x-dead-letter-truncated", ",".join(truncated).encode()))
    return DeadLetter(key=kept_key, value=kept_value, headers=headers)


def _keep(data: bytes | None, limit: int, name: str, headers: Headers, truncated: list[str]) -> bytes | None:
    if data is None or len(data) <= limit:
        return data
    headers.append((f"x-original-{name}-bytes", str(len(data)).encode()))
    headers.append((f"x-original-{name}-sha256", hashlib.sha256(data).hexdigest().encode()))
    truncated.append(name)
    return data[:limit]


def _timestamp_ms(timestamp: float | None) -> int:
    try:
        return int((timestamp or 0) * 1000)
    except (OverflowError, ValueError):
        return 0
