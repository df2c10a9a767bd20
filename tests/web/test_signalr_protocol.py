"""SignalR JSON hub protocol codec, driven with plain strings (no sockets)."""

from __future__ import annotations

import json
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partner_stream_web.protocols.disconnects import BAD_REQUEST, MESSAGE_TOO_BIG, SHUTDOWN
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
    HandshakeRequested,
    InvalidInvocation,
    Push,
    Reply,
    ServerPing,
    Snapshot,
    SnapshotRequested,
)
from partner_stream_web.protocols.signalr import SignalRCodec
from tests.support.codecs import drain

RS = "\x1e"
HANDSHAKE = '{"protocol":"json","version":1}' + RS


def rec(obj: Any) -> str:
    """One record as the official client writes it: compact JSON + record separator."""
    return json.dumps(obj, separators=(",", ":")) + RS


def open_codec() -> SignalRCodec:
    codec = SignalRCodec()
    assert drain(codec, HANDSHAKE) == [HandshakeRequested()]
    assert codec.send(HandshakeAccepted()) == "{}" + RS
    return codec


def invoke(target: str, *arguments: Any, invocation_id: str | None = "1") -> str:
    message: dict[str, Any] = {"type": 1, "target": target, "arguments": list(arguments)}
    if invocation_id is not None:
        message["invocationId"] = invocation_id
    return rec(message)


# -- handshake ----------------------------------------------------------------------


def test_codec_starts_awaiting_handshake() -> None:
    assert SignalRCodec().state is CodecState.AWAITING_HANDSHAKE


def test_valid_handshake_yields_handshake_requested_and_accept_opens() -> None:
    codec = SignalRCodec()
    assert drain(codec, HANDSHAKE) == [HandshakeRequested()]
    assert codec.state is CodecState.AWAITING_HANDSHAKE
    assert codec.send(HandshakeAccepted()) == "{}\x1e"
    assert codec.state is CodecState.OPEN


def test_records_after_handshake_in_same_frame_are_parsed() -> None:
    codec = SignalRCodec()
    events = drain(codec, HANDSHAKE + invoke("GetPendingOrders") + rec({"type": 6}))
    assert events == [HandshakeRequested(), SnapshotRequested("1"), ClientPing()]


def test_invocation_before_handshake_is_protocol_error() -> None:
    codec = SignalRCodec()
    with pytest.raises(RemoteProtocolError) as info:
        codec.receive_text(invoke("GetPendingOrders"))
    assert info.value.disconnect == BAD_REQUEST
    assert info.value.handshake_error == "expected the handshake request before any hub message"


def test_messagepack_handshake_is_rejected_with_handshake_error() -> None:
    codec = SignalRCodec()
    with pytest.raises(RemoteProtocolError) as info:
        codec.receive_text('{"protocol":"messagepack","version":1}' + RS)
    assert info.value.handshake_error == "The protocol 'messagepack' is not supported."
    assert codec.next_event() is NEED_DATA
    frame = codec.send(HandshakeRejected(info.value.handshake_error))
    assert frame == '{"error":"The protocol \'messagepack\' is not supported."}\x1e'
    assert codec.state is CodecState.CLOSED


