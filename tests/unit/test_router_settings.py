"""Router settings read from the environment: the Redis lane switch, the NER detector."""

from __future__ import annotations

import pytest

from xrouter_common.env import ConfigError
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
