"""Checking JSON bodies against the schema /openapi.json gives for a route: a jsonschema
validator whose `#/components/schemas/...` references resolve inside the document."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_BASE = "urn:xrouter:openapi"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Spec:
    """The document, and a validator per (path, method, status, media type)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._registry: Registry[Any] = Registry().with_resource(
            _BASE, Resource.from_contents(document, default_specification=DRAFT202012))
        self.checked: set[tuple[str, str]] = set()

    def schema(self, path: str, method: str, status: int,
               media: str = "application/json") -> dict[str, Any]:
        schema: dict[str, Any] = self.document["paths"][path][method]["responses"][
            str(status)]["content"][media]["schema"]
        return schema

    def validator(self, path: str, method: str, status: int,
                  media: str = "application/json") -> Draft202012Validator:
        self.schema(path, method, status, media)  # a KeyError names what is undocumented
        where = _pointer("paths", path, method, "responses", str(status), "content", media,
                         "schema")
        return Draft202012Validator({"$ref": f"{_BASE}#/{where}"}, registry=self._registry)

    def component(self, name: str) -> Draft202012Validator:
        """A validator of one of components/schemas."""
        assert name in self.document["components"]["schemas"], name
        return Draft202012Validator({"$ref": f"{_BASE}#/components/schemas/{name}"},
                                    registry=self._registry)

    def check(self, path: str, method: str, status: int, body: Any,
              media: str = "application/json") -> None:
        """Raises jsonschema.ValidationError when `body` is not what the document says."""
        self.validator(path, method, status, media).validate(body)
        self.checked.add((path, method))

    def check_empty(self, path: str, method: str, status: int, body: bytes,
                    headers: Mapping[str, str]) -> None:
        """An answer the document gives no content: `body` is empty and every header the
        document names for it is there."""
        answer = self.document["paths"][path][method]["responses"][str(status)]
        assert "content" not in answer and body == b"", (path, method, status)
        missing = [name for name in answer.get("headers", {}) if name not in headers]
        assert missing == [], missing
        self.checked.add((path, method))

    def check_stream(self, path: str, method: str, lines: list[str]) -> int:
        """Each SSE event of a stream (raw lines, blank separators dropped) against the
        document's event schema; returns how many were checked."""
        validator = self.validator(path, method, 200, "text/event-stream")
        count = 0
        for event in sse_events(lines):
            validator.validate(event)
            count += 1
        self.checked.add((path, method))
        return count


def sse_events(lines: list[str]) -> Iterator[dict[str, Any]]:
    """{"event": name (when given), "data": the parsed JSON} per event; comments and the
    `[DONE]` sentinel skipped."""
    name: str | None = None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and line != "data: [DONE]":
            event: dict[str, Any] = {"data": orjson.loads(line[6:])}
            if name is not None:
                event["event"] = name
            name = None
            yield event


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/components/schemas/"), ref
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def untyped(document: dict[str, Any], schema: dict[str, Any], where: str,
            seen: set[str] | None = None) -> list[str]:
    """Where `schema` or any schema inside it says nothing about its values' type (an object
    with no properties is only allowed below the top, where a value is free-form JSON)."""
    seen = set() if seen is None else seen
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return []
        seen.add(schema["$ref"])
        return untyped(document, resolve(document, schema), schema["$ref"], seen)
    found: list[str] = []
    alternatives = schema.get("oneOf") or schema.get("anyOf") or schema.get("allOf")
    if alternatives:
        for i, alt in enumerate(alternatives):
            found += untyped(document, alt, f"{where}[{i}]", seen)
        return found
    if not ({"type", "const", "enum"} & schema.keys()):
        return [where]
    for name, prop in schema.get("properties", {}).items():
        found += untyped(document, prop, f"{where}.{name}", seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += untyped(document, schema[key], f"{where}.{key}", seen)
    return found
