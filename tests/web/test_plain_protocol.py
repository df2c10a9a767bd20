"""Plain JSON-over-WebSocket codec, driven with plain strings (no sockets)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from partner_stream_web.protocols import disconnects
from partner_stream_web.protocols.disconnects import BAD_REQUEST, RESYNC, SHUTDOWN, UNAUTHORIZED, Disconnect
from partner_stream_web.protocols.errors import LocalProtocolError, RemoteProtocolError
from partner_stream_web.protocols.messages import (
    NEED_DATA,
    Acknowledge,
    ClientClosed,
    ClientPing,
    Close,
    CodecState,
    HandshakeAccepted,
    HandshakeRejected,
    Push,
    Reply,
    Resume,
    ServerPing,
    Snapshot,
    SnapshotRequested,
)
from partner_stream_web.protocols.plain import PlainCodec
from tests.support.codecs import drain


def frame(obj: Any) -> str:
    return json.dumps(obj)


def decode_one(obj: Any) -> Any:
    [event] = drain(PlainCodec(), frame(obj))
    return event


def test_codec_starts_open_without_handshake() -> None:
    assert PlainCodec().state is CodecState.OPEN


# -- requests -----------------------------------------------------------------------


def test_ping_round_trip() -> None:
    codec = PlainCodec()
    assert drain(codec, '{"type":"ping"}') == [ClientPing()]
    assert codec.send(ServerPing()) == '{"type":"ping"}'


def test_ack_yields_acknowledge() -> None:
    assert decode_one({"type": "ack", "orderId": "o1"}) == Acknowledge("o1", None)


def test_ack_normalises_integer_order_id_and_request_id() -> None:
    assert decode_one({"type": "ack", "orderId": 42, "id": 7}) == Acknowledge("42", "7")


@pytest.mark.parametrize("order_id", [None, "", "  ", True, 1.5, ["o1"], {"id": "o1"}])
def test_ack_with_bad_order_id_is_protocol_error(order_id: Any) -> None:
    request: dict[str, Any] = {"type": "ack"}
    if order_id is not None:
        request["orderId"] = order_id
    with pytest.raises(RemoteProtocolError, match="orderId") as info:
        PlainCodec().receive_text(frame(request))
    assert info.value.disconnect == BAD_REQUEST


def test_resume_yields_seq() -> None:
    assert decode_one({"type": "resume", "seq": 12}) == Resume(12)
    assert decode_one({"type": "resume", "seq": 0}) == Resume(0)


@pytest.mark.parametrize("seq", [None, -1, "12", 1.0, True])
def test_resume_needs_non_negative_integer_seq(seq: Any) -> None:
    with pytest.raises(RemoteProtocolError, match="seq"):
        PlainCodec().receive_text(frame({"type": "resume", "seq": seq}))


def test_get_pending_orders_with_and_without_id() -> None:
    assert decode_one({"type": "getPendingOrders"}) == SnapshotRequested(None)
    assert decode_one({"type": "getPendingOrders", "id": "a"}) == SnapshotRequested("a")


@pytest.mark.parametrize("request_id", [True, 1.5, [], {}])
def test_request_id_must_be_string_or_integer(request_id: Any) -> None:
    with pytest.raises(RemoteProtocolError, match="'id'"):
        PlainCodec().receive_text(frame({"type": "getPendingOrders", "id": request_id}))


def test_close_yields_client_closed() -> None:
    assert decode_one({"type": "close"}) == ClientClosed(None)
    assert decode_one({"type": "close", "reason": "logout"}) == ClientClosed("logout")


def test_unknown_type_is_protocol_error_naming_allowed_types() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        PlainCodec().receive_text('{"type":"subscribe"}')
    message = str(info.value)
    assert "'subscribe'" in message
    for allowed in ("ping", "ack", "resume", "getPendingOrders", "close"):
        assert allowed in message
    assert info.value.disconnect == BAD_REQUEST


def test_type_matching_is_exact() -> None:
    with pytest.raises(RemoteProtocolError):
        PlainCodec().receive_text('{"type":"PING"}')


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not a single valid JSON"),
        ('{"type":"ping"}{"type":"ping"}', "not a single valid JSON"),
        ("", "not a single valid JSON"),
        ('["ping"]', "JSON object"),
        ('"ping"', "JSON object"),
        ("{}", "lacks a string 'type'"),
        ('{"type":1}', "lacks a string 'type'"),
    ],
)
def test_malformed_frame_is_protocol_error_with_clear_message(text: str, match: str) -> None:
    codec = PlainCodec()
    with pytest.raises(RemoteProtocolError, match=match) as info:
        codec.receive_text(text)
    assert info.value.disconnect == BAD_REQUEST
    assert codec.next_event() is NEED_DATA


def test_binary_frame_is_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        PlainCodec().receive_binary(b'{"type":"ping"}')
    assert info.value.disconnect == BAD_REQUEST


def test_next_event_drains_in_order_then_needs_data() -> None:
    codec = PlainCodec()
    codec.receive_text('{"type":"ping"}')
    codec.receive_text('{"type":"getPendingOrders","id":1}')
    assert codec.next_event() == ClientPing()
    assert codec.next_event() == SnapshotRequested("1")
    assert codec.next_event() is NEED_DATA


# -- outbound encodings -------------------------------------------------------------


def test_snapshot_encoding() -> None:
    sent = PlainCodec().send(Snapshot("r1", 12, ({"orderId": "o1"}, MappingProxyType({"orderId": "o2"}))))
    assert json.loads(sent) == {
        "type": "PendingOrders",
        "seq": 12,
        "data": {"restaurantId": "r1", "orders": [{"orderId": "o1"}, {"orderId": "o2"}]},
    }


@pytest.mark.parametrize("name", ["NewOrder", "OrderAccepted", "OrderRejected", "OrderAcknowledged"])
def test_push_encoding(name: str) -> None:
    data = {"orderId": "o1", "seq": 7}
    assert json.loads(PlainCodec().send(Push(name, 7, data))) == {"type": name, "seq": 7, "data": data}


def test_unknown_push_name_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        PlainCodec().send(Push("Whatever", 1, {}))


def test_reply_encodings_never_carry_result_and_error() -> None:
    codec = PlainCodec()
    assert json.loads(codec.send(Reply("a", result=[1]))) == {"type": "reply", "id": "a", "result": [1]}
    assert json.loads(codec.send(Reply("b"))) == {"type": "reply", "id": "b", "result": None}
    assert json.loads(codec.send(Reply("c", result=1, error="nope"))) == {
        "type": "reply",
        "id": "c",
        "error": "nope",
    }
    with pytest.raises(LocalProtocolError):
        codec.send(Reply("d", error=""))


@pytest.mark.parametrize("message", [HandshakeAccepted(), HandshakeRejected("no")])
def test_handshake_messages_are_local_errors(message: Any) -> None:
    with pytest.raises(LocalProtocolError):
        PlainCodec().send(message)


# -- close --------------------------------------------------------------------------


@pytest.mark.parametrize("disconnect", [SHUTDOWN, RESYNC, UNAUTHORIZED])
def test_close_carries_code_reason_and_reconnect(disconnect: Disconnect) -> None:
    codec = PlainCodec()
    assert json.loads(codec.send(Close(disconnect))) == {
        "type": "close",
        "code": disconnect.code,
        "reason": disconnect.reason,
        "reconnect": disconnect.reconnect,
    }
    assert codec.state is CodecState.CLOSED
    assert codec.websocket_close_code(disconnect) == disconnect.code


def test_send_after_close_is_local_error() -> None:
    codec = PlainCodec()
    codec.send(Close(SHUTDOWN))
    with pytest.raises(LocalProtocolError):
        codec.send(ServerPing())


def test_frames_after_close_are_discarded() -> None:
    codec = PlainCodec()
    codec.send(Close(SHUTDOWN))
    codec.receive_text("garbage")
    codec.receive_binary(b"garbage")
    assert codec.next_event() is NEED_DATA


# -- disconnect codes ---------------------------------------------------------------


def test_named_disconnects_follow_reconnect_ranges() -> None:
    named = [value for value in vars(disconnects).values() if isinstance(value, Disconnect)]
    assert len({d.code for d in named}) == len(named) >= 8
    for d in named:
        assert (4000 <= d.code <= 4499) if d.reconnect else (4500 <= d.code <= 4999)


@pytest.mark.parametrize(("code", "reconnect"), [(4500, True), (4000, False), (1000, True), (5000, False)])
def test_disconnect_code_must_match_reconnect_range(code: int, reconnect: bool) -> None:
    with pytest.raises(ValueError):
        Disconnect(code, "x", reconnect)


def test_disconnect_reason_must_fit_a_close_frame() -> None:
    with pytest.raises(ValueError):
        replace(SHUTDOWN, reason="x" * 124)
