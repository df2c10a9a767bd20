"""IDs from a tablet are bounded by the event contract before they reach the hub, a cache or Kafka."""

from __future__ import annotations

import json

import pytest

from partner_stream_web.protocols import PlainCodec, RemoteProtocolError, SignalRCodec
from partner_stream_web.protocols.messages import Acknowledge, InvalidInvocation
from tests.support.codecs import drain

HANDSHAKE = '{"protocol":"json","version":1}\x1e'


def signalr(record: dict) -> list:
    codec = SignalRCodec()
    return drain(codec, HANDSHAKE + json.dumps(record) + "\x1e")[1:]


@pytest.mark.parametrize("order_id", ["o" * 129, "bad\x00id", "tab\tbed", "  "])
def test_a_signalr_acknowledge_of_an_impossible_order_id_is_answered_with_an_error(order_id: str) -> None:
    [event] = signalr({"type": 1, "invocationId": "1", "target": "Acknowledge", "arguments": [order_id]})
    assert isinstance(event, InvalidInvocation) and "orderId" in event.error


def test_a_signalr_acknowledge_at_the_limit_is_accepted() -> None:
    [event] = signalr({"type": 1, "invocationId": "1", "target": "Acknowledge", "arguments": ["o" * 128]})
    assert event == Acknowledge("o" * 128, "1")


def test_a_signalr_invocation_id_over_the_limit_breaks_the_protocol() -> None:
    with pytest.raises(RemoteProtocolError, match="invocationId"):
        signalr({"type": 1, "invocationId": "i" * 129, "target": "GetPendingOrders", "arguments": []})


@pytest.mark.parametrize(
    "request_",
    [
        {"type": "ack", "orderId": "o" * 129},
        {"type": "ack", "orderId": "a\x1fb"},
        {"type": "ack", "orderId": "x", "id": "i" * 129},
    ],
)
def test_a_plain_request_with_an_impossible_id_breaks_the_protocol(request_: dict) -> None:
    with pytest.raises(RemoteProtocolError):
        drain(PlainCodec(), json.dumps(request_))
