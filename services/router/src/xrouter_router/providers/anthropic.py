"""Anthropic's Messages API: POST {base_url}/v1/messages with `x-api-key` auth, named SSE events.

Options ([providers.NAME] keys): `version` (the `anthropic-version` header, default
"2023-06-01"); `default_max_tokens` (sent when the request sets no max_tokens, which Anthropic
requires; default 4096). max_tokens, asked for or default, is capped by the deployment's
max_completion_tokens.

The request's `reasoning` becomes `thinking: {type: enabled, budget_tokens}` (the explicit
max_tokens, else the effort's share of max_tokens; max_tokens is raised past the budget when
needed, since Anthropic counts thinking in it), and then temperature and top_k are not sent
(Anthropic refuses them with thinking) nor a top_p under 0.95. A request that forces a tool call
gets no thinking (Anthropic allows only tool_choice auto or none with it). Thinking blocks come back as
reasoning with their signature (one block's), hidden when the request says `reasoning.exclude`;
an assistant turn's signed reasoning goes back as its thinking block (Anthropic requires the last
turn's with tool use), unsigned reasoning never goes back. `cache_control` on text parts
(OpenAI-style content parts, as OpenRouter takes them) is passed through, the system prompt's
included.

A `response_format` (json_schema or json_object) becomes a tool named after the schema that the
model is made to call (tool_choice `tool`, or `any` beside the client's own tools); its input
comes back as the answer's text (providers/forced_tool.py).
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamServerError,
)
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    ContentPart,
    Delta,
    Message,
    StreamBatch,
    TokenCounts,
    Tool,
    ToolCall,
)
from xrouter_router.providers import reasoning as reasoning_param
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.forced_tool import StreamedAnswer, as_answer, forced_tool, with_tool
from xrouter_router.providers.http import (
    Upstream,
    incomplete_stream,
    json_object,
    nested_object,
    read_events,
)
from xrouter_router.providers.http1 import HttpClient
from xrouter_router.providers.openai import tool_arguments
from xrouter_router.providers.sse import SSEEvent

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
_SYSTEM_ROLES = ("system", "developer")
_CHOICES = {"auto": "auto", "none": "none", "required": "any"}
ANY_TOOL = b'"required"'  # with tools of the client's own: some tool, the format's or theirs
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
           "max_tokens": "length", "model_context_window_exceeded": "length",
           "tool_use": "tool_calls", "refusal": "content_filter"}


class AnthropicProvider:
    """Speaks the Anthropic Messages wire format over a shared HTTP client."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str,
        session: HttpClient,
        headers: Mapping[str, str] | None = None,
        version: str = DEFAULT_VERSION,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self._name = name
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._headers = {"content-type": "application/json", "anthropic-version": version,
                         **(headers or {})}
        if api_key:
            self._headers["x-api-key"] = api_key
        self._http = Upstream(name, session, self._headers)
        self._default_max_tokens = default_max_tokens

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        return None

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        show = reasoning_param.shown(reasoning_param.requested(request.extra_json))
        forced = forced_tool(request, any_tool=ANY_TOOL)
        sent = request if forced is None else with_tool(request, forced)
        completion = await self._http.post_json(
            self._url, self.body(sent, deployment, stream=False),
            lambda data: parse_message(self._name, json_object(self._name, data),
                                       show_reasoning=show))
        return completion if forced is None else as_answer(completion, forced)

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        forced = forced_tool(request, any_tool=ANY_TOOL)
        sent = request if forced is None else with_tool(request, forced)
        answer = None if forced is None else StreamedAnswer(forced)
        async with self._http.open(self._url, self.body(sent, deployment, stream=True),
                                   content_types=("text/event-stream",)) as resp:
            show = reasoning_param.shown(reasoning_param.requested(request.extra_json))
            state = StreamState(self._name, show_reasoning=show)
            async for events in read_events(resp, self._name):
                batch = state.batch(events)
                if answer is not None:
                    batch = answer.batch(batch)
                if batch.deltas or batch.usage or batch.done:
                    yield batch
                if state.error is not None:
                    raise state.error
                if batch.done:
                    return
            if not state.finished:
                raise incomplete_stream(self._name)

    def body(self, request: ChatRequest, deployment: Deployment, *, stream: bool) -> bytes:
        return orjson.dumps(request_body(self._name, request, deployment,
                                         default_max_tokens=self._default_max_tokens,
                                         stream=stream))


