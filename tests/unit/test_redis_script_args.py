"""The credit script's arguments come from one typed builder: each value lands at the ARGV
position the Lua reads it from (1-based, as in the script)."""

from __future__ import annotations

from xrouter_router.domain.limits import TokenAsk
from xrouter_router.storage.redis.credits import STALE, CreditArgs
from xrouter_router.storage.redis.limits import LimitArgs, WindowArgs


def _at(argv: list[str | int]) -> dict[int, str | int]:
    return {i + 1: value for i, value in enumerate(argv)}


def test_a_metered_reservation_puts_every_value_where_the_script_reads_it() -> None:
    limits = LimitArgs("20", "200", "", "5", "slot-1", 900000)
    argv = _at(CreditArgs("reserve", "key-1", "gen-1", 1234, ("5.0", "900.0", 960),
                          partial="16", limit="500", held=0, snapshot=(7, 1000, ""),
                          limits=limits).argv())
    assert argv == {1: "reserve", 2: "key-1", 3: "gen-1", 4: 1234, 5: "16", 6: "500", 7: 0,
                    8: "5.0", 9: "900.0", 10: 960, 11: 7, 12: 1000, 13: "",
                    14: "20", 15: "200", 16: "", 17: "5", 18: "slot-1", 19: 900000, 20: ""}


def test_a_settlement_carries_the_slot_and_the_tokens_only() -> None:
    argv = _at(CreditArgs("settle", "key-1", "gen-1", 99, ("5.0", "900.0", 960),
                          limits=LimitArgs(slot="slot-1", tokens="42")).argv())
    assert (argv[1], argv[4], argv[11], argv[18], argv[20]) == ("settle", 99, "", "slot-1", "42")
    assert len(argv) == 20


def test_without_limits_the_arguments_end_with_the_snapshot() -> None:
    argv = CreditArgs("extend", "k", "g", 5, ("5.0", "900.0", 960), held=10,
                      snapshot=STALE).argv()
    assert argv[6:] == [10, "5.0", "900.0", 960, "stale", "", ""]


def test_the_models_windows_follow_the_key_limits_three_values_each() -> None:
    limits = LimitArgs("", "", "", "", "", 900000, models=(
        WindowArgs("1000", "", 600), WindowArgs("", "5000", -40)))
    argv = _at(CreditArgs("reserve", "key-1", "gen-1", 1, ("5.0", "900.0", 960),
                          limits=limits).argv())
    assert {i: argv[i] for i in range(20, 28)} == {
        20: "", 21: 2, 22: "1000", 23: "", 24: 600, 25: "", 26: "5000", 27: -40}
    assert len(argv) == 27


def test_a_window_takes_its_models_limits_and_the_given_tokens() -> None:
    assert WindowArgs.of(TokenAsk("m", 1000, None, 600), -560) == WindowArgs("1000", "", -560)
