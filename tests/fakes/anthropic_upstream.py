"""A local stand-in for Anthropic's Messages API, written from the official SDK's types
(anthropic.types: Message, Usage, the Raw*Event stream events, ErrorResponse): `x-api-key` and
`anthropic-version` checked, the request validated as the API does (roles, max_tokens, non-empty
text blocks, tool_use/tool_result pairing), named SSE events with `ping`, and error bodies
{"type": "error", "error": {"type", "message"}, "request_id"}.

The requested `model` picks the behaviour: claude-fake-<scenario> for every scenario of
tests/fakes/harness.py, plus tools-2 (text then two tool_use blocks), 529, max-tokens, cached
(cache_read_input_tokens), midstream-overloaded and midstream-rate-limit (an `error` event after
some text). A request with `thinking: {type: enabled, budget_tokens}` (validated: at least 1024,
under max_tokens, no temperature or top_k) is answered with a thinking block first (THOUGHT;
streamed as thinking_delta then signature_delta), and the last assistant turn that used tools
must then start with that block, signature intact; `cache_control` is validated (ephemeral, at
most four breakpoints). A tool_choice of `tool` or `any` is answered with one tool_use block of
that tool (the first for `any`) and no text, with TOOL_INPUT (harness.NON_CONFORMING for the
scenario json-bad), as the API does when it forces a tool. It runs on its own thread and loop;
what it saw is kept in `requests`/`headers`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.harness import NON_CONFORMING, FakeHarness
from tests.fakes.server import FakeUpstream, garbage, json_response
from xrouter_router.providers.config import ProviderConfig

API_KEY = "sk-ant-fake-upstream-key"
VERSION = "2023-06-01"
REQUEST_ID = "req_011CFakeUpstreamRequest"
TOOL_INPUT = {"city": "Moscow", "unit": "celsius"}
PREFIX = "claude-fake-"
THOUGHT = "The user wants an echo. I will echo."
THOUGHT_SIGNATURE = "EqQBCkYIARgCFakeSignature"
MAX_BREAKPOINTS = 4


class Invalid(Exception):
    """The request breaks a rule of the Messages API: a 400 invalid_request_error."""


def _error(status: int, type_: str, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": type_, "message": message},
            "request_id": REQUEST_ID}
    return json_response(status, body, headers={"request-id": REQUEST_ID})


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message["role"] == "user":
            return _text_of(message["content"])
    return ""


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _check_blocks(i: int, blocks: list[dict[str, Any]]) -> None:
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text" and not block.get("text"):
            raise Invalid("messages: text content blocks must be non-empty")
        if kind == "tool_use" and not isinstance(block.get("input"), dict):
            raise Invalid(f"messages.{i}.content.{j}.tool_use.input: Input should be a valid "
                          "dictionary")


def _check_thinking_turns(body: dict[str, Any]) -> None:
    """With thinking enabled, the last assistant turn that used tools must start with the
    thinking block it was answered with, its signature intact (the API's rule for tool use)."""
    if (body.get("thinking") or {}).get("type") != "enabled":
        return
    turns = [(i, _blocks(m.get("content"))) for i, m in enumerate(body["messages"])
             if m.get("role") == "assistant"]
    if not turns or not any(b.get("type") == "tool_use" for b in turns[-1][1]):
        return
    i, blocks = turns[-1]
    first = blocks[0]
    if first.get("type") not in ("thinking", "redacted_thinking"):
        raise Invalid(f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, "
                      f"but found `{first.get('type')}`. When `thinking` is enabled, a final "
                      "`assistant` message must start with a thinking block (preceeding the "
                      "lastmost set of `tool_use` and `tool_result` blocks). We recommend you "
                      "include thinking blocks from previous turns. To avoid this requirement, "
                      "disable `thinking`.")
    if first.get("signature") != THOUGHT_SIGNATURE or first.get("thinking") != THOUGHT:
        raise Invalid(f"messages.{i}.content.0: Invalid `signature` in `thinking` block")


def _check_tool_pairs(i: int, blocks: list[dict[str, Any]], previous: list[dict[str, Any]]) -> None:
    used = [b["id"] for b in previous if b.get("type") == "tool_use"]
    results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
    for j, block in enumerate(blocks):
        if block.get("type") == "tool_result" and block.get("tool_use_id") not in used:
            raise Invalid(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                          f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                          "block must have a corresponding `tool_use` block in the previous message.")
    missing = [u for u in used if u not in results]
    if missing:
        raise Invalid(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                      f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                      "corresponding `tool_result` block in the next message.")


def _check_thinking(body: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None or thinking == {"type": "disabled"}:
        return
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if thinking.get("type") != "enabled" or not isinstance(budget, int):
        raise Invalid("thinking.enabled.budget_tokens: Field required")
    if budget < 1024:
        raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal "
                      "to 1024")
    if budget >= body["max_tokens"]:
        raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    if "temperature" in body or "top_k" in body:
        raise Invalid("`temperature` and `top_k` may not be set when thinking is enabled")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")


def _breakpoints(value: Any) -> list[Any]:
    """Every cache_control in the request (blocks of system, messages and tools)."""
    if isinstance(value, list):
        return [c for item in value for c in _breakpoints(item)]
    if isinstance(value, dict):
        own = [value["cache_control"]] if "cache_control" in value else []
        return own + [c for k, v in value.items() if k != "cache_control" for c in _breakpoints(v)]
    return []


def _check_cache_control(body: dict[str, Any]) -> None:
    found = _breakpoints([body.get("system"), body.get("messages"), body.get("tools")])
    if len(found) > MAX_BREAKPOINTS:
        raise Invalid(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be "
                      f"provided. Found {len(found)}.")
    for c in found:
        if not isinstance(c, dict) or c.get("type") != "ephemeral":
            raise Invalid("cache_control.type: Input should be 'ephemeral'")


def validate(body: dict[str, Any]) -> None:
    """The subset of the Messages API's request validation our adapter could get wrong."""
    if not isinstance(body.get("max_tokens"), int):
        raise Invalid("max_tokens: Field required")
    _check_thinking(body)
    _check_cache_control(body)
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise Invalid("messages: Field required")
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise Invalid("temperature: Input should be less than or equal to 1")
    for i, tool in enumerate(body.get("tools") or ()):
        if "input_schema" not in tool:
            raise Invalid(f"tools.{i}.custom.input_schema: Field required")
    previous: list[dict[str, Any]] = []
    for i, message in enumerate(body["messages"]):
        if message.get("role") not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if not isinstance(message.get("content"), str | list):
            raise Invalid(f"messages.{i}.content: Input should be a valid list")
        blocks = _blocks(message.get("content"))
        _check_blocks(i, blocks)
        if message["role"] == "user":
            _check_tool_pairs(i, blocks, previous)
        previous = blocks if message["role"] == "assistant" else []
    if any(b.get("type") == "tool_use" for b in previous):
        _check_tool_pairs(len(body["messages"]), [], previous)
    _check_thinking_turns(body)


class FakeAnthropic(FakeUpstream):
    name = "fake-anthropic"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)

    # ---- the endpoint ----------------------------------------------------------------------
    async def _messages(self, request: web.Request) -> web.StreamResponse:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if request.headers.get("x-api-key") != API_KEY:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "invalid_request_error", "There was an error parsing the body of "
                          "your request")
        self.requests.append(body)
        try:
            validate(body)
        except Invalid as exc:
            return _error(400, "invalid_request_error", str(exc))
        scenario = str(body.get("model", "")).removeprefix(PREFIX)
        failure = await self._failure(scenario)
        if failure is not None:
            return failure
        if body.get("stream"):
            return await self._stream(request, body, scenario)
        return json_response(200, self._message(body, scenario), headers={"request-id": REQUEST_ID})

    async def _failure(self, scenario: str) -> web.Response | None:
        if scenario == "500":
            return _error(500, "api_error", "Internal server error")
        if scenario == "529":
            return _error(529, "overloaded_error", "Overloaded")
        if scenario == "429":
            resp = _error(429, "rate_limit_error", "This request would exceed the rate limit for "
                          "your organization of 50 requests per minute.")
            resp.headers["retry-after"] = "7"
            return resp
        if scenario == "garbage":
            return garbage()
        if scenario == "slow":
            await asyncio.sleep(self.slow_seconds)
        return None

    # ---- answers ---------------------------------------------------------------------------
    def _content(self, body: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
        if (body.get("thinking") or {}).get("type") == "enabled":
            return [{"type": "thinking", "thinking": THOUGHT, "signature": THOUGHT_SIGNATURE},
                    *self._answer(body, scenario)]
        return self._answer(body, scenario)

    def _answer(self, body: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
        choice = body.get("tool_choice") or {}
        if choice.get("type") in ("tool", "any"):  # forced: a tool_use block and nothing else
            name = choice.get("name") or body["tools"][0]["name"]
            return [{"type": "tool_use", "id": "toolu_01FakeForced", "name": name,
                     "input": NON_CONFORMING if scenario == "json-bad" else TOOL_INPUT}]
        if scenario in ("tools", "tools-2"):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": "Let me check."}]
            for n, tool in enumerate(body["tools"][:2 if scenario == "tools-2" else 1]):
                blocks.append({"type": "tool_use", "id": f"toolu_01FakeToolUse{n}",
                               "name": tool["name"], "input": TOOL_INPUT})
            return blocks
        return [{"type": "text", "text": "echo: " + _last_user_text(body)}]

    def _usage(self, body: dict[str, Any], output: int, scenario: str) -> dict[str, Any]:
        size = len(orjson.dumps(body.get("messages"))) + len(str(body.get("system", "")))
        cached = 1200 if scenario == "cached" else 0
        return {"input_tokens": size // 4 + 3, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cached, "output_tokens": output,
                "service_tier": "standard"}

    def _stop_reason(self, body: dict[str, Any], scenario: str) -> str:
        if scenario in ("tools", "tools-2") or (body.get("tool_choice") or {}).get("type") in (
                "tool", "any"):
            return "tool_use"
        return "max_tokens" if scenario == "max-tokens" else "end_turn"

    def _message(self, body: dict[str, Any], scenario: str) -> dict[str, Any]:
        content = self._content(body, scenario)
        return {"id": "msg_01FakeMessage", "type": "message", "role": "assistant",
                "model": body["model"], "content": content,
                "stop_reason": self._stop_reason(body, scenario), "stop_sequence": None,
                "usage": self._usage(body, 7 * len(content), scenario)}

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      scenario: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", "request-id": REQUEST_ID})
        await resp.prepare(request)
        try:
            await self._events(request, resp, body, scenario)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects.append(scenario)
            raise
        return resp

    async def _events(self, request: web.Request, resp: web.StreamResponse, body: dict[str, Any],
                      scenario: str) -> None:
        usage = self._usage(body, 1, scenario)
        start: dict[str, Any] = {"id": "msg_01FakeMessage", "type": "message", "role": "assistant",
                                 "model": body["model"], "content": [], "stop_reason": None,
                                 "stop_sequence": None}
        if scenario != "no-usage":
            start["usage"] = usage
        await resp.write(_event("message_start", {"type": "message_start", "message": start}))
        output = 0
        for index, block in enumerate(self._content(body, scenario)):
            output += await self._block(request, resp, index, block, scenario)
            if scenario in ("cut", "midstream-overloaded", "midstream-rate-limit"):
                return
        end: dict[str, Any] = {"type": "message_delta", "delta": {
            "stop_reason": self._stop_reason(body, scenario), "stop_sequence": None}}
        if scenario == "cached":
            end["usage"] = {**usage, "output_tokens": output}
            del end["usage"]["service_tier"]
        elif scenario != "no-usage":
            end["usage"] = {"output_tokens": output}
        await resp.write(_event("message_delta", end))
        await resp.write(_event("message_stop", {"type": "message_stop"}))

    async def _block(self, request: web.Request, resp: web.StreamResponse, index: int,
                     block: dict[str, Any], scenario: str) -> int:
        """Streams one content block; returns the output tokens it cost."""
        if block["type"] == "thinking":
            return await self._thinking_block(resp, index, block)
        opening = ({"type": "text", "text": ""} if block["type"] == "text"
                   else {**block, "input": {}})
        await resp.write(_event("content_block_start", {"type": "content_block_start",
                                                        "index": index, "content_block": opening}))
        await resp.write(_event("ping", {"type": "ping"}))
        if block["type"] == "text":
            pieces = self._pieces(block["text"])
            kind, key = "text_delta", "text"
        else:
            args = orjson.dumps(block["input"]).decode()
            pieces = ["", args[:9], args[9:20], args[20:]]
            kind, key = "input_json_delta", "partial_json"
        if scenario == "drip":
            pieces = [f" t{i}" for i in range(10_000)]
        for n, piece in enumerate(pieces):
            if scenario == "drip":
                await asyncio.sleep(self.drip_interval)
            await resp.write(_event("content_block_delta", {"type": "content_block_delta",
                                                            "index": index,
                                                            "delta": {"type": kind, key: piece}}))
            if n == 1 and await self._break_off(request, resp, scenario):
                return len(pieces)
        await resp.write(_event("content_block_stop", {"type": "content_block_stop",
                                                       "index": index}))
        return len(pieces)

    async def _thinking_block(self, resp: web.StreamResponse, index: int,
                              block: dict[str, Any]) -> int:
        await resp.write(_event("content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {"type": "thinking", "thinking": ""}}))
        pieces = self._pieces(block["thinking"])
        for piece in pieces:
            await resp.write(_event("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "thinking_delta", "thinking": piece}}))
        await resp.write(_event("content_block_delta", {
            "type": "content_block_delta", "index": index,
            "delta": {"type": "signature_delta", "signature": block["signature"]}}))
        await resp.write(_event("content_block_stop", {"type": "content_block_stop",
                                                       "index": index}))
        return len(pieces)

    async def _break_off(self, request: web.Request, resp: web.StreamResponse,
                         scenario: str) -> bool:
        if scenario == "cut":
            request.transport.close()  # type: ignore[union-attr]
            return True
        if scenario in ("midstream-overloaded", "midstream-rate-limit"):
            kind, message = (("overloaded_error", "Overloaded") if scenario.endswith("overloaded")
                             else ("rate_limit_error", "Rate limited"))
            await resp.write(_event("error", {"type": "error",
                                              "error": {"type": kind, "message": message}}))
            return True
        return False

    @staticmethod
    def _pieces(text: str) -> list[str]:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


class _Harness(FakeHarness[FakeAnthropic]):
    type = "anthropic"
    retry_after = True

    def config(self, *, wrong_key: bool = False) -> ProviderConfig:
        return ProviderConfig("fake-anthropic", "anthropic", self.fake.base_url,
                              "sk-ant-wrong" if wrong_key else API_KEY)

    def upstream_model(self, scenario: str) -> str:
        return PREFIX + scenario


def harness() -> _Harness:
    return _Harness(FakeAnthropic())
