"""Patch: a write on a broker connection whose transport uvloop has closed is a broken connection, not a crash.

aiokafka's ``AIOKafkaConnection.send`` turns an ``OSError`` from the socket write into
``KafkaConnectionError``, which its callers retry. Under uvloop (the worker's loop) a write on
a transport that is already closed raises ``RuntimeError: unable to perform operation on
<TCPTransport closed=True ...>`` instead. Seen when a silently dropped network healed: the
error escaped aiokafka's Fetcher and the worker exited with code 1 (issue #17). This wrapper
gives that error the same fate as an ``OSError``.
"""

from __future__ import annotations

from typing import Any

from aiokafka import errors
from aiokafka.conn import AIOKafkaConnection, CloseReason

_original_send = AIOKafkaConnection.send


def is_closed_transport_error(error: RuntimeError) -> bool:
    """uvloop's message for an operation on a closed transport (asyncio raises OSError or nothing there)."""
    text = str(error)
    return "unable to perform operation" in text and "closed=True" in text


def _send(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
    try:
        return _original_send(self, request, expect_response)
    except RuntimeError as err:
        if not is_closed_transport_error(err):
            raise
        self.close(reason=CloseReason.CONNECTION_BROKEN)
        raise errors.KafkaConnectionError(f"Connection at {self.host}:{self.port} broken: {err}") from err


def install() -> None:
    """Wrap ``AIOKafkaConnection.send`` once (idempotent)."""
    if AIOKafkaConnection.send is not _send:
        AIOKafkaConnection.send = _send  # type: ignore[method-assign]
