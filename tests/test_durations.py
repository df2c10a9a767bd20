"""One duration grammar for the operator API and the CLI."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partner_stream.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("500ms", 0.5), ("60s", 60), ("5m", 300), ("12h", 43200), ("7d", 604800)]
)
def test_each_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5s", "5 weeks", "1e9", "9" * 40, "400d"])
def test_anything_else_is_refused_with_the_grammar(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|year"):
        parse_duration(text)


@given(st.text(max_size=64))
def test_never_raises_anything_but_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert 0 <= parse_duration(text) <= 366 * 86400
