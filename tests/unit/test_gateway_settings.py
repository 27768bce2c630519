"""The gateway's settings reach uvicorn: one set of options for one process and for workers;
TLS to the router."""

from __future__ import annotations

from pathlib import Path

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from xrouter_common.env import ConfigError
from xrouter_common.tls import CertFiles
from xrouter_gateway.__main__ import uvicorn_options
from xrouter_gateway.http_protocol import ConnectionLimits, protocol_class
from xrouter_gateway.router_tls import RouterTls
from xrouter_gateway.settings import GatewaySettings


def test_the_drain_is_30_seconds_unless_set() -> None:
    defaults = GatewaySettings.from_env({})
    assert uvicorn_options(defaults) == {
        "host": "127.0.0.1", "port": 8000, "http": protocol_class(defaults),
        "access_log": False, "log_level": "info", "server_header": False,
        "timeout_graceful_shutdown": 30, "proxy_headers": False, "forwarded_allow_ips": []}
    settings = GatewaySettings.from_env({"XROUTER_GATEWAY_DRAIN_SECONDS": "5",
                                         "XROUTER_GATEWAY_PORT": "9000"})
    assert (settings.drain_seconds, settings.port) == (5, 9000)
    assert uvicorn_options(settings)["timeout_graceful_shutdown"] == 5


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_drain_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="XROUTER_GATEWAY_DRAIN_SECONDS"):
        GatewaySettings.from_env({"XROUTER_GATEWAY_DRAIN_SECONDS": value})


def test_client_limits_have_documented_defaults_and_read_the_environment() -> None:
    defaults = GatewaySettings.from_env({})
    assert ConnectionLimits.of(defaults) == ConnectionLimits(20.0, 60.0, 32768, 4096)
    assert (defaults.auth_failures_per_minute, defaults.auth_throttle_addresses,
            defaults.trusted_proxies) == (20, 65536, ())
    assert issubclass(protocol_class(defaults), HttpToolsProtocol)
    settings = GatewaySettings.from_env({
        "XROUTER_GATEWAY_HEADER_TIMEOUT": "5", "XROUTER_GATEWAY_BODY_TIMEOUT": "7",
        "XROUTER_GATEWAY_MAX_HEADER_BYTES": "4096", "XROUTER_GATEWAY_MAX_CONNECTIONS": "9",
        "XROUTER_GATEWAY_AUTH_FAILURES_PER_MINUTE": "0",
        "XROUTER_GATEWAY_AUTH_THROTTLE_ADDRESSES": "100",
        "XROUTER_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"})
    assert ConnectionLimits.of(settings) == ConnectionLimits(5.0, 7.0, 4096, 9)
    assert (settings.auth_failures_per_minute, settings.auth_throttle_addresses) == (0, 100)
    assert uvicorn_options(settings)["proxy_headers"] is True
    assert uvicorn_options(settings)["forwarded_allow_ips"] == ["10.0.0.0/8", "192.0.2.1"]


def test_a_trusted_proxy_that_is_not_an_address_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"XROUTER_GATEWAY_TRUSTED_PROXIES: 'proxy\.local'"):
        GatewaySettings.from_env({"XROUTER_GATEWAY_TRUSTED_PROXIES": "10.0.0.1,proxy.local"})


def test_tls_to_the_router_needs_a_ca_and_a_whole_client_pair(tmp_path: Path) -> None:
    assert GatewaySettings.from_env({}).router_tls is None
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    with pytest.raises(ConfigError, match=r"^XROUTER_GATEWAY_ROUTER_TLS_CA is required"):
        GatewaySettings.from_env({"XROUTER_GATEWAY_ROUTER_TLS_CERT": str(pem),
                                  "XROUTER_GATEWAY_ROUTER_TLS_KEY": str(pem)})
    with pytest.raises(ConfigError, match=r"_CERT and _KEY go together"):
        GatewaySettings.from_env({"XROUTER_GATEWAY_ROUTER_TLS_CA": str(pem),
                                  "XROUTER_GATEWAY_ROUTER_TLS_CERT": str(pem)})
    settings = GatewaySettings.from_env({
        "XROUTER_GATEWAY_ROUTER_TLS_CA": str(pem), "XROUTER_GATEWAY_ROUTER_TLS_CERT": str(pem),
        "XROUTER_GATEWAY_ROUTER_TLS_KEY": str(pem),
        "XROUTER_GATEWAY_ROUTER_TLS_SERVER_NAME": "router-service-headless"})
    assert settings.router_tls == RouterTls(CertFiles(pem, pem, pem), "router-service-headless", 5.0)
    with pytest.raises(ConfigError, match=r"^XROUTER_GATEWAY_ROUTER_TLS_\*: .*nowhere\.pem is not"):
        GatewaySettings.from_env({"XROUTER_GATEWAY_ROUTER_TLS_CA": str(tmp_path / "nowhere.pem")})


def test_oauth_settings_are_off_and_open_unless_set() -> None:
    defaults = GatewaySettings.from_env({})
    assert (defaults.oauth_allow_plain, defaults.oauth_allowed_callbacks) == (False, ())
    settings = GatewaySettings.from_env({
        "XROUTER_OAUTH_ALLOW_PLAIN": "true",
        "XROUTER_OAUTH_ALLOWED_CALLBACKS": " App.Example.com , 127.0.0.1:8080,[::1]:9,"})
    assert settings.oauth_allow_plain is True
    assert settings.oauth_allowed_callbacks == ("app.example.com", "127.0.0.1:8080", "[::1]:9")


@pytest.mark.parametrize("value", ["https://app.example", "app.example/cb", "a b", "app:port",
                                   "app.example:123456", "ex\u00e4mple.com"])
def test_an_allowed_callback_that_is_no_host_stops_the_start(value: str) -> None:
    with pytest.raises(ConfigError, match="XROUTER_OAUTH_ALLOWED_CALLBACKS"):
        GatewaySettings.from_env({"XROUTER_OAUTH_ALLOWED_CALLBACKS": value})
