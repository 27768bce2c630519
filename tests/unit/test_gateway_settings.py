"""The gateway's settings reach uvicorn: one set of options for one process and for workers."""

from __future__ import annotations

import pytest

from xrouter_common.env import ConfigError
from xrouter_gateway.__main__ import uvicorn_options
from xrouter_gateway.settings import GatewaySettings


def test_the_drain_is_30_seconds_unless_set() -> None:
    assert uvicorn_options(GatewaySettings.from_env({})) == {
        "host": "127.0.0.1", "port": 8000, "http": "httptools", "access_log": False,
        "log_level": "info", "server_header": False, "timeout_graceful_shutdown": 30}
    settings = GatewaySettings.from_env({"XROUTER_GATEWAY_DRAIN_SECONDS": "5",
                                         "XROUTER_GATEWAY_PORT": "9000"})
    assert (settings.drain_seconds, settings.port) == (5, 9000)
    assert uvicorn_options(settings)["timeout_graceful_shutdown"] == 5


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_drain_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="XROUTER_GATEWAY_DRAIN_SECONDS"):
        GatewaySettings.from_env({"XROUTER_GATEWAY_DRAIN_SECONDS": value})
