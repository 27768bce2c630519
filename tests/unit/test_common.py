"""Shared code: W3C traceparent handling and typed XROUTER_* environment readers."""

from __future__ import annotations

import os

import pytest

from xrouter_common.env import ConfigError, env_bool, env_float, env_int, env_str
from xrouter_common.tracing import child_traceparent, parse_traceparent, trace_id_of

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


def _counting_urandom(n: int) -> bytes:
    return bytes(range(n))


# ---- tracing -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [VALID, VALID.upper(), f"  {VALID}\t"])
def test_a_valid_traceparent_parses(value: str) -> None:
    assert parse_traceparent(value) == (TRACE, SPAN, "01")


def test_flags_are_kept_as_sent() -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00") == (TRACE, SPAN, "00")


@pytest.mark.parametrize("value", [
    None, "", "garbage",
    f"01-{TRACE}-{SPAN}-01",                 # unknown version
    f"00-{'0' * 32}-{SPAN}-01",              # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",             # all-zero span id
    f"00-{TRACE[:-1]}-{SPAN}-01",            # short trace id
    f"00-{TRACE}-{SPAN}0-01",                # long span id
    f"00-{TRACE[:-1]}g-{SPAN}-01",           # not hex
    f"00-{TRACE}-{SPAN}-01-extra",           # version 00 has exactly four fields
    f"00_{TRACE}_{SPAN}_01",
])
def test_an_invalid_traceparent_is_none(value: str | None) -> None:
    assert parse_traceparent(value) is None
    assert trace_id_of(value) == ""


def test_trace_id_of_a_valid_traceparent() -> None:
    assert trace_id_of(VALID) == TRACE


def test_a_child_continues_the_trace_with_a_new_span(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "urandom", _counting_urandom)
    assert child_traceparent(f"00-{TRACE}-{SPAN}-00") == f"00-{TRACE}-0001020304050607-00"


@pytest.mark.parametrize("incoming", [None, "", f"00-{'0' * 32}-{SPAN}-01"])
def test_without_a_valid_parent_a_new_sampled_trace_starts(monkeypatch: pytest.MonkeyPatch,
                                                          incoming: str | None) -> None:
    monkeypatch.setattr(os, "urandom", _counting_urandom)
    assert child_traceparent(incoming) == (
        "00-000102030405060708090a0b0c0d0e0f-0001020304050607-01")


def test_children_are_valid_traceparents_with_fresh_spans() -> None:
    first, second = child_traceparent(VALID), child_traceparent(VALID)
    assert parse_traceparent(first) is not None
    assert parse_traceparent(second) is not None
    assert first[36:52] != second[36:52]
    assert parse_traceparent(child_traceparent(None)) is not None


# ---- env ---------------------------------------------------------------------------------

def test_env_str() -> None:
    assert env_str("X", "dflt", {}) == "dflt"
    assert env_str("X", "dflt", {"X": ""}) == "dflt"
    assert env_str("X", "dflt", {"X": " v "}) == " v "


def test_env_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XROUTER_UNIT_TEST_VALUE", "17")
    assert env_int("XROUTER_UNIT_TEST_VALUE", 1) == 17
    monkeypatch.delenv("XROUTER_UNIT_TEST_VALUE")
    assert env_int("XROUTER_UNIT_TEST_VALUE", 1) == 1


@pytest.mark.parametrize(("env", "minimum", "expected"), [
    ({}, 0, 5), ({"N": ""}, 0, 5), ({"N": "12"}, 0, 12), ({"N": " 12 "}, 0, 12), ({"N": "-3"}, -5, -3),
    ({"N": "1"}, 1, 1),
])
def test_env_int(env: dict[str, str], minimum: int, expected: int) -> None:
    assert env_int("N", 5, env, minimum=minimum) == expected


@pytest.mark.parametrize(("value", "minimum", "message"), [
    ("ten", 0, "N must be an integer, got 'ten'"),
    ("1.5", 0, "N must be an integer, got '1.5'"),
    ("0", 1, "N must be at least 1, got 0"),
    ("-1", 0, "N must be at least 0, got -1"),
])
def test_env_int_errors_name_the_variable(value: str, minimum: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        env_int("N", 5, {"N": value}, minimum=minimum)
    assert str(info.value) == message


@pytest.mark.parametrize(("env", "expected"), [
    ({}, 2.5), ({"F": "0.25"}, 0.25), ({"F": "3"}, 3.0), ({"F": "1e1"}, 10.0),
])
def test_env_float(env: dict[str, str], expected: float) -> None:
    assert env_float("F", 2.5, env, minimum=0.1) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("fast", "F must be a number, got 'fast'"),
    ("0.05", "F must be at least 0.1, got 0.05"),
])
def test_env_float_errors_name_the_variable(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        env_float("F", 2.5, {"F": value}, minimum=0.1)
    assert str(info.value) == message


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("true", True), ("TRUE", True), (" yes ", True), ("On", True),
    ("0", False), ("false", False), ("No", False), ("off", False),
])
def test_env_bool(value: str, expected: bool) -> None:
    assert env_bool("B", not expected, {"B": value}) is expected


def test_env_bool_default_and_error() -> None:
    assert env_bool("B", True, {}) is True
    with pytest.raises(ConfigError) as info:
        env_bool("B", True, {"B": "maybe"})
    assert str(info.value) == "B must be true or false, got 'maybe'"


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_mux_batches_stay_under_the_limit_and_keep_the_order() -> None:
    from xrouter_common.mux import batches

    class Frame:
        def __init__(self, size: int) -> None:
            self.size = size

        def ByteSize(self) -> int:  # noqa: N802 - protobuf's name
            return self.size

    frames = [Frame(n) for n in (3, 3, 3, 9, 1, 1, 12, 2)]
    cut = [[f.size for f in batch] for batch in batches(frames, limit=6)]
    assert cut == [[3, 3], [3], [9], [1, 1], [12], [2]]  # a frame over the limit goes alone
    assert [[f.size for f in b] for b in batches(frames[:1], limit=1)] == [[3]]


def test_mux_batches_of_no_frames_are_none() -> None:
    from xrouter_common.mux import batches

    assert list(batches([])) == []
