"""Hypothesis fuzzing of both sans-I/O codecs: SignalRCodec and PlainCodec, fed what a hostile tablet could send.

tests/web/test_signalr_protocol.py checks each rule by example and that batching records does not change their
meaning; this file checks the codecs' contract on inputs nobody wrote by hand:

* receiving (text, binary, after close): the codec either buffers valid :data:`Inbound` events or raises
  :class:`RemoteProtocolError` (and then buffers nothing from that frame); it never raises anything else, never
  buffers more events per frame than the protocol's record limit, and every event's fields are of the declared
  types and no longer than the frame they came from (ids are str);
* sending: any :data:`Outbound` message in any state encodes to one well-formed str frame or raises
  :class:`LocalProtocolError`, and a refused send leaves the state as it was;
* interleavings: rule-based state machines mix receives, partial drains and sends on one codec.

White-box: the per-frame count reads the codec's private ``_events`` buffer, the only way to tell which events
one frame added while older ones are still waiting.
"""

from __future__ import annotations

import json
import typing
from dataclasses import fields
from itertools import pairwise
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from partner_stream_web.protocols.disconnects import (
    BAD_REQUEST,
    CLIENT_TIMEOUT,
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    NOT_OWNER,
    RESYNC,
    SHUTDOWN,
    UNAUTHORIZED,
    UNAVAILABLE,
    Disconnect,
)
from partner_stream_web.protocols.errors import LocalProtocolError, RemoteProtocolError
from partner_stream_web.protocols.messages import (
    NEED_DATA,
    PUSH_NAMES,
    Acknowledge,
    ClientClosed,
    ClientPing,
    Close,
    CodecState,
    HandshakeAccepted,
    HandshakeRejected,
    HandshakeRequested,
    Inbound,
    InvalidInvocation,
    Outbound,
    Push,
    Reply,
    Resume,
    ServerPing,
    Snapshot,
    SnapshotRequested,
)
from partner_stream_web.protocols.plain import REQUEST_TYPES, PlainCodec
from partner_stream_web.protocols.signalr import MAX_RECORDS_PER_FRAME, SignalRCodec
from tests.support.codecs import drain as feed

RS = "\x1e"
HANDSHAKE = '{"protocol":"json","version":1}' + RS
Codec = SignalRCodec | PlainCodec

#: Most events one frame may add to the buffer.
RECORD_LIMIT = {SignalRCodec: MAX_RECORDS_PER_FRAME, PlainCodec: 1}
INBOUND_TYPES = frozenset(typing.get_args(Inbound))
SIGNALR_EVENTS = frozenset({HandshakeRequested, SnapshotRequested, Acknowledge, ClientPing, ClientClosed})
SIGNALR_EVENTS |= {InvalidInvocation}
PLAIN_EVENTS = frozenset({SnapshotRequested, Acknowledge, Resume, ClientPing, ClientClosed})
#: Room for the fixed words around an echoed value in an error text (e.g. "Unknown hub method '...'").
ERROR_TEXT_SLACK = 300

FUZZ = settings(
    database=None,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MACHINE = settings(
    database=None,
    deadline=None,
    max_examples=40,
    stateful_step_count=20,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies: JSON values and odd ids -------------------------------------------------------

_big_ints = st.integers(min_value=18, max_value=400).map(lambda n: 10**n)
_edge_ints = st.sampled_from([0, -1, 2**53, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64])
_small_ints = st.integers(min_value=-3, max_value=3)
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _small_ints,
    st.integers(),
    _edge_ints,
    _big_ints,
    st.floats(),  # NaN and Infinity dump as literals orjson refuses
    st.text(max_size=12),
)
json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)
_odd_text = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["", " ", "\t\n", "\x00", RS, RS * 3, "\u2028", "🍜" * 3, "null", "0", "-1", "1e400"]),
    st.text(alphabet=f'{RS} \x00{{}}[]":,', max_size=8),
    st.integers(min_value=1_000, max_value=70_000).map(lambda n: "x" * n),  # up to the 64 KiB frame limit
)
odd_ids = st.one_of(_odd_text, st.integers(), _edge_ints, _big_ints, st.booleans(), st.none(), st.floats(), json_values)
_nesting = st.integers(min_value=1, max_value=1_200)


