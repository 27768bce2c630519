"""VAT: the schedule (parsing, the rate by instant across the 2026-01-01 change, Moscow days),
the split of a net cost and the kopeck totals of a period, with money conserved exactly."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xrouter_common.env import ConfigError
from xrouter_router.domain.accounting import COST_QUANTUM
from xrouter_router.domain.vat import (
    DEFAULT_SCHEDULE,
    DEFAULT_VAT,
    Split,
    VatSchedule,
    by_rate,
    kopecks,
    percent,
    rate_text,
    totals,
    vat_of,
)
from xrouter_router.settings import RouterSettings


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# 2026-01-01 00:00 in Moscow (UTC+3) is 2025-12-31 21:00 UTC.
LAST_20 = _ts("2025-12-31T20:59:59.999999+00:00")
FIRST_22 = _ts("2025-12-31T21:00:00+00:00")


def test_the_default_schedule_is_20_then_22_percent_in_moscow_days() -> None:
    assert DEFAULT_SCHEDULE == "2019-01-01=20,2026-01-01=22"
    assert DEFAULT_VAT.rate_at(LAST_20) == Decimal("0.2")
    assert DEFAULT_VAT.rate_at(FIRST_22) == Decimal("0.22")
    assert DEFAULT_VAT.rate_at(_ts("2025-12-31T23:59:00+03:00")) == Decimal("0.2")
    assert DEFAULT_VAT.rate_at(_ts("2026-01-01T00:00:00+03:00")) == Decimal("0.22")
    # Before the first date there is no VAT.
    assert DEFAULT_VAT.rate_at(_ts("2018-12-31T20:59:59+00:00")) == Decimal(0)
    assert DEFAULT_VAT.rate_at(_ts("2018-12-31T21:00:00+00:00")) == Decimal("0.2")


def test_a_utc_schedule_changes_at_utc_midnight() -> None:
    schedule = VatSchedule.parse(DEFAULT_SCHEDULE, ZoneInfo("UTC"))
    assert schedule.rate_at(FIRST_22) == Decimal("0.2")
    assert schedule.rate_at(_ts("2025-12-31T23:59:59+00:00")) == Decimal("0.2")
    assert schedule.rate_at(_ts("2026-01-01T00:00:00+00:00")) == Decimal("0.22")


def test_parse_orders_steps_and_writes_them_back() -> None:
    schedule = VatSchedule.parse(" 2026-01-01=22 , 2019-01-01=20 ")
    assert schedule.steps == ((date(2019, 1, 1), Decimal("0.2")), (date(2026, 1, 1), Decimal("0.22")))
    assert schedule.text() == DEFAULT_SCHEDULE
    assert VatSchedule.parse("2020-01-01=0").rate_at(FIRST_22) == Decimal(0)
    assert VatSchedule.parse("2020-01-01=12.5").rate_at(FIRST_22) == Decimal("0.125")


@pytest.mark.parametrize(("text", "message"), [
    ("", "no rate given (expected YYYY-MM-DD=RATE[,...])"),
    ("2026-01-01", "'2026-01-01' is not DATE=RATE"),
    ("2026-13-01=22", "'2026-13-01' is not a date (YYYY-MM-DD)"),
    ("2026-01-01=abc", "'abc' is not a rate in percent"),
    ("2026-01-01=101", "the rate '101' is not between 0 and 100"),
    ("2026-01-01=-1", "the rate '-1' is not between 0 and 100"),
    ("2026-01-01=NaN", "the rate 'NaN' is not between 0 and 100"),
    ("2026-01-01=22,2026-01-01=20", "a date is given twice"),
])
def test_a_bad_schedule_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        VatSchedule.parse(text)
    assert str(caught.value) == message


def test_settings_refuse_a_bad_schedule_naming_the_setting() -> None:
    env = {"XROUTER_MASTER_KEY": "m", "XROUTER_VAT_SCHEDULE": "2026-01-01=220"}
    with pytest.raises(ConfigError) as caught:
        RouterSettings.from_env(env)
    assert str(caught.value) == ("XROUTER_VAT_SCHEDULE '2026-01-01=220': "
                                 "the rate '220' is not between 0 and 100")
    with pytest.raises(ConfigError) as zone:
        RouterSettings.from_env({"XROUTER_MASTER_KEY": "m", "XROUTER_VAT_TIMEZONE": "Mars/Base"})
    assert str(zone.value) == "XROUTER_VAT_TIMEZONE must be an IANA time zone, got 'Mars/Base'"


def test_settings_read_the_schedule_and_zone() -> None:
    settings = RouterSettings.from_env({"XROUTER_MASTER_KEY": "m"})
    assert settings.vat.text() == DEFAULT_SCHEDULE
    assert settings.vat.zone == ZoneInfo("Europe/Moscow")
    utc = RouterSettings.from_env({"XROUTER_MASTER_KEY": "m", "XROUTER_VAT_TIMEZONE": "UTC",
                                   "XROUTER_VAT_SCHEDULE": "2024-01-01=10"})
    assert utc.vat.rate_at(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) == Decimal("0.1")
    assert utc.vat.rate_at(datetime(2024, 1, 1, tzinfo=UTC).timestamp() - 1) == Decimal(0)


def test_a_top_up_of_1220_is_1000_net_and_220_vat_in_2026() -> None:
    split = Split.from_gross(Decimal("1220"), DEFAULT_VAT.rate_at(FIRST_22))
    assert (split.net, split.vat, split.gross) == (Decimal("1000.00000000"),
                                                   Decimal("220.00000000"), Decimal("1220"))
    assert DEFAULT_VAT.split(Decimal("1000"), FIRST_22).gross == Decimal("1220.00000000")
    assert DEFAULT_VAT.split(Decimal("1000"), LAST_20).gross == Decimal("1200.00000000")


@pytest.mark.parametrize(("net", "rate", "vat"), [
    ("0.00000001", "0.22", "0.00000000"),   # 2.2e-9 rounds down
    ("0.00000003", "0.22", "0.00000001"),   # 6.6e-9 rounds up
    ("0.00000025", "0.2", "0.00000005"),    # exact
    ("0.00000025", "0.22", "0.00000006"),   # 5.5e-8 is a half: to the even neighbour, 6e-8
    ("0.00000075", "0.22", "0.00000016"),   # 16.5e-8: to the even 16e-8
])
def test_vat_per_generation_rounds_half_even_to_1e8(net: str, rate: str, vat: str) -> None:
    assert format(vat_of(Decimal(net), Decimal(rate)), "f") == vat


def test_kopecks_round_half_up() -> None:
    assert kopecks(Decimal("0.005")) == Decimal("0.01")
    assert kopecks(Decimal("0.015")) == Decimal("0.02")
    assert kopecks(Decimal("0.00499999")) == Decimal("0.00")
    assert str(kopecks(Decimal("12"))) == "12.00"


def test_rates_are_shown_as_fractions_and_configured_as_percent() -> None:
    assert (rate_text(Decimal("0.22")), rate_text(Decimal("0.2")), rate_text(Decimal(0))) == \
        ("0.22", "0.2", "0")
    assert (percent(Decimal("0.22")), percent(Decimal("0.2")), percent(Decimal("0.125"))) == \
        ("22", "20", "12.5")


_NETS = st.decimals(min_value=0, max_value=Decimal("100000"), places=8, allow_nan=False,
                    allow_infinity=False)
_RATES = st.sampled_from([Decimal(0), Decimal("0.1"), Decimal("0.2"), Decimal("0.22"),
                          Decimal("0.125")])


@given(_NETS, _RATES)
def test_net_plus_vat_is_gross_for_every_generation(net: Decimal, rate: Decimal) -> None:
    split = Split.from_net(net, rate)
    assert split.net + split.vat == split.gross
    assert split.vat == split.vat.quantize(COST_QUANTUM)
    assert abs(split.vat - net * rate) <= COST_QUANTUM / 2


@given(st.decimals(min_value=0, max_value=Decimal("100000"), places=8, allow_nan=False,
                   allow_infinity=False), _RATES)
def test_a_gross_amount_splits_exactly(gross: Decimal, rate: Decimal) -> None:
    split = Split.from_gross(gross, rate)
    assert split.gross == gross
    assert abs(split.vat - split.net * rate) <= COST_QUANTUM  # the VAT of the net, to 1e-8


@given(st.lists(st.tuples(_NETS, _RATES), max_size=40))
def test_period_totals_conserve_money(lines: list[tuple[Decimal, Decimal]]) -> None:
    splits = [Split.from_net(net, rate) for net, rate in lines]
    total = totals(splits)
    assert total.net == sum((s.net for s in splits), Decimal(0))
    assert total.vat == sum((s.vat for s in splits), Decimal(0))
    assert total.gross == sum((s.gross for s in splits), Decimal(0))
    assert total.net + total.vat == total.gross
    # In kopecks: each part rounded half up, the gross their sum, at most a kopeck from the exact.
    assert total.net_rub + total.vat_rub == total.gross_rub
    assert total.net_rub == kopecks(total.net) and total.vat_rub == kopecks(total.vat)
    assert abs(total.gross_rub - total.gross) <= Decimal("0.01")
    groups = by_rate(splits)
    assert list(groups) == sorted({s.rate for s in splits})
    assert sum((g.net for g in groups.values()), Decimal(0)) == total.net
    assert sum((g.vat for g in groups.values()), Decimal(0)) == total.vat


@given(_NETS, _RATES)
def test_a_gross_made_from_a_net_splits_back_into_that_net(net: Decimal, rate: Decimal) -> None:
    # Billing charges the gross and records the split of it: the net must come back exactly.
    made = Split.from_net(net, rate)
    assert Split.from_gross(made.gross, rate) == made
