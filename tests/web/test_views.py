"""Operator views' answers that need no worker: an owner that cannot be reached is a 503 to retry."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from web.views import from_owner


class View:
    def json(self, body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> tuple:
        return body, status, headers


@pytest.mark.parametrize(
    "failure", [aiohttp.ClientConnectionError("refused"), ConnectionRefusedError(111, "refused"), TimeoutError()]
)
async def test_an_owner_that_just_died_is_a_503_with_retry_after_not_a_500(failure: Exception) -> None:
    async def forwarded() -> Any:
        raise failure

    body, status, headers = await from_owner(View(), forwarded())  # type: ignore[arg-type]
    assert status == 503 and headers == {"Retry-After": "1"}
    assert "unreachable" in body["error"]


async def test_the_owners_answer_passes_through() -> None:
    async def forwarded() -> str:
        return "the owner's answer"

    assert await from_owner(View(), forwarded()) == "the owner's answer"  # type: ignore[arg-type]
