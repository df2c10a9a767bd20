"""The Faust/aiokafka patches refuse versions they were not written for, and their accessors find what they need."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from partner_stream.faust_patches import WRITTEN_FOR, UnsupportedVersion, check_versions, read_offsets


def test_the_installed_versions_are_the_ones_the_patches_were_written_for() -> None:
    assert {name: version(name) for name in WRITTEN_FOR} == WRITTEN_FOR
    check_versions()


def test_another_version_is_refused_with_where_to_look() -> None:
    with pytest.raises(UnsupportedVersion, match=r"faust-streaming 0\.16\.0 \(written for 0\.15\.3\).*faust_patches"):
        check_versions({**WRITTEN_FOR, "faust-streaming": "0.16.0"})


def test_read_offsets_are_faust_consumers_private_mapping() -> None:
    from faust.transport.consumer import Consumer

    class Probe:
        _read_offset = {"tp": 5}

    assert read_offsets(Probe()) == {"tp": 5}
    assert "_read_offset" in Consumer.__annotations__  # the attribute this reads still exists in Faust


def test_the_private_methods_the_patches_wrap_still_exist() -> None:
    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from faust.tables.recovery import Recovery
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert callable(GroupCoordinator._do_heartbeat)
    assert callable(AIOKafkaConsumerThread._fetch_records) and callable(AIOKafkaConsumerThread._ensure_consumer)
    assert callable(Recovery.on_recovery_completed) and callable(Fetcher.fetched_records)


class _Writer:
    def write(self, data: bytes) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True reading=False 0x1>")


class _Request:
    def prepare(self, versions: object) -> _Request:
        return self

    def build_request_header(self, *, correlation_id: int, client_id: str) -> _Request:
        return self

    def encode(self) -> bytes:
        return b"x"


async def test_a_write_on_a_transport_uvloop_closed_is_a_broken_connection_not_a_crash() -> None:
    """A silent partition that healed crashed the Fetcher with uvloop's RuntimeError (issue #17)."""
    from aiokafka.conn import AIOKafkaConnection
    from aiokafka.errors import KafkaConnectionError

    from partner_stream.faust_patches import connection

    connection.install()
    connection.install()  # idempotent
    conn = AIOKafkaConnection("127.0.0.1", 9)
    conn._writer = _Writer()
    closed: list[object] = []
    conn.close = lambda reason=None, exc=None: closed.append(reason)  # type: ignore[method-assign]
    with pytest.raises(KafkaConnectionError, match="broken"):
        conn.send(_Request())
    assert closed  # the connection is dropped, so aiokafka reconnects


async def test_other_runtime_errors_still_surface() -> None:
    from partner_stream.faust_patches.connection import is_closed_transport_error

    assert not is_closed_transport_error(RuntimeError("something else"))
