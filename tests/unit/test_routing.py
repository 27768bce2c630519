"""The attempt plan: deployment order, fallback models, provider preferences, capability needs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import ALL_CAPS, catalog, deployment, model, request
from xrouter_router.domain.errors import ErrorKind, ModelNotFound, NoProvider
from xrouter_router.domain.routing import Candidate, plan, required_capabilities
from xrouter_router.domain.types import ContentPart, Message, ProviderPreferences, Tool

CATALOG = catalog(
    model("m", deployment("m", "a"), deployment("m", "b"), deployment("m", "c"), aliases=("alias-m",)),
    model("f1", deployment("f1", "a"), deployment("f1", "d")),
    model("f2", deployment("f2", "e")),
)


def _pairs(candidates: list[Candidate]) -> list[tuple[str, str]]:
    return [(c.model.id, c.deployment.provider) for c in candidates]


def test_plan_lists_the_models_deployments_in_catalog_order() -> None:
    candidates = plan(CATALOG, request("m"))
    assert _pairs(candidates) == [("m", "a"), ("m", "b"), ("m", "c")]
    assert [c.deployment.id for c in candidates] == ["m@a", "m@b", "m@c"]


def test_plan_resolves_an_alias_to_the_models_id() -> None:
    assert _pairs(plan(CATALOG, request("alias-m"))) == [("m", "a"), ("m", "b"), ("m", "c")]


def test_fallback_models_follow_in_the_order_given() -> None:
    candidates = plan(CATALOG, request("m", fallback=("f2", "f1")))
    assert _pairs(candidates) == [("m", "a"), ("m", "b"), ("m", "c"), ("f2", "e"), ("f1", "a"),
                                  ("f1", "d")]


def test_the_requested_model_repeated_in_models_is_not_planned_twice() -> None:
    candidates = plan(CATALOG, request("m", fallback=("m", "f2")))
    assert _pairs(candidates) == [("m", "a"), ("m", "b"), ("m", "c"), ("f2", "e")]


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


def test_provider_order_puts_listed_providers_first_then_the_rest() -> None:
    prefs = ProviderPreferences(order=("c", "a"))
    assert _pairs(plan(CATALOG, request("m", provider=prefs))) == [("m", "c"), ("m", "a"), ("m", "b")]


def test_provider_order_without_fallbacks_keeps_only_listed_providers() -> None:
    prefs = ProviderPreferences(order=("c", "a"), allow_fallbacks=False)
    candidates = plan(CATALOG, request("m", fallback=("f1",), provider=prefs))
    assert _pairs(candidates) == [("m", "c"), ("m", "a"), ("f1", "a")]


def test_no_fallbacks_and_no_order_plans_exactly_one_candidate() -> None:
    prefs = ProviderPreferences(allow_fallbacks=False)
    assert _pairs(plan(CATALOG, request("m", fallback=("f1",), provider=prefs))) == [("m", "a")]


def test_provider_only_keeps_just_those_providers_across_models() -> None:
    prefs = ProviderPreferences(only=("b", "d"))
    candidates = plan(CATALOG, request("m", fallback=("f1",), provider=prefs))
    assert _pairs(candidates) == [("m", "b"), ("f1", "d")]


def test_provider_ignore_drops_those_providers() -> None:
    prefs = ProviderPreferences(ignore=("a",))
    candidates = plan(CATALOG, request("m", fallback=("f1",), provider=prefs))
    assert _pairs(candidates) == [("m", "b"), ("m", "c"), ("f1", "d")]


def test_order_and_only_combine() -> None:
    prefs = ProviderPreferences(order=("c",), only=("b", "c"))
    assert _pairs(plan(CATALOG, request("m", provider=prefs))) == [("m", "c"), ("m", "b")]


CAPS_CATALOG = catalog(model(
    "m",
    deployment("m", "plain"),
    deployment("m", "tools", caps=("streaming", "tools")),
    deployment("m", "json", caps=("streaming", "json_mode")),
    deployment("m", "vision", caps=("streaming", "vision")),
    deployment("m", "all", caps=ALL_CAPS),
))

TOOL = Tool(name="f", parameters_json=b'{"type":"object"}')
IMAGE = Message(role="user", parts=(ContentPart(type="text", text="what is this?"),
                                    ContentPart(type="image_url", image_url="https://x/i.png")))


def test_tools_need_a_deployment_with_tools() -> None:
    candidates = plan(CAPS_CATALOG, request("m", tools=(TOOL,)))
    assert _pairs(candidates) == [("m", "tools"), ("m", "all")]


def test_json_response_format_needs_json_mode() -> None:
    candidates = plan(CAPS_CATALOG, request("m", response_format_json=b'{"type":"json_object"}'))
    assert _pairs(candidates) == [("m", "json"), ("m", "all")]


def test_text_response_format_needs_nothing() -> None:
    candidates = plan(CAPS_CATALOG, request("m", response_format_json=b'{"type": "text"}'))
    assert len(candidates) == 5


def test_an_image_part_needs_vision() -> None:
    req = request("m", messages=(IMAGE,))
    assert _pairs(plan(CAPS_CATALOG, req)) == [("m", "vision"), ("m", "all")]


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
    prefs = ProviderPreferences(ignore=("b",), only=("a", "b"))
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
    candidates = plan(cat, request("m", fallback=("f",), tools=(TOOL,)))
    assert _pairs(candidates) == [("f", "b")]
