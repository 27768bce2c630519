"""Property: whatever a client puts anywhere in a chat body, the gateway answers 4xx (or 200 for
a body that is still valid) in the documented error shape, never a 5xx of its own, and keeps
the connection. Mutations come from the request schema (schemas.ChatCompletionRequest): every
field path it declares gets wrong types, boundary and out-of-range numbers, non-finite numbers
and decimals, deep nesting, unknown enum values; unknown keys are added too. Runs against a
real gateway (uvicorn) and router, from a thread holding one kept-alive HTTP connection."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import Stack
from tests.support import MASTER_KEY, write_catalog
from xrouter_gateway.schemas import ChatCompletionRequest

FieldPath = tuple[str | int, ...]
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
BASE: dict[str, Any] = {"model": "test/all", "messages": [{"role": "user", "content": "hi"}]}
# Valid optional sections a body starts from, so that a mutation deep inside one meets valid
# surroundings and reaches the code behind the schema check.
TEMPLATE: dict[str, Any] = {
    "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}],
    "provider": {"order": ["demo"], "sort": "price",
                 "max_price": {"prompt": "1000", "completion": 1000, "request": "1"}},
    "response_format": {"type": "json_schema",
                        "json_schema": {"name": "s", "schema": {"type": "object"}}},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "stream_options": {"include_usage": True},
    "logit_bias": {"42": 1},
    "stop": ["x"],
    "temperature": 1,
    "max_tokens": 16,
}
# A routing decision on a valid body ("no deployment supports tools") is not a gateway fault.
ROUTING_503 = "no_provider_available"
ALL_CAPABILITIES = """
[[models]]
id = "test/all"
name = "test/all"
  [[models.deployments]]
  provider = "demo"
  upstream_model = "demo"
  capabilities = ["streaming", "tools", "json_mode", "vision"]
  price = { prompt = "100", completion = "200" }
  context_length = 16000
