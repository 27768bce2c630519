"""An account's monthly statement rendered for HTTP: JSON (money as decimal strings, exact) or
CSV (one row per generation, then a `total` row per VAT rate and one for the month: exact sums,
and `total_rub` rows in kopecks)."""

from __future__ import annotations

from typing import Any

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.csv_format import csv_text

CSV_COLUMNS = ("date", "generation_id", "model", "provider", "prompt_tokens",
               "completion_tokens", "vat_rate", "net", "vat", "gross")


def _line(line: pb.StatementLine) -> dict[str, Any]:
    return {"date": line.date, "generation_id": line.generation_id, "model": line.model,
            "provider": line.provider, "prompt_tokens": line.prompt_tokens,
            "completion_tokens": line.completion_tokens, "vat_rate": line.vat_rate,
            "net": line.net, "vat": line.vat, "gross": line.gross}


def _total(total: pb.StatementTotal) -> dict[str, Any]:
    return {"vat_rate": total.vat_rate or None, "requests": total.requests,
            "prompt_tokens": total.prompt_tokens, "completion_tokens": total.completion_tokens,
            "net": total.net, "vat": total.vat, "gross": total.gross,
            "net_rub": total.net_rub, "vat_rub": total.vat_rub, "gross_rub": total.gross_rub}


def statement_json(s: pb.Statement) -> dict[str, Any]:
    return {"account_id": s.account_id, "month": s.month, "timezone": s.timezone,
            "currency": "RUB", "lines": [_line(x) for x in s.lines],
            "totals_by_rate": [_total(t) for t in s.by_rate], "totals": _total(s.total)}


def _total_rows(total: pb.StatementTotal) -> list[list[str]]:
    tokens = [str(total.prompt_tokens), str(total.completion_tokens)]
    return [["total", "", "", "", *tokens, total.vat_rate, total.net, total.vat, total.gross],
            ["total_rub", "", "", "", *tokens, total.vat_rate, total.net_rub, total.vat_rub,
             total.gross_rub]]


def statement_csv(s: pb.Statement) -> str:
    totals = [row for total in (*s.by_rate, s.total) for row in _total_rows(total)]
    return csv_text(CSV_COLUMNS, [*(list(_line(line).values()) for line in s.lines), *totals])
