"""Every gateway error in the Anthropic Messages API's error shape, with Anthropic's types."""

from __future__ import annotations

import pytest

from xrouter_gateway.anthropic_format import error_json
from xrouter_gateway.errors import TYPES_BY_STATUS, APIError

ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    408: "timeout_error", 413: "request_too_large", 415: "invalid_request_error",
    429: "rate_limit_error",
    431: "request_too_large", 500: "api_error", 502: "api_error", 503: "overloaded_error",
}


def test_every_gateway_status_has_an_anthropic_type() -> None:
    assert set(ANTHROPIC_TYPES) == set(TYPES_BY_STATUS)


@pytest.mark.parametrize(("status", "type_"), [*ANTHROPIC_TYPES.items(), (418, "invalid_request_error"),
                                               (504, "api_error")])
def test_errors_take_anthropic_shape(status: int, type_: str) -> None:
    assert error_json(APIError(status, "went wrong", metadata={"provider": "p"})) == {
        "type": "error", "error": {"type": type_, "message": "went wrong"}}