# ---- request --------------------------------------------------------------------------------

def request_body(provider: str, request: ChatRequest, deployment: Deployment, *,
                 default_max_tokens: int, stream: bool) -> dict[str, Any]:
    """The Messages API body. Sampling Anthropic lacks (penalties, seed) is dropped."""
    system, messages = messages_json(provider, request.messages)
    s = request.sampling
    max_tokens = s.max_tokens if s.max_tokens is not None else default_max_tokens
    if deployment.max_completion_tokens > 0:
        max_tokens = min(max_tokens, deployment.max_completion_tokens)
    body: dict[str, Any] = {"model": deployment.upstream_model, "max_tokens": max_tokens}
    if system:
        body["system"] = system
    body["messages"] = messages
    choice = tool_choice_json(request.tool_choice_json) if request.tools else None
    # Anthropic refuses thinking with a forced tool: the forced call wins.
    forced = choice is not None and choice["type"] in ("any", "tool")
    _sampling(body, request, deployment.max_completion_tokens, may_think=not forced)
    if s.stop:
        body["stop_sequences"] = list(s.stop)
    if request.tools:
        body["tools"] = [tool_json(t) for t in request.tools]
        if choice is not None:
            body["tool_choice"] = choice
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if stream:
        body["stream"] = True
    return body


_THINKING_MIN_TOP_P = 0.95


def _sampling(body: dict[str, Any], request: ChatRequest, most: int, *, may_think: bool) -> None:
    """Thinking, when asked for (and `may_think`), and the sampling Anthropic allows with it."""
    s = request.sampling
    wanted = reasoning_param.requested(request.extra_json) if may_think else None
    thinking = wanted is not None and wanted.enabled
    if thinking and wanted is not None:
        body["max_tokens"], budget = thinking_budget(wanted, body["max_tokens"], most)
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif s.temperature is not None:
        body["temperature"] = min(max(s.temperature, 0.0), 1.0)  # OpenAI allows up to 2
    if s.top_p is not None and (not thinking or s.top_p >= _THINKING_MIN_TOP_P):
        body["top_p"] = s.top_p
    if s.top_k is not None and not thinking:
        body["top_k"] = s.top_k


def thinking_budget(wanted: reasoning_param.Reasoning, max_tokens: int,
                    most: int) -> tuple[int, int]:
    """(max_tokens, budget_tokens): the budget must stay under max_tokens, which includes it,
    so max_tokens grows by the budget when the answer would otherwise have no room (within the
    deployment's `most`, when set)."""
    budget = wanted.budget(max_tokens)
    if budget >= max_tokens:
        max_tokens = budget + max_tokens
        if most > 0:
            max_tokens = min(max_tokens, most)
        budget = min(budget, max_tokens - 1)
    return max_tokens, budget


def tool_json(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    # input_schema is required; a tool without parameters takes an empty object.
    out["input_schema"] = (orjson.Fragment(tool.parameters_json) if tool.parameters_json
                           else {"type": "object", "properties": {}})
    if tool.strict:
        out["strict"] = True
    if tool.cache_control_json:
        out["cache_control"] = orjson.Fragment(tool.cache_control_json)
    return out


def tool_choice_json(raw: bytes) -> dict[str, Any] | None:
    """OpenAI's tool_choice ("auto" | "none" | "required" | a named function) in Anthropic's terms."""
    if not raw:
        return None
    choice = orjson.loads(raw)
    if isinstance(choice, str):
        return {"type": _CHOICES[choice]} if choice in _CHOICES else None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    return None


def messages_json(provider: str, messages: tuple[Message, ...]
                  ) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """The hoisted system prompt (text blocks when a part of it carries cache_control) and the
    turns, consecutive same-role turns merged (tool results travel in user turns, so a tool
    result and the user's next words become one turn)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role in _SYSTEM_ROLES:
            system.extend(_system_blocks(m))
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(provider, m)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
            turn["content"] = content[0]["text"]
    if any("cache_control" in b for b in system):
        return system, turns
    return "\n\n".join(b["text"] for b in system), turns


def _system_blocks(m: Message) -> list[dict[str, Any]]:
    """One text block of the message's text; one per part when a part carries cache_control."""
    if any(p.raw_json for p in m.parts):
        blocks = [_part_block(p) for p in m.parts if p.type == "text" and p.text]
        return [b for b in blocks if b is not None]
    return [{"type": "text", "text": m.text()}] if m.text() else []


def _blocks(provider: str, m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        result = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.text()}
        cache = next((c for c in (cache_control(p.raw_json) for p in m.parts) if c is not None),
                     None)
        if cache is not None:
            result["cache_control"] = cache
        return [result]
    if m.role == "assistant":
        text = m.text()
        # A signed reasoning goes back as the thinking block it came from (with tool use,
        # Anthropic requires the last assistant turn's); unsigned reasoning never goes back.
        blocks: list[dict[str, Any]] = [
            {"type": "thinking", "thinking": m.reasoning, "signature": m.reasoning_signature}
        ] if m.reasoning and m.reasoning_signature else []
        blocks += [{"type": "text", "text": text}] if text else []
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name,
                    "input": tool_arguments(provider, c.arguments)} for c in m.tool_calls]
        return blocks
    if not m.parts:
        return [{"type": "text", "text": m.content or ""}]
    return [b for b in (_part_block(p) for p in m.parts) if b is not None]


