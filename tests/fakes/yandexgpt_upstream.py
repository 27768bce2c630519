"""A local stand-in for Yandex Foundation Models (llm.api.cloud.yandex.net), speaking the REST
wire format of its API reference: POST /foundationModels/v1/completion answered with
`{"result": CompletionResponse}` (streamed: one such object per line, each holding the whole text
so far, status ALTERNATIVE_STATUS_PARTIAL until a final one), POST /foundationModels/v1/
textEmbedding, `Api-Key` or `Bearer` (IAM) auth plus `x-folder-id`, int64 counts as strings, and
grpc-gateway error bodies `{"error": {"grpcCode", "httpCode", "message", "httpStatus", "details"}}`.

The model in modelUri `gpt://<folder>/yandexgpt-<scenario>[/<version>]` picks the behaviour:
  echo (any unknown) | tools | 500 | 429 | slow | garbage | cut | no-usage | drip   (the harness)
  cyrillic (cumulative Russian text, each line written in two halves cut inside a character)
  burst (the whole echo stream in one write) | unterminated (no newline after the last line)
  length | filter (final statuses)
  midstream-429 (a partial line, then grpc-gateway's in-stream error object)
Embedding models `emb://<folder>/<name>[/<version>]`: a name ending in -429 is rate limited.
`reasoningOptions.mode` ENABLED_HIDDEN adds 5 hidden reasoning tokens to the usage. A request
with `jsonSchema` or `jsonObject` (checked: one of them, shaped as the reference says) is
answered with TOOL_ARGUMENTS as JSON text (harness.NON_CONFORMING for yandexgpt-json-bad).
POST /v1/chat/completions is AI Studio's OpenAI-compatible endpoint (folder in `OpenAI-Project`
or `x-folder-id`, `model` a gpt:// URI): the echo, whole or as an SSE stream, with usage.
It runs on its own thread and event loop; what it saw is kept in `requests`, `headers`,
`model_uris`, `embedded` and `disconnects`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.harness import NON_CONFORMING, TOOL_ARGUMENTS, FakeHarness
from tests.fakes.server import FakeUpstream, garbage, json_response
from xrouter_router.providers.config import ProviderConfig

FOLDER = "b1gfakefolder"
API_KEY = "AQVN-fake-api-key"
IAM_TOKEN = "t1.fake-iam-token"
MODEL_VERSION = "23.10.2024"
CYRILLIC = ("Привет", "Привет, мир!", "Привет, мир! Всё хорошо.", "Привет, мир! Всё хорошо. Ёж 🦔")

_GPT_URI = re.compile(r"gpt://(?P<folder>[^/]+)/(?P<model>[^/]+)(?:/(?P<version>latest|rc|deprecated))?")
_EMB_URI = re.compile(r"emb://(?P<folder>[^/]+)/(?P<model>[^/]+)(?:/(?P<version>latest))?")
_GRPC = {400: (3, "Bad Request"), 401: (16, "Unauthorized"), 429: (8, "Too Many Requests"),
         500: (13, "Internal Server Error")}
_PARTIAL = "ALTERNATIVE_STATUS_PARTIAL"
_FINAL = "ALTERNATIVE_STATUS_FINAL"
_STATUSES = {"length": "ALTERNATIVE_STATUS_TRUNCATED_FINAL",
             "filter": "ALTERNATIVE_STATUS_CONTENT_FILTER"}
_MESSAGE_KINDS = ("text", "toolCallList", "toolResultList")


def error_body(status: int, message: str) -> dict[str, Any]:
    code, phrase = _GRPC[status]
    return {"error": {"grpcCode": code, "httpCode": status, "message": message,
                      "httpStatus": phrase, "details": []}}


def _error(status: int, message: str) -> web.Response:
    return json_response(status, error_body(status, message))


_REASONING_TOKENS = 5


def _usage(body: dict[str, Any], completion: int) -> dict[str, Any]:
    prompt = sum(len(str(m.get("text", ""))) for m in body["messages"]) // 4 + 3
    mode = (body.get("reasoningOptions") or {}).get("mode")
    reasoning = _REASONING_TOKENS if mode == "ENABLED_HIDDEN" else 0
    completion += reasoning
    return {"inputTextTokens": str(prompt), "completionTokens": str(completion),
            "totalTokens": str(prompt + completion),
            "completionTokensDetails": {"reasoningTokens": str(reasoning)}}


def _response(message: dict[str, Any], status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    result: dict[str, Any] = {"alternatives": [{"message": {"role": "assistant", **message},
                                                "status": status}]}
    if usage is not None:
        result["usage"] = usage
    result["modelVersion"] = MODEL_VERSION
    return {"result": result}


def _line(message: dict[str, Any], status: str, usage: dict[str, Any] | None) -> bytes:
    return orjson.dumps(_response(message, status, usage)) + b"\n"


# ---- request validation: the CompletionRequest schema of the API reference ---------------------

def _check_call_list(value: Any) -> str | None:
    calls = value.get("toolCalls") if isinstance(value, dict) else None
    if not isinstance(calls, list) or not calls:
        return "toolCallList.toolCalls must be a non-empty list"
    for call in calls:
        fn = call.get("functionCall") if isinstance(call, dict) and set(call) == {"functionCall"} else None
        if not isinstance(fn, dict) or set(fn) != {"name", "arguments"} or not fn["name"] \
                or not isinstance(fn["arguments"], dict):
            return "functionCall must have a name and an arguments object"
    return None


def _check_result_list(value: Any) -> str | None:
    results = value.get("toolResults") if isinstance(value, dict) else None
    if not isinstance(results, list) or not results:
        return "toolResultList.toolResults must be a non-empty list"
    for result in results:
        fr = result.get("functionResult") if isinstance(result, dict) else None
        if not isinstance(fr, dict) or set(fr) != {"name", "content"} or not fr["name"] \
                or not isinstance(fr["content"], str):
            return "functionResult must have a name and a string content"
    return None


def _check_message(m: Any) -> str | None:
    if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
        return "message role must be system, user or assistant"
    kinds = [k for k in _MESSAGE_KINDS if k in m]
    if len(kinds) != 1 or set(m) != {"role", kinds[0]}:
        return "a message holds exactly one of text, toolCallList, toolResultList"
    if kinds[0] == "text":
        return None if isinstance(m["text"], str) else "text must be a string"
    if kinds[0] == "toolCallList":
        return _check_call_list(m["toolCallList"])
    return _check_result_list(m["toolResultList"])


def _check_options(opts: Any) -> str | None:
    if not isinstance(opts, dict) or not set(opts) <= {"stream", "temperature", "maxTokens"}:
        return "completionOptions has unknown fields"
    t = opts.get("temperature")
    if t is not None and (not isinstance(t, int | float) or isinstance(t, bool) or not 0 <= t <= 1):
        return "temperature must be between 0 and 1"
    max_tokens = opts.get("maxTokens")
    if max_tokens is not None and not (str(max_tokens).isdigit() and int(max_tokens) > 0):
        return "maxTokens must be greater than zero"
    return None


def _check_tools(tools: Any) -> str | None:
    if not isinstance(tools, list):
        return "tools must be a list"
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not fn.get("name") \
                or not set(fn) <= {"name", "description", "parameters"}:
            return "a tool is {\"function\": {name, description, parameters}}"
    return None


def _check_format(body: dict[str, Any]) -> str | None:
    """jsonObject (a bool) and jsonSchema ({"schema": object}) are one oneof: at most one."""
    if "jsonObject" in body and "jsonSchema" in body:
        return "only one of jsonObject and jsonSchema may be set"
    if "jsonObject" in body and not isinstance(body["jsonObject"], bool):
        return "jsonObject must be a boolean"
    spec = body.get("jsonSchema")
    if spec is not None and (not isinstance(spec, dict) or set(spec) != {"schema"}
                             or not isinstance(spec["schema"], dict)):
        return "jsonSchema must be {\"schema\": object}"
    return None


def check_request(body: Any) -> str | None:
    """Why Yandex would answer 400 to this CompletionRequest, or None."""
    if not isinstance(body, dict) or not set(body) <= {"modelUri", "completionOptions", "messages",
                                                       "tools", "reasoningOptions", "jsonObject",
                                                       "jsonSchema"}:
        return "invalid JSON payload: unknown fields"
    if problem := _check_format(body):
        return problem
    if "reasoningOptions" in body and body["reasoningOptions"] not in (
            {"mode": "DISABLED"}, {"mode": "ENABLED_HIDDEN"}):
        return "reasoningOptions.mode must be DISABLED or ENABLED_HIDDEN"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages must not be empty"
    problems = [_check_options(body.get("completionOptions", {})),
                _check_tools(body.get("tools", [])), *(_check_message(m) for m in messages)]
    return next((p for p in problems if p), None)


def _model_uri(body: Any, key: str) -> tuple[str, re.Match[str] | None]:
    """The body's gpt:// model URI, and its match when it names our folder."""
    uri = str(body.get(key, "")) if isinstance(body, dict) else ""
    match = _GPT_URI.fullmatch(uri)
    return uri, match if match is not None and match["folder"] == FOLDER else None


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message["role"] == "user" and "text" in message:
            return str(message["text"])
    return ""


