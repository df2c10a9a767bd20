"""One grammar for durations typed by people: ``90``, ``500ms``, ``60s``, ``5m``, ``12h``, ``7d``."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: Longer than any duration anyone means; keeps a hostile query parameter from overflowing arithmetic later.
MAX_SECONDS = 366 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (a bare number is seconds); ValueError naming the grammar otherwise."""
    match = _DURATION.match(text) if len(text) <= 32 else None
    if not match:
        raise ValueError(f"{text[:40]!r} is not a duration like 90, 60s, 5m, 12h or 7d")
    seconds = float(match.group(1)) * _SCALE[match.group(2) or "s"]
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than a year")
    return seconds
