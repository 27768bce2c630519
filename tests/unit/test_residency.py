"""Data residency: catalog jurisdictions, the routing exclusion with its reasons (and the 403 when
it leaves nothing), the policy that applies to a key, and the plan's hold on management keys."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.builders import catalog, deployment, model, request
from tests.unit.plans import _pairs
from xrouter_common.env import ConfigError
from xrouter_router.catalog_file import parse
from xrouter_router.domain import residency
from xrouter_router.domain.errors import (
    ErrorKind,
    Forbidden,
    InvalidRequest,
    NoProvider,
    ResidencyForbidden,
)
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.routing import embedding_plan, plan
from xrouter_router.domain.stats import BreakerPolicy
from xrouter_router.domain.types import ProviderPreferences


def _in(where: str, model_id: str, provider: str, **kwargs: Any) -> Any:
    return replace(deployment(model_id, provider, **kwargs), jurisdiction=where)


CATALOG = catalog(
    model("mixed", _in("us", "mixed", "oai"), _in("ru", "mixed", "giga"), _in("", "mixed", "anon")),
    model("abroad", _in("us", "abroad", "oai"), _in("de", "abroad", "eu")),
    model("home", _in("ru", "home", "yandex")),
    model("emb", _in("us", "emb", "oai", caps=("embeddings",)),
          _in("ru", "emb", "giga", caps=("embeddings",))),
)
POLICY_REASON = "provider jurisdiction is {!r}; the residency policy requires 'ru'"


# ---- routing -------------------------------------------------------------------------------

def test_residency_ru_keeps_only_russian_deployments_of_every_candidate_model() -> None:
    route = plan(CATALOG, request("abroad", fallback=("mixed", "home")), residency="ru")
    assert _pairs(route) == [("mixed", "giga"), ("home", "yandex")]


def test_without_a_restricting_policy_every_deployment_is_planned() -> None:
    for policy in ("", "any"):
        route = plan(CATALOG, request("mixed"), residency=policy)
        assert sorted(_pairs(route)) == [("mixed", "anon"), ("mixed", "giga"), ("mixed", "oai")]


def test_a_plan_the_policy_empties_is_a_403_naming_the_policy_for_each_deployment() -> None:
    with pytest.raises(ResidencyForbidden) as info:
        plan(CATALOG, request("abroad"), residency="ru")
    assert info.value.kind is ErrorKind.FORBIDDEN
    assert info.value.message == residency.FORBIDDEN
    assert info.value.metadata == {"reasons": {"abroad@oai": POLICY_REASON.format("us"),
                                               "abroad@eu": POLICY_REASON.format("de")}}


def test_an_unknown_jurisdiction_is_not_russia() -> None:
    only_anon = catalog(model("x", _in("", "x", "anon")))
    with pytest.raises(ResidencyForbidden) as info:
        plan(only_anon, request("x"), residency="ru")
    assert info.value.metadata == {"reasons": {"x@anon": POLICY_REASON.format("unknown")}}


def test_a_plan_emptied_by_other_filters_only_stays_a_503() -> None:
    with pytest.raises(NoProvider) as info:
        plan(CATALOG, request("home", provider=ProviderPreferences(ignore=("yandex",))),
             residency="ru")
    assert info.value.metadata == {"reasons": {"home@yandex": "in provider.ignore"}}


def test_explain_shows_the_residency_exclusion() -> None:
    route = plan(CATALOG, request("mixed"), residency="ru", commit=False, explain=True)
    assert {s.deployment.provider: s.rejected_by for s in route.scored} == {
        "oai": POLICY_REASON.format("us"), "giga": "", "anon": POLICY_REASON.format("unknown")}


def test_embeddings_follow_the_policy_too() -> None:
    plain = embedding_plan(CATALOG, "emb", {}, now=0.0, policy=BreakerPolicy())
    assert [c.deployment.provider for c in plain] == ["oai", "giga"]
    resident = embedding_plan(CATALOG, "emb", {}, now=0.0, policy=BreakerPolicy(), residency="ru")
    assert [c.deployment.provider for c in resident] == ["giga"]
    abroad = catalog(model("emb", _in("us", "emb", "oai", caps=("embeddings",))))
    with pytest.raises(ResidencyForbidden) as info:
        embedding_plan(abroad, "emb", {}, now=0.0, policy=BreakerPolicy(), residency="ru")
    assert info.value.metadata == {"reasons": {"emb@oai": POLICY_REASON.format("us")}}


# ---- the policy of a key -------------------------------------------------------------------

KEY = ApiKey(id="key-1", account_id="acc", tier="free", prefix="xr")


@pytest.mark.parametrize(("own", "account", "expected"), [
    ("", "", ("any", "default")),
    ("ru", "", ("ru", "key")),
    ("", "ru", ("ru", "account")),
    ("any", "ru", ("any", "key")),
    ("ru", "any", ("ru", "key")),
])
def test_the_keys_own_policy_applies_else_its_accounts(own: str, account: str,
                                                       expected: tuple[str, str]) -> None:
    assert replace(KEY, residency=own, account_residency=account).residency_policy == expected


@pytest.mark.parametrize("value", ["RU", " ru "])
def test_policies_are_read_in_lower_case(value: str) -> None:
    assert residency.policy(value) == "ru"


@pytest.mark.parametrize("value", ["us", "russia", "r", "ru,us"])
def test_an_unknown_policy_is_an_invalid_request_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        residency.policy(value)
    assert info.value.param == "residency"
    assert info.value.message == (f"residency must be one of ['ru', 'any'] (or empty to clear it), "
                                  f"got {value!r}")


def test_a_management_key_cannot_loosen_its_accounts_plan() -> None:
    ru_plan = Plan("max", residency="ru")
    ru_plan.admit(KEY)
    ru_plan.admit(replace(KEY, residency="ru"))
    with pytest.raises(Forbidden) as info:
        ru_plan.admit(replace(KEY, residency="any"))
    assert info.value.param == "residency"
    Plan("max").admit(replace(KEY, residency="any"))


def test_a_plan_refuses_an_unknown_residency() -> None:
    with pytest.raises(InvalidRequest) as info:
        Plan("pro", residency="eu")
    assert info.value.param == "residency"


# ---- the catalog ---------------------------------------------------------------------------

def _catalog(**providers: dict[str, Any]) -> dict[str, Any]:
    return {"providers": providers,
            "models": [{"id": f"m-{name}", "deployments": [{"provider": name}]}
                       for name in providers]}


ENV = {"K": "k"}


def test_russian_provider_types_default_to_ru_and_others_to_unknown() -> None:
    parsed = parse(_catalog(
        giga={"type": "gigachat", "api_key_env": "K"},
        ya={"type": "yandexgpt", "api_key_env": "K", "folder_id": "f"},
        oai={"type": "openai", "api_key_env": "K"},
        demo={"type": "demo"},
        said={"type": "openai", "api_key_env": "K", "jurisdiction": "US"},
        home={"type": "demo", "jurisdiction": "ru"},
        moved={"type": "gigachat", "api_key_env": "K", "jurisdiction": "kz"}), ENV)
    found = {m.id: m.deployments[0].jurisdiction for m in parsed.catalog.models}
    assert found == {"m-giga": "ru", "m-ya": "ru", "m-oai": "", "m-demo": "", "m-said": "us",
                     "m-home": "ru", "m-moved": "kz"}
    assert {p.name: dict(p.options) for p in parsed.providers}["said"] == {}
    assert parsed.catalog.resolve("m-said").jurisdictions == ("us",)


@pytest.mark.parametrize("value", ["rus", "r", "", 7, "r1"])
def test_a_jurisdiction_that_is_no_country_code_is_a_config_error(value: object) -> None:
    data = copy.deepcopy(_catalog(oai={"type": "openai", "api_key_env": "K", "jurisdiction": value}))
    with pytest.raises(ConfigError) as info:
        parse(data, ENV)
    assert str(info.value) == ("catalog: providers.oai.jurisdiction must be an ISO 3166-1 alpha-2 "
                               f"country code such as \"ru\", got {value!r}")
