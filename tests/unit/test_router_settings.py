"""Router settings read from the environment: the Redis lane switch, the NER detector, the
exchange rates, TLS on every hop."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from xrouter_common.env import ConfigError
from xrouter_common.tls import CertFiles
from xrouter_router import cli
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


@pytest.mark.parametrize("listen", ["127.0.0.1:50051", "localhost:50051", "[::1]:50051",
                                    "127.0.0.1:0"])
def test_plaintext_grpc_on_a_loopback_address_needs_no_tls(listen: str) -> None:
    settings = RouterSettings.from_env({**BASE, "XROUTER_ROUTER_LISTEN": listen})
    assert settings.grpc_tls is None


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "10.0.0.7:50051",
                                    "router:50051", ":50051"])
def test_plaintext_grpc_on_another_address_refuses_to_start(listen: str) -> None:
    with pytest.raises(ConfigError, match=rf"^XROUTER_ROUTER_LISTEN={re.escape(listen)} is not a "
                                          r"loopback address: set XROUTER_ROUTER_TLS_CERT"):
        RouterSettings.from_env({**BASE, "XROUTER_ROUTER_LISTEN": listen})
    insecure = RouterSettings.from_env({**BASE, "XROUTER_ROUTER_LISTEN": listen,
                                        "XROUTER_ROUTER_INSECURE": "true"})
    assert insecure.grpc_tls is None


def test_router_tls_files_go_together_and_must_exist(tmp_path: Path) -> None:
    cert = tmp_path / "tls.crt"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="go together"):
        RouterSettings.from_env({**BASE, "XROUTER_ROUTER_TLS_CERT": str(cert)})
    env = {**BASE, "XROUTER_ROUTER_LISTEN": "0.0.0.0:50051", "XROUTER_ROUTER_TLS_CERT": str(cert),
           "XROUTER_ROUTER_TLS_KEY": str(cert), "XROUTER_ROUTER_TLS_CLIENT_CA": str(cert)}
    settings = RouterSettings.from_env(env)
    assert settings.grpc_tls == CertFiles(cert, cert, cert)
    with pytest.raises(ConfigError, match=r"^XROUTER_ROUTER_TLS_\*: .*missing\.key is not a "):
        RouterSettings.from_env({**env, "XROUTER_ROUTER_TLS_KEY": str(tmp_path / "missing.key")})


def test_database_tls_ca_makes_the_conninfo_verify_the_server() -> None:
    settings = RouterSettings.from_env({
        **BASE, "XROUTER_KEY_SECRET": "s",
        "XROUTER_DATABASE_URL": "host=a,b port=5432,5432 dbname=x",
        "XROUTER_DATABASE_TLS_CA": "/etc/xrouter/pg/ca.crt"})
    assert conninfo_to_dict(settings.database_url) == {
        "host": "a,b", "port": "5432,5432", "dbname": "x", "sslmode": "verify-full",
        "sslrootcert": "/etc/xrouter/pg/ca.crt"}
    explicit = RouterSettings.from_env({
        **BASE, "XROUTER_KEY_SECRET": "s",
        "XROUTER_DATABASE_URL": "postgresql://u@db/x?sslmode=require",
        "XROUTER_DATABASE_TLS_CA": "/ca.crt"})
    assert conninfo_to_dict(explicit.database_url)["sslmode"] == "require"


def test_redis_tls_settings_need_a_rediss_url(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    with pytest.raises(ConfigError, match=r"^XROUTER_REDIS_TLS_\* need a rediss://"):
        RouterSettings.from_env({**BASE, "XROUTER_REDIS_URL": "redis://r:6379",
                                 "XROUTER_REDIS_TLS_CA": str(ca)})
    settings = RouterSettings.from_env({**BASE, "XROUTER_REDIS_URL": "rediss://r:6379",
                                        "XROUTER_REDIS_TLS_CA": str(ca)})
    assert settings.redis_tls == CertFiles(None, None, ca)


def test_xrouter_migrate_verifies_the_database_like_the_router(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XROUTER_DATABASE_URL", "host=db dbname=x")
    monkeypatch.setenv("XROUTER_DATABASE_TLS_CA", "/ca.crt")
    args = cli.parser().parse_args(["migrate"])
    assert conninfo_to_dict(args.database_url) == {
        "host": "db", "dbname": "x", "sslmode": "verify-full", "sslrootcert": "/ca.crt"}
