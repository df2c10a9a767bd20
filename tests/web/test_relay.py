"""The relay's refusals: raised before any upgrade, so the endpoint answers them like its own."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from partner_stream.broker import free_port
from web.protocols.disconnects import SHUTDOWN
from web.relay import Relay, RelayRefused


async def test_an_unreachable_owner_is_a_retryable_refusal() -> None:
    relay = Relay(max_message_bytes=65536)
    request = make_mocked_request("GET", "/ws/partner?restaurantId=r1", headers={"Authorization": "Bearer t"})
    try:
        with pytest.raises(RelayRefused) as refused:
            await relay.serve(request, URL(f"http://127.0.0.1:{free_port()}"))
    finally:
        await relay.close()
    assert refused.value.status == 503
    assert "unreachable" in refused.value.reason
    assert relay.active == 0


class FakeClientSocket:
    def __init__(self, hangs: bool = False) -> None:
        self.hangs = hangs
        self.closed_with: tuple[int, bytes] | None = None

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed_with = (code, message)
        if self.hangs:  # a tablet that never answers the close frame
            await asyncio.Event().wait()


async def test_shutdown_tells_every_relayed_tablet_to_reconnect_without_waiting_on_slow_ones() -> None:
    relay = Relay(max_message_bytes=65536)
    slow, quick = FakeClientSocket(hangs=True), FakeClientSocket()
    relay._clients.update({slow, quick})  # type: ignore[arg-type]
    # A deadline, not a timing claim: closing one by one would wait on the silent tablet forever.
    await asyncio.wait_for(relay.close_all(timeout=0.2), timeout=30)
    assert slow.closed_with == quick.closed_with == (SHUTDOWN.code, SHUTDOWN.reason.encode())
