"""The attempt plan's choice of deployments: models and fallbacks, provider.only / ignore /
order, capabilities, require_parameters, data_collection and max_price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.unit.builders import ALL_CAPS, catalog, deployment, model, request
from tests.unit.plans import TOOL, _open, _pairs, _prefs, _providers
from xrouter_router.domain.errors import ErrorKind, ModelNotFound, NoProvider
from xrouter_router.domain.routing import (
    BASE_PARAMETERS,
    plan,
    requested_parameters,
    required_capabilities,
    supported_parameters,
)
from xrouter_router.domain.types import ContentPart, Message, Sampling

CATALOG = catalog(
    model("m", deployment("m", "a"), deployment("m", "b"), deployment("m", "c"), aliases=("alias-m",)),
    model("f1", deployment("f1", "a"), deployment("f1", "d")),
    model("f2", deployment("f2", "e")),
)


# ---- models and fallbacks ----------------------------------------------------------------

def test_equally_priced_deployments_are_planned_in_catalog_order_by_a_fresh_balancer() -> None:
    route = plan(CATALOG, request("m"))
    assert _pairs(route) == [("m", "a"), ("m", "b"), ("m", "c")]
    assert [c.deployment.id for c in route.candidates] == ["m@a", "m@b", "m@c"]
    assert route.strategy == "balanced"


def test_plan_resolves_an_alias_to_the_models_id() -> None:
    assert _pairs(plan(CATALOG, request("alias-m"))) == [("m", "a"), ("m", "b"), ("m", "c")]


def test_fallback_models_follow_in_the_order_given() -> None:
    route = plan(CATALOG, request("m", fallback=("f2", "f1")))
    assert _pairs(route) == [("m", "a"), ("m", "b"), ("m", "c"), ("f2", "e"), ("f1", "a"),
                             ("f1", "d")]


def test_the_requested_model_repeated_in_models_is_not_planned_twice() -> None:
    route = plan(CATALOG, request("m", fallback=("m", "f2")))
    assert _pairs(route) == [("m", "a"), ("m", "b"), ("m", "c"), ("f2", "e")]


def test_unknown_model_is_model_not_found_on_param_model() -> None:
    with pytest.raises(ModelNotFound) as info:
        plan(CATALOG, request("nope"))
    assert info.value.message == "Model 'nope' does not exist"
    assert info.value.param == "model"
    assert info.value.kind is ErrorKind.MODEL_NOT_FOUND


def test_unknown_fallback_model_is_model_not_found_on_param_models() -> None:
    with pytest.raises(ModelNotFound) as info:
        plan(CATALOG, request("m", fallback=("f1", "ghost")))
    assert info.value.message == "Model 'ghost' does not exist"
    assert info.value.param == "models"


# ---- provider.only / ignore / order ------------------------------------------------------

def test_provider_order_puts_listed_providers_first_then_the_rest() -> None:
    route = plan(CATALOG, request("m", provider=_prefs(order=("c", "a"))))
    assert _pairs(route) == [("m", "c"), ("m", "a"), ("m", "b")]
    assert route.strategy == "order"


def test_provider_order_without_fallbacks_keeps_only_listed_providers() -> None:
    prefs = _prefs(order=("c", "a"), allow_fallbacks=False)
    route = plan(CATALOG, request("m", fallback=("f1",), provider=prefs))
    assert _pairs(route) == [("m", "c"), ("m", "a"), ("f1", "a")]
    assert route.strategy == "order"


def test_provider_order_without_fallbacks_names_the_filter_for_the_unlisted() -> None:
    prefs = _prefs(order=("c",), allow_fallbacks=False)
    with pytest.raises(NoProvider) as info:
        plan(CATALOG, request("f1", provider=prefs))
    assert info.value.metadata == {"reasons": {
        "f1@a": "not in provider.order (allow_fallbacks is false)",
        "f1@d": "not in provider.order (allow_fallbacks is false)",
    }}


ORDERED = catalog(model(
    "m",
    deployment("m", "a", prompt="2", completion="2"),
    deployment("m", "b", prompt="1", completion="1"),
    deployment("m", "c", prompt="3", completion="3"),
    deployment("m", "d", prompt="4", completion="4"),
))


def test_after_the_listed_providers_the_rest_follow_by_weight_with_open_breakers_last() -> None:
    route = plan(ORDERED, request("m", provider=_prefs(order=("c",))), {"m@b": _open(100.0)},
                 now=110.0)
    assert _providers(route) == ["c", "a", "d", "b"]


def test_a_listed_provider_keeps_its_place_even_with_its_breaker_open() -> None:
    route = plan(ORDERED, request("m", provider=_prefs(order=("d", "c"))), {"m@d": _open(100.0)},
                 now=110.0)
    assert _providers(route) == ["d", "c", "b", "a"]


def test_provider_only_keeps_just_those_providers_across_models() -> None:
    route = plan(CATALOG, request("m", fallback=("f1",), provider=_prefs(only=("b", "d"))))
    assert _pairs(route) == [("m", "b"), ("f1", "d")]


def test_provider_ignore_drops_those_providers() -> None:
    route = plan(CATALOG, request("m", fallback=("f1",), provider=_prefs(ignore=("a",))))
    assert _pairs(route) == [("m", "b"), ("m", "c"), ("f1", "d")]


def test_order_and_only_combine() -> None:
    route = plan(CATALOG, request("m", provider=_prefs(order=("c",), only=("b", "c"))))
    assert _pairs(route) == [("m", "c"), ("m", "b")]


# ---- capabilities ------------------------------------------------------------------------

CAPS_CATALOG = catalog(model(
    "m",
    deployment("m", "plain"),
    deployment("m", "tools", caps=("streaming", "tools")),
    deployment("m", "json", caps=("streaming", "json_mode")),
    deployment("m", "vision", caps=("streaming", "vision")),
    deployment("m", "all", caps=ALL_CAPS),
))

IMAGE = Message(role="user", parts=(ContentPart(type="text", text="what is this?"),
                                    ContentPart(type="image_url", image_url="https://x/i.png")))


def test_tools_need_a_deployment_with_tools() -> None:
    assert _pairs(plan(CAPS_CATALOG, request("m", tools=(TOOL,)))) == [("m", "tools"), ("m", "all")]


def test_json_response_format_needs_json_mode() -> None:
    route = plan(CAPS_CATALOG, request("m", response_format_json=b'{"type":"json_object"}'))
    assert _pairs(route) == [("m", "json"), ("m", "all")]


def test_text_response_format_needs_nothing() -> None:
    route = plan(CAPS_CATALOG, request("m", response_format_json=b'{"type": "text"}'))
    assert len(route.candidates) == 5


def test_an_image_part_needs_vision() -> None:
    route = plan(CAPS_CATALOG, request("m", messages=(IMAGE,)))
    assert _pairs(route) == [("m", "vision"), ("m", "all")]


@pytest.mark.parametrize(("kwargs", "needs"), [
    ({}, frozenset()),
    ({"tools": (TOOL,)}, frozenset({"tools"})),
    ({"response_format_json": b'{"type":"json_object"}'}, frozenset({"json_mode"})),
    ({"response_format_json": b'{"type":"json_schema","json_schema":{"name":"x"}}'},
     frozenset({"json_mode"})),
    ({"response_format_json": b'{"type":"text"}'}, frozenset()),
    ({"tools": (TOOL,), "response_format_json": b'{"type":"json_object"}'},
     frozenset({"tools", "json_mode"})),
])
def test_required_capabilities(kwargs: dict[str, Any], needs: frozenset[str]) -> None:
    assert required_capabilities(request("m", **kwargs)) == needs


def test_required_capabilities_sees_images_in_any_message() -> None:
    req = request("m", messages=(Message(role="system", content="be brief"), IMAGE))
    assert required_capabilities(req) == frozenset({"vision"})


def test_json_schema_with_a_text_property_still_needs_json_mode() -> None:
    schema = (b'{"type":"json_schema","json_schema":{"name":"answer","schema":'
              b'{"type":"object","properties":{"text":{"type":"string"}}}}}')
    assert required_capabilities(request("m", response_format_json=schema)) == {"json_mode"}


def test_no_provider_lists_the_reason_for_every_rejected_deployment() -> None:
    cat = catalog(model("m", deployment("m", "a"), deployment("m", "b", caps=("tools",)),
                        deployment("m", "c", caps=("tools",))))
    prefs = _prefs(ignore=("b",), only=("a", "b"))
    with pytest.raises(NoProvider) as info:
        plan(cat, request("m", tools=(TOOL,), provider=prefs))
    assert info.value.message == "No provider can serve this request with its requirements"
    assert info.value.kind is ErrorKind.NO_PROVIDER
    assert info.value.metadata == {"reasons": {
        "m@a": "does not support tools",
        "m@b": "in provider.ignore",
        "m@c": "not in provider.only",
    }}


def test_no_provider_names_every_missing_capability_sorted() -> None:
    cat = catalog(model("m", deployment("m", "a")))
    req = request("m", messages=(IMAGE,), tools=(TOOL,),
                  response_format_json=b'{"type":"json_object"}')
    with pytest.raises(NoProvider) as info:
        plan(cat, req)
    assert info.value.metadata == {"reasons": {"m@a": "does not support json_mode, tools, vision"}}


def test_fallback_model_serves_when_the_requested_one_cannot() -> None:
    cat = catalog(model("m", deployment("m", "a")),
                  model("f", deployment("f", "b", caps=("tools",))))
    assert _pairs(plan(cat, request("m", fallback=("f",), tools=(TOOL,)))) == [("f", "b")]


# ---- require_parameters ------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "names"), [
    ({}, frozenset()),
    ({"sampling": Sampling(max_tokens=10, temperature=0.0, top_k=5, seed=0)},
     frozenset({"max_tokens", "temperature", "top_k", "seed"})),
    ({"sampling": Sampling(top_p=0.9, frequency_penalty=0.1, presence_penalty=0.2,
                           repetition_penalty=1.1, stop=("END",))},
     frozenset({"top_p", "frequency_penalty", "presence_penalty", "repetition_penalty", "stop"})),
    ({"tools": (TOOL,), "tool_choice_json": b'"auto"', "response_format_json": b'{"type":"text"}'},
     frozenset({"tools", "tool_choice"})),
    ({"response_format_json": b'{"type":"json_object"}'}, frozenset({"response_format"})),
])
def test_requested_parameters(kwargs: dict[str, Any], names: frozenset[str]) -> None:
    assert requested_parameters(request("m", **kwargs)) == names


def test_supported_parameters_default_to_the_base_set_plus_what_capabilities_imply() -> None:
    assert supported_parameters(deployment("m", "a")) == {
        "max_tokens", "temperature", "top_p", "stop", "seed"}
    assert supported_parameters(deployment("m", "a", caps=ALL_CAPS)) == BASE_PARAMETERS | {
        "tools", "tool_choice", "response_format"}
    assert supported_parameters(deployment("m", "a", parameters=("top_k",), caps=("tools",))) == {
        "top_k", "tools", "tool_choice"}


PARAMS_CATALOG = catalog(model(
    "m",
    deployment("m", "base"),
    deployment("m", "topk", parameters=("temperature", "top_k")),
))
TOP_K = request("m", sampling=Sampling(temperature=0.5, top_k=40))


def test_without_require_parameters_unsupported_parameters_do_not_filter() -> None:
    assert _providers(plan(PARAMS_CATALOG, TOP_K)) == ["base", "topk"]


def test_require_parameters_keeps_deployments_that_honour_every_parameter_set() -> None:
    req = request("m", sampling=Sampling(temperature=0.5, top_k=40),
                  provider=_prefs(require_parameters=True))
    route = plan(PARAMS_CATALOG, req, explain=True)
    assert _providers(route) == ["topk"]
    assert [(s.deployment.provider, s.rejected_by) for s in route.scored] == [
        ("base", "does not support top_k"), ("topk", "")]


def test_require_parameters_names_every_unsupported_parameter_sorted() -> None:
    req = request("m", sampling=Sampling(max_tokens=5, seed=1, stop=("x",)),
                  provider=_prefs(require_parameters=True))
    route = plan(PARAMS_CATALOG, req, explain=True)
    assert _providers(route) == ["base"]
    assert route.scored[1].rejected_by == "does not support max_tokens, seed, stop"


# ---- data_collection and max_price -------------------------------------------------------

PRIVACY = catalog(model("m", deployment("m", "keeps", collects_data=True), deployment("m", "forgets")))


def test_data_collection_deny_drops_deployments_that_may_collect_data() -> None:
    route = plan(PRIVACY, request("m", provider=_prefs(data_collection="deny")), explain=True)
    assert _providers(route) == ["forgets"]
    assert route.scored[0].rejected_by == "provider may collect data (data_collection is deny)"


@pytest.mark.parametrize("value", ["", "allow"])
def test_data_collection_allow_or_unset_keeps_them(value: str) -> None:
    assert _providers(plan(PRIVACY, request("m", provider=_prefs(data_collection=value)))) == [
        "keeps", "forgets"]


PRICES = catalog(model(
    "m",
    deployment("m", "cheap", prompt="1", completion="1"),
    deployment("m", "at-limit", prompt="2", completion="5"),
    deployment("m", "prompt-dear", prompt="2.01", completion="1"),
    deployment("m", "completion-dear", prompt="1", completion="5.5"),
))


def test_max_price_limits_prompt_and_completion_prices_separately() -> None:
    prefs = _prefs(max_price_prompt=Decimal("2"), max_price_completion=Decimal("5"))
    with pytest.raises(NoProvider) as info:
        plan(PRICES, request("m", provider=_prefs(max_price_prompt=Decimal("0.5"))))
    assert info.value.metadata == {"reasons": {
        "m@cheap": "prompt price above provider.max_price",
        "m@at-limit": "prompt price above provider.max_price",
        "m@prompt-dear": "prompt price above provider.max_price",
        "m@completion-dear": "prompt price above provider.max_price",
    }}
    route = plan(PRICES, request("m", provider=prefs), explain=True)
    assert _providers(route) == ["cheap", "at-limit"]
    assert [s.rejected_by for s in route.scored] == [
        "", "", "prompt price above provider.max_price",
        "completion price above provider.max_price"]


def test_max_price_on_completion_only_leaves_prompt_prices_free() -> None:
    route = plan(PRICES, request("m", provider=_prefs(max_price_completion=Decimal("1"))))
    assert _providers(route) == ["cheap", "prompt-dear"]
