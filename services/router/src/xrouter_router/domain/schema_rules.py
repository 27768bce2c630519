"""A response_format's JSON Schema as a validator (jsonschema, draft from `$schema`), with
`pattern` and `patternProperties` under a time bound. Imported when a request first asks for a
schema (structured.py), so a router that never sees one does not load jsonschema and regex."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jsonschema
import regex

from xrouter_router.domain.errors import InvalidRequest

# A client's `pattern` runs against a provider's answer in the router: a pattern that backtracks
# catastrophically must not stall the event loop. Each search gets this long, then the schema is
# the client's error.
PATTERN_SECONDS = 0.05


def validator(schema: dict[str, Any]) -> Any:
    """The schema's validator (not checked against its metaschema: see AnswerCheck)."""
    return _bounded(jsonschema.validators.validator_for(schema))(schema)


def first_error(compiled: Any, value: Any) -> Any:
    """The most relevant ValidationError of `value`, or None when it conforms."""
    return jsonschema.exceptions.best_match(compiled.iter_errors(value))


def _search(pattern: str, text: str) -> bool:
    try:
        return regex.search(pattern, text, timeout=PATTERN_SECONDS) is not None
    except TimeoutError:
        raise InvalidRequest(f"response_format.json_schema.schema: the pattern {pattern[:100]!r} "
                             f"took over {PATTERN_SECONDS * 1000:.0f} ms on an answer",
                             param="response_format.json_schema.schema") from None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any
             ) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield jsonschema.ValidationError(f"does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
                        ) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if _search(pattern, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


@functools.cache
def _bounded(cls: Any) -> Any:
    """The schema's validator class with `pattern` and `patternProperties` under a time bound
    (the `regex` module's timeout; Python's `re` has none)."""
    return jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        cls, {"pattern": _pattern, "patternProperties": _pattern_properties})
