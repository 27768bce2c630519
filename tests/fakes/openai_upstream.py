"""A local stand-in for an OpenAI-compatible upstream, speaking the wire format of the OpenAI
API reference: Bearer auth, `chat.completion` bodies, `chat.completion.chunk` SSE events with the
usage chunk (`choices: []`) before `data: [DONE]`, and OpenAI's error bodies.

The requested `model` picks the behaviour, so one server serves every scenario:
  fake-echo (any unknown name) | fake-tools | fake-500 | fake-429 | fake-400 | fake-401-always
  fake-slow | fake-delay | fake-garbage | fake-cut | fake-drip | fake-drip-short | fake-no-usage
  fake-chunks-22 | fake-json-stream | fake-openrouter (comment lines, a `choices: null` chunk)
  fake-stream-error (an OpenRouter-style error object after two chunks)
  fake-buckets (usage with cache reads, cache writes and reasoning) | fake-negative (usage with
  negative completion tokens) | fake-reasoning (20 streamed `reasoning` deltas, then the echo,
  no usage) | fake-drip-reasoning (endless `reasoning` deltas) |
  fake-leak-400 | fake-leak-500 (a long error body quoting credentials: LEAKED_SECRETS) |
  fake-deepseek-reasoner (DeepSeek's `reasoning_content`: THOUGHT in the whole message, and as
  two deltas before the answer in a stream) |
  fake-json | fake-json-bad (asked for a response_format: TOOL_ARGS, or harness.NON_CONFORMING,
  in two pieces when streamed) | fake-echo-split (the echo streamed 4 characters a delta, so
  that a word, or a placeholder, is cut across deltas) | fake-hold (the echo; with `holding`
  "first" it sets `held` and waits for release() before answering at all, with "finish" before
  a stream's finish chunk)
A `reasoning_effort` outside OpenAI's values is refused with 400, as OpenAI does.
It runs on its own thread and event loop so tests in any loop, and services in other processes,
can use it; what it saw is kept in `requests` and `disconnects`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import ClientConnectionError, web

from tests.fakes.harness import NON_CONFORMING, FakeHarness
from tests.fakes.server import FakeUpstream, garbage, json_response
from xrouter_router.providers.config import ProviderConfig

API_KEY = "sk-fake-upstream-key"
THOUGHT = "Thinking it over."
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
TOOL_ARGS = '{"city": "Moscow", "unit": "celsius"}'
# What a careless upstream echoes back in an error body; the router must not pass any of it on.
LEAKED_SECRETS = (API_KEY, "sk-wrong", "Bearer eyJhbGciOiJIUzI1NiJ9.leaked", "sk-ant-api03-LeakedKey123",
                  "Api-Key AQVNleakedyandexkey", "Basic dXNlcjpwYXNzd29yZA==", "key=AIzaLeakedQueryKey")


def _error(status: int, message: str, type_: str, code: str | None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return json_response(status, body)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if p.get("type") == "text")
            return str(content or "")
    return ""


class FakeOpenAI(FakeUpstream):
    name = "fake-openai"
    # fake-hold: whether it holds, set (from any thread) when a request is held, and what
    # release() sets (in the fake's loop) to let the held ones go on.
    holding = ""
    held: threading.Event
    _release: asyncio.Event | None = None

    def start(self) -> FakeOpenAI:
        self.held = threading.Event()
        super().start()
        return self

    def release(self) -> None:
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def stop(self) -> None:
        self.release()
        super().stop()

    async def _hold(self, model: str, where: str) -> None:
        if model == "fake-hold" and self.holding == where:
            if self._release is None:
                self._release = asyncio.Event()
            self.held.set()
            await self._release.wait()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)

    def models_called(self) -> list[str]:
        return [r.get("model", "") for r in self.requests]

    # ---- the endpoint ----------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error",
                          "invalid_api_key")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.",
                          "invalid_request_error", None)
        self.requests.append(body)
        model = str(body.get("model", ""))
        if "reasoning_effort" in body and body["reasoning_effort"] not in EFFORTS:
            return _error(400, "Invalid value for 'reasoning_effort'.", "invalid_request_error",
                          "invalid_value")
        if model == "fake-500":
            return _error(500, "The server had an error while processing your request.",
                          "server_error", None)
        if model == "fake-429":
            resp = _error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded")
            resp.headers["Retry-After"] = "7"
            return resp
        if model == "fake-400":
            return _error(400, "This model's maximum context length is 8192 tokens.",
                          "invalid_request_error", "context_length_exceeded")
        if model.startswith("fake-leak-"):
            return _error(int(model.rsplit("-", 1)[1]),
                          f"Request failed for {' and '.join(LEAKED_SECRETS)}. " + "x" * 5000,
                          "invalid_request_error", None)
        if model == "fake-garbage":
            return garbage()
        if model == "fake-slow":
            await asyncio.sleep(self.slow_seconds)
        if model == "fake-delay":
            await asyncio.sleep(0.05)
        await self._hold(model, "first")
        if body.get("stream"):
            return await self._stream(request, body, model)
        return json_response(200, self._completion(body, model))

    async def _embeddings(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error",
                          "invalid_api_key")
        body = orjson.loads(await request.read())
        self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if body.get("model") == "fake-500":
            return _error(500, "The server had an error while processing your request.",
                          "server_error", None)
        dims = int(body.get("dimensions") or 4)
        # A deterministic vector per input: its length, then its first characters' codes.
        data = [{"object": "embedding", "index": i,
                 "embedding": [float(len(text))] + [float(ord(c)) for c in text[: dims - 1]]
                 + [0.0] * max(0, dims - 1 - len(text))}
                for i, text in enumerate(inputs)]
        tokens = sum(len(t) // 4 + 1 for t in inputs)
        return json_response(200, {
            "object": "list", "data": list(reversed(data)), "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _answer(self, body: dict[str, Any], model: str) -> tuple[list[str], list[dict[str, Any]]]:
        if model == "fake-tools":
            return [], [{"id": "call_abc123", "type": "function",
                         "function": {"name": body["tools"][0]["function"]["name"],
                                      "arguments": TOOL_ARGS}}]
        if model == "fake-chunks-22":
            return [f"w{i} " for i in range(22)], []
        if model in ("fake-json", "fake-json-bad") and body.get("response_format"):
            text = TOOL_ARGS if model == "fake-json" else orjson.dumps(NON_CONFORMING).decode()
            return [text[:9], text[9:]], []
        text = "echo: " + _last_user_text(body)
        if model == "fake-echo-split":
            return [text[i:i + 4] for i in range(0, len(text), 4)], []
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)], []

    def _usage(self, body: dict[str, Any], completion: int) -> dict[str, Any]:
        prompt = sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4 + 3
        if body.get("model") == "fake-negative":
            completion = -50
        buckets = body.get("model") == "fake-buckets"
        # OpenRouter's usage: cache reads and writes inside prompt_tokens, reasoning inside
        # completion_tokens.
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 2 if buckets else 0,
                                          **({"cache_write_tokens": 1} if buckets else {})},
                "completion_tokens_details": {"reasoning_tokens": 2 if buckets else 0}}

    def _completion(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        pieces, calls = self._answer(body, model)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces) or None}
        if calls:
            message["tool_calls"] = calls
        if model == "fake-deepseek-reasoner":
            message["reasoning_content"] = THOUGHT
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": self._usage(body, len(pieces) or 9),
        }

    async def _drip(self, send: Callable[[list[dict[str, Any]]], Awaitable[None]],
                    model: str) -> None:
        """The deltas the drip and reasoning scenarios send before the answer."""
        if model in ("fake-reasoning", "fake-drip-reasoning"):
            for i in range(20 if model == "fake-reasoning" else 10_000):
                if model == "fake-drip-reasoning":
                    await asyncio.sleep(self.drip_interval)
                await send([{"index": 0, "delta": {"content": None, "reasoning": f" r{i}"},
                             "logprobs": None, "finish_reason": None}])
        if model == "fake-deepseek-reasoner":
            for piece in (THOUGHT[:8], THOUGHT[8:]):
                await send([{"index": 0, "delta": {"content": None, "reasoning_content": piece},
                             "logprobs": None, "finish_reason": None}])
        if model in ("fake-drip", "fake-drip-short"):
            for i in range(20 if model == "fake-drip-short" else 10_000):
                await asyncio.sleep(self.drip_interval)
                await send([{"index": 0, "delta": {"content": f" t{i}"}, "logprobs": None,
                             "finish_reason": None}])

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      model: str) -> web.StreamResponse:
        if model == "fake-json-stream":
            return json_response(200, self._completion(body, model))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        head = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model, "system_fingerprint": "fp_fake"}

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            await resp.write(b"data: " + orjson.dumps({**head, "choices": choices, **extra})
                             + b"\n\n")

        pieces, calls = self._answer(body, model)
        try:
            if model == "fake-openrouter":
                await resp.write(b": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n")
                await resp.write(b"data: " + orjson.dumps({**head, "choices": None}) + b"\n\n")
            await send([{"index": 0, "delta": {"role": "assistant", "content": ""},
                         "logprobs": None, "finish_reason": None}])
            await self._drip(send, model)
            for i, piece in enumerate(pieces):
                await send([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                             "finish_reason": None}])
                if model == "fake-cut" and i == 1:
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
                if model == "fake-stream-error" and i == 1:
                    await resp.write(b"data: " + orjson.dumps({**head, "error": {
                        "code": 502, "message": "Upstream overloaded"}}) + b"\n\n")
                    await resp.write(b"data: [DONE]\n\n")
                    return resp
            for i, call in enumerate(calls):
                args = call["function"]["arguments"]
                half = len(args) // 2
                await send([{"index": 0, "delta": {"tool_calls": [{
                    "index": i, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": args[:half]}}]},
                    "logprobs": None, "finish_reason": None}])
                await send([{"index": 0, "delta": {"tool_calls": [{
                    "index": i, "function": {"arguments": args[half:]}}]},
                    "logprobs": None, "finish_reason": None}])
            await self._hold(model, "finish")
            await send([{"index": 0, "delta": {}, "logprobs": None,
                         "finish_reason": "tool_calls" if calls else "stop"}])
            include = (body.get("stream_options") or {}).get("include_usage")
            if include and model not in ("fake-no-usage", "fake-reasoning"):
                await send([], usage=self._usage(body, len(pieces) or 9))
            await resp.write(b"data: [DONE]\n\n")
        except (ConnectionError, ClientConnectionError, asyncio.CancelledError):
            self.disconnects.append(model)
            raise
        return resp


class _Harness(FakeHarness[FakeOpenAI]):
    type = "openai"
    retry_after = True

    def config(self, *, wrong_key: bool = False) -> ProviderConfig:
        return ProviderConfig("fake-openai", "openai", self.fake.base_url,
                              "sk-wrong" if wrong_key else API_KEY)

    def upstream_model(self, scenario: str) -> str:
        return f"fake-{scenario}"


def harness() -> _Harness:
    return _Harness(FakeOpenAI())