def dumps(value: Any, *, ascii_only: bool = True) -> str:
    """JSON as a sloppy client may write it: NaN/Infinity literals and integers of any size included."""
    return json.dumps(value, ensure_ascii=ascii_only)


def nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


# -- strategies: SignalR frames ----------------------------------------------------------------

#: Values for a field the codec reads: mostly near a boundary of what it accepts, sometimes anything.
field_values = st.one_of(_small_ints, _edge_ints, st.sampled_from(["o1", "7", "", " ", RS]), odd_ids)
_targets = st.sampled_from(["GetPendingOrders", "getpendingorders", "Acknowledge", "ACKNOWLEDGE", "Foo", "", " "])
VALID_SIGNALR_RECORDS = [
    '{"type":6}',
    '{"type":7}',
    '{"type":99}',
    '{"type":3,"invocationId":"1","result":null}',
    '{"type":1,"target":"GetPendingOrders","arguments":[]}',
    '{"type":1,"target":"Acknowledge","arguments":["o1"],"invocationId":"2"}',
]


@st.composite
def signalr_messages(draw: st.DrawFn) -> Any:
    """A record's JSON value: shaped like each SignalR message type, with odd values in its fields."""
    kind = draw(st.sampled_from(["invocation", "stream", "ping", "close", "other-type", "handshake", "any"]))
    message: dict[str, Any]
    match kind:
        case "invocation" | "stream":
            message = {"type": 1 if kind == "invocation" else 4}
            if draw(st.integers(0, 9)):
                message["target"] = draw(_targets if draw(st.integers(0, 3)) else odd_ids)
            if draw(st.integers(0, 9)):
                message["arguments"] = draw(st.lists(field_values, max_size=2) if draw(st.integers(0, 3)) else odd_ids)
            if draw(st.booleans()):
                message["invocationId"] = draw(st.text(max_size=6) | field_values)
            if not draw(st.integers(0, 5)):
                message["streamIds"] = draw(field_values)
        case "ping":
            message = {"type": 6}
        case "close":
            message = {"type": 7}
            if draw(st.booleans()):
                message["error"] = draw(field_values)
        case "other-type":
            message = {"type": draw(st.integers() | _edge_ints | field_values)}
        case "handshake":
            message = {
                "protocol": draw(st.sampled_from(["json", "JSON", "messagepack"]) | field_values),
                "version": draw(st.sampled_from([0, 1, 2]) | field_values),
            }
        case _:
            return draw(json_values)
    if not draw(st.integers(0, 7)):
        message[draw(st.text(max_size=6))] = draw(odd_ids)  # an unknown key, or one overriding a field
    return message


@st.composite
def signalr_records(draw: st.DrawFn) -> str:
    """One record's text (without its separator): JSON of any shape, or not JSON at all."""
    choice = draw(st.integers(min_value=0, max_value=9))
    if choice <= 5:
        return dumps(draw(signalr_messages()), ascii_only=draw(st.booleans()))
    if choice == 6:
        return draw(st.sampled_from([HANDSHAKE[:-1], *VALID_SIGNALR_RECORDS]))
    if choice == 7:
        return nested(draw(_nesting), draw(st.sampled_from(["list", "dict"])))
    return draw(st.text(max_size=30).filter(lambda t: RS not in t))


