"""Any OpenAI-compatible upstream (OpenAI, DeepSeek, Mistral, vLLM, Ollama, OpenRouter, ...):
POST {base_url}/chat/completions, Bearer auth, SSE streams ending in `data: [DONE]`.

Options ([providers.NAME] keys): `send_nonstandard_params` (top_k, repetition_penalty; default
false); `reasoning_format`: "openai" sends the request's `reasoning` as OpenAI's
`reasoning_effort`, "openrouter" passes the `reasoning` object through unchanged (OpenRouter and
upstreams that speak its dialect). Default: "openai" when base_url is api.openai.com (or unset),
"openrouter" otherwise. Reasoning in answers (`reasoning` or DeepSeek's `reasoning_content`) is
read either way and hidden when the request says `reasoning.exclude`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from xrouter_common.env import ConfigError
from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRejected,
    UpstreamServerError,
)
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    ContentPart,
    Delta,
    EmbeddingRequest,
    Embeddings,
    Message,
    Sampling,
    StreamBatch,
    TokenCounts,
    ToolCall,
)
from xrouter_router.providers import reasoning as reasoning_param
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.http import (
    Upstream,
    incomplete_stream,
    json_object,
    not_json_object,
    read_events,
)
from xrouter_router.providers.http1 import HttpClient, Response

_DONE = b"[DONE]"
OPENAI_URL = "https://api.openai.com/v1"
REASONING_FORMATS = ("openai", "openrouter")


class OpenAIProvider:
    """Speaks the OpenAI Chat Completions wire format over a shared HTTP client."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str,
        session: HttpClient,
        headers: Mapping[str, str] | None = None,
        send_nonstandard_params: bool = False,
        reasoning_format: str = "openrouter",
    ) -> None:
        self._name = name
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._embeddings_url = base_url.rstrip("/") + "/embeddings"
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._http = Upstream(name, session, self._headers)
        self._nonstandard = send_nonstandard_params
        self._effort_only = reasoning_format == "openai"

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        return None

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        show = reasoning_param.shown(reasoning_param.requested(request.extra_json))
        return await self._http.post_json(
            self._url, self.body(request, deployment, stream=False),
            lambda data: parse_completion(self._name, json_object(self._name, data),
                                          show_reasoning=show))

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        show = reasoning_param.shown(reasoning_param.requested(request.extra_json))
        async with self._http.open(self._url, self.body(request, deployment, stream=True)) as resp:
            if resp.content_type == "application/json":
                # Some upstreams ignore `stream` and answer whole: replay it as one batch.
                data = json_object(self._name, orjson.loads(await resp.read()))
                yield completion_as_batch(parse_completion(self._name, data,
                                                           show_reasoning=show))
                return
            async for batch in self._read_stream(resp, show):
                yield batch

    async def _read_stream(self, resp: Response,
                           show_reasoning: bool) -> AsyncIterator[StreamBatch]:
        finished = False
        first = True
        async for events in read_events(resp, self._name):
            payloads = [e.data for e in events]
            if first and len(payloads) > 1:
                # The first token leaves before the rest of the first read is parsed.
                head, failure = self._batch(payloads[:1], show_reasoning)
                if head.deltas and failure is None and not head.done:
                    finished = any(d.finish_reason for d in head.deltas)
                    yield StreamBatch(head.deltas, head.usage, head=True)
                    payloads = payloads[1:]
            first = False
            batch, failure = self._batch(payloads, show_reasoning)
            finished = finished or any(d.finish_reason for d in batch.deltas)
            if batch.deltas or batch.usage or batch.done:
                yield batch
            if failure is not None:
                # Raised after the deltas that came before it in the same read, so they count.
                raise failure
            if batch.done:
                return
        if not finished:
            raise incomplete_stream(self._name)

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embeddings:
        body: dict[str, Any] = {"model": deployment.upstream_model, "input": list(request.inputs),
                                "encoding_format": "float"}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user:
            body["user"] = request.user
        return await self._http.post_json(
            self._embeddings_url, orjson.dumps(body),
            lambda data: parse_embeddings(self._name, data, len(request.inputs)))

    def _batch(self, payloads: list[bytes],
               show_reasoning: bool = True) -> tuple[StreamBatch, UpstreamError | None]:
        """The deltas of one read, and the in-stream error that ended it, if any."""
        deltas: list[Delta] = []
        usage: TokenCounts | None = None
        done = False
        failure: UpstreamError | None = None
        for payload in payloads:
            if payload == _DONE:
                done = True
                break
            chunk = json_object(self._name, orjson.loads(payload))
            if "error" in chunk:
                err = chunk["error"]
                message = err.get("message", "") if isinstance(err, dict) else str(err)
                failure = UpstreamServerError(f"{self._name} failed mid-stream: {message}",
                                              provider=self._name, raw=err)
                break
            for choice in chunk.get("choices") or ():
                deltas.append(parse_delta(choice, show_reasoning=show_reasoning))
            if chunk.get("usage"):
                usage = parse_usage(chunk["usage"])
        return StreamBatch(tuple(deltas), usage, done), failure

    def body(self, request: ChatRequest, deployment: Deployment, *, stream: bool) -> bytes:
        """The upstream request body. Pass-through parameters go first, typed ones win."""
        body: dict[str, Any] = orjson.loads(request.extra_json) if request.extra_json else {}
        if self._effort_only and "reasoning" in body:
            _effort_for_openai(body)
        body["model"] = deployment.upstream_model
        body["messages"] = [message_json(m) for m in request.messages]
        s = request.sampling
        for key, value in (
            ("max_tokens", s.max_tokens), ("temperature", s.temperature), ("top_p", s.top_p),
            ("frequency_penalty", s.frequency_penalty), ("presence_penalty", s.presence_penalty),
            ("seed", s.seed),
        ):
            if value is not None:
                body[key] = value
        if self._nonstandard:
            _nonstandard(body, s)
        if s.stop:
            body["stop"] = list(s.stop)
        if request.tools:
            body["tools"] = [tool_json(t.name, t.description, t.parameters_json, t.strict)
                             for t in request.tools]
        if request.tool_choice_json:
            body["tool_choice"] = orjson.Fragment(request.tool_choice_json)
        if request.response_format_json:
            body["response_format"] = orjson.Fragment(request.response_format_json)
        if request.user:
            body["user"] = request.user
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return orjson.dumps(body)


