"""Test helper: feed a codec one frame and take every event it buffered."""

from __future__ import annotations

from partner_stream_web.protocols import NEED_DATA, Inbound, PlainCodec, SignalRCodec


def drain(codec: SignalRCodec | PlainCodec, text: str) -> list[Inbound]:
    """``receive_text(text)``, then ``next_event()`` until NEED_DATA: what the read loop does with a frame."""
    codec.receive_text(text)
    events: list[Inbound] = []
    while (event := codec.next_event()) is not NEED_DATA:
        events.append(event)
    return events