class FakeYandexGPT(FakeUpstream):
    name = "fake-yandexgpt"

    def __init__(self, *, slow_seconds: float = 3.0, drip_interval: float = 0.05,
                 embed_delay: float = 0.05) -> None:
        super().__init__(slow_seconds=slow_seconds, drip_interval=drip_interval)
        self.model_uris: list[str] = []
        self.embedded: list[str] = []
        self.max_embeddings_in_flight = 0
        self.embed_delay = embed_delay
        self._in_flight = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/foundationModels/v1/completion", self._completion)
        app.router.add_post("/foundationModels/v1/textEmbedding", self._embedding)
        app.router.add_post("/v1/chat/completions", self._openai_chat)

    # ---- shared checks ---------------------------------------------------------------------
    def _refuse(self, request: web.Request) -> web.Response | None:
        """The 401/400 Yandex gives to a bad credential or folder header, or None."""
        return self._refuse_headers(request.headers)

    def _refuse_headers(self, request_headers: Mapping[str, str]) -> web.Response | None:
        self.headers.append(dict(request_headers))
        auth = request_headers.get("Authorization", "")
        if auth.startswith("Api-Key ") and auth != f"Api-Key {API_KEY}":
            # Yandex quotes the refused key back.
            return _error(401, f"Unknown api key '{auth.removeprefix('Api-Key ')}'")
        if auth not in (f"Api-Key {API_KEY}", f"Bearer {IAM_TOKEN}"):
            return _error(401, "The token is invalid")
        if request_headers.get("x-folder-id") != FOLDER:
            return _error(400, "Specified folder ID does not match with service account folder ID")
        return None

    async def _json(self, request: web.Request) -> Any:
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None

    # ---- the OpenAI-compatible endpoint ----------------------------------------------------
    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        folder = request.headers.get("OpenAI-Project") or request.headers.get("x-folder-id")
        headers = {**request.headers, "x-folder-id": folder or ""}
        refused = self._refuse_headers(headers)
        if refused is not None:
            return refused
        body = await self._json(request)
        model, match = _model_uri(body, "model")
        if match is None:
            return json_response(404, {"error": {"message": f"model {model} not found",
                                                 "type": "invalid_request_error"}})
        self.model_uris.append(model)
        self.requests.append(body)
        text = "echo: " + str(body["messages"][-1]["content"])
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        if not body.get("stream"):
            return json_response(200, {
                "id": "chatcmpl-yandex", "object": "chat.completion", "created": 1,
                "model": model, "usage": usage, "choices": [{
                    "index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text}}]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        first = {"index": 0, "delta": {"role": "assistant", "content": text},
                 "finish_reason": None}
        chunks: list[dict[str, Any]] = [
            {"choices": [first]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": usage}]
        for chunk in chunks:
            chunk.update(id="chatcmpl-yandex", object="chat.completion.chunk", created=1,
                         model=model)
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    # ---- completion ------------------------------------------------------------------------
    async def _completion(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        body = await self._json(request)
        uri, match = _model_uri(body, "modelUri")
        if match is None:
            return _error(400, f"Failed to parse model URI: {uri}")
        problem = check_request(body)
        if problem:
            return _error(400, problem)
        self.model_uris.append(uri)
        self.requests.append(body)
        scenario = match["model"].removeprefix("yandexgpt-")
        if scenario == "500":
            return _error(500, "Internal error")
        if scenario == "429":
            return _error(429, "ai.textGenerationCompletionSessionsCount.count gauge quota limit "
                               "exceed: allowed 10 requests")
        if scenario == "garbage":
            return garbage()
        if scenario == "slow":
            await asyncio.sleep(self.slow_seconds)
        if (body.get("completionOptions") or {}).get("stream"):
            return await self._stream(request, body, scenario)
        return json_response(200, self._whole(body, scenario))

    def _tool_call(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["tools"][0]["function"]["name"]
        return {"toolCallList": {"toolCalls": [{"functionCall": {"name": name,
                                                                 "arguments": TOOL_ARGUMENTS}}]}}

    def _prefixes(self, body: dict[str, Any], scenario: str) -> list[str]:
        """The texts the stream's messages carry, each the whole text so far."""
        if scenario == "cyrillic":
            return list(CYRILLIC)
        if body.get("jsonSchema") or body.get("jsonObject"):
            text = orjson.dumps(NON_CONFORMING if scenario == "json-bad" else TOOL_ARGUMENTS).decode()
            return [text[:9], text]
        words = ("echo: " + _last_user_text(body)).split(" ")
        return [" ".join(words[:i + 1]) for i in range(len(words))]

    def _whole(self, body: dict[str, Any], scenario: str) -> dict[str, Any]:
        if scenario == "tools":
            return _response(self._tool_call(body), "ALTERNATIVE_STATUS_TOOL_CALLS", _usage(body, 14))
        prefixes = self._prefixes(body, scenario)
        return _response({"text": prefixes[-1]}, _STATUSES.get(scenario, _FINAL),
                         _usage(body, len(prefixes)))

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      scenario: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            await self._stream_lines(request, resp, body, scenario)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects.append(scenario)
            raise
        return resp

    async def _stream_lines(self, request: web.Request, resp: web.StreamResponse,
                            body: dict[str, Any], scenario: str) -> None:
        def usage(n: int) -> dict[str, Any] | None:
            return None if scenario == "no-usage" else _usage(body, n)

        if scenario == "tools":  # Yandex sends the call list whole, in the final message
            await resp.write(_line(self._tool_call(body), "ALTERNATIVE_STATUS_TOOL_CALLS",
                                   usage(14)))
            return
        if scenario == "drip":
            text = ""
            for i in range(10_000):
                await asyncio.sleep(self.drip_interval)
                text += f" t{i}"
                await resp.write(_line({"text": text}, _PARTIAL, usage(i + 1)))
            return
        prefixes = self._prefixes(body, scenario)
        final = _STATUSES.get(scenario, _FINAL)
        lines = [_line({"text": p}, final if i == len(prefixes) - 1 else _PARTIAL, usage(i + 1))
                 for i, p in enumerate(prefixes)]
        if scenario == "cut":  # never the final message: at most the first two partial ones
            lines = [_line({"text": p}, _PARTIAL, usage(i + 1))
                     for i, p in enumerate(prefixes[: max(1, min(2, len(prefixes) - 1))])]
        if scenario == "unterminated":  # the last line without its newline
            lines[-1] = lines[-1].rstrip(b"\n")
        if scenario == "burst":
            await resp.write(b"".join(lines))
            return
        for i, line in enumerate(lines):
            if scenario == "midstream-429" and i == 1:
                await asyncio.sleep(0.02)  # the partial message travels on its own first
                await resp.write(orjson.dumps(error_body(429, "quota exceeded")) + b"\n")
                return
            if scenario == "cyrillic":
                cut = _inside_a_character(line)
                await resp.write(line[:cut])
                await asyncio.sleep(0.02)
                await resp.write(line[cut:])
                await asyncio.sleep(0.02)
                continue
            await resp.write(line)
        if scenario == "cut":
            request.transport.close()  # type: ignore[union-attr]

    # ---- embeddings ------------------------------------------------------------------------
    async def _embedding(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        body = await self._json(request)
        if not isinstance(body, dict) or set(body) != {"modelUri", "text"} \
                or not isinstance(body["text"], str):
            return _error(400, "invalid JSON payload: want modelUri and text")
        match = _EMB_URI.fullmatch(body["modelUri"])
        if match is None or match["folder"] != FOLDER:
            return _error(400, f"Failed to parse model URI: {body['modelUri']}")
        self.model_uris.append(body["modelUri"])
        if match["model"].endswith("-429"):
            return _error(429, "ai.textEmbeddingsRequestsPerSecond.rate quota limit exceed")
        self._in_flight += 1
        self.max_embeddings_in_flight = max(self.max_embeddings_in_flight, self._in_flight)
        try:
            await asyncio.sleep(self.embed_delay)
        finally:
            self._in_flight -= 1
        text: str = body["text"]
        self.embedded.append(text)
        return json_response(200, {
            "embedding": embedding_of(text), "numTokens": str(len(text.split()) + 1),
            "modelVersion": "06.12.2023"})


def _inside_a_character(line: bytes) -> int:
    """An offset just after the lead byte of a multi-byte UTF-8 character in the line's middle."""
    for i in range(len(line) // 2, len(line)):
        if line[i] >= 0xC0:
            return i + 1
    return len(line) // 2


def embedding_of(text: str) -> list[float]:
    """The fake's deterministic 4-dimensional vector for `text`."""
    return [float(len(text)), (sum(map(ord, text)) % 1000) / 1000, 0.25, -0.5]


class _Harness(FakeHarness[FakeYandexGPT]):
    type = "yandexgpt"
    retry_after = False  # Yandex's 429 carries no Retry-After

    def config(self, *, wrong_key: bool = False) -> ProviderConfig:
        return ProviderConfig("fake-yandexgpt", "yandexgpt", self.fake.base_url,
                              "AQVN-wrong-key" if wrong_key else API_KEY,
                              options={"folder_id": FOLDER})

    def upstream_model(self, scenario: str) -> str:
        return f"yandexgpt-{scenario}:latest"


def harness() -> _Harness:
    return _Harness(FakeYandexGPT())
