"""Structured outputs: what a request's `response_format` asks of the answer (a JSON object, or
one conforming to a json_schema), compiled once per request, and the check that a whole answer
does conform. A non-conforming answer is the provider's failure (NonConforming): failover tries
the next deployment, as after an upstream 5xx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from xrouter_router.domain.errors import InvalidRequest, NonConforming
from xrouter_router.domain.types import ChatRequest, Message

DEFAULT_NAME = "json_response"
OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}
# Answers cut short by max_tokens or a content filter are passed on as they are (OpenAI does
# the same): the client sees why in finish_reason, and another deployment would be cut too.
UNCHECKED_FINISH = frozenset({"length", "content_filter"})


@dataclass(frozen=True, slots=True)
class AnswerFormat:
    """A response_format other than text: `schema` is None for json_object (any JSON object)."""

    name: str = DEFAULT_NAME
    schema: dict[str, Any] | None = None
    description: str = ""
    strict: bool | None = None

    @property
    def object_schema(self) -> dict[str, Any]:
        """The schema a forced tool or function takes (json_object: any object)."""
        return self.schema if self.schema is not None else OBJECT_SCHEMA


def answer_format(response_format_json: bytes) -> AnswerFormat | None:
    """The format asked for; None for none, `text`, or a shape that is not OpenAI's."""
    if not response_format_json:
        return None
    try:
        fmt = json.loads(response_format_json)
    except ValueError:
        return None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return AnswerFormat()
    spec = fmt.get("json_schema")
    if fmt.get("type") != "json_schema" or not isinstance(spec, dict):
        return None
    schema = spec.get("schema")
    strict = spec.get("strict")
    return AnswerFormat(
        name=str(spec.get("name") or DEFAULT_NAME),
        schema=schema if isinstance(schema, dict) else OBJECT_SCHEMA,
        description=str(spec.get("description") or ""),
        strict=strict if isinstance(strict, bool) else None,
    )


class AnswerCheck:
    """One request's format with its schema compiled (once, before any provider is called).

    The schema is not checked against its metaschema: that costs 2 ms of CPU for a two-field
    schema and 100 ms for a hundred fields (jsonschema 4.26, draft 2020-12), on every request,
    where building the validator costs 15 µs. A broken schema shows when an answer is checked
    against it, and is then the client's error (InvalidRequest), not the provider's."""

    __slots__ = ("_validator", "format")

    def __init__(self, fmt: AnswerFormat) -> None:
        self.format = fmt
        self._validator: Any = None
        if fmt.schema is None:
            return
        # jsonschema and regex take 4.6 MB: loaded when a request first asks for a schema.
        from xrouter_router.domain import schema_rules
        try:
            self._validator = schema_rules.validator(fmt.schema)
        except Exception as exc:  # noqa: BLE001 - e.g. a `$schema` that is not a string
            raise _broken(exc) from None

    def check(self, provider: str, message: Message, finish_reason: str) -> None:
        """Raises NonConforming unless the answer's text is a JSON object that conforms. An
        answer that calls the client's tools, or that was cut short, is not a final answer."""
        if message.tool_calls or finish_reason in UNCHECKED_FINISH:
            return
        try:
            value = json.loads(message.text())
        except ValueError:
            raise NonConforming(f"{provider} answered text that is not JSON, where "
                                "response_format asked for JSON", provider=provider) from None
        if not isinstance(value, dict):
            raise NonConforming(f"{provider} answered JSON that is not an object",
                                provider=provider)
        if self._validator is None:
            return
        try:
            from xrouter_router.domain import schema_rules
            error = schema_rules.first_error(self._validator, value)
        except InvalidRequest:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken schema fails in many ways
            raise _broken(exc) from None
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            # The rule, not the value: the answer's text stays out of errors and logs.
            raise NonConforming(f"{provider} answered JSON outside the response_format's schema: "
                                f"{where} fails its '{error.validator}' rule", provider=provider)


def _broken(exc: Exception) -> InvalidRequest:
    return InvalidRequest(f"response_format.json_schema.schema cannot be applied: "
                          f"{type(exc).__name__}", param="response_format.json_schema.schema")


def answer_check(request: ChatRequest) -> AnswerCheck | None:
    """The check for a request's answers (None: it asks for no format)."""
    fmt = answer_format(request.response_format_json)
    return AnswerCheck(fmt) if fmt is not None else None
