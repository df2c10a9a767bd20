"""Operator views' answers that need no worker: an owner that cannot be reached is a 503 to retry."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from partner_stream_web import views
from partner_stream_web.views import from_owner


@pytest.fixture(autouse=True)
def owner_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "owner_url", lambda restaurant_id: "http://owner:5003")


class View:
    def json(self, body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> tuple:
        return body, status, headers


@pytest.mark.parametrize(
    "failure", [aiohttp.ClientConnectionError("refused"), ConnectionRefusedError(111, "refused"), TimeoutError()]
)
async def test_an_owner_that_just_died_is_a_503_with_retry_after_not_a_500(failure: Exception) -> None:
    async def forwarded() -> Any:
        raise failure

    body, status, headers = await from_owner(View(), "r1", forwarded)  # type: ignore[arg-type]
    assert status == 503 and headers == {"Retry-After": "1"}
    assert "unreachable" in body["error"]


async def test_the_owners_answer_passes_through() -> None:
    async def forwarded() -> str:
        return "the owner's answer"

    assert await from_owner(View(), "r1", forwarded) == "the owner's answer"  # type: ignore[arg-type]


async def test_before_the_first_assignment_it_is_a_503_not_a_500_from_deep_in_aiokafka(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's router raised TypeError from aiokafka's producer when asked before any assignment."""
    monkeypatch.setattr(views, "owner_url", lambda restaurant_id: None)

    async def forwarded() -> Any:
        raise AssertionError("must not route without an owner")

    body, status, headers = await from_owner(View(), "r1", forwarded)  # type: ignore[arg-type]
    assert status == 503 and headers == {"Retry-After": "1"} and "not assigned yet" in body["error"]
