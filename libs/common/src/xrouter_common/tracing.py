"""W3C trace context (traceparent) parsing and minting, with no tracing SDK required."""

from __future__ import annotations

import os
import re

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """(trace_id, parent_span_id, flags) of a valid version-00 header, else None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == _ZERO_TRACE or match.group(2) == _ZERO_SPAN:
        return None
    return match.group(1), match.group(2), match.group(3)


def child_traceparent(incoming: str | None) -> str:
    """A traceparent for our hop: same trace as `incoming` when valid, else a new sampled one."""
    parsed = parse_traceparent(incoming)
    trace_id = parsed[0] if parsed else os.urandom(16).hex()
    flags = parsed[2] if parsed else "01"
    return f"00-{trace_id}-{os.urandom(8).hex()}-{flags}"


def trace_id_of(traceparent: str | None) -> str:
    parsed = parse_traceparent(traceparent)
    return parsed[0] if parsed else ""
