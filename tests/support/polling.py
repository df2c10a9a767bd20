"""Wait for conditions with a deadline: tests never sleep blindly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call ``probe`` until ``check(result)`` holds; fail with the last result after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    last_error: BaseException | None = None
    while True:
        try:
            last = await probe()
            last_error = None
            if check(last):  # type: ignore[arg-type]
                return last  # type: ignore[return-value]
        except Exception as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f"last error: {last_error!r}" if last_error else f"last value: {last!r}"
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; {detail}")
        await asyncio.sleep(interval)
