"""The worker's event loop: uvloop unless Faust was told otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from partner_stream import event_loop


@pytest.fixture
def restore_policy() -> Iterator[None]:
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


def test_uvloop_is_installed_when_no_loop_was_chosen(restore_policy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(event_loop.LOOP_ENV, raising=False)
    asyncio.set_event_loop_policy(None)
    event_loop.install()
    assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)


def test_an_explicit_faust_loop_is_left_alone(restore_policy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.LOOP_ENV, "aio")
    asyncio.set_event_loop_policy(None)
    event_loop.install()
    assert not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
