"""X-XRouter-Stale and Age of an answer served from a replica's last good read: the same age,
to a tenth and in whole seconds, whatever the fraction (0.96 s is "1.0" and 1, not "1.0" and 0)."""

from __future__ import annotations

import pytest

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.accounts_api import stale_headers


@pytest.mark.parametrize(("seconds", "stale", "age"), [
    (0.0, "0.0", "0"), (0.04, "0.0", "0"), (0.96, "1.0", "1"), (1.94, "1.9", "1"),
    (2.999, "3.0", "3"), (-0.5, "0.0", "0")])
def test_both_headers_say_the_same_age(seconds: float, stale: str, age: str) -> None:
    assert stale_headers(pb.Credits(stale_seconds=seconds)) == {"X-XRouter-Stale": stale,
                                                                "Age": age}


def test_a_fresh_answer_has_neither() -> None:
    assert stale_headers(pb.Credits()) is None