def _nonstandard(body: dict[str, Any], s: Sampling) -> None:
    if s.top_k is not None:
        body["top_k"] = s.top_k
    if s.repetition_penalty is not None:
        body["repetition_penalty"] = s.repetition_penalty


def _effort_for_openai(body: dict[str, Any]) -> None:
    """`reasoning` replaced by OpenAI's `reasoning_effort`, in place."""
    effort = reasoning_effort(body.pop("reasoning"))
    if effort is not None:
        body["reasoning_effort"] = effort


def reasoning_effort(value: Any) -> str | None:
    """OpenAI's `reasoning_effort` for the request's `reasoning` object: its effort as given
    ("none" included), the default effort when only a budget or `enabled` is given, nothing
    when reasoning is turned off by `enabled: false` or a zero budget."""
    wanted = reasoning_param.from_extra({"reasoning": value})
    if wanted is None:
        return None
    if wanted.effort is not None:
        return wanted.effort
    return reasoning_param.DEFAULT_EFFORT if wanted.enabled else None


def tool_json(name: str, description: str, parameters: bytes, strict: bool | None) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name}
    if description:
        fn["description"] = description
    if parameters:
        fn["parameters"] = orjson.Fragment(parameters)
    if strict is not None:
        fn["strict"] = strict
    return {"type": "function", "function": fn}


def tool_arguments(provider: str, arguments: str) -> dict[str, Any]:
    """Tool call arguments, a JSON string here, as the object other providers want."""
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamRejected("tool call arguments must be a JSON object", provider=provider)
    return value


def _part_json(part: ContentPart) -> Any:
    if part.type == "text":
        return {"type": "text", "text": part.text}
    if part.type == "image_url":
        image: dict[str, str] = {"url": part.image_url}
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    return orjson.Fragment(part.raw_json)


