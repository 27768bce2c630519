"""A usage report rendered for HTTP: JSON rows (money as exact JSON numbers) or CSV (the same
columns, the groups asked for first, money as exact decimal text to at least the kopeck)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.csv_format import csv_text, kopecks

# Each group's column and the UsageRow field it comes from, in the order columns are written.
_GROUPS = (("day", "day"), ("key", "key_id"), ("model", "model"), ("provider", "provider"))
_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens",
           "cache_write_tokens", "reasoning_tokens")
_MONEY = ("cost", "cost_net", "vat")


def _number(text: str) -> Any:
    return orjson.Fragment(text.encode()) if text else 0


def _groups(asked: Sequence[str]) -> list[tuple[str, str]]:
    return [(name, field) for name, field in _GROUPS if name in asked]


def usage_json(reply: pb.UsageReport, asked: Sequence[str]) -> list[dict[str, Any]]:
    groups = _groups(asked)
    return [{**{c: getattr(r, c) for c in _COUNTS}, **{m: _number(getattr(r, m)) for m in _MONEY},
             **{name: getattr(r, field) for name, field in groups}} for r in reply.rows]


def usage_csv(reply: pb.UsageReport, asked: Sequence[str]) -> str:
    groups = _groups(asked)
    return csv_text([*(name for name, _ in groups), *_COUNTS, *_MONEY], (
        [*(getattr(r, field) for _, field in groups), *(getattr(r, c) for c in _COUNTS),
         *(kopecks(getattr(r, m)) for m in _MONEY)] for r in reply.rows))
