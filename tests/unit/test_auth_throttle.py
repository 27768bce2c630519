"""The failed-authentication table: fixed windows per address, and bounded memory under a flood
of distinct addresses (a clock stands in for time)."""

from __future__ import annotations

from xrouter_gateway.throttle import FailureTable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_blocked_after_the_limit_until_its_window_ends() -> None:
    clock = Clock()
    table = FailureTable(limit=3, capacity=100, clock=clock)
    for _ in range(2):
        table.failed("10.0.0.1")
    assert table.blocked_for("10.0.0.1") == 0.0
    clock.now += 20
    table.failed("10.0.0.1")
    assert table.blocked_for("10.0.0.1") == 40.0  # the window began with the first failure
    assert table.blocked_for("10.0.0.2") == 0.0
    clock.now += 39.5
    assert table.blocked_for("10.0.0.1") == 0.5
    clock.now += 0.5
    assert table.blocked_for("10.0.0.1") == 0.0
    table.failed("10.0.0.1")  # a new window, counting from one
    assert table.blocked_for("10.0.0.1") == 0.0
    assert len(table) == 1


def test_a_flood_of_distinct_addresses_never_grows_the_table_past_its_capacity() -> None:
    clock = Clock()
    table = FailureTable(limit=2, capacity=1000, clock=clock)
    for _ in range(2):
        table.failed("attacker")
    for i in range(100_000):
        table.failed(f"2001:db8::{i:x}")
        assert len(table) <= 1000
    assert len(table) == 1000
    # The oldest windows made room: the newest addresses are still counted.
    table.failed("2001:db8::1869f")
    assert table.blocked_for("2001:db8::1869f") == 60.0


def test_expired_windows_are_pruned_before_live_ones() -> None:
    clock = Clock()
    table = FailureTable(limit=1, capacity=3, clock=clock)
    table.failed("a")
    clock.now += 30
    table.failed("b")
    table.failed("c")
    clock.now += 31  # a's window is over; b and c are live
    table.failed("d")
    assert len(table) == 3
    assert (table.blocked_for("b"), table.blocked_for("c"), table.blocked_for("d")) == (
        29.0, 29.0, 60.0)
    assert table.blocked_for("a") == 0.0
