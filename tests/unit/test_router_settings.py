"""Router settings read from the environment: the Redis lane switch, the NER detector, the
exchange rates."""

from __future__ import annotations

from decimal import Decimal

import pytest

from xrouter_common.env import ConfigError
from xrouter_router.domain.fx import Rate
from xrouter_router.settings import RouterSettings

BASE = {"XROUTER_MASTER_KEY": "m"}


def test_the_lane_is_on_unless_turned_off() -> None:
    assert RouterSettings.from_env(BASE).redis_lane is True
    assert RouterSettings.from_env({**BASE, "XROUTER_REDIS_LANE": "false"}).redis_lane is False
    assert RouterSettings.from_env({**BASE, "XROUTER_REDIS_LANE": "on"}).redis_lane is True


def test_a_lane_switch_that_is_not_a_boolean_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^XROUTER_REDIS_LANE must be true or false, got 'fast'$"):
        RouterSettings.from_env({**BASE, "XROUTER_REDIS_LANE": "fast"})


def test_the_ner_detector_is_off_unless_natasha_is_named() -> None:
    assert RouterSettings.from_env(BASE).pii_ner == ""
    assert RouterSettings.from_env({**BASE, "XROUTER_PII_NER": "Natasha"}).pii_ner == "natasha"
    with pytest.raises(ConfigError, match=r"^XROUTER_PII_NER must be 'natasha' or empty, got 'spacy'$"):
        RouterSettings.from_env({**BASE, "XROUTER_PII_NER": "spacy"})


def test_exchange_rates_default_to_the_central_banks_with_none_fixed() -> None:
    settings = RouterSettings.from_env(BASE)
    assert (settings.fx_rates, settings.fx_cbr_url, settings.fx_cbr_interval) == (
        (), "https://www.cbr.ru/scripts/XML_daily.asp", 3600.0)


def test_fixed_exchange_rates_and_the_feed_switched_off() -> None:
    settings = RouterSettings.from_env({**BASE, "XROUTER_FX_RATES": "USD=92.5,EUR=100.1",
                                        "XROUTER_FX_CBR_URL": "off", "XROUTER_FX_CBR_INTERVAL": "60"})
    assert settings.fx_rates == (Rate("USD", Decimal("92.5")), Rate("EUR", Decimal("100.1")))
    assert (settings.fx_cbr_url, settings.fx_cbr_interval) == ("", 60.0)


def test_a_bad_fixed_rate_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^XROUTER_FX_RATES: USD: 'abc' is not a decimal number$"):
        RouterSettings.from_env({**BASE, "XROUTER_FX_RATES": "USD=abc"})


def test_a_feed_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^XROUTER_FX_CBR_URL must be an http\(s\) URL or off, "
                       r"got 'cbr.ru'$"):
        RouterSettings.from_env({**BASE, "XROUTER_FX_CBR_URL": "cbr.ru"})
