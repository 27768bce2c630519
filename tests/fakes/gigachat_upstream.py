"""A local stand-in for GigaChat, speaking the wire format of GigaChat's OpenAPI spec and of the
recorded exchanges of Sber's own SDK:

- POST /api/v2/oauth: `Authorization: Basic <authorization key>`, a uuid4 `RqUID` header and a
  form body `scope=...`; answers `{"access_token", "expires_at"}` with expires_at in
  MILLISECONDS, or `{"code", "message"}` errors (401 code 6 for a wrong key, 400 code 7 for a
  scope the key lacks, 400 code 4 for an undecodable header).
- POST /api/v1/chat/completions and /api/v1/embeddings: a `Bearer` token it issued and that has
  not expired, else 401 `{"status": 401, "message": "Unauthorized" | "Token has expired"}`.
  Bodies are `chat.completion` objects; streams are SSE events also typed `chat.completion`
  carrying `delta`, with finish_reason and usage on the last event before `data: [DONE]`;
  function calls carry `arguments` as a JSON object and never split across events.
- Requests are validated against the spec (roles, `function` messages with a name and JSON
  content, function_call arguments as objects, temperature > 0, top_p in [0, 1], ...) and
  refused with 422 `{"status": 422, "message": "Invalid params: ..."}`; rejecting fields the
  spec does not have (tools, tool_choice, stream_options) is this fake's own strictness.

A `function_call` naming a function is answered with a call of it (arguments TOOL_ARGUMENTS;
harness.NON_CONFORMING for fake-json-bad), as GigaChat's forced generation of arguments does.
The model picks the behaviour: GigaChat, GigaChat-Pro, GigaChat-Max and fake-echo echo; fake-tools
| fake-500 | fake-429 | fake-slow | fake-garbage | fake-cut | fake-no-usage | fake-drip |
fake-401-always; any other model gets 404 "No such model". It runs on its own thread and loop.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import ssl
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.harness import NON_CONFORMING, TOOL_ARGUMENTS, FakeHarness
from tests.fakes.server import FakeUpstream, garbage, json_response
from xrouter_router.providers.config import ProviderConfig

AUTH_KEY = base64.b64encode(b"fake-client-id:fake-client-secret").decode()
WRONG_KEY = base64.b64encode(b"fake-client-id:wrong-secret").decode()
SCOPES = ("GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP")
ECHO_MODELS = ("GigaChat", "GigaChat-Pro", "GigaChat-Max", "fake-echo", "fake-slow", "fake-cut",
               "fake-no-usage", "fake-drip", "fake-json", "fake-json-bad")
SCENARIO_MODELS = (*ECHO_MODELS, "fake-tools", "fake-500", "fake-429", "fake-garbage",
                   "fake-401-always")
CHAT_FIELDS = {"model", "messages", "function_call", "functions", "temperature", "top_p", "n",
               "stream", "max_tokens", "repetition_penalty", "update_interval", "profanity_check",
               "flags"}
MESSAGE_FIELDS = {"role", "content", "name", "function_call", "functions_state_id",
                  "data_for_context", "attachments"}
VERSION = "2.0.28.2"


def _api_error(status: int, message: str) -> web.Response:
    return json_response(status, {"status": status, "message": message})


def _is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _message_problem(m: Any) -> str:
    if not isinstance(m, dict) or set(m) - MESSAGE_FIELDS:
        return f"unknown message fields {sorted(set(m) - MESSAGE_FIELDS) if isinstance(m, dict) else m}"
    role, content = m.get("role"), m.get("content")
    if role not in ("system", "user", "assistant", "function"):
        return f"messages.role must be system, user, assistant or function, got {role!r}"
    if content is not None and not isinstance(content, str):
        return "messages.content must be a string"
    if role == "function":
        if not isinstance(m.get("name"), str) or not m["name"]:
            return "a function message needs the function's name"
        try:
            orjson.loads(content or "")
        except orjson.JSONDecodeError:
            return "the content of a function message must be valid JSON"
    call = m.get("function_call")
    if call is not None and (role != "assistant" or not isinstance(call, dict)
                             or not isinstance(call.get("name"), str)
                             or not isinstance(call.get("arguments"), dict)):
        return "function_call needs a name and arguments as a JSON object"
    return ""


def _sampling_problem(body: dict[str, Any]) -> str:
    checks = (
        ("temperature", lambda v: _is_number(v) and v > 0, "must be in range (0, +inf)"),
        ("top_p", lambda v: _is_number(v) and 0 <= v <= 1, "must be in range [0, 1]"),
        ("max_tokens", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
         "must be a positive integer"),
        ("repetition_penalty", lambda v: _is_number(v) and v > 0, "must be in range (0, +inf)"),
        ("update_interval", lambda v: _is_number(v) and v >= 0, "must be >= 0"),
        ("stream", lambda v: isinstance(v, bool), "must be a boolean"),
    )
    for key, ok, rule in checks:
        if key in body and not ok(body[key]):
            return f"{key} {rule}"
    return ""


def _functions_problem(body: dict[str, Any]) -> str:
    functions = body.get("functions")
    names: list[str] = []
    if functions is not None:
        if not isinstance(functions, list):
            return "functions must be an array"
        for fn in functions:
            if (not isinstance(fn, dict) or not isinstance(fn.get("name"), str)
                    or not isinstance(fn.get("parameters"), dict)):
                return "each function needs a name and parameters"
            names.append(fn["name"])
    choice = body.get("function_call")
    if choice is None or choice in ("auto", "none"):
        return ""
    if isinstance(choice, dict) and choice.get("name") in names:
        return ""
    return f"function_call must be auto, none or the name of a function in functions, got {choice!r}"


def chat_problem(body: Any) -> str:
    """Why GigaChat would refuse this /chat/completions body, or ""."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if set(body) - CHAT_FIELDS:
        return f"unknown fields {sorted(set(body) - CHAT_FIELDS)}"
    if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
        return "model and messages are required"
    if not body["messages"]:
        return "messages must not be empty"
    for m in body["messages"]:
        if problem := _message_problem(m):
            return problem
    return _sampling_problem(body) or _functions_problem(body)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message["role"] == "user":
            return str(message.get("content") or "")
    return ""