"""
RAW = "__raw__:"  # a string standing for a raw JSON token that json.dumps cannot write


def _paths(t: mi.Type, path: FieldPath, out: list[tuple[FieldPath, mi.Type]], depth: int) -> None:
    """Every field path of the schema, with its declared type (list items as index 0)."""
    out.append((path, t))
    if depth == 0:
        return
    members = t.types if isinstance(t, mi.UnionType) else (t,)
    for m in members:
        if isinstance(m, mi.StructType):
            for f in m.fields:
                _paths(f.type, (*path, f.encode_name), out, depth - 1)
        elif isinstance(m, mi.ListType):
            _paths(m.item_type, (*path, 0), out, depth - 1)
        elif isinstance(m, mi.DictType):
            _paths(m.value_type, (*path, "k"), out, depth - 1)


SCHEMA_PATHS: list[tuple[FieldPath, mi.Type]] = []
_paths(mi.type_info(ChatCompletionRequest), (), SCHEMA_PATHS, 5)
SCHEMA_PATHS = SCHEMA_PATHS[1:]  # not the body itself


def _boundaries(t: mi.Type) -> list[Any]:
    """Values at and just past the declared bounds of a number or a string."""
    out: list[Any] = []
    for m in t.types if isinstance(t, mi.UnionType) else (t,):
        if isinstance(m, mi.IntType | mi.FloatType):
            for bound in (m.ge, m.le, m.gt, m.lt):
                if bound is not None:
                    out += [bound, bound - 1, bound + 1]
        elif isinstance(m, mi.StrType):
            out += ["", "x" * ((m.max_length or 64) + 1)]
        elif isinstance(m, mi.LiteralType):
            out += [*m.values, "not-" + str(m.values[0])]
    return out


def _nested(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = [value] if i % 2 else {"n": value}
    return value


# Hypothesis leans towards the first alternatives: the ones that reach deepest come first.
HOSTILE = st.one_of(
    st.sampled_from([300, 64, 65, 63, 900, 255, 100]).map(_nested),
    st.sampled_from(["NaN", "Infinity", "-inf", "sNaN", "1e999999999", "-1", "0x10", ""]),
    st.sampled_from([None, True, False, 0, -1, 2**31, 2**63 - 1, -(2**63), 1e308, -1e308,
                     0.5, [], {}, [None], {"": None}, "\u043f\u0440\u0438\u0432\u0435\u0442"]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=8),
    st.sampled_from([f"{RAW}NaN", f"{RAW}Infinity", f"{RAW}-Infinity", f"{RAW}1e999",
                     f"{RAW}-1e999", f"{RAW}18446744073709551616", f"{RAW}1e-999"]),
)


DECIMALS = st.sampled_from(["NaN", "Infinity", "-Infinity", "sNaN", "1e999999999", "1e-999999",
                            "-1", "0", "1.5", " 2 ", "1_000"])


def conforming(t: mi.Type) -> st.SearchStrategy[Any]:
    """Values the schema's type accepts at face value, extremes included: what passes msgspec
    and meets the code behind it."""
    if isinstance(t, mi.UnionType):  # strings first: decimals in strings reach the most code
        members = sorted(t.types, key=lambda m: not isinstance(m, mi.StrType))
        return st.one_of(*(conforming(m) for m in members))
    if isinstance(t, mi.AnyType):
        return HOSTILE
    if isinstance(t, mi.DictType):
        return st.dictionaries(st.text(max_size=4), conforming(t.value_type), max_size=3)
    if isinstance(t, mi.StrType):
        if t.pattern:
            return st.from_regex(t.pattern, fullmatch=True)
        return st.one_of(DECIMALS, st.text(min_size=t.min_length or 0, max_size=12))
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else -(2**63))
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else 2**63 - 1)
        return st.integers(min_value=low, max_value=high)
    if isinstance(t, mi.FloatType):
        return st.floats(min_value=t.ge if t.ge is not None else t.gt,
                         max_value=t.le if t.le is not None else t.lt,
                         exclude_min=t.ge is None and t.gt is not None,
                         exclude_max=t.le is None and t.lt is not None,
                         allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(list(t.values))
    if isinstance(t, mi.NoneType):
        return st.none()
    return HOSTILE  # a struct or a list: replaced whole by something hostile


@st.composite
def mutation(draw: st.DrawFn) -> tuple[FieldPath, Any]:
    path, declared = draw(st.sampled_from(SCHEMA_PATHS))
    bounds = _boundaries(declared)
    choices = [conforming(declared), HOSTILE]
    if bounds:
        choices.append(st.sampled_from(bounds))
    return path, draw(st.one_of(*choices))


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _set(body: dict[str, Any], path: FieldPath, value: Any) -> None:
    """Put `value` at `path`, making (or remaking) the containers on the way."""
    node: Any = body
    for here, nxt in itertools.pairwise(path):
        child = node.get(here) if isinstance(node, dict) else node[here]
        wants_list = isinstance(nxt, int)
        if not (isinstance(child, list) and child) if wants_list else not isinstance(child, dict):
            fresh = TEMPLATE.get(str(here)) if node is body else None
            if fresh is None or isinstance(fresh, list) != wants_list:
                fresh = [{}] if wants_list else {}
            child = node[here] = _copy(fresh)
        node = child
    node[path[-1]] = value


def _encode(body: dict[str, Any]) -> bytes:
    text = json.dumps(body, allow_nan=True)
    for token in ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "18446744073709551616",
                  "1e-999"):
        text = text.replace(json.dumps(RAW + token), token)
    return text.encode()


def _exists(body: Any, path: FieldPath) -> bool:
    node = body
    for key in path:
        found = (isinstance(node, list) and isinstance(key, int) and node) or \
            (isinstance(node, dict) and key in node)
        if not found:
            return False
        node = node[key]
    return isinstance(node, dict | list)


FULL: dict[str, Any] = {**BASE, **TEMPLATE}
# Leaves of the full valid body (and keys of its free-form objects) a mutation may replace
# while the rest stays valid.
SETTABLE = [(path, t) for path, t in SCHEMA_PATHS
            if _exists(FULL, path[:-1]) and path[0] not in ("model", "models", "prompt")]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["extremes", "hostile", "unknown"]))
    if kind == "extremes":  # values the schema accepts, at their extremes, in a valid body
        body = _copy(FULL)
        for path, declared in draw(st.lists(st.sampled_from(SETTABLE), min_size=1,
                                            max_size=4, unique_by=lambda p: p[0])):
            _set(body, path, draw(conforming(declared)))
    elif kind == "hostile":  # one wrong value anywhere the schema declares a field
        body = _copy(BASE)
        for name in draw(st.sets(st.sampled_from(sorted(TEMPLATE)))):
            body[name] = _copy(TEMPLATE[name])
        _set(body, *draw(mutation()))
    else:  # an unknown parameter, passed through as documented
        body = _copy(FULL)
        body[draw(st.sampled_from(["vendor_x", "extra", "x-y"]))] = draw(HOSTILE)
    return _encode(body)


def _check(resp: httpx.Response) -> None:
    if resp.status_code == 200:
        return
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "code", "param", "metadata"}, err
    assert err["code"] == resp.status_code
    assert resp.status_code < 500 or (resp.status_code == 503 and err["type"] == ROUTING_503), err
    assert resp.headers.get("connection") != "close"


@pytest.fixture
def catalog(tmp_path: Path, upstream: FakeOpenAI) -> Path:
    """The test catalog plus a demo model with every capability, so that valid bodies with
    tools, images or a json_schema are served (and reach the price filter)."""
    path = write_catalog(tmp_path, upstream.base_url)
    path.write_text(path.read_text() + ALL_CAPABILITIES, encoding="utf-8")
    return path


def run_property(url: str) -> int:
    answered: list[int] = []
    with httpx.Client(base_url=url, headers=AUTH, timeout=10,
                      limits=httpx.Limits(max_connections=1)) as http:

        @settings(max_examples=200, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(bodies())
        def prop(body: bytes) -> None:
            resp = http.post("/v1/chat/completions", content=body,
                             headers={"Content-Type": "application/json"})
            _check(resp)
            answered.append(resp.status_code)

        prop()
    return len(answered)


async def test_any_mutated_chat_body_is_answered_4xx_or_200_never_5xx(stack: Stack) -> None:
    # The server runs in this event loop; the synchronous property runs beside it.
    count = await asyncio.to_thread(run_property, stack.url)
    assert count >= 100  # the property ran (hypothesis may skip duplicates)