@st.composite
def signalr_frames(draw: st.DrawFn) -> str:
    """A text frame: records joined by 0x1E, sometimes with the handshake first, a missing last separator,
    a record count around the limit, or no structure at all."""
    shape = draw(st.sampled_from(["records", "records", "records", "around-limit", "arbitrary"]))
    if shape == "arbitrary":
        return draw(st.text(max_size=60) | st.text(alphabet=f'{RS}{{}}[]":,1 tye', max_size=60))
    prefix = HANDSHAKE if draw(st.booleans()) else ""
    if shape == "around-limit":
        count = draw(st.integers(min_value=MAX_RECORDS_PER_FRAME - 3, max_value=MAX_RECORDS_PER_FRAME + 3))
        records = [draw(st.sampled_from(VALID_SIGNALR_RECORDS))] * count
        if draw(st.booleans()):
            records[draw(st.integers(0, count - 1))] = draw(signalr_records())
        return prefix + "".join(record + RS for record in records)
    records = draw(st.lists(signalr_records(), max_size=6))
    end = RS if draw(st.integers(min_value=0, max_value=5)) else draw(st.sampled_from(["", RS * 2, " ", "\n"]))
    return prefix + RS.join(records) + end


# -- strategies: plain frames ------------------------------------------------------------------

_PLAIN_FIELD = {"ack": "orderId", "resume": "seq", "close": "reason"}


@st.composite
def plain_messages(draw: st.DrawFn) -> Any:
    """A frame's JSON value: mostly one of the protocol's requests with odd values in its fields."""
    kind = draw(st.sampled_from([*REQUEST_TYPES, "other-type", "any"]))
    if kind == "any":
        return draw(json_values)
    message: dict[str, Any] = {"type": draw(st.sampled_from(["Ping", "subscribe", ""]) | odd_ids)}
    if kind != "other-type":
        message["type"] = kind
    if (field := _PLAIN_FIELD.get(kind)) and draw(st.integers(0, 9)):
        message[field] = draw(field_values)
    if kind in ("ack", "getPendingOrders", "other-type") and draw(st.booleans()):
        message["id"] = draw(field_values)
    if not draw(st.integers(0, 7)):
        message[draw(st.text(max_size=6))] = draw(odd_ids)  # an unknown key, or one overriding a field
    return message


@st.composite
def plain_frames(draw: st.DrawFn) -> str:
    """A text frame: one JSON value (sometimes two, padded, deeply nested), or anything else."""
    choice = draw(st.integers(min_value=0, max_value=9))
    one = dumps(draw(plain_messages()), ascii_only=draw(st.booleans()))
    if choice <= 5:
        return one
    if choice == 6:
        return one + draw(st.sampled_from(["", " ", "\n", RS])) + dumps(draw(plain_messages()))
    if choice == 7:
        return draw(st.sampled_from([" ", "\t", "\n", "\ufeff", ""])) + one + draw(st.sampled_from([" ", "\x00", ""]))
    if choice == 8:
        return nested(draw(_nesting), draw(st.sampled_from(["list", "dict"])))
    return draw(st.text(max_size=60))


binary_frames = st.one_of(
    st.binary(max_size=80),
    st.sampled_from(
        [HANDSHAKE.encode(), b'{"protocol":"messagepack","version":1}\x1e', b'{"type":"ping"}', b"\xff\xfe\x00", b""]
    ),
)

# -- strategies: outbound messages -------------------------------------------------------------

NAMED_DISCONNECTS = [
    SHUTDOWN,
    RESYNC,
    NOT_OWNER,
    UNAVAILABLE,
    CLIENT_TIMEOUT,
    INTERNAL_ERROR,
    BAD_REQUEST,
    UNAUTHORIZED,
    MESSAGE_TOO_BIG,
]


@st.composite
def disconnects(draw: st.DrawFn) -> Disconnect:
    if draw(st.booleans()):
        return draw(st.sampled_from(NAMED_DISCONNECTS))
    reconnect = draw(st.booleans())
    code = draw(st.integers(4000, 4499) if reconnect else st.integers(4500, 4999))
    reason = draw(st.text(max_size=40).filter(lambda r: len(r.encode()) <= 123))
    return Disconnect(code, reason, reconnect)


