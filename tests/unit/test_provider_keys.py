"""XROUTER_PROVIDER_KEYS_FILE: the mounted `provider-keys` secret as the catalog's key source."""

from __future__ import annotations

from pathlib import Path

import pytest

from xrouter_common.env import ConfigError
from xrouter_router import catalog_file, provider_keys
from xrouter_router.settings import RouterSettings

CATALOG = """
[providers.openai]
type = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"

[[models]]
id = "openai/gpt-4o-mini"
  [[models.deployments]]
  provider = "openai"
  upstream_model = "gpt-4o-mini"
  price = { prompt = "15", completion = "60" }
"""


def test_parse_reads_dotenv_lines() -> None:
    text = ("# provider credentials\n\nOPENAI_API_KEY=sk-one\nexport GIGACHAT_AUTH_KEY = 'a2V5'\n"
            'YANDEX_API_KEY="AQVN=x"\n')
    assert provider_keys.parse(text) == {
        "OPENAI_API_KEY": "sk-one", "GIGACHAT_AUTH_KEY": "a2V5", "YANDEX_API_KEY": "AQVN=x"}


@pytest.mark.parametrize("line", ["JUST_A_NAME", "1BAD=x", "=value", "two words=x"])
def test_parse_refuses_a_malformed_line_without_echoing_it(line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        provider_keys.parse(f"OK=1\n{line}\n", where="keys")
    assert str(caught.value) == "keys: line 2 is not NAME=value"


def test_the_catalog_takes_its_key_from_the_file_and_the_environment_wins(tmp_path: Path) -> None:
    keys = tmp_path / "provider-keys"
    keys.write_text("OPENAI_API_KEY=from-file\n", encoding="utf-8")
    (tmp_path / "catalog.toml").write_text(CATALOG, encoding="utf-8")
    from_file = catalog_file.load(tmp_path / "catalog.toml", provider_keys.environment(keys, {}))
    assert from_file.providers[0].api_key == "from-file"
    env = provider_keys.environment(keys, {"OPENAI_API_KEY": "from-env"})
    assert catalog_file.load(tmp_path / "catalog.toml", env).providers[0].api_key == "from-env"


def test_no_file_means_the_environment_alone() -> None:
    env = {"OPENAI_API_KEY": "x"}
    assert provider_keys.environment(None, env) is env


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"XROUTER_PROVIDER_KEYS_FILE .*missing: cannot read"):
        provider_keys.environment(tmp_path / "missing", {})


def test_settings_read_the_path() -> None:
    settings = RouterSettings.from_env({"XROUTER_MASTER_KEY": "m",
                                        "XROUTER_PROVIDER_KEYS_FILE": "/etc/xrouter/secrets/provider-keys"})
    assert settings.provider_keys_file == Path("/etc/xrouter/secrets/provider-keys")
    assert RouterSettings.from_env({"XROUTER_MASTER_KEY": "m"}).provider_keys_file is None


def test_settings_read_the_metrics_address() -> None:
    assert RouterSettings.from_env({"XROUTER_MASTER_KEY": "m"}).metrics_host == "0.0.0.0"
    local = RouterSettings.from_env({"XROUTER_MASTER_KEY": "m",
                                     "XROUTER_ROUTER_METRICS_HOST": "127.0.0.1"})
    assert local.metrics_host == "127.0.0.1"
