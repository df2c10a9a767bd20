"""What both codecs need to write JSON: one encoder, and the rule for error texts."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from partner_stream_web.protocols.errors import LocalProtocolError


def _mapping_as_dict(value: object) -> object:
    # Payloads may be read-only mappings (a cached snapshot's orders): JSON objects all the same.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


def to_json(obj: object) -> str:
    """``obj`` as compact JSON text; :class:`LocalProtocolError` if it cannot be encoded."""
    try:
        return orjson.dumps(obj, default=_mapping_as_dict).decode()
    except orjson.JSONEncodeError as err:
        raise LocalProtocolError(f"message is not JSON-encodable: {err}") from err


def require_error_text(error: str) -> None:
    """An error reply needs words: the SignalR client tests ``if (message.error)``, so "" would read as success."""
    if not error:
        raise LocalProtocolError("an error message must be a non-empty string")