class _Opaque:
    """Something no JSON encoder knows."""


_surrogates = st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3)
_payload_leaves = st.one_of(
    _json_scalars,
    st.binary(max_size=4),
    st.decimals(allow_nan=False, places=2),
    st.just(_Opaque()),
    st.uuids(),
    st.datetimes(),
    st.sets(st.integers(0, 9), max_size=2),
    _surrogates,
)
payloads = st.recursive(
    _payload_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=6), children, max_size=3),
        st.dictionaries(st.integers() | st.none() | st.booleans(), children, min_size=1, max_size=2),
        st.dictionaries(st.text(max_size=6), children, max_size=3).map(MappingProxyType),
    ),
    max_leaves=10,
)
_order_mappings = st.one_of(
    st.dictionaries(st.text(max_size=8), payloads, max_size=4),
    st.dictionaries(st.text(max_size=8), payloads, max_size=4).map(MappingProxyType),
)
_texts = st.text(max_size=24) | _surrogates | st.sampled_from(["", RS, "\x00", "</script>"])
_seqs = st.integers(min_value=-1, max_value=10**6) | _edge_ints | _big_ints
outbound_messages = st.one_of(
    st.builds(HandshakeAccepted),
    st.builds(HandshakeRejected, _texts),
    st.builds(Snapshot, _texts, _seqs, st.lists(_order_mappings, max_size=3).map(tuple)),
    st.builds(Push, st.sampled_from(sorted(PUSH_NAMES)) | _texts, _seqs, _order_mappings),
    st.builds(Reply, _texts, payloads, st.none() | _texts),
    st.builds(ServerPing),
    st.builds(Close, disconnects()),
)

# -- the contract ------------------------------------------------------------------------------


def buffered(codec: Codec) -> list[Inbound]:
    """The codec's event buffer (white-box)."""
    return codec._events


