"""Google's Gemini API: POST {base_url}/{api_version}/models/{model}:generateContent (or
:streamGenerateContent?alt=sse, a stream without an end marker), `x-goog-api-key` auth.

Options ([providers.NAME] keys): `api_version` (path segment, default "v1beta");
`thought_signature` (sent on the first replayed functionCall of each model turn, since our
tool call ids cannot carry Gemini's own signature and Gemini 3 models reject calls without one;
default "skip_thought_signature_validator", "" sends none).

The request's `reasoning` becomes `generationConfig.thinkingConfig`: `thinkingBudget` (the
explicit max_tokens, else the effort's budget; 0 for effort "none" or `enabled: false`) and
`includeThoughts` (unless `reasoning.exclude`). Thought parts (`thought: true`) come back as
reasoning, hidden when the request says `reasoning.exclude`.
"""

from __future__ import annotations

import mimetypes
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.errors import (
    InvalidRequest,
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
    Sampling,
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
    json_object,
    nested_object,
    raw_error,
    read_events,
)
from xrouter_router.providers.http1 import HttpClient
from xrouter_router.providers.openai import tool_arguments

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
SKIP_SIGNATURE = "skip_thought_signature_validator"
_SYSTEM_ROLES = ("system", "developer")
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                       "IMAGE_SAFETY"})