def _part_block(part: ContentPart) -> dict[str, Any] | None:
    if part.type == "text":
        block: dict[str, Any] = {"type": "text", "text": part.text}
        cache = cache_control(part.raw_json)
        if cache is not None:
            block["cache_control"] = cache
        return block
    if part.type == "image_url":
        image = {"type": "image", "source": image_source(part.image_url)}
        cache = cache_control(part.raw_json)
        if cache is not None:
            image["cache_control"] = cache
        return image
    return None  # audio, files: nothing Anthropic's Messages API takes


def cache_control(raw_part: bytes) -> Any:
    """The `cache_control` of a part that carries its JSON (None: none)."""
    if b'"cache_control"' not in raw_part:
        return None
    part = orjson.loads(raw_part)
    return part.get("cache_control") if isinstance(part, dict) else None


def image_source(url: str) -> dict[str, str]:
    """A data: URL becomes a base64 source, anything else a url source."""
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    header, _, data = url[5:].partition(",")
    media_type = header.split(";")[0] or "image/png"
    if ";base64" not in header:
        data = base64.b64encode(urllib.parse.unquote_to_bytes(data)).decode()
    return {"type": "base64", "media_type": media_type, "data": data}


# ---- response -------------------------------------------------------------------------------

def finish_reason(stop_reason: Any) -> str:
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def parse_usage(raw: Mapping[str, Any]) -> TokenCounts:
    """Anthropic's input_tokens excludes cache reads and writes; OpenAI's prompt includes them."""
    cache_read = int(raw.get("cache_read_input_tokens") or 0)
    cache_write = int(raw.get("cache_creation_input_tokens") or 0)
    details = nested_object(raw.get("output_tokens_details") or {})
    return TokenCounts(
        prompt=int(raw.get("input_tokens") or 0) + cache_read + cache_write,
        completion=int(raw.get("output_tokens") or 0),
        cached=cache_read,
        cache_write=cache_write,
        reasoning=int(details.get("thinking_tokens") or 0),
    )


def parse_message(provider: str, data: dict[str, Any], *,
                  show_reasoning: bool = True) -> Completion:
    content = data.get("content")
    if not isinstance(content, list):
        raise UpstreamBadResponse(f"{provider} answered without content", provider=provider,
                                  raw=data)
    texts: list[str] = []
    thoughts: list[str] = []
    signatures: list[str] = []
    calls: list[ToolCall] = []
    for block in map(nested_object, content):
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "thinking":
            thoughts.append(block.get("thinking") or "")
            signatures.append(str(block.get("signature") or ""))
        elif block.get("type") == "tool_use":
            calls.append(ToolCall(len(calls), block["id"], block["name"],
                                  orjson.dumps(block.get("input") or {}).decode()))
    text = "".join(texts) if texts or not calls else None
    usage = parse_usage(data["usage"]) if isinstance(data.get("usage"), dict) else None
    reasoning = "".join(thoughts) if thoughts and show_reasoning else None
    # One thinking block's signature covers that block alone: several joined cannot be signed.
    signature = signatures[0] if reasoning is not None and len(signatures) == 1 else ""
    return Completion(Message(role="assistant", content=text, tool_calls=tuple(calls),
                              reasoning=reasoning, reasoning_signature=signature),
                      finish_reason(data.get("stop_reason")), usage)


