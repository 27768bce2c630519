"""The UsageLedger contract, run against every implementation in store_factories.FACTORIES."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.store_factories import (
    ATTEMPTS,
    DAY1,
    DAY2,
    DAY3,
    Stores,
    balance,
    generation,
    stores_fixture,  # noqa: F401 - the fixture
    with_accounts,
)
from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.keys import MASTER
from xrouter_router.domain.ledger import GenerationRecord, UsageRow, UsageTotals


class TestUsageLedger:
    async def test_get_returns_every_field_with_the_attempts(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        record = GenerationRecord(
            id="gen-1", created_at=DAY1 + 12.5, key_id="key-1", account_id="acc-a", model="m/alpha",
            provider="p1", streamed=True, prompt_tokens=11, completion_tokens=22, cached_tokens=3,
            reasoning_tokens=4, cache_write_tokens=5, counts_native=False,
            cost=Decimal("0.00012345"), latency_ms=250, generation_ms=900, finish_reason="length",
            status="stream_error", attempts=ATTEMPTS)
        await stores.ledger.record(record)
        assert await stores.ledger.get("gen-1") == record
        assert await stores.ledger.get("gen-2") is None

    async def test_a_cost_converted_from_usd_keeps_its_currency_rate_and_original(
            self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        usd = replace(generation("gen-usd", cost="0.04859030"), price_currency="USD",
                      fx_rate=Decimal("92.5001"), cost_original=Decimal("0.00052530"),
                      fx_date=date(2026, 12, 5))
        await stores.ledger.record(usd)
        await stores.ledger.record(generation("gen-rub", cost="1"))
        assert await stores.ledger.get("gen-usd") == usd
        rub = await stores.ledger.get("gen-rub")
        assert rub is not None
        assert (rub.price_currency, rub.fx_rate, rub.cost_original, rub.fx_date) == (
            "RUB", None, None, None)
        fixed = replace(usd, id="gen-fixed", fx_date=None)  # a fixed rate has no date
        await stores.ledger.record(fixed)
        assert await stores.ledger.get("gen-fixed") == fixed

    async def test_every_usage_bucket_is_summed_apart(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.ledger.record(replace(generation("gen-1", cost="0.5"), cached_tokens=3,
                                           cache_write_tokens=2, reasoning_tokens=7))
        await stores.ledger.record(replace(generation("gen-2", cost="0.25"), cached_tokens=1))
        expected = UsageTotals(2, 20, 40, Decimal("0.75"), cached_tokens=4, cache_write_tokens=2,
                               reasoning_tokens=7)
        assert await stores.ledger.totals(key_id="key-1") == expected
        rows = await stores.ledger.report(account_id="acc-a", group_by=("model",), since=DAY1,
                                          until=DAY3)
        assert [r.totals for r in rows] == [expected]

    async def test_a_repeated_record_is_ignored(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        first = generation("gen-1", prompt=10, completion=20, cost="0.5")
        await stores.ledger.record(first)
        await stores.ledger.record(replace(first, prompt_tokens=999, cost=Decimal(7)))
        assert await stores.ledger.get("gen-1") == first
        assert await stores.ledger.totals(key_id="key-1") == UsageTotals(1, 10, 20, Decimal("0.5"))

    async def test_recording_moves_no_money_charging_does(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.accounts.top_up("acc-a", Decimal(10), "r")
        await stores.ledger.record(generation("gen-1", cost="1"))
        assert await balance(stores, "acc-a") == Decimal(10)
        assert await stores.accounts.spent("key-1") == Decimal(0)
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal(1)) is True
        assert await stores.accounts.charge("acc-a", "key-1", "gen-2", Decimal(2)) is True
        await stores.ledger.record(generation("gen-2", cost="2"))
        assert await balance(stores, "acc-a") == Decimal(7)
        assert await stores.ledger.totals(account_id="acc-a") == UsageTotals(2, 20, 40, Decimal(3))

    async def test_a_generation_of_an_account_without_a_row_is_recorded(self, stores: Stores) -> None:
        # Billing records the master key's generations under its account id "master", which
        # has no account row (and whose requests are never charged).
        record = generation("gen-1", key=MASTER.id, account=MASTER.account_id, cost="0.75")
        await stores.ledger.record(record)
        assert await stores.ledger.get("gen-1") == record
        assert await stores.ledger.totals(account_id=MASTER.account_id) == UsageTotals(
            1, 10, 20, Decimal("0.75"))
        assert await stores.accounts.get(MASTER.account_id) is None

    async def test_concurrent_repeats_of_one_record_count_once(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await asyncio.gather(*(stores.ledger.record(generation("gen-1", cost="0.1"))
                               for _ in range(50)))
        assert await stores.ledger.totals() == UsageTotals(1, 10, 20, Decimal("0.1"))

    async def test_totals_by_key_by_account_and_since_a_day(self, stores: Stores) -> None:
        await recorded_usage(stores)
        totals = stores.ledger.totals
        assert await totals(key_id="key-1") == UsageTotals(3, 117, 228, Decimal("0.45000001"))
        assert await totals(account_id="acc-a") == UsageTotals(4, 118, 230, Decimal("0.65000001"))
        assert await totals() == UsageTotals(5, 1118, 2230, Decimal("2.15000001"))
        assert await totals(key_id="key-1", account_id="acc-b") == UsageTotals()
        # since rounds down to its UTC day: gen-3, at 00:30 on day 2, still counts
        assert await totals(account_id="acc-a", since=DAY2 + 43_200) == UsageTotals(
            2, 107, 208, Decimal("0.35"))
        assert await totals(since=DAY3 + 86_400) == UsageTotals()

    async def test_report_groups_by_model(self, stores: Stores) -> None:
        await recorded_usage(stores)
        assert await stores.ledger.report(account_id=None, group_by=("model",), since=DAY1,
                                          until=DAY2 + 86_399) == [
            UsageRow(model="m/alpha", totals=UsageTotals(3, 1110, 2220, Decimal("1.90000001"))),
            UsageRow(model="m/beta", totals=UsageTotals(1, 1, 2, Decimal("0.2"))),
        ]

    async def test_report_groups_by_day_and_model_of_one_account(self, stores: Stores) -> None:
        await recorded_usage(stores)
        assert await stores.ledger.report(account_id="acc-a", group_by=("day", "model"),
                                          since=DAY1 + 5, until=DAY2 + 5) == [
            UsageRow(day="2024-05-01", model="m/alpha",
                     totals=UsageTotals(1, 10, 20, Decimal("0.10000001"))),
            UsageRow(day="2024-05-01", model="m/beta", totals=UsageTotals(1, 1, 2, Decimal("0.2"))),
            UsageRow(day="2024-05-02", model="m/alpha",
                     totals=UsageTotals(1, 100, 200, Decimal("0.3"))),
        ]

    async def test_report_groups_by_key_and_includes_both_ends(self, stores: Stores) -> None:
        await recorded_usage(stores)
        assert await stores.ledger.report(account_id=None, group_by=("key",), since=DAY1,
                                          until=DAY3) == [
            UsageRow(key_id="key-1", totals=UsageTotals(3, 117, 228, Decimal("0.45000001"))),
            UsageRow(key_id="key-2", totals=UsageTotals(1, 1, 2, Decimal("0.2"))),
            UsageRow(key_id="key-3", totals=UsageTotals(1, 1000, 2000, Decimal("1.5"))),
        ]

    async def test_report_groups_by_provider_then_key(self, stores: Stores) -> None:
        await recorded_usage(stores)
        assert await stores.ledger.report(account_id=None, group_by=("provider", "key"),
                                          since=DAY2, until=DAY3) == [
            UsageRow(provider="p1", key_id="key-1", totals=UsageTotals(1, 7, 8, Decimal("0.05"))),
            UsageRow(provider="p1", key_id="key-3", totals=UsageTotals(1, 1000, 2000, Decimal("1.5"))),
            UsageRow(provider="p2", key_id="key-1", totals=UsageTotals(1, 100, 200, Decimal("0.3"))),
        ]

    async def test_report_without_groups_is_one_row_of_totals(self, stores: Stores) -> None:
        await recorded_usage(stores)
        report = stores.ledger.report
        assert await report(account_id="acc-b", group_by=(), since=DAY1, until=DAY3) == [
            UsageRow(totals=UsageTotals(1, 1000, 2000, Decimal("1.5")))]
        assert await report(account_id="acc-c", group_by=(), since=DAY1, until=DAY3) == []
        assert await report(account_id=None, group_by=("model",), since=DAY2, until=DAY1) == []

    async def test_report_refuses_an_unknown_group(self, stores: Stores) -> None:
        with pytest.raises(InvalidRequest):
            await stores.ledger.report(account_id=None, group_by=("model", "colour"), since=DAY1,
                                       until=DAY2)


    async def test_vat_is_kept_per_generation_and_summed_beside_the_gross(
            self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        taxed = replace(generation("gen-1", cost="1.22"), vat=Decimal("0.22"),
                        vat_rate=Decimal("0.22"))
        await stores.ledger.record(taxed)
        await stores.ledger.record(replace(generation("gen-2", cost="0.6"), vat=Decimal("0.1"),
                                           vat_rate=Decimal("0.2")))
        await stores.ledger.record(generation("gen-3", cost="0.5"))  # no VAT (before 0008)
        got = await stores.ledger.get("gen-1")
        assert got == taxed
        assert got is not None and (got.cost_net, got.vat, got.vat_rate) == (
            Decimal("1"), Decimal("0.22"), Decimal("0.22"))
        expected = UsageTotals(3, 30, 60, Decimal("2.32"), vat=Decimal("0.32"))
        assert await stores.ledger.totals(account_id="acc-a") == expected
        assert expected.cost_net == Decimal("2.00")
        rows = await stores.ledger.report(account_id="acc-a", group_by=(), since=DAY1,
                                          until=DAY1)
        assert rows == [UsageRow(totals=expected)]

    async def test_charged_lists_an_accounts_costing_generations_of_a_period(
            self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        for record in (
            generation("gen-early", at=DAY1 - 0.000001, cost="0.1"),  # before the period
            generation("gen-b", at=DAY1 + 10, cost="0.2"),
            generation("gen-a", at=DAY1 + 10, cost="0.3"),  # same time: by id
            generation("gen-first", at=DAY1, cost="0.4"),  # the period's first instant
            generation("gen-free", at=DAY1 + 20, cost="0"),  # cost nothing: no line
            generation("gen-other", at=DAY1 + 30, account="acc-b", cost="0.5"),
            generation("gen-end", at=DAY2, cost="0.6"),  # the next period's first instant
        ):
            await stores.ledger.record(record)
        lines = await stores.ledger.charged(account_id="acc-a", since=DAY1, until=DAY2)
        assert [r.id for r in lines] == ["gen-first", "gen-a", "gen-b"]
        assert lines[0] == generation("gen-first", at=DAY1, cost="0.4")
        assert await stores.ledger.charged(account_id="acc-c", since=DAY1, until=DAY2) == []


async def recorded_usage(stores: Stores) -> None:
    """Five generations over three UTC days, two accounts and three keys."""
    await with_accounts(stores, "acc-a", "acc-b")
    for record in (
        generation("gen-1", at=DAY1 + 3600, key="key-1", model="m/alpha", provider="p1",
                   prompt=10, completion=20, cost="0.10000001"),
        generation("gen-2", at=DAY1 + 7200, key="key-2", model="m/beta", provider="p2",
                   prompt=1, completion=2, cost="0.2"),
        generation("gen-3", at=DAY2 + 1800, key="key-1", model="m/alpha", provider="p2",
                   prompt=100, completion=200, cost="0.3"),
        generation("gen-4", at=DAY2 + 3600, key="key-3", account="acc-b", model="m/alpha",
                   provider="p1", prompt=1000, completion=2000, cost="1.5"),
        generation("gen-5", at=DAY3 + 60, key="key-1", model="m/beta", provider="p1",
                   prompt=7, completion=8, cost="0.05"),
    ):
        await stores.ledger.record(record)

