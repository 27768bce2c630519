"""The built-in demo model: deterministic answers, streamed word by word, no account needed.

It lets `make run` answer out of the box, shows a new user the whole surface without a provider
account, and gives tests a provider with known output:
- given tools, it calls the first one (or the one `tool_choice` names) with arguments built from
  its JSON schema; given the tool's output, it answers with it;
- asked for reasoning (`reasoning` with an effort other than "none", or a budget), it reasons
  briefly before the answer (hidden when `reasoning.exclude`);
- asked for a `json_schema` (or `json_object`) response format, it answers with a conforming
  object.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from xrouter_router.domain import accounting
from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    Delta,
    Message,
    StreamBatch,
    TokenCounts,
    Tool,
    ToolCall,
)
from xrouter_router.providers.config import ProviderConfig

_QUOTE_LIMIT = 200
_DEPTH_LIMIT = 8


def _said(request: ChatRequest) -> str:
    said = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
    said = " ".join(said.split())
    return said[:_QUOTE_LIMIT] + "..." if len(said) > _QUOTE_LIMIT else said


def reply_words(request: ChatRequest) -> list[str]:
    """The demo's plain answer, as words: a greeting that quotes the last user message."""
    return f"Hello from the XRouter demo model! You said: \u00ab{_said(request)}\u00bb".split(" ")


def example(schema: Any, depth: int = 0, root: Any = None) -> Any:
    """A value that conforms to a JSON schema's common subset (type, enum, const, properties,
    items, anyOf/oneOf, local $refs as pydantic writes them): what the demo puts in tool
    arguments and structured answers (which the router checks against the schema)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > _DEPTH_LIMIT:
        return None
    if isinstance(schema.get("$ref"), str):
        return example(_local(root, schema["$ref"]), depth + 1, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example(schema[key][0], depth + 1, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: example(sub, depth + 1, root) for name, sub in props.items()}
    if kind == "array":
        item = example(schema.get("items", {}), depth + 1, root)
        return [item] * max(1, int(schema.get("minItems", 1)))
    return {"string": "demo", "integer": 1, "number": 1, "boolean": True}.get(str(kind))


def _local(root: Any, ref: str) -> Any:
    """The part of the schema a `#/...` reference points at (None for any other reference)."""
    if not ref.startswith("#/"):
        return None
    target = root
    for name in ref[2:].split("/"):
        target = target.get(name) if isinstance(target, dict) else None
    return target


def _options(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool_to_call(request: ChatRequest) -> Tool | None:
    """The tool the demo calls now: none once the conversation holds a tool's output."""
    if not request.tools or (request.messages and request.messages[-1].role == "tool"):
        return None
    choice = orjson.loads(request.tool_choice_json) if request.tool_choice_json else "auto"
    if choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        return next((t for t in request.tools if t.name == name), request.tools[0])
    return request.tools[0]


def _tool_answer(request: ChatRequest) -> str | None:
    """After a tool ran: what the demo says with its output."""
    last = request.messages[-1] if request.messages else None
    if last is None or last.role != "tool":
        return None
    name = next((c.name for m in request.messages for c in m.tool_calls
                 if c.id == last.tool_call_id), "the tool")
    return f"The tool {name} answered: {last.text()}"


def _structured(request: ChatRequest) -> str | None:
    fmt = _options(request.response_format_json)
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema", {})
        return orjson.dumps(example(schema)).decode()
    if fmt.get("type") == "json_object":
        return orjson.dumps({"answer": " ".join(reply_words(request))}).decode()
    return None


def _reasoning(request: ChatRequest) -> tuple[list[str], bool]:
    """(the reasoning's words, whether the client sees them)."""
    wanted = _options(request.extra_json).get("reasoning")
    if not isinstance(wanted, dict) or wanted.get("effort") == "none" or wanted == {}:
        return [], False
    text = f"The user said \u00ab{_said(request)}\u00bb. I will answer in kind."
    return text.split(" "), not wanted.get("exclude", False)


@dataclass(frozen=True, slots=True)
class _Answer:
    words: list[str]
    reasoning: list[str]
    show_reasoning: bool
    call: ToolCall | None
    finish: str
    usage: TokenCounts


class DemoProvider:
    def __init__(self, name: str, *, word_delay: float = 0.02) -> None:
        self._name = name
        self._delay = word_delay

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        return None

    def _plan(self, request: ChatRequest) -> _Answer:
        reasoning, shown = _reasoning(request)
        tool = _tool_to_call(request)
        call = None
        words: list[str] = []
        finish = "stop"
        if tool is not None:
            arguments = orjson.dumps(example(_options(tool.parameters_json))).decode()
            call = ToolCall(0, f"call_{request.generation_id.removeprefix('gen-')[:24]}",
                            tool.name, arguments)
            finish = "tool_calls"
        else:
            text = _tool_answer(request) or _structured(request)
            words = text.split(" ") if text is not None else reply_words(request)
            limit = request.sampling.max_tokens
            if limit is not None and len(words) > limit:
                words, finish = words[:limit], "length"
        completion = len(words) + len((call.arguments if call else "").split()) + len(reasoning)
        # The demo's "tokenizer" counts words, as its answer is counted.
        prompt = sum(accounting.MESSAGE_OVERHEAD + len(m.text().split()) for m in request.messages)
        usage = TokenCounts(prompt=prompt, completion=completion, reasoning=len(reasoning))
        return _Answer(words, reasoning, shown, call, finish, usage)

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        a = self._plan(request)
        message = Message(role="assistant", content=" ".join(a.words) if a.call is None else None,
                          tool_calls=(a.call,) if a.call else (),
                          reasoning=" ".join(a.reasoning) if a.show_reasoning else None)
        return Completion(message, a.finish, a.usage)

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        a = self._plan(request)
        first = True
        if a.show_reasoning:
            for i, word in enumerate(a.reasoning):
                if not first:
                    await asyncio.sleep(self._delay)
                yield StreamBatch((Delta(role="assistant" if first else "",
                                         reasoning=word if i == 0 else " " + word),))
                first = False
        for i, word in enumerate(a.words):
            if not first:
                await asyncio.sleep(self._delay)
            yield StreamBatch((Delta(role="assistant" if first else "",
                                     content=word if i == 0 else " " + word),))
            first = False
        if a.call is not None:
            yield StreamBatch((Delta(role="assistant" if first else "", tool_calls=(a.call,)),))
        yield StreamBatch((Delta(finish_reason=a.finish),), a.usage, done=True)


def build(config: ProviderConfig, session: object) -> DemoProvider:
    return DemoProvider(config.name, word_delay=float(config.option("word_delay", 0.02, (int, float))))