@pytest.mark.parametrize("version", [0, 2, 3])
def test_unsupported_version_is_rejected(version: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        SignalRCodec().receive_text(rec({"protocol": "json", "version": version}))
    assert info.value.handshake_error == f"The server does not support version {version} of the 'json' protocol."


@pytest.mark.parametrize(
    "record",
    [
        "not json" + RS,
        "[]" + RS,
        rec({"version": 1}),
        rec({"protocol": "json"}),
        rec({"protocol": "json", "version": "1"}),
    ],
)
def test_malformed_handshake_is_protocol_error_with_handshake_error(record: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        SignalRCodec().receive_text(record)
    assert info.value.handshake_error


def test_handshake_protocol_name_is_case_insensitive() -> None:
    assert drain(SignalRCodec(), rec({"protocol": "JSON", "version": 1})) == [HandshakeRequested()]


def test_bad_record_after_handshake_in_same_frame_rejects_whole_frame() -> None:
    codec = SignalRCodec()
    with pytest.raises(RemoteProtocolError) as info:
        codec.receive_text(HANDSHAKE + "[]" + RS)
    assert info.value.handshake_error == "record is not a JSON object"
    assert codec.next_event() is NEED_DATA


@pytest.mark.parametrize("message", [ServerPing(), Close(SHUTDOWN), Reply("1", result=1)])
def test_nothing_may_precede_the_handshake_reply(message: Any) -> None:
    codec = SignalRCodec()
    codec.receive_text(HANDSHAKE)
    with pytest.raises(LocalProtocolError):
        codec.send(message)
    assert codec.state is CodecState.AWAITING_HANDSHAKE


def test_cannot_accept_a_handshake_that_has_not_arrived() -> None:
    with pytest.raises(LocalProtocolError):
        SignalRCodec().send(HandshakeAccepted())


def test_handshake_can_be_rejected_before_it_arrives() -> None:
    codec = SignalRCodec()
    assert codec.send(HandshakeRejected("Handshake was canceled.")) == '{"error":"Handshake was canceled."}\x1e'
    assert codec.state is CodecState.CLOSED


def test_handshake_cannot_be_answered_twice() -> None:
    codec = open_codec()
    with pytest.raises(LocalProtocolError):
        codec.send(HandshakeAccepted())
    with pytest.raises(LocalProtocolError):
        codec.send(HandshakeRejected("late"))


def test_second_handshake_record_is_protocol_error() -> None:
    codec = open_codec()
    with pytest.raises(RemoteProtocolError) as info:
        codec.receive_text(HANDSHAKE)
    assert info.value.handshake_error is None


# -- framing ------------------------------------------------------------------------


def test_two_records_in_one_frame_yield_two_events() -> None:
    codec = open_codec()
    assert drain(codec, invoke("Acknowledge", "o1") + invoke("GetPendingOrders", invocation_id="2")) == [
        Acknowledge("o1", "1"),
        SnapshotRequested("2"),
    ]


@pytest.mark.parametrize("frame", ['{"type":6}', '{"type":6}\x1e{"type":6}', ""])
def test_partial_record_is_protocol_error(frame: str) -> None:
    codec = open_codec()
    with pytest.raises(RemoteProtocolError) as info:
        codec.receive_text(frame)
    assert info.value.disconnect == BAD_REQUEST
    assert codec.next_event() is NEED_DATA


def test_frame_with_100_records_is_accepted() -> None:
    assert drain(open_codec(), rec({"type": 6}) * 100) == [ClientPing()] * 100


def test_frame_with_more_than_100_records_is_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="101 records"):
        open_codec().receive_text(rec({"type": 6}) * 101)


@pytest.mark.parametrize(
    "record",
    [
        "{" + RS,
        RS,
        "[]" + RS,
        '"x"' + RS,
        rec({}),
        rec({"type": "1"}),
        rec({"type": True}),
        rec({"type": 1.0}),
    ],
)
def test_record_not_an_object_with_integer_type_is_protocol_error(record: str) -> None:
    codec = open_codec()
    with pytest.raises(RemoteProtocolError) as info:
        codec.receive_text(record)
    assert info.value.disconnect == BAD_REQUEST
    assert info.value.handshake_error is None


def test_binary_frame_is_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        open_codec().receive_binary(b'{"type":6}\x1e')
    assert info.value.disconnect == BAD_REQUEST
    assert info.value.handshake_error is None


def test_binary_messagepack_handshake_names_the_protocol() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        SignalRCodec().receive_binary(b'{"protocol":"messagepack","version":1}\x1e')
    assert info.value.handshake_error == "The protocol 'messagepack' is not supported."


def test_binary_json_handshake_is_still_rejected() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        SignalRCodec().receive_binary(HANDSHAKE.encode())
    assert info.value.handshake_error is not None
    assert "binary" in info.value.handshake_error


# -- invocations --------------------------------------------------------------------


@pytest.mark.parametrize("target", ["GetPendingOrders", "getpendingorders", "GETPENDINGORDERS", "getPendingOrders"])
def test_target_matching_is_case_insensitive(target: str) -> None:
    assert drain(open_codec(), invoke(target)) == [SnapshotRequested("1")]


@pytest.mark.parametrize("target", ["Acknowledge", "acknowledge", "ACKNOWLEDGE"])
def test_acknowledge_target_matching_is_case_insensitive(target: str) -> None:
    assert drain(open_codec(), invoke(target, "o1")) == [Acknowledge("o1", "1")]


def test_acknowledge_normalises_integer_order_id_to_str() -> None:
    assert drain(open_codec(), invoke("Acknowledge", 42)) == [Acknowledge("42", "1")]


def test_send_without_invocation_id_has_no_reply_to() -> None:
    codec = open_codec()
    assert drain(codec, invoke("Acknowledge", "o1", invocation_id=None)) == [Acknowledge("o1", None)]
    assert drain(codec, invoke("GetPendingOrders", invocation_id=None)) == [SnapshotRequested(None)]


@pytest.mark.parametrize("arguments", [[], [""], ["  "], [None], [True], [1.5], [{"id": 1}], ["o1", "o2"]])
def test_acknowledge_with_bad_arguments_is_invalid_invocation(arguments: list[Any]) -> None:
    [event] = drain(open_codec(), invoke("Acknowledge", *arguments))
    assert isinstance(event, InvalidInvocation)
    assert event.reply_to == "1"
    assert event.error


def test_get_pending_orders_with_arguments_is_invalid_invocation() -> None:
    assert drain(open_codec(), invoke("GetPendingOrders", "r1")) == [
        InvalidInvocation("1", "Invocation provides 1 argument(s) but target expects 0.")
    ]


def test_unknown_target_is_invalid_invocation() -> None:
    assert drain(open_codec(), invoke("Foo", 1)) == [InvalidInvocation("1", "Unknown hub method 'Foo'")]


def test_unknown_target_sent_without_invocation_id_has_no_reply_to() -> None:
    assert drain(open_codec(), invoke("Foo", invocation_id=None)) == [
        InvalidInvocation(None, "Unknown hub method 'Foo'")
    ]


@pytest.mark.parametrize(
    "message",
    [
        {"type": 1, "invocationId": "1", "arguments": []},
        {"type": 1, "invocationId": "1", "target": "GetPendingOrders"},
        {"type": 1, "invocationId": "1", "target": 7, "arguments": []},
        {"type": 1, "invocationId": "1", "target": "GetPendingOrders", "arguments": {}},
    ],
)
def test_malformed_invocation_with_id_is_invalid_invocation(message: dict[str, Any]) -> None:
    [event] = drain(open_codec(), rec(message))
    assert isinstance(event, InvalidInvocation)
    assert event.reply_to == "1"


@pytest.mark.parametrize(
    "message",
    [
        {"type": 1, "arguments": []},
        {"type": 1, "target": "GetPendingOrders"},
        {"type": 1, "invocationId": 1, "target": "GetPendingOrders", "arguments": []},
        {"type": 4, "target": "GetPendingOrders", "arguments": []},
    ],
)
def test_malformed_invocation_without_string_id_is_protocol_error(message: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        open_codec().receive_text(rec(message))


def test_stream_invocation_is_invalid_invocation() -> None:
    [event] = drain(open_codec(), rec({"type": 4, "invocationId": "9", "target": "GetPendingOrders", "arguments": []}))
    assert isinstance(event, InvalidInvocation)
    assert event.reply_to == "9"
    assert "Streaming is not supported" in event.error


def test_client_to_server_streaming_is_invalid_invocation() -> None:
    message = {"type": 1, "invocationId": "3", "target": "Acknowledge", "arguments": [], "streamIds": ["0"]}
    assert drain(open_codec(), rec(message)) == [InvalidInvocation("3", "Client-to-server streaming is not supported.")]


@pytest.mark.parametrize(
    "message",
    [
        {"type": 2, "invocationId": "1", "item": 1},
        {"type": 3, "invocationId": "1", "result": 1},
        {"type": 5, "invocationId": "1"},
        {"type": 8, "sequenceId": 1},
        {"type": 9, "sequenceId": 1},
        {"type": 99, "whatever": True},
    ],
)
def test_unknown_and_unhandled_types_are_ignored(message: dict[str, Any]) -> None:
    codec = open_codec()
    assert drain(codec, rec(message) + rec({"type": 6})) == [ClientPing()]


# -- ping and close -----------------------------------------------------------------


def test_ping_round_trip() -> None:
    codec = open_codec()
    assert drain(codec, '{"type":6}' + RS) == [ClientPing()]
    assert codec.send(ServerPing()) == '{"type":6}' + RS


def test_client_close_yields_client_closed() -> None:
    codec = open_codec()
    assert drain(codec, rec({"type": 7})) == [ClientClosed(None)]
    assert drain(codec, rec({"type": 7, "error": "tab closed"})) == [ClientClosed("tab closed")]


def test_close_with_reconnect_sets_allow_reconnect() -> None:
    codec = open_codec()
    assert codec.send(Close(SHUTDOWN)) == '{"type":7,"error":"server shutting down","allowReconnect":true}' + RS
    assert codec.state is CodecState.CLOSED


def test_terminal_close_omits_allow_reconnect() -> None:
    assert json.loads(open_codec().send(Close(MESSAGE_TOO_BIG)).rstrip(RS)) == {
        "type": 7,
        "error": "message too big",
    }


def test_send_after_close_is_local_error() -> None:
    codec = open_codec()
    codec.send(Close(SHUTDOWN))
    with pytest.raises(LocalProtocolError):
        codec.send(ServerPing())


def test_frames_after_close_are_discarded() -> None:
    codec = open_codec()
    codec.send(Close(SHUTDOWN))
    codec.receive_text("garbage")
    codec.receive_binary(b"garbage")
    assert codec.next_event() is NEED_DATA


def test_websocket_close_code_is_always_normal_closure() -> None:
    codec = SignalRCodec()
    assert codec.websocket_close_code(SHUTDOWN) == 1000
    assert codec.websocket_close_code(BAD_REQUEST) == 1000


# -- outbound encodings -------------------------------------------------------------


def test_snapshot_is_pending_orders_invocation() -> None:
    frame = open_codec().send(Snapshot("r1", 12, ({"orderId": "o1"}, MappingProxyType({"orderId": "o2"}))))
    assert frame.endswith(RS) and frame.count(RS) == 1
    assert json.loads(frame[:-1]) == {
        "type": 1,
        "target": "PendingOrders",
        "arguments": [{"restaurantId": "r1", "seq": 12, "orders": [{"orderId": "o1"}, {"orderId": "o2"}]}],
    }


@pytest.mark.parametrize("name", ["NewOrder", "OrderAccepted", "OrderRejected", "OrderAcknowledged"])
def test_push_passes_data_through_as_only_argument(name: str) -> None:
    data = MappingProxyType({"orderId": "o1", "seq": 7, "restaurantId": "r1"})
    frame = open_codec().send(Push(name, 7, data))
    assert frame == rec({"type": 1, "target": name, "arguments": [dict(data)]})


def test_unknown_push_name_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        open_codec().send(Push("Whatever", 1, {}))


def test_completion_with_result() -> None:
    codec = open_codec()
    assert codec.send(Reply("1", result={"ok": True})) == '{"type":3,"invocationId":"1","result":{"ok":true}}' + RS
    assert codec.send(Reply("2")) == '{"type":3,"invocationId":"2","result":null}' + RS


def test_completion_never_carries_result_and_error() -> None:
    frame = open_codec().send(Reply("1", result={"ignored": 1}, error="Unknown hub method 'Foo'"))
    assert json.loads(frame[:-1]) == {"type": 3, "invocationId": "1", "error": "Unknown hub method 'Foo'"}


def test_empty_error_is_local_error() -> None:
    # The client tests `if (message.error)`: an empty error would read as success.
    with pytest.raises(LocalProtocolError):
        open_codec().send(Reply("1", error=""))


def test_unencodable_message_is_local_error_and_keeps_state() -> None:
    codec = open_codec()
    with pytest.raises(LocalProtocolError):
        codec.send(Reply("1", result=Decimal("1.5")))
    assert codec.state is CodecState.OPEN


def test_next_event_drains_in_order_then_needs_data() -> None:
    codec = open_codec()
    codec.receive_text(rec({"type": 6}) + invoke("GetPendingOrders"))
    assert codec.next_event() == ClientPing()
    assert codec.next_event() == SnapshotRequested("1")
    assert codec.next_event() is NEED_DATA


# -- property: batching does not change meaning -------------------------------------

_ids = st.text(max_size=6)  # includes "\x1e": JSON escapes it, so it can never split a record
_targets = st.sampled_from(["GetPendingOrders", "getpendingorders", "Acknowledge", "ACKNOWLEDGE", "Foo"])
_arguments = st.lists(st.one_of(st.text(max_size=4), st.integers(), st.none(), st.booleans()), max_size=2)


@st.composite
def _invocations(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"type": 1, "target": draw(_targets), "arguments": draw(_arguments)}
    invocation_id = draw(st.none() | _ids)
    if invocation_id is not None:
        message["invocationId"] = invocation_id
    return message


_stream_invocations = st.fixed_dictionaries(
    {"type": st.just(4), "invocationId": _ids, "target": _targets, "arguments": st.just([])}
)
_closes = st.fixed_dictionaries({"type": st.just(7)}, optional={"error": st.text(max_size=6)})
_ignored = st.fixed_dictionaries(
    {"type": st.integers(min_value=2, max_value=1000).filter(lambda t: t not in (4, 6, 7))}
)
_records = st.one_of(
    _invocations(),
    _stream_invocations,
    _closes,
    _ignored,
    st.just({"type": 5, "invocationId": "1"}),
    st.just({"type": 6}),
).map(rec)


@settings(database=None, max_examples=200)
@given(st.lists(_records, max_size=99))
def test_one_frame_of_records_decodes_like_one_record_per_frame(records: list[str]) -> None:
    batched = drain(SignalRCodec(), HANDSHAKE + "".join(records))

    one_by_one = SignalRCodec()
    expected = drain(one_by_one, HANDSHAKE)
    for record in records:
        expected += drain(one_by_one, record)

    assert batched == expected