def drain(codec: Codec) -> list[Inbound]:
    events = []
    while (event := codec.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def check_event(event: object, codec: Codec, frame: str | bytes) -> None:
    """An event is an Inbound of this protocol, with fields of the declared types, no longer than the frame."""
    allowed = SIGNALR_EVENTS if isinstance(codec, SignalRCodec) else PLAIN_EVENTS
    assert type(event) in INBOUND_TYPES and type(event) in allowed, f"unexpected event {event!r}"
    limit = len(frame)
    match event:
        case Acknowledge(order_id=order_id, reply_to=reply_to):
            assert type(order_id) is str and order_id.strip(), event
            assert len(order_id) <= limit
            assert reply_to is None or (type(reply_to) is str and len(reply_to) <= limit), event
        case SnapshotRequested(reply_to=reply_to):
            assert reply_to is None or (type(reply_to) is str and len(reply_to) <= limit), event
        case InvalidInvocation(reply_to=reply_to, error=error):
            assert reply_to is None or (type(reply_to) is str and len(reply_to) <= limit), event
            assert type(error) is str and error and len(error) <= limit + ERROR_TEXT_SLACK, event
        case Resume(seq=seq):
            assert type(seq) is int and 0 <= seq < 2**64, event
        case ClientClosed(error=error):
            assert error is None or (type(error) is str and len(error) <= limit), event
        case HandshakeRequested() | ClientPing():
            assert not fields(event)


def check_remote_error(err: RemoteProtocolError, codec: Codec, state: CodecState, frame: str | bytes) -> None:
    assert isinstance(err.disconnect, Disconnect) and not err.disconnect.reconnect, err.disconnect
    text = str(err)
    assert text and len(text) <= 10 * len(frame) + ERROR_TEXT_SLACK  # repr() may escape each character
    if isinstance(codec, SignalRCodec) and state is CodecState.AWAITING_HANDSHAKE:
        # Before the handshake reply only HandshakeRejected(handshake_error) may be written, and the endpoint
        # writes it unguarded: it must exist and encode (a LocalProtocolError there would escape the handler).
        assert isinstance(err.handshake_error, str) and err.handshake_error, err
        rejection = SignalRCodec().send(HandshakeRejected(err.handshake_error))
        assert json.loads(rejection[:-1]) == {"error": err.handshake_error}
    else:
        assert err.handshake_error is None, err


def receive(codec: Codec, frame: str | bytes) -> list[Inbound] | RemoteProtocolError:
    """Feed one frame and check the receiving contract; the events it added (still buffered) or the error.

    Any exception other than RemoteProtocolError propagates and fails the test.
    """
    state = codec.state
    before = len(buffered(codec))
    try:
        if isinstance(frame, bytes):
            codec.receive_binary(frame)
        else:
            codec.receive_text(frame)
    except RemoteProtocolError as err:
        assert state is not CodecState.CLOSED, "a closed codec must discard frames, not refuse them"
        check_remote_error(err, codec, state, frame)
        assert len(buffered(codec)) == before, "a refused frame must buffer nothing"
        assert codec.state is state
        return err
    added = buffered(codec)[before:]
    assert codec.state is state, "receiving never changes our side's state"
    assert len(added) <= RECORD_LIMIT[type(codec)], f"{len(added)} events from one frame"
    if state is CodecState.CLOSED:
        assert not added, "frames after close must be discarded"
    if isinstance(frame, bytes):
        assert state is CodecState.CLOSED, "binary frames are never accepted"
    for event in added:
        check_event(event, codec, frame)
    return list(added)


def open_signalr() -> SignalRCodec:
    codec = SignalRCodec()
    assert feed(codec, HANDSHAKE) == [HandshakeRequested()]
    codec.send(HandshakeAccepted())
    return codec


def structurally_legal(codec: Codec, message: Outbound, handshake_received: bool) -> bool:
    """Whether ``message`` may be sent now, leaving aside whether its payload can be encoded."""
    state = codec.state
    if state is CodecState.CLOSED:
        return False
    match message:
        case HandshakeAccepted():
            return isinstance(codec, SignalRCodec) and state is CodecState.AWAITING_HANDSHAKE and handshake_received
        case HandshakeRejected(error=error):
            return isinstance(codec, SignalRCodec) and state is CodecState.AWAITING_HANDSHAKE and bool(error)
        case _ if state is CodecState.AWAITING_HANDSHAKE:
            return False
        case Push(name=name):
            return name in PUSH_NAMES
        case Reply(error=error):
            return error is None or bool(error)
        case _:
            return True


def check_frame(codec: Codec, message: Outbound, frame: str) -> None:
    """A sent frame is one JSON object (SignalR: plus exactly one trailing separator) saying what was sent."""
    if isinstance(codec, SignalRCodec):
        assert frame.endswith(RS) and frame.count(RS) == 1, repr(frame[:200])
        body = json.loads(frame[:-1])
    else:
        assert RS not in frame, "control characters are escaped"
        body = json.loads(frame)
    assert isinstance(body, dict)
    signalr = isinstance(codec, SignalRCodec)
    match message:
        case HandshakeAccepted():
            assert body == {}
        case HandshakeRejected(error=error):
            assert body == {"error": error}
        case Snapshot(restaurant_id=restaurant_id, seq=seq):
            payload = body["arguments"][0] if signalr else body["data"]
            assert payload["restaurantId"] == restaurant_id
            assert (payload["seq"] if signalr else body["seq"]) == seq
        case Push(name=name):
            assert (body["target"] if signalr else body["type"]) == name
        case Reply(reply_to=reply_to, error=error):
            assert (body["invocationId"] if signalr else body["id"]) == reply_to
            assert ("error" in body) == (error is not None) and ("result" in body) == (error is None)
        case ServerPing():
            assert body == ({"type": 6} if signalr else {"type": "ping"})
        case Close(disconnect=disconnect):
            if signalr:
                assert body["type"] == 7 and body["error"] == disconnect.reason
                assert body.get("allowReconnect", False) is disconnect.reconnect
            else:
                assert body["code"] == disconnect.code and body["reconnect"] is disconnect.reconnect


def send(codec: Codec, message: Outbound, *, handshake_received: bool) -> str | LocalProtocolError:
    """Send and check the sending contract: one well-formed frame, or LocalProtocolError with the state unchanged."""
    state = codec.state
    legal = structurally_legal(codec, message, handshake_received)
    try:
        frame = codec.send(message)
    except LocalProtocolError as err:
        assert codec.state is state, "a refused send must not change the state"
        assert isinstance(err.disconnect, Disconnect)
        if legal:
            assert "JSON-encodable" in str(err), f"legal {message!r} refused: {err}"
        return err
    assert type(frame) is str
    assert legal, f"{message!r} was sent in state {state}"
    check_frame(codec, message, frame)
    match message:
        case Close() | HandshakeRejected():
            assert codec.state is CodecState.CLOSED
        case HandshakeAccepted():
            assert codec.state is CodecState.OPEN
        case _:
            assert codec.state is state
    return frame


# -- receiving ---------------------------------------------------------------------------------


@FUZZ
@given(frames=st.lists(signalr_frames(), min_size=1, max_size=4), accept=st.booleans())
def test_signalr_text_frames_buffer_valid_events_or_raise_remote_errors(frames: list[str], accept: bool) -> None:
    codec = SignalRCodec()
    handshakes = 0
    for frame in frames:
        result = receive(codec, frame)
        if isinstance(result, RemoteProtocolError):
            if codec.state is CodecState.AWAITING_HANDSHAKE:
                return  # the endpoint rejects the handshake and closes: nothing more is read
            continue
        events = drain(codec)
        if HandshakeRequested() in events:
            assert handshakes == 0 and events[0] == HandshakeRequested(), "the handshake comes first, once"
            handshakes += 1
        assert events.count(HandshakeRequested()) <= 1
        if handshakes and accept and codec.state is CodecState.AWAITING_HANDSHAKE:
            assert send(codec, HandshakeAccepted(), handshake_received=True) == "{}" + RS


@FUZZ
@given(frame=signalr_frames())
def test_signalr_frames_on_an_open_connection(frame: str) -> None:
    codec = open_signalr()
    result = receive(codec, frame)
    if not isinstance(result, RemoteProtocolError):
        assert HandshakeRequested() not in result, "a second handshake must not be accepted"
        if frame.count(RS) > MAX_RECORDS_PER_FRAME:
            pytest.fail(f"{frame.count(RS)} records accepted in one frame")


@FUZZ
@given(records=st.lists(signalr_records(), max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=4))
def test_signalr_record_separators_split_anywhere(records: list[str], cuts: list[int]) -> None:
    """A batch cut at arbitrary points: a piece not ending at a record boundary is a RemoteProtocolError."""
    batch = HANDSHAKE + "".join(record + RS for record in records)
    points = sorted({cut % (len(batch) + 1) for cut in cuts} | {0, len(batch)})
    pieces = [batch[a:b] for a, b in pairwise(points)]
    codec = SignalRCodec()
    for piece in pieces:
        result = receive(codec, piece)
        if not piece.endswith(RS):
            assert isinstance(result, RemoteProtocolError), f"partial record accepted: {piece!r}"
        if isinstance(result, RemoteProtocolError):
            break
        if HandshakeRequested() in drain(codec):
            send(codec, HandshakeAccepted(), handshake_received=True)


@FUZZ
@given(frames=st.lists(plain_frames(), min_size=1, max_size=4))
def test_plain_text_frames_buffer_one_valid_event_or_raise_remote_errors(frames: list[str]) -> None:
    codec = PlainCodec()
    for frame in frames:
        result = receive(codec, frame)
        if not isinstance(result, RemoteProtocolError):
            assert len(result) == 1, "the plain protocol is exactly one message per frame"
        drain(codec)


@FUZZ
@given(value=json_values, ascii_only=st.booleans())
def test_any_json_value_in_any_position(value: Any, ascii_only: bool) -> None:
    """A JSON value of any shape as a whole plain frame, a SignalR record, an id, an argument and a seq."""
    text = dumps(value, ascii_only=ascii_only)
    receive(PlainCodec(), text)
    for message in (
        {"type": "ack", "orderId": value, "id": value},
        {"type": "getPendingOrders", "id": value},
        {"type": "resume", "seq": value},
        {"type": "close", "reason": value},
        {"type": value},
    ):
        receive(PlainCodec(), dumps(message, ascii_only=ascii_only))
    receive(SignalRCodec(), text + RS)
    receive(SignalRCodec(), dumps({"protocol": value, "version": value}) + RS)
    for message in (
        value,
        {"type": 1, "target": "Acknowledge", "arguments": [value], "invocationId": value},
        {"type": 1, "target": "Acknowledge", "arguments": [value], "invocationId": "1"},
        {"type": 1, "target": value, "arguments": value, "invocationId": "1"},
        {"type": 4, "target": "GetPendingOrders", "arguments": [], "invocationId": value},
        {"type": 1, "target": "GetPendingOrders", "arguments": [], "streamIds": value},
        {"type": 7, "error": value},
        {"type": value},
    ):
        receive(open_signalr(), dumps(message, ascii_only=ascii_only) + RS)


@FUZZ
@given(
    codec_type=st.sampled_from([SignalRCodec, PlainCodec]),
    opened=st.booleans(),
    data=binary_frames,
)
def test_binary_frames_are_always_refused(codec_type: type[Codec], opened: bool, data: bytes) -> None:
    codec = open_signalr() if codec_type is SignalRCodec and opened else codec_type()
    result = receive(codec, data)
    assert isinstance(result, RemoteProtocolError)


@FUZZ
@given(
    codec_type=st.sampled_from([SignalRCodec, PlainCodec]),
    how=st.sampled_from(["close", "reject-before-handshake", "reject-after-handshake"]),
    disconnect=disconnects(),
    frames=st.lists(signalr_frames() | plain_frames() | binary_frames, min_size=1, max_size=5),
    late=outbound_messages,
)
def test_frames_after_close_are_discarded_and_nothing_more_is_sent(
    codec_type: type[Codec], how: str, disconnect: Disconnect, frames: list[str | bytes], late: Outbound
) -> None:
    codec: Codec
    if codec_type is SignalRCodec and how.startswith("reject"):
        codec = SignalRCodec()
        if how == "reject-after-handshake":
            feed(codec, HANDSHAKE)
        codec.send(HandshakeRejected("The protocol 'messagepack' is not supported."))
    else:
        codec = open_signalr() if codec_type is SignalRCodec else PlainCodec()
        codec.send(Close(disconnect))
    assert codec.state is CodecState.CLOSED
    for frame in frames:
        assert receive(codec, frame) == []
    assert codec.next_event() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        codec.send(late)
    assert codec.state is CodecState.CLOSED


# -- sending -----------------------------------------------------------------------------------

SEND_STATES = ["signalr-fresh", "signalr-handshake-received", "signalr-open", "signalr-closed", "plain-open"]
SEND_STATES += ["plain-closed"]


def codec_in(state: str) -> tuple[Codec, bool]:
    """A codec in the named state, and whether it has received the handshake."""
    match state:
        case "signalr-fresh":
            return SignalRCodec(), False
        case "signalr-handshake-received":
            codec = SignalRCodec()
            feed(codec, HANDSHAKE)
            return codec, True
        case "signalr-open":
            return open_signalr(), True
        case "signalr-closed":
            codec = open_signalr()
            codec.send(Close(SHUTDOWN))
            return codec, True
        case "plain-open":
            return PlainCodec(), False
        case "plain-closed":
            codec = PlainCodec()
            codec.send(Close(BAD_REQUEST))
            return codec, False
    raise AssertionError(state)


@settings(FUZZ, max_examples=150)
@given(state=st.sampled_from(SEND_STATES), message=outbound_messages)
def test_send_encodes_one_well_formed_frame_or_raises_local_error(state: str, message: Outbound) -> None:
    codec, handshake_received = codec_in(state)
    send(codec, message, handshake_received=handshake_received)


@settings(FUZZ, max_examples=60)
@given(
    state=st.sampled_from(["signalr-open", "plain-open"]),
    messages=st.lists(outbound_messages, min_size=1, max_size=8),
)
def test_sends_in_sequence_stop_at_the_first_close(state: str, messages: list[Outbound]) -> None:
    codec, handshake_received = codec_in(state)
    closed = False
    for message in messages:
        result = send(codec, message, handshake_received=handshake_received)
        if closed:
            assert isinstance(result, LocalProtocolError)
        closed = codec.state is CodecState.CLOSED


# -- interleavings -----------------------------------------------------------------------------


class CodecMachine(RuleBasedStateMachine):
    """One connection's codec under any order of receives, partial drains and sends."""

    codec_type: type[Codec] = SignalRCodec

    def __init__(self) -> None:
        super().__init__()
        self.codec: Codec = self.codec_type()
        self.handshake_received = False
        self.events_buffered = 0  # ever
        self.waiting = 0  # buffered, not yet taken

    def _received(self, frame: str | bytes) -> None:
        result = receive(self.codec, frame)
        if isinstance(result, RemoteProtocolError):
            return
        for index, event in enumerate(result):
            if isinstance(event, HandshakeRequested):
                assert not self.handshake_received and self.events_buffered == 0 and index == 0
                self.handshake_received = True
        self.events_buffered += len(result)
        self.waiting += len(result)

    @rule(data=binary_frames)
    def receive_binary(self, data: bytes) -> None:
        self._received(data)

    @precondition(lambda self: isinstance(self.codec, SignalRCodec) and not self.handshake_received)
    @rule()
    def receive_handshake(self) -> None:
        self._received(HANDSHAKE)

    @precondition(lambda self: self.handshake_received and self.codec.state is CodecState.AWAITING_HANDSHAKE)
    @rule()
    def accept_handshake(self) -> None:
        send(self.codec, HandshakeAccepted(), handshake_received=True)

    @rule(count=st.integers(min_value=1, max_value=4))
    def take(self, count: int) -> None:
        for _ in range(count):
            event = self.codec.next_event()
            if event is NEED_DATA:
                assert self.waiting == 0
                return
            assert type(event) in INBOUND_TYPES
            self.waiting -= 1

    @rule(message=outbound_messages)
    def send_message(self, message: Outbound) -> None:
        send(self.codec, message, handshake_received=self.handshake_received)

    @invariant()
    def buffer_matches_the_model(self) -> None:
        assert len(buffered(self.codec)) == self.waiting
        assert isinstance(self.codec.state, CodecState)
        if isinstance(self.codec, PlainCodec):
            assert self.codec.state is not CodecState.AWAITING_HANDSHAKE


class SignalRMachine(CodecMachine):
    codec_type = SignalRCodec

    @rule(frame=signalr_frames())
    def receive_text(self, frame: str) -> None:
        self._received(frame)


class PlainMachine(CodecMachine):
    codec_type = PlainCodec

    @rule(frame=plain_frames())
    def receive_text(self, frame: str) -> None:
        self._received(frame)


SignalRMachine.TestCase.settings = MACHINE
PlainMachine.TestCase.settings = MACHINE
TestSignalRInterleavings = SignalRMachine.TestCase
TestPlainInterleavings = PlainMachine.TestCase
