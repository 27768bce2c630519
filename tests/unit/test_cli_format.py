"""cli_format.py: the CLI's tables, exact to the character, in a fixed time zone (TZ)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from xrouter_router.cli_format import (
    credits_pairs,
    generations_table,
    keys_table,
    local_time,
    money,
    usage_table,
)

pytestmark = pytest.mark.usefixtures("moscow_local_time")  # every test, in Moscow's time zone


def test_money_is_exact_to_the_kopeck_and_grouped() -> None:
    cases: list[tuple[Any, str]] = [
        (Decimal("1234.5"), "1 234.50 RUB"), (0, "0.00 RUB"),
        (Decimal("0.00012345"), "0.00012345 RUB"), (Decimal("1234567.891"), "1 234 567.891 RUB"),
        (Decimal("-5"), "-5.00 RUB"), (Decimal("100"), "100.00 RUB"),
        (Decimal("1E+3"), "1 000.00 RUB"), (None, "-")]
    assert [money(value) for value, _ in cases] == [text for _, text in cases]


def test_times_are_local() -> None:
    assert local_time("2026-12-07T04:30:00.5Z") == "2026-12-07 07:30:00"
    assert local_time("2026-12-31T22:00:00+00:00") == "2027-01-01 01:00:00"
    assert local_time(None) == "-"


def _key(**fields: Any) -> dict[str, Any]:
    return {"id": "key-1", "label": "ci", "tier": "pro", "disabled": False,
            "usage": Decimal("12.3"), "usage_monthly": Decimal("2.5"), "limit": None,
            "created_at": "2026-12-01T09:00:00Z", "expires_at": None, **fields}


def test_keys() -> None:
    answer = {"data": [_key(), _key(id="key-22", label="", tier="mgmt", disabled=True,
                                    usage=Decimal("1234.56789"), usage_monthly=0,
                                    limit=Decimal(5000), expires_at="2027-06-01T00:00:00Z")]}
    assert keys_table(answer) == """\
ID      LABEL  TIER  STATUS              USAGE  THIS MONTH         LIMIT  CREATED              EXPIRES
key-1   ci     pro   active          12.30 RUB    2.50 RUB             -  2026-12-01 12:00:00  -
key-22  -      mgmt  disabled  1 234.56789 RUB    0.00 RUB  5 000.00 RUB  2026-12-01 12:00:00  2027-06-01 03:00:00
"""  # noqa: E501 - a table as a person sees it
    assert keys_table({"data": []}) == (
        "ID  LABEL  TIER  STATUS  USAGE  THIS MONTH  LIMIT  CREATED  EXPIRES\n(none)\n")


def test_credits() -> None:
    answer = {"data": {"account_id": "acme", "balance": Decimal("987.65"),
                       "total_credits": Decimal("1000"), "total_usage": Decimal("12.35"),
                       "total_usage_net": Decimal("10.12295082"),
                       "total_usage_vat": Decimal("2.22704918"), "currency": "RUB"}}
    assert credits_pairs(answer) == """\
account                   acme
balance             987.65 RUB
credits           1 000.00 RUB
usage                12.35 RUB
  of which VAT  2.22704918 RUB
"""


def test_usage_with_its_exact_total() -> None:
    answer = {"data": [
        {"day": "2026-12-06", "model": "a/b", "requests": 3, "prompt_tokens": 30,
         "completion_tokens": 12, "cost": Decimal("0.0012")},
        {"day": "2026-12-07", "model": "yandex/gpt", "requests": 1200, "prompt_tokens": 100000,
         "completion_tokens": 5, "cost": Decimal("1500.5")}]}
    assert usage_table(answer) == """\
DAY         MODEL       REQUESTS  PROMPT TOKENS  COMPLETION TOKENS            COST
2026-12-06  a/b                3             30                 12      0.0012 RUB
2026-12-07  yandex/gpt      1200         100000                  5    1 500.50 RUB
total                       1203         100030                 17  1 500.5012 RUB
"""
    assert usage_table({"data": [{"requests": 2, "prompt_tokens": 1, "completion_tokens": 1,
                                  "cost": 0}]}) == """\
REQUESTS  PROMPT TOKENS  COMPLETION TOKENS      COST
       2              1                  1  0.00 RUB
"""
    assert usage_table({"data": []}) == (
        "REQUESTS  PROMPT TOKENS  COMPLETION TOKENS  COST\n(none)\n")


def test_generations_and_the_next_page() -> None:
    common = {"cached_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0}
    answer = {"data": [
        {"id": "gen-2", "created_at": "2026-12-07T04:30:00.250Z", "model": "test/echo",
         "provider": "fake", "key_id": "key-1", "key_label": "ci", "prompt_tokens": 12,
         "completion_tokens": 3, "cost": Decimal("0.00012345"), "latency_ms": 1500,
         "streamed": True, "finish_reason": "stop", **common},
        {"id": "gen-1", "created_at": "2026-12-06T21:00:00Z", "model": "yandex/gpt",
         "provider": "yandexgpt", "key_id": "key-2", "key_label": None, "prompt_tokens": 1000,
         "completion_tokens": 250, "cost": Decimal("1.5"), "latency_ms": 80, "streamed": False,
         "finish_reason": None, **common}], "next_before": "WzEuNSwiZyJd"}
    assert generations_table(answer) == """\
TIME                 ID     MODEL       PROVIDER   KEY      IN  OUT            COST  LATENCY  STREAMED  FINISH
2026-12-07 07:30:00  gen-2  test/echo   fake       ci       12    3  0.00012345 RUB  1500 ms  yes       stop
2026-12-07 00:00:00  gen-1  yandex/gpt  yandexgpt  key-2  1000  250        1.50 RUB    80 ms  no        -
older: --before WzEuNSwiZyJd
"""
    assert generations_table({"data": [], "next_before": None}).endswith("(none)\n")
