"""domain/listings.py: the cursor's exact round trip and its refusals, page sizes and times."""

from __future__ import annotations

import pytest

from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.listings import Cursor, checked_limit, checked_time


def test_a_cursor_survives_its_text_exactly() -> None:
    for cursor in (Cursor(1733558400.123456, "gen-1"), Cursor(0.1 + 0.2, "é/\"x"),
                   Cursor(253402300799.0, "")):
        assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor(1.5, "g").encode() == "WzEuNSwiZyJd"


@pytest.mark.parametrize("text", ["", "garbage", "%%%", "WzEuNSwiZyJd===x", "bnVsbA",
                                  "WzEsMiwzXQ", "WyJ4IiwieSJd", "W3RydWUsIngiXQ",
                                  "Wy0xLCJ4Il0", "W05hTiwieCJd", "WzFlMzAwLCJ4Il0", "_-_-"])
def test_anything_else_is_refused_naming_before(text: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        Cursor.decode(text)
    assert (refused.value.param, refused.value.message) == (
        "before", "before is not a cursor this API returned")


def test_page_sizes_and_times() -> None:
    assert [checked_limit(n) for n in (0, 1, 200)] == [50, 1, 200]
    for bad in (-1, 201):
        with pytest.raises(InvalidRequest, match="limit must be from 1 to 200"):
            checked_limit(bad)
    assert checked_time(None, "since") is None and checked_time(0.0, "since") == 0.0
    for time in (float("nan"), float("inf"), -1.0, 253402300800.0):
        with pytest.raises(InvalidRequest) as refused:
            checked_time(time, "until")
        assert refused.value.param == "until"
