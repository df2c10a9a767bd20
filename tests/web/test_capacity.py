"""The connection cap sits under the open-file limit, and the listener hangs up past it."""

from __future__ import annotations

import asyncio
import logging
import resource

import pytest

from partner_stream_web.capacity import RESERVED_DESCRIPTORS, ConnectionCap, plan_capacity


def test_the_cap_keeps_a_reserve_under_the_open_file_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    planned = plan_capacity(None, raise_soft_limit=False)
    assert planned.max_connections == max(16, soft - RESERVED_DESCRIPTORS)
    assert plan_capacity(100, raise_soft_limit=False).max_connections == min(100, planned.max_connections)


def test_a_configured_cap_above_the_limit_is_lowered_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    with caplog.at_level(logging.WARNING, logger="partner_stream_web.capacity"):
        planned = plan_capacity(soft * 10, raise_soft_limit=False)
    assert planned.max_connections == max(16, soft - RESERVED_DESCRIPTORS)
    assert "above what the open-file limit" in caplog.text


async def test_past_the_cap_the_listener_hangs_up_at_once(caplog: pytest.LogCaptureFixture) -> None:
    open_now = [0]
    cap = ConnectionCap(2, lambda: open_now[0])
    made: list[str] = []

    class Served(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            open_now[0] += 1
            made.append("served")

    server = await asyncio.get_running_loop().create_server(cap.protocol_factory(Served), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = []
    with caplog.at_level(logging.WARNING, logger="partner_stream_web.capacity"):
        for _ in range(4):
            clients.append(await asyncio.open_connection("127.0.0.1", port))
        refused_reader = clients[-1][0]
        assert await asyncio.wait_for(refused_reader.read(), timeout=5) == b""  # closed by the server
    assert made == ["served", "served"]
    assert "connection limit reached" in caplog.text
    for _, writer in clients:
        writer.close()
    server.close()
    await server.wait_closed()