class GeminiProvider:
    """Speaks the Gemini generateContent wire format over a shared HTTP client."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str,
        session: HttpClient,
        headers: Mapping[str, str] | None = None,
        api_version: str = DEFAULT_API_VERSION,
        thought_signature: str = SKIP_SIGNATURE,
    ) -> None:
        self._name = name
        self._base = f"{base_url.rstrip('/')}/{api_version}/models/"
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["x-goog-api-key"] = api_key
        self._http = Upstream(name, session, self._headers, status_error=status_error)
        self._signature = thought_signature

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        return None

    def url(self, model: str, *, stream: bool) -> str:
        model = urllib.parse.quote(model.removeprefix("models/"), safe="")
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._base}{model}:{method}"

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        show = reasoning_param.shown(reasoning_param.requested(request.extra_json))
        return await self._http.post_json(
            self.url(deployment.upstream_model, stream=False), self.body(request, deployment),
            lambda data: parse_response(self._name, json_object(self._name, data),
                                        show_reasoning=show))

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        url = self.url(deployment.upstream_model, stream=True)
        async with self._http.open(url, self.body(request, deployment),
                                   content_types=("text/event-stream",)) as resp:
            show = reasoning_param.shown(reasoning_param.requested(request.extra_json))
            state = StreamState(self._name, show_reasoning=show)
            async for events in read_events(resp, self._name):
                deltas = state.deltas([e.data for e in events])
                if deltas:
                    yield StreamBatch(deltas)
                if state.error is not None:
                    raise state.error
            # No [DONE]: the stream is complete when the connection ends after a finishReason.
            if not state.finished:
                raise incomplete_stream(self._name)
        yield StreamBatch((), state.usage, done=True)

    def body(self, request: ChatRequest, deployment: Deployment) -> bytes:
        return orjson.dumps(request_body(self._name, request, deployment,
                                         signature=self._signature))


# ---- request --------------------------------------------------------------------------------

def request_body(provider: str, request: ChatRequest, deployment: Deployment, *,
                 signature: str = SKIP_SIGNATURE) -> dict[str, Any]:
    system, contents = contents_json(provider, request.messages, signature)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [declaration(t) for t in request.tools]}]
        config = tool_config(request.tool_choice_json)
        if config is not None:
            body["toolConfig"] = config
    body["generationConfig"] = generation_config(request.sampling, deployment,
                                                 request.response_format_json)
    wanted = reasoning_param.requested(request.extra_json)
    if wanted is not None:
        body["generationConfig"]["thinkingConfig"] = thinking_config(
            wanted, body["generationConfig"].get("maxOutputTokens"))
    return body


def thinking_config(wanted: reasoning_param.Reasoning, max_tokens: int | None) -> dict[str, Any]:
    if not wanted.enabled:
        return {"thinkingBudget": 0}
    return {"thinkingBudget": wanted.budget(max_tokens), "includeThoughts": not wanted.exclude}


def generation_config(s: Sampling, deployment: Deployment, response_format: bytes) -> dict[str, Any]:
    """Everything Gemini takes of the sampling; repetition_penalty has no equivalent."""
    config: dict[str, Any] = {"candidateCount": 1}
    max_tokens = s.max_tokens
    if max_tokens is not None and deployment.max_completion_tokens > 0:
        max_tokens = min(max_tokens, deployment.max_completion_tokens)
    for key, value in (
        ("maxOutputTokens", max_tokens), ("temperature", s.temperature), ("topP", s.top_p),
        ("topK", s.top_k), ("presencePenalty", s.presence_penalty),
        ("frequencyPenalty", s.frequency_penalty), ("seed", s.seed),
    ):
        if value is not None:
            config[key] = value
    if s.stop:
        config["stopSequences"] = list(s.stop)
    fmt = orjson.loads(response_format) if response_format else None
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        spec = fmt.get("json_schema")
        if isinstance(spec, dict) and spec.get("schema") is not None:
            config["responseJsonSchema"] = spec["schema"]
    return config


def declaration(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    if tool.parameters_json:
        # parametersJsonSchema takes JSON Schema as clients write it; `parameters` would
        # need it rewritten into Gemini's OpenAPI subset.
        out["parametersJsonSchema"] = orjson.Fragment(tool.parameters_json)
    return out


def tool_config(raw: bytes) -> dict[str, Any] | None:
    """OpenAI's tool_choice as a functionCallingConfig: AUTO, NONE, or ANY (+ one name)."""
    if not raw:
        return None
    choice = orjson.loads(raw)
    config: dict[str, Any]
    if isinstance(choice, str) and choice in _MODES:
        config = {"mode": _MODES[choice]}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        config = {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    else:
        return None
    return {"functionCallingConfig": config}


def contents_json(provider: str, messages: tuple[Message, ...],
                  signature: str = SKIP_SIGNATURE) -> tuple[str, list[dict[str, Any]]]:
    """The system instruction and the contents, roles user/model, consecutive same-role
    contents merged (so parallel function responses share one content, as Gemini requires)."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name: OpenAI's tool messages lack it
    for m in messages:
        if m.role in _SYSTEM_ROLES:
            if m.text():
                system.append(m.text())
            continue
        if m.role == "assistant":
            role, parts = "model", _model_parts(provider, m, signature)
            names.update((c.id, c.name) for c in m.tool_calls)
        elif m.role == "tool":
            role, parts = "user", [function_response(m, names)]
        else:
            role, parts = "user", _user_parts(m)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return "\n\n".join(system), contents


def _model_parts(provider: str, m: Message, signature: str) -> list[dict[str, Any]]:
    text = m.text()
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for i, call in enumerate(m.tool_calls):
        part: dict[str, Any] = {"functionCall": {"name": call.name,
                                                 "args": tool_arguments(provider, call.arguments)}}
        if i == 0 and signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def function_response(m: Message, names: Mapping[str, str]) -> dict[str, Any]:
    """A tool result: a JSON object is the response itself, anything else goes under "output"."""
    text = m.text()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    response = value if isinstance(value, dict) else {"output": text}
    name = m.name or names.get(m.tool_call_id, "")
    return {"functionResponse": {"name": name, "response": response}}


def _user_parts(m: Message) -> list[dict[str, Any]]:
    if not m.parts:
        return [{"text": m.content or ""}]
    return [p for p in (_part_json(part) for part in m.parts) if p is not None]


def _part_json(part: ContentPart) -> dict[str, Any] | None:
    if part.type == "text":
        return {"text": part.text}
    if part.type == "image_url":
        return image_part(part.image_url)
    return None  # audio and files need the Files API: not supported


def image_part(url: str) -> dict[str, Any]:
    """A data: URL becomes inlineData; an http(s) URL becomes fileData Gemini fetches itself."""
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        return {"inlineData": {"mimeType": header.split(";")[0] or "image/png", "data": data}}
    try:
        path = urllib.parse.urlsplit(url).path
    except ValueError:  # "http://[::1": the client's mistake, not ours
        raise InvalidRequest("image_url is not a valid URL", param="messages") from None
    mime = mimetypes.guess_type(path)[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


# ---- response -------------------------------------------------------------------------------

def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def finish_reason(reason: str, *, called: bool) -> str:
    if reason == "STOP":
        return "tool_calls" if called else "stop"
    if reason == "MAX_TOKENS":
        return "length"
    return "content_filter" if reason in _FILTERED else "stop"


def parse_usage(raw: Any) -> TokenCounts | None:
    """Gemini counts thoughts apart from candidates; OpenAI's completion includes reasoning."""
    if not isinstance(raw, dict) or not raw:
        return None
    thoughts = int(raw.get("thoughtsTokenCount") or 0)
    return TokenCounts(
        prompt=int(raw.get("promptTokenCount") or 0) + int(raw.get("toolUsePromptTokenCount") or 0),
        completion=int(raw.get("candidatesTokenCount") or 0) + thoughts,
        cached=int(raw.get("cachedContentTokenCount") or 0),
        reasoning=thoughts,
    )


def split_parts(parts: Any, first_index: int = 0) -> tuple[list[str], list[str], list[ToolCall]]:
    """Texts, thoughts and function calls of a content's parts; calls get generated ids
    (Gemini's have none) and indexes counted from `first_index`."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for part in map(nested_object, parts or ()):
        if "functionCall" in part:
            fn = nested_object(part["functionCall"])
            calls.append(ToolCall(first_index + len(calls), fn.get("id") or new_call_id(),
                                  fn["name"], orjson.dumps(fn.get("args") or {}).decode()))
        elif part.get("text"):
            (thoughts if part.get("thought") else texts).append(part["text"])
    return texts, thoughts, calls


def parse_response(provider: str, data: dict[str, Any], *,
                   show_reasoning: bool = True) -> Completion:
    usage = parse_usage(data.get("usageMetadata"))
    candidates = data.get("candidates")
    if not candidates:
        if nested_object(data.get("promptFeedback") or {}).get("blockReason"):
            return Completion(Message(role="assistant", content=""), "content_filter", usage)
        raise UpstreamBadResponse(f"{provider} answered without candidates", provider=provider,
                                  raw=data)
    candidate = nested_object(candidates[0])
    texts, thoughts, calls = split_parts(nested_object(candidate.get("content") or {}).get("parts"))
    text = "".join(texts) if texts or not calls else None
    reason = finish_reason(candidate.get("finishReason") or "STOP", called=bool(calls))
    reasoning = "".join(thoughts) if thoughts and show_reasoning else None
    return Completion(Message(role="assistant", content=text, tool_calls=tuple(calls),
                              reasoning=reasoning), reason, usage)


def stream_error(provider: str, err: Any) -> UpstreamError:
    code = err.get("code") if isinstance(err, dict) else None
    message = err.get("message", "") if isinstance(err, dict) else str(err)
    cls = UpstreamRateLimited if code == 429 else UpstreamServerError
    return cls(f"{provider} failed mid-stream: {message}", provider=provider, raw=err)


class StreamState:
    """Follows one stream: each chunk is a whole GenerateContentResponse whose usageMetadata
    is cumulative, so only the last is kept; function calls are numbered across chunks. An
    error chunk stops the parsing and is kept in `error`, after the deltas before it."""

    def __init__(self, provider: str, *, show_reasoning: bool = True) -> None:
        self._provider = provider
        self._show_reasoning = show_reasoning
        self._calls = 0
        self._started = False
        self.usage: TokenCounts | None = None
        self.finished = False
        self.error: UpstreamError | None = None

    def deltas(self, payloads: list[bytes]) -> tuple[Delta, ...]:
        out: list[Delta] = []
        for payload in payloads:
            chunk = json_object(self._provider, orjson.loads(payload))
            if "error" in chunk:
                self.error = stream_error(self._provider, chunk["error"])
                break
            self.usage = parse_usage(chunk.get("usageMetadata")) or self.usage
            delta = self._delta(chunk)
            if delta is not None:
                out.append(delta)
        return tuple(out)

    def _delta(self, chunk: dict[str, Any]) -> Delta | None:
        candidates = chunk.get("candidates")
        if not candidates:
            if nested_object(chunk.get("promptFeedback") or {}).get("blockReason"):
                self.finished = True
                return Delta(role="assistant", finish_reason="content_filter")
            return None
        candidate = nested_object(candidates[0])
        texts, thoughts, calls = split_parts(nested_object(candidate.get("content") or {}).get("parts"),
                                             self._calls)
        self._calls += len(calls)
        if not self._show_reasoning:
            thoughts = []
        reason = candidate.get("finishReason") or ""
        if reason:
            self.finished = True
            reason = finish_reason(reason, called=self._calls > 0)
        if not (texts or thoughts or calls or reason):
            return None
        role = "" if self._started else "assistant"
        self._started = True
        return Delta(role=role, content="".join(texts) if texts else None,
                     tool_calls=tuple(calls), finish_reason=reason,
                     reasoning="".join(thoughts) if thoughts else None)


# ---- errors ---------------------------------------------------------------------------------

def status_error(provider: str, status: int, body: bytes, retry_after: str | None) -> UpstreamError:
    """Gemini's error body is {"error": {"code", "message", "status", "details"}}. A bad API key
    is a 400 with reason API_KEY_INVALID: reported as the 401 it means. A 429 says when to retry
    in a RetryInfo detail rather than a Retry-After header."""
    err = raw_error(body)
    inner = err.get("error") if isinstance(err, dict) else None
    details = inner.get("details") if isinstance(inner, dict) else None
    details = [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []
    if status == 400 and any(d.get("reason") == "API_KEY_INVALID" for d in details):
        status = 401
    if not retry_after:
        retry_after = next((str(d.get("retryDelay", "")).removesuffix("s") for d in details
                            if str(d.get("@type", "")).endswith("google.rpc.RetryInfo")), None)
    return error_for_status(provider, status, body, retry_after)


def build(config: ProviderConfig, session: HttpClient) -> GeminiProvider:
    return GeminiProvider(
        config.name, base_url=config.url(DEFAULT_BASE_URL), api_key=config.api_key,
        session=session, headers=config.headers,
        api_version=config.option("api_version", DEFAULT_API_VERSION, str),
        thought_signature=config.option("thought_signature", SKIP_SIGNATURE, str),
    )