def message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    out["content"] = [_part_json(p) for p in m.parts] if m.parts else m.content
    if m.name:
        out["name"] = m.name
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    return out


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    calls = []
    for i, call in enumerate(raw or ()):
        fn = call.get("function") or {}
        calls.append(ToolCall(index=call.get("index", i), id=call.get("id") or "",
                              name=fn.get("name") or "", arguments=fn.get("arguments") or ""))
    return tuple(calls)


def parse_usage(raw: dict[str, Any]) -> TokenCounts:
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return TokenCounts(
        prompt=int(raw.get("prompt_tokens") or 0),
        completion=int(raw.get("completion_tokens") or 0),
        cached=int(prompt_details.get("cached_tokens") or 0),
        reasoning=int(completion_details.get("reasoning_tokens") or 0),
        # OpenAI reports no cache writes; OpenRouter-compatible upstreams do.
        cache_write=int(prompt_details.get("cache_write_tokens") or 0),
    )


def _reasoning_text(raw: dict[str, Any], show: bool) -> str | None:
    """`reasoning` (OpenRouter, vLLM) or `reasoning_content` (DeepSeek), unless hidden."""
    text = raw.get("reasoning") or raw.get("reasoning_content")
    return text if show and isinstance(text, str) else None


def parse_completion(provider: str, data: dict[str, Any], *,
                     show_reasoning: bool = True) -> Completion:
    choices = data.get("choices")
    if not choices:
        raise UpstreamBadResponse(f"{provider} answered without choices", provider=provider,
                                  raw=data)
    choice = choices[0]
    msg = choice.get("message") or {}
    message = Message(role=msg.get("role") or "assistant", content=msg.get("content"),
                      tool_calls=_tool_calls(msg.get("tool_calls")),
                      reasoning=_reasoning_text(msg, show_reasoning))
    usage = parse_usage(data["usage"]) if data.get("usage") else None
    return Completion(message, choice.get("finish_reason") or "stop", usage,
                      data.get("system_fingerprint") or "")


def parse_delta(choice: dict[str, Any], *, show_reasoning: bool = True) -> Delta:
    delta = choice.get("delta") or {}
    reasoning = _reasoning_text(delta, show_reasoning)
    return Delta(
        index=choice.get("index") or 0,
        role=delta.get("role") or "",
        content=delta.get("content"),
        tool_calls=_tool_calls(delta.get("tool_calls")),
        finish_reason=choice.get("finish_reason") or "",
        reasoning=reasoning,
    )


def parse_embeddings(provider: str, data: Any, count: int) -> Embeddings:
    """OpenAI's embeddings list, put back in input order (`index`)."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise not_json_object(provider)
    items = sorted(data["data"], key=lambda item: item.get("index", 0))
    if len(items) != count:
        raise UpstreamBadResponse(f"{provider} returned {len(items)} embeddings for {count} inputs",
                                  provider=provider)
    vectors = tuple(tuple(float(x) for x in item["embedding"]) for item in items)
    usage = data.get("usage") or {}
    tokens = TokenCounts(prompt=int(usage.get("prompt_tokens") or 0)) if usage else None
    return Embeddings(vectors, tokens)


def completion_as_batch(c: Completion) -> StreamBatch:
    delta = Delta(role="assistant", content=c.message.content, tool_calls=c.message.tool_calls,
                  finish_reason=c.finish_reason, reasoning=c.message.reasoning)
    return StreamBatch((delta,), c.usage, done=True)


def build(config: ProviderConfig, session: HttpClient) -> OpenAIProvider:
    base_url = config.url(OPENAI_URL)
    default_format = "openai" if "://api.openai.com" in base_url else "openrouter"
    reasoning_format = config.option("reasoning_format", default_format, str)
    if reasoning_format not in REASONING_FORMATS:
        raise ConfigError(f"providers.{config.name}.reasoning_format must be one of "
                          f"{', '.join(REASONING_FORMATS)}")
    return OpenAIProvider(
        config.name, base_url=base_url, api_key=config.api_key,
        session=session, headers=config.headers,
        send_nonstandard_params=config.option("send_nonstandard_params", False, bool),
        reasoning_format=reasoning_format,
    )
