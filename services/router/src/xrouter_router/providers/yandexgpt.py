"""YandexGPT through Yandex Foundation Models' native REST API: POST {base_url}/foundationModels/v1/
completion with a `gpt://<folder>/<model>/<version>` modelUri, streams of newline-delimited
`{"result": ...}` objects carrying the cumulative text (turned into deltas here), and textEmbedding.

Options of the [providers.NAME] table:
  folder_id              (str, required)   Yandex Cloud folder: the modelUri's folder and `x-folder-id`
  auth                   (str, "api-key")  "api-key": `Authorization: Api-Key <key>`;
                                           "iam": `Authorization: Bearer <IAM token>`
  embedding_concurrency  (int, 8)          textEmbedding calls in flight for one embeddings request
  api                    (str, "native")   "openai": the OpenAI-compatible endpoint instead
                                           (see yandexgpt_openai.py)
base_url defaults to https://llm.api.cloud.yandex.net; `headers` are sent as well (for example
`x-data-logging-enabled = "false"` for every request). A request whose `provider.data_collection`
is "deny" is sent with `x-data-logging-enabled: false` whatever the headers say.

The request's `reasoning` becomes `reasoningOptions.mode` ("ENABLED_HIDDEN", or "DISABLED" for
effort "none") on deployments whose catalog `parameters` list "reasoning" (the models that have
the option); Yandex returns no reasoning text, only its token count. A `response_format` is
sent natively: json_schema as `jsonSchema: {"schema": ...}`, json_object as `jsonObject: true`
(fields of the CompletionRequest, beside completionOptions, in Foundation Models' REST
reference: yandex.cloud/docs/foundation-models/text-generation/api-ref/TextGeneration/completion).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import orjson

from xrouter_common.env import ConfigError
from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.errors import UpstreamBadResponse, UpstreamError, UpstreamRejected
from xrouter_router.domain.ports import ChatProvider
from xrouter_router.domain.structured import answer_format
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    Delta,
    EmbeddingRequest,
    Embeddings,
    Message,
    StreamBatch,
    TokenCounts,
    Tool,
    ToolCall,
)
from xrouter_router.providers import reasoning as reasoning_param
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.http import (
    Upstream,
    error_for_status,
    incomplete_stream,
    not_json_object,
    read_chunks,
)
from xrouter_router.providers.http1 import HttpClient, Response

DEFAULT_URL = "https://llm.api.cloud.yandex.net"
_COMPLETION_PATH = "/foundationModels/v1/completion"
_EMBEDDING_PATH = "/foundationModels/v1/textEmbedding"

FINISH_REASONS = {
    "ALTERNATIVE_STATUS_FINAL": "stop",
    "ALTERNATIVE_STATUS_TRUNCATED_FINAL": "length",
    "ALTERNATIVE_STATUS_CONTENT_FILTER": "content_filter",
    "ALTERNATIVE_STATUS_TOOL_CALLS": "tool_calls",
}
_ROLES = {"developer": "system"}
NO_LOGGING = {"x-data-logging-enabled": "false"}
APIS = ("native", "openai")
AUTH_SCHEMES = {"api-key": "Api-Key", "iam": "Bearer"}


class YandexGPTProvider:
    """Speaks the Foundation Models completion and textEmbedding wire formats."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        folder_id: str,
        api_key: str,
        session: HttpClient,
        auth: str = "api-key",
        headers: Mapping[str, str] | None = None,
        embedding_concurrency: int = 8,
    ) -> None:
        self._name = name
        base = base_url.rstrip("/")
        self._completion_url = base + _COMPLETION_PATH
        self._embedding_url = base + _EMBEDDING_PATH
        self._folder = folder_id
        self._api_key = api_key
        self._headers = {"Content-Type": "application/json", "x-folder-id": folder_id,
                         **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"{AUTH_SCHEMES[auth]} {api_key}"
        self._http = Upstream(name, session, self._headers, status_error=self._status_error)
        self._embedding_concurrency = embedding_concurrency

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        return None

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        return await self._http.post_json(
            self._completion_url, self.body(request, deployment, stream=False),
            lambda data: parse_completion(self._name, data), headers=logging_headers(request))

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        body = self.body(request, deployment, stream=True)
        async with self._http.open(self._completion_url, body,
                                   headers=logging_headers(request)) as resp:
            state = CumulativeStream(self._name)
            async for lines in _lines(resp):
                batch = state.feed(lines)
                if batch.deltas or batch.usage or batch.done:
                    yield batch
                if batch.done:
                    return
            raise incomplete_stream(self._name)

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embeddings:
        """One textEmbedding call per input (the API takes one text), run concurrently."""
        uri = model_uri("emb", self._folder, deployment.upstream_model)
        limit = asyncio.Semaphore(self._embedding_concurrency)

        async def one(text: str) -> tuple[tuple[float, ...], int | None]:
            async with limit:
                return await self._embed_one(uri, text)

        tasks = [asyncio.ensure_future(one(text)) for text in request.inputs]
        try:
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # after one failure the others are not needed
                task.cancel()
        counts = [n for _, n in results]
        usage = None if None in counts else TokenCounts(prompt=sum(n or 0 for n in counts))
        return Embeddings(tuple(v for v, _ in results), usage)

    async def _embed_one(self, uri: str, text: str) -> tuple[tuple[float, ...], int | None]:
        body = orjson.dumps({"modelUri": uri, "text": text})
        return await self._http.post_json(self._embedding_url, body,
                                          lambda data: parse_embedding(self._name, data))

    def _status_error(self, _provider: str, status: int, body: bytes,
                      retry_after: str | None) -> UpstreamError:
        return self._error(status, body, retry_after)

    def _error(self, status: int, body: bytes, retry_after: str | None) -> UpstreamError:
        if self._api_key:  # Yandex may quote the credential it refused
            body = body.replace(self._api_key.encode(), b"***")
        return error_from_body(self._name, status, body, retry_after)

    def body(self, request: ChatRequest, deployment: Deployment, *, stream: bool) -> bytes:
        """The completion request. Only temperature and maxTokens exist upstream; the rest of
        the sampling parameters and tool_choice are dropped. response_format becomes the
        request's `jsonSchema` ({"schema": ...}) or `jsonObject: true`."""
        options: dict[str, Any] = {"stream": stream}
        s = request.sampling
        if s.temperature is not None:
            options["temperature"] = min(max(s.temperature, 0.0), 1.0)
        if s.max_tokens is not None:
            options["maxTokens"] = str(s.max_tokens)
        try:
            messages = messages_json(request.messages)
        except ValueError as exc:
            raise UpstreamRejected(f"{self._name} cannot send this request: {exc}",
                                   provider=self._name) from None
        body: dict[str, Any] = {
            "modelUri": model_uri("gpt", self._folder, deployment.upstream_model),
            "completionOptions": options,
            "messages": messages,
        }
        if request.tools:
            body["tools"] = [tool_json(t) for t in request.tools]
        fmt = answer_format(request.response_format_json)
        if fmt is not None and fmt.schema is not None:
            body["jsonSchema"] = {"schema": fmt.schema}
        elif fmt is not None:
            body["jsonObject"] = True
        wanted = reasoning_param.requested(request.extra_json)
        if wanted is not None and "reasoning" in deployment.parameters:
            body["reasoningOptions"] = {"mode": "ENABLED_HIDDEN" if wanted.enabled else "DISABLED"}
        return orjson.dumps(body)


def logging_headers(request: ChatRequest) -> Mapping[str, str] | None:
    """Yandex's request logging turned off for a request that denies data collection."""
    return NO_LOGGING if request.provider.data_collection == "deny" else None


async def _lines(resp: Response) -> AsyncIterator[list[bytes]]:
    """The complete lines of each chunk, split as bytes, so a character cut between chunks is
    whole again before it is decoded; at the end, an unterminated last line still counts."""
    pending = b""
    async for data in read_chunks(resp):
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        yield lines
    yield [pending]


# ---- request mapping ---------------------------------------------------------------------------

def model_uri(scheme: str, folder: str, upstream_model: str) -> str:
    """`yandexgpt-lite:latest`, `yandexgpt/rc` or `yandexgpt` -> `<scheme>://<folder>/<model>/<version>`;
    a full URI (`gpt://...`, `ds://...`) is used as written."""
    if "://" in upstream_model:
        return upstream_model
    name, sep, version = upstream_model.partition(":")
    if not sep:
        name, _, version = upstream_model.partition("/")
    return f"{scheme}://{folder}/{name}/{version or 'latest'}"


def tool_json(tool: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool.name}
    if tool.description:
        fn["description"] = tool.description
    if tool.parameters_json:
        fn["parameters"] = orjson.Fragment(tool.parameters_json)
    return {"function": fn}


def arguments_object(arguments: str) -> Any:
    """OpenAI's JSON-string arguments as the object Yandex expects; ValueError if not one."""
    value = orjson.loads(arguments) if arguments.strip() else {}
    if not isinstance(value, dict):
        raise ValueError("tool call arguments must be a JSON object")
    return value


def messages_json(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in Yandex's form: `text`, or `toolCallList` for an assistant's calls, or one
    `toolResultList` (role user) for each run of consecutive tool results."""
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, for results that omit it
    results: list[dict[str, Any]] | None = None
    for m in messages:
        if m.role == "tool":
            result = {"functionResult": {"name": m.name or names.get(m.tool_call_id, ""),
                                         "content": m.text()}}
            if results is None:
                results = []
                out.append({"role": "user", "toolResultList": {"toolResults": results}})
            results.append(result)
            continue
        results = None
        if m.role == "assistant" and m.tool_calls:
            if m.text():  # a message holds text or calls, never both
                out.append({"role": "assistant", "text": m.text()})
            names.update((c.id, c.name) for c in m.tool_calls)
            calls = [{"functionCall": {"name": c.name, "arguments": arguments_object(c.arguments)}}
                     for c in m.tool_calls]
            out.append({"role": "assistant", "toolCallList": {"toolCalls": calls}})
            continue
        out.append({"role": _ROLES.get(m.role, m.role), "text": m.text()})
    return out


# ---- response parsing --------------------------------------------------------------------------

def error_message(raw: Any) -> str:
    """The human message of a Yandex error body: grpc-gateway's `{"error": {...}}` (streaming
    methods) or `{"code", "message", "details"}` (unary methods)."""
    if not isinstance(raw, dict):
        return ""
    err = raw.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or "")
    return str(raw.get("message") or (err if isinstance(err, str) else ""))


def error_from_body(provider: str, status: int, body: bytes, retry_after: str | None) -> UpstreamError:
    try:
        message = error_message(orjson.loads(body))
    except orjson.JSONDecodeError:
        message = ""
    text = f"{provider} answered HTTP {status}" + (f": {message}" if message else "")
    return error_for_status(provider, status, body, retry_after, message=text)


def _result(provider: str, data: Any) -> dict[str, Any]:
    """The CompletionResponse of one response object, or the error it carries raised."""
    if not isinstance(data, dict):
        raise not_json_object(provider)
    if "error" in data:
        # grpc-gateway's mid-stream error: the HTTP status it would have had is inside.
        err = data["error"]
        status = (err.get("httpCode") or err.get("http_code")) if isinstance(err, dict) else None
        raise error_from_body(provider, int(status or 500), orjson.dumps(data), None)
    result = data.get("result", data)
    if not isinstance(result, dict) or not result.get("alternatives"):
        raise UpstreamBadResponse(f"{provider} answered without alternatives", provider=provider,
                                  raw=data)
    return result


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def parse_tool_calls(message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    """`toolCallList.toolCalls[].functionCall` as OpenAI-style calls with fresh ids."""
    calls = []
    for i, call in enumerate((message.get("toolCallList") or {}).get("toolCalls") or ()):
        fn = call.get("functionCall") or {}
        args = fn.get("arguments")
        arguments = args if isinstance(args, str) else orjson.dumps({} if args is None else args).decode()
        calls.append(ToolCall(i, new_call_id(), fn.get("name") or "", arguments))
    return tuple(calls)


def parse_usage(raw: Mapping[str, Any]) -> TokenCounts:
    """Yandex counts tokens in int64 strings."""
    details = raw.get("completionTokensDetails") or {}
    return TokenCounts(prompt=int(raw.get("inputTextTokens") or 0),
                       completion=int(raw.get("completionTokens") or 0),
                       reasoning=int(details.get("reasoningTokens") or 0))


def finish_reason(status: str, has_calls: bool) -> str:
    return FINISH_REASONS.get(status) or ("tool_calls" if has_calls else "stop")


def parse_completion(provider: str, data: Any) -> Completion:
    result = _result(provider, data)
    alternative = result["alternatives"][0]
    msg = alternative.get("message") or {}
    calls = parse_tool_calls(msg)
    content = msg.get("text")
    if content is None and not calls:
        content = ""
    usage = parse_usage(result["usage"]) if result.get("usage") else None
    return Completion(Message(role="assistant", content=content, tool_calls=calls),
                      finish_reason(alternative.get("status") or "", bool(calls)), usage)


def parse_embedding(provider: str, data: Any) -> tuple[tuple[float, ...], int | None]:
    """A TextEmbeddingResponse: the vector, and numTokens (an int64 string)."""
    if not isinstance(data, dict):
        raise not_json_object(provider)
    vector = data.get("embedding")
    if not isinstance(vector, list):
        raise UpstreamBadResponse(f"{provider} answered without an embedding", provider=provider,
                                  raw=data)
    tokens = data.get("numTokens")
    return tuple(float(x) for x in vector), None if tokens is None else int(tokens)


class CumulativeStream:
    """Turns the stream's messages, each holding the whole text so far, into deltas: only what
    the client does not have yet goes out. Yandex may revise earlier text before the final
    message; what was sent cannot be taken back, so a revision only shows past its length."""

    __slots__ = ("_calls", "_provider", "_sent", "_started", "finished")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._sent = 0  # characters of text already sent
        self._calls = 0  # tool calls already sent
        self._started = False
        self.finished = False

    def feed(self, lines: Iterable[bytes]) -> StreamBatch:
        """One batch for these complete lines; done=True once a final status arrived."""
        pieces: list[str] = []
        calls: list[ToolCall] = []
        finish = ""
        usage: TokenCounts | None = None
        for line in lines:
            if not line.strip():
                continue
            result = _result(self._provider, orjson.loads(line))
            alternative = result["alternatives"][0]
            msg = alternative.get("message") or {}
            text = msg.get("text") or ""
            if len(text) > self._sent:
                pieces.append(text[self._sent:])
                self._sent = len(text)
            new_calls = parse_tool_calls(msg)[self._calls:]
            self._calls += len(new_calls)
            calls.extend(new_calls)
            status = alternative.get("status") or ""
            if status in FINISH_REASONS:
                finish = FINISH_REASONS[status]
                usage = parse_usage(result["usage"]) if result.get("usage") else None
                self.finished = True
                break
        if not (pieces or calls or finish):
            return StreamBatch()
        delta = Delta(role="" if self._started else "assistant", content="".join(pieces) or None,
                      tool_calls=tuple(calls), finish_reason=finish)
        self._started = True
        return StreamBatch((delta,), usage, done=self.finished)


def build(config: ProviderConfig, session: HttpClient) -> ChatProvider:
    api = config.option("api", "native", str)
    if api not in APIS:
        raise ConfigError(f"providers.{config.name}.api must be \"native\" or \"openai\", got {api!r}")
    if api == "openai":
        from xrouter_router.providers import yandexgpt_openai

        return yandexgpt_openai.build(config, session)
    return build_native(config, session)


def folder_and_auth(config: ProviderConfig) -> tuple[str, str]:
    """The required folder id and the auth scheme's name, checked."""
    folder = config.option("folder_id", "", str)
    if not folder:
        raise ConfigError(f"providers.{config.name}.folder_id is required (the Yandex Cloud folder id)")
    auth = config.option("auth", "api-key", str)
    if auth not in AUTH_SCHEMES:
        raise ConfigError(f"providers.{config.name}.auth must be \"api-key\" or \"iam\", got {auth!r}")
    return folder, auth


def build_native(config: ProviderConfig, session: HttpClient) -> YandexGPTProvider:
    folder, auth = folder_and_auth(config)
    concurrency = config.option("embedding_concurrency", 8, int)
    if concurrency < 1:
        raise ConfigError(f"providers.{config.name}.embedding_concurrency must be at least 1")
    return YandexGPTProvider(
        config.name, base_url=config.url(DEFAULT_URL), folder_id=folder, api_key=config.api_key,
        session=session, auth=auth, headers=config.headers, embedding_concurrency=concurrency,
    )