class FakeGigaChat(FakeUpstream):
    name = "fake-gigachat"

    def __init__(self, *, scopes: tuple[str, ...] = ("GIGACHAT_API_PERS",),
                 token_ttl: float = 1800.0, token_delay: float = 0.0, slow_seconds: float = 3.0,
                 drip_interval: float = 0.05, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(slow_seconds=slow_seconds, drip_interval=drip_interval,
                         ssl_context=ssl_context)
        self.scopes = scopes
        self.token_ttl = token_ttl
        self.token_delay = token_delay
        self.embedding_requests: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.issued = 0
        self._tokens: dict[str, int] = {}

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/v1"

    @property
    def auth_url(self) -> str:
        return f"{self.origin}/api/v2/oauth"

    def revoke_tokens(self) -> None:
        """Forget every issued token, as if they had expired on the server's side."""
        self._tokens.clear()

    def bearer_tokens(self) -> list[str]:
        """The token each API request carried, in order."""
        return [h.get("Authorization", "").removeprefix("Bearer ") for h in self.headers]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v2/oauth", self._oauth)
        app.router.add_post("/api/v1/chat/completions", self._chat)
        app.router.add_post("/api/v1/embeddings", self._embeddings)

    # ---- the token endpoint ----------------------------------------------------------------
    async def _oauth(self, request: web.Request) -> web.Response:
        form = dict(await request.post()) if request.content_type == (
            "application/x-www-form-urlencoded") else {}
        self.token_requests.append({"headers": dict(request.headers), "form": form})
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Basic ") or not auth.removeprefix("Basic "):
            return json_response(400, {"code": 4, "message": "Can't decode 'Authorization' header"})
        if auth != f"Basic {AUTH_KEY}":
            return json_response(401, {"code": 6, "message": "credentials doesn't match db data"})
        if not _is_uuid4(request.headers.get("RqUID", "")):
            return json_response(400, {"code": 5, "message": "RqUID header is missing or is not a uuid4"})
        scope = form.get("scope")
        if scope not in SCOPES:
            return json_response(400, {"code": 5, "message": "scope is empty or unknown"})
        if scope not in self.scopes:
            return json_response(400, {"code": 7,
                                       "message": "scope from db not fully includes consumed scope"})
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        token = secrets.token_urlsafe(48)
        expires_at = int((time.time() + self.token_ttl) * 1000)
        self._tokens[token] = expires_at
        self.issued += 1
        return json_response(200, {"access_token": token, "expires_at": expires_at})

    def _refused(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        expires_at = self._tokens.get(token)
        if expires_at is None:
            return _api_error(401, "Unauthorized")
        if expires_at <= time.time() * 1000:
            return _api_error(401, "Token has expired")
        return None

    # ---- the API ---------------------------------------------------------------------------
    async def _embeddings(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        body = orjson.loads(await request.read())
        self.embedding_requests.append(body)
        inputs = body.get("input")
        if not isinstance(body.get("model"), str) or not isinstance(inputs, list) or not all(
                isinstance(t, str) for t in inputs):
            return _api_error(422, "Invalid params: model and input (an array of strings) are required")
        data = [{"object": "embedding", "embedding": [float(len(text)), float(i), 0.25],
                 "index": i, "usage": {"prompt_tokens": len(text) // 4 + 1}}
                for i, text in enumerate(inputs)]
        return json_response(200, {"object": "list", "data": data, "model": body["model"]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if refused := self._refused(request):
            return refused
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _api_error(400, "Invalid request body")
        self.requests.append(body)
        if problem := chat_problem(body):
            return _api_error(422, f"Invalid params: {problem}")
        model = body["model"]
        if model not in SCENARIO_MODELS:
            return _api_error(404, "No such model")
        if model == "fake-401-always":
            return _api_error(401, "Unauthorized")
        if model == "fake-500":
            return _api_error(500, "Internal Server Error")
        if model == "fake-429":
            return _api_error(429, "Too many requests")
        if model == "fake-garbage":
            return garbage()
        if model == "fake-slow":
            await asyncio.sleep(self.slow_seconds)
        if body.get("stream"):
            return await self._stream(request, body, model)
        return json_response(200, self._completion(body, model))

    def _answer(self, body: dict[str, Any], model: str) -> tuple[list[str], dict[str, Any] | None]:
        forced = body.get("function_call")
        if isinstance(forced, dict):  # arguments generated for the named function, always
            args = NON_CONFORMING if model == "fake-json-bad" else TOOL_ARGUMENTS
            return [], {"name": forced["name"], "arguments": args}
        if model == "fake-tools" and body.get("functions"):
            return [], {"name": body["functions"][0]["name"], "arguments": TOOL_ARGUMENTS}
        words = ("echo: " + _last_user_text(body)).split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)], None

    @staticmethod
    def _usage(body: dict[str, Any], completion: int) -> dict[str, int]:
        prompt = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4 + 3
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion, "precached_prompt_tokens": 0}

    def _completion(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        pieces, call = self._answer(body, model)
        message: dict[str, Any] = {"content": "".join(pieces), "role": "assistant"}
        if call:
            message["function_call"] = call
            message["functions_state_id"] = str(uuid.uuid4())
        return {"choices": [{"message": message, "index": 0,
                             "finish_reason": "function_call" if call else "stop"}],
                "created": int(time.time()), "model": f"{model}:{VERSION}",
                "object": "chat.completion", "usage": self._usage(body, len(pieces) or 9)}

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      model: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        head = {"created": int(time.time()), "model": f"{model}:{VERSION}",
                "object": "chat.completion"}

        async def send(choice: dict[str, Any], **extra: Any) -> None:
            await resp.write(b"data: " + orjson.dumps({"choices": [choice], **head, **extra})
                             + b"\n\n")

        pieces, call = self._answer(body, model)
        try:
            if model == "fake-drip":
                await send({"delta": {"content": "", "role": "assistant"}, "index": 0})
                for i in range(10_000):
                    await asyncio.sleep(self.drip_interval)
                    await send({"delta": {"content": f" t{i}"}, "index": 0})
            for i, piece in enumerate(pieces):
                delta = {"content": piece, "role": "assistant"} if i == 0 else {"content": piece}
                await send({"delta": delta, "index": 0})
                if model == "fake-cut" and i == 1:
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
            usage = {} if model == "fake-no-usage" else {
                "usage": self._usage(body, len(pieces) or 9)}
            if call:
                await send({"delta": {"content": "", "role": "assistant", "function_call": call,
                                      "functions_state_id": str(uuid.uuid4())},
                            "index": 0, "finish_reason": "function_call"}, **usage)
            else:
                await send({"delta": {"content": ""}, "index": 0, "finish_reason": "stop"},
                           **usage)
            await resp.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects.append(model)
            raise
        return resp


class _Harness(FakeHarness[FakeGigaChat]):
    type = "gigachat"
    retry_after = False  # GigaChat documents no Retry-After on its 429

    def config(self, *, wrong_key: bool = False) -> ProviderConfig:
        return ProviderConfig("fake-gigachat", "gigachat", self.fake.base_url,
                              WRONG_KEY if wrong_key else AUTH_KEY,
                              options={"auth_url": self.fake.auth_url})

    def upstream_model(self, scenario: str) -> str:
        return f"fake-{scenario}"


def harness() -> _Harness:
    return _Harness(FakeGigaChat())
