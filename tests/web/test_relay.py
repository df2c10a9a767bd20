"""The relay's refusals: raised before any upgrade, so the endpoint answers them like its own."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from partner_stream.broker import free_port
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
