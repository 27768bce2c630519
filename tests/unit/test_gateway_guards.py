"""The gateway's input limits the schemas cannot express: depth of forwarded JSON, decimals,
header values, and the field a validation error names."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from xrouter_gateway.errors import APIError
from xrouter_gateway.guards import (
    MAX_JSON_DEPTH,
    check_depth,
    decimal_text,
    header_token,
    validation_error,
)


def _deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_depth_is_counted_from_where_the_value_sits() -> None:
    check_depth(_deep(MAX_JSON_DEPTH), "x")
    check_depth(_deep(MAX_JSON_DEPTH - 1), "x", depth=2)
    with pytest.raises(APIError) as info:
        check_depth(_deep(MAX_JSON_DEPTH), "x", depth=2)
    assert (info.value.status, info.value.param) == (400, "x")
    assert info.value.message == "x: JSON is nested deeper than 64 levels"


def test_depth_walk_survives_json_deeper_than_the_python_stack() -> None:
    with pytest.raises(APIError):
        check_depth(_deep(5000), "deep")
    check_depth("scalar", "s")


@pytest.mark.parametrize(("value", "text"), [
    (3, "3"), (3.0, "3"), ("1.50", "1.5"), ("1e2", "100"), (" 0.000001 ", "0.000001"),
    (0, "0"), ("1e-50", "0"), (10**12, "1000000000000"),
])
def test_decimals_become_plain_strings(value: float | str, text: str) -> None:
    assert decimal_text(value, "p") == text


@pytest.mark.parametrize(("value", "message"), [
    ("NaN", "p must be a finite decimal number"), ("-Infinity", "p must be a finite decimal number"),
    ("sNaN", "p must be a finite decimal number"), ("abc", "p must be a decimal number"),
    (True, "p must be a decimal number"), (-0.5, "p must be at least 0"),
    ("1e999999999", "p must be at most 1000000000000"), (1e300, "p must be at most 1000000000000"),
])
def test_bad_decimals_are_400_naming_the_field(value: float | str, message: str) -> None:
    with pytest.raises(APIError) as info:
        decimal_text(value, "p")
    assert (info.value.status, info.value.message, info.value.param) == (400, message, "p")


def test_a_positive_decimal_refuses_zero() -> None:
    with pytest.raises(APIError, match="amount must be positive"):
        decimal_text("0", "amount", positive=True)


@pytest.mark.parametrize("value", ["Bearer \u00d0\u00bf", "a\x7fb", "tab\there", "\u00ff"])
def test_header_values_must_be_printable_ascii(value: str) -> None:
    with pytest.raises(APIError) as info:
        header_token(value, "Authorization", 401)
    assert (info.value.status, info.value.param) == (401, "Authorization")
    assert header_token("xr-v1-abc_DEF", "Authorization") == "xr-v1-abc_DEF"


class _Inner(msgspec.Struct, forbid_unknown_fields=True):
    a: int = 0


class _Outer(msgspec.Struct, forbid_unknown_fields=True):
    inner: list[_Inner] = []
    b: int = 0


@pytest.mark.parametrize(("body", "param"), [
    (b'{"nmae": 1}', "nmae"), (b'{"inner": [{}, {"x": 1}]}', "inner[1].x"),
    (b'{"b": "x"}', "b"), (b'{"inner": 5}', "inner"),
])
def test_validation_errors_name_the_field_itself(body: bytes, param: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(body, type=_Outer)
    err = validation_error(info.value)
    assert (err.status, err.param) == (400, param)
    assert err.message.endswith(f"(at {param})")