def stream_error(provider: str, payload: dict[str, Any]) -> UpstreamError:
    """An `error` event after the 200: rate_limit_error is a rate limit; anything else,
    overloaded_error (HTTP 529 outside a stream) included, is the provider's failure."""
    err: dict[str, Any] = payload["error"] if isinstance(payload.get("error"), dict) else {}
    kind = str(err.get("type") or "error")
    cls = UpstreamRateLimited if kind == "rate_limit_error" else UpstreamServerError
    return cls(f"{provider} failed mid-stream: {kind}: {err.get('message') or ''}",
               provider=provider, raw=payload)


class StreamState:
    """Follows one stream's events: tool_use blocks are numbered by their position among tool
    calls (not the content block index), usage is reported once, on message_delta. An `error`
    event ends the batch and is kept in `error`, so the deltas before it are still delivered."""

    def __init__(self, provider: str, *, show_reasoning: bool = True) -> None:
        self._provider = provider
        self._show_reasoning = show_reasoning
        self._tools: dict[int, int] = {}
        self._usage: dict[str, Any] = {}
        self.finished = False
        self.error: UpstreamError | None = None

    def batch(self, events: list[SSEEvent]) -> StreamBatch:
        deltas: list[Delta] = []
        usage: TokenCounts | None = None
        for event in events:
            payload = json_object(self._provider, orjson.loads(event.data))
            kind = payload.get("type") or event.event
            delta: Delta | None = None
            if kind == "message_stop":
                return StreamBatch(tuple(deltas), usage, done=True)
            if kind == "error":
                self.error = stream_error(self._provider, payload)
                break
            if kind == "message_delta":
                delta, usage = self._message_delta(payload)
            elif kind == "message_start":
                self._usage.update(nested_object(payload.get("message")).get("usage") or {})
                delta = Delta(role="assistant")
            elif kind == "content_block_start":
                delta = self._block_start(payload)
            elif kind == "content_block_delta":
                delta = self._block_delta(payload)
            # ping, content_block_stop and event types added later carry nothing for us
            if delta is not None:
                deltas.append(delta)
        return StreamBatch(tuple(deltas), usage)

    def _message_delta(self, payload: dict[str, Any]) -> tuple[Delta, TokenCounts | None]:
        # message_delta's usage is cumulative: its figures replace message_start's.
        self._usage.update(payload.get("usage") or {})
        self.finished = True
        stop = nested_object(payload.get("delta") or {}).get("stop_reason")
        return Delta(finish_reason=finish_reason(stop)), (
            parse_usage(self._usage) if self._usage else None)

    def _block_start(self, payload: dict[str, Any]) -> Delta | None:
        block = nested_object(payload["content_block"])
        if block.get("type") == "tool_use":
            index = self._tools[payload["index"]] = len(self._tools)
            return Delta(tool_calls=(ToolCall(index, block["id"], block["name"], ""),))
        if block.get("type") == "text" and block.get("text"):
            return Delta(content=block["text"])
        return None

    def _block_delta(self, payload: dict[str, Any]) -> Delta | None:
        delta = nested_object(payload["delta"])
        kind = delta.get("type")
        if kind == "text_delta":
            return Delta(content=delta["text"])
        if kind == "input_json_delta" and delta.get("partial_json"):
            call = ToolCall(self._tools[payload["index"]], "", "", delta["partial_json"])
            return Delta(tool_calls=(call,))
        if kind == "thinking_delta" and self._show_reasoning and delta.get("thinking"):
            return Delta(reasoning=delta["thinking"])
        if kind == "signature_delta" and self._show_reasoning and delta.get("signature"):
            return Delta(reasoning_signature=str(delta["signature"]))
        return None


def build(config: ProviderConfig, session: HttpClient) -> AnthropicProvider:
    return AnthropicProvider(
        config.name, base_url=config.url(DEFAULT_BASE_URL), api_key=config.api_key,
        session=session, headers=config.headers,
        version=config.option("version", DEFAULT_VERSION, str),
        default_max_tokens=config.option("default_max_tokens", DEFAULT_MAX_TOKENS, int),
    )
