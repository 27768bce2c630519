"""The OpenAPI document: valid OpenAPI 3.1, every success body typed, every reference resolving.
(That the types are true of the real answers: tests/integration/test_openapi_bodies.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import ValidationError
from openapi_spec_validator import validate

from tests.openapi_support import Spec, resolve, untyped
from xrouter_gateway.openapi import _components, build_openapi

DOC = build_openapi()


def _successes(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if status.startswith("2") and status != "204":  # 204: no content, by definition
                    where = f"{method.upper()} {path} {status}"
                    assert answer.get("content"), f"{where} has no body"
                    for media, content in answer["content"].items():
                        yield f"{where} {media}", content["schema"]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"] == "3.1.0"


def test_every_success_body_is_typed_all_the_way_down() -> None:
    bodies = dict(_successes(DOC))
    assert len(bodies) == 53  # 44 operations; 4 of them also stream, 2 also CSV, the consent
    # page's assets in three types, the console's in two
    for where, schema in bodies.items():
        top = resolve(DOC, schema)
        if where.endswith("application/json"):
            assert top.get("properties") or isinstance(top.get("additionalProperties"), dict), \
                f"{where}: an object with no properties"
        assert untyped(DOC, schema, where) == [], where


def test_the_typed_check_finds_a_bare_or_empty_schema() -> None:
    doc = {"components": {"schemas": {"Open": {}, "Inner": obj_with({"x": {}})}}}
    assert untyped(doc, {"$ref": "#/components/schemas/Open"}, "top") == [
        "#/components/schemas/Open"]
    assert untyped(doc, {"$ref": "#/components/schemas/Inner"}, "top") == [
        "#/components/schemas/Inner.x"]


def obj_with(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def test_every_reference_resolves() -> None:
    refs = set(_refs(DOC))
    assert "#/components/schemas/ChatCompletionChunk" in refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in DOC["components"]["schemas"], ref


def test_streams_document_their_events() -> None:
    spec = Spec(DOC)
    spec.check_stream("/v1/chat/completions", "post", [
        'data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"m",'
        '"provider":"p","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null,'
        '"logprobs":null}]}', "data: [DONE]"])
    with pytest.raises(ValidationError):
        spec.check_stream("/v1/chat/completions", "post", [
            'data: {"id":"gen-1","object":"chat.completion","created":1,"model":"m",'
            '"provider":"p","choices":[]}'])
    with pytest.raises(ValidationError):
        spec.check_stream("/v1/messages", "post", [
            "event: message_stop", 'data: {"type":"message_end"}'])


def test_a_body_missing_a_required_field_is_refused() -> None:
    spec = Spec(DOC)
    body = {"status": "healthy", "mode": "embedded", "components": {
        "api": "up", "router": "up", "db": "up", "cache": "up", "providers": {"p": "up"}}}
    spec.check("/health", "get", 200, body)
    del body["components"]["db"]  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        spec.check("/health", "get", 200, body)


def test_request_types_of_one_name_each_keep_their_own_schema() -> None:
    """Chat's and the Responses API's ToolChoiceFunction differ; the second used to replace
    the first, so the chat request schema refused chat's own tool_choice."""
    spec = Spec(DOC)
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}}
    spec.component("ChatCompletionRequest").validate(chat)
    responses = {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"}],
                 "tool_choice": {"type": "function", "name": "f"}}
    spec.component("ResponsesRequest").validate(responses)


def test_a_schema_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="Usage"):
        _components({"Usage": {"type": "object"}}, {"Usage": {"type": "string"}})
