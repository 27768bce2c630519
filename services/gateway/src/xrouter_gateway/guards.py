"""Limits on client input that the request schemas cannot express: how deep forwarded JSON may
nest, which decimals are prices or amounts, and which header values may travel to the router."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from xrouter_gateway.errors import APIError

# Free-form JSON that the gateway forwards (response_format, tool parameters, tool_choice,
# non-text content parts, unknown top-level parameters) may nest this deep, counted from the
# body itself. Deeper JSON is a 400; without the limit it would fail re-encoding as a 500.
MAX_JSON_DEPTH = 64

# The largest decimal accepted as a price or an amount of RUB (a price per million tokens of
# 10^12 RUB is far beyond any catalog): bigger ones are typos or probes, and exponents like
# 1e999999999 would make the router's decimal arithmetic fail.
MAX_DECIMAL = Decimal(10) ** 12


_AT = " - at `$."
_NAMED = ("Object missing required field `", "Object contains unknown field `")


def validation_error(exc: msgspec.ValidationError) -> APIError:
    """msgspec's complaint as a 400 whose `param` is the field's path (for a missing or an
    unknown field, the path of that field itself, not of the object holding it)."""
    text, _, path = str(exc).partition(_AT)
    path = path.rstrip("`")
    for prefix in _NAMED:
        if text.startswith(prefix):
            field = text[len(prefix):].rstrip("`")
            path = f"{path}.{field}" if path else field
    param = path or None
    return APIError(400, f"Invalid request: {text}" + (f" (at {param})" if param else ""),
                    param=param)


def check_depth(value: Any, param: str, depth: int = 1) -> None:
    """Raise a 400 naming `param` when `value`, found at `depth` in the body, nests deeper than
    MAX_JSON_DEPTH. Iterative: a body nested 1,000 deep must not exhaust Python's stack."""
    if not isinstance(value, dict | list):
        return
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        node, level = stack.pop()
        if level > MAX_JSON_DEPTH:
            raise APIError(400, f"{param}: JSON is nested deeper than {MAX_JSON_DEPTH} levels",
                           param=param)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))


def decimal_text(value: float | str, param: str, *, positive: bool = False) -> str:
    """A client's decimal (JSON number or string) as the plain string the router parses: finite,
    not negative (above zero when `positive`), at most MAX_DECIMAL; otherwise a 400."""
    if isinstance(value, bool):
        raise APIError(400, f"{param} must be a decimal number", param=param)
    try:
        number = Decimal(value.strip() if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise APIError(400, f"{param} must be a decimal number", param=param) from None
    if not number.is_finite():
        raise APIError(400, f"{param} must be a finite decimal number", param=param)
    if number < 0 or (positive and number == 0):
        raise APIError(400, f"{param} must be {'positive' if positive else 'at least 0'}",
                       param=param)
    if number > MAX_DECIMAL:
        raise APIError(400, f"{param} must be at most {MAX_DECIMAL:f}", param=param)
    return format(number.normalize(), "f") if number.adjusted() > -40 else "0"


def header_token(value: str, header: str, status: int = 400) -> str:
    """A header value the router may receive as gRPC metadata: printable ASCII only. Starlette
    decodes raw header bytes as Latin-1, so anything else arrives here as such characters."""
    if not value.isascii() or not value.isprintable():
        raise APIError(status, f"The {header} header must be printable ASCII", param=header)
    return value
