"""GigaChat's wire format both ways, as pure functions: request bodies from the canonical request,
completions, stream chunks, tokens and embeddings back into domain values, and the error bodies
(`{"status", "message"}` from the API, `{"code", "message"}` from the token endpoint)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import orjson

from xrouter_router.domain.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRejected,
    UpstreamServerError,
)
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    Delta,
    Embeddings,
    Message,
    TokenCounts,
    Tool,
    ToolCall,
)
from xrouter_router.providers.http import error_for_status, raw_error

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "function_call": "tool_calls",
    "blacklist": "content_filter",
}
# GigaChat wants temperature > 0; OpenAI's 0 (greedy) becomes the smallest useful positive value.
MIN_TEMPERATURE = 0.001
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}
_MS_THRESHOLD = 10**11  # an epoch above this is in milliseconds (10**11 s is the year 5138)


def new_call_id() -> str:
    """GigaChat gives function calls no ids; OpenAI clients need one to answer the call."""
    return "call_" + secrets.token_hex(12)


def finish_reason(raw: Any, has_call: bool) -> str:
    """OpenAI's finish reason for GigaChat's. `error` (the model wrote invalid function
    arguments) and anything unknown end the turn: as a tool call if one came, else as stop."""
    mapped = FINISH_REASONS.get(raw) if isinstance(raw, str) else None
    return mapped or ("tool_calls" if has_call else "stop")


# ---- requests ----------------------------------------------------------------------------

def chat_body(provider: str, request: ChatRequest, model: str, *, stream: bool,
              update_interval: float = 0.0) -> bytes:
    """The POST /chat/completions body. Sampling GigaChat lacks (stop, seed, top_k, frequency
    and presence penalties), user and extra_json are dropped; the provider turns response_format
    into a forced function before this is called."""
    body: dict[str, Any] = {"model": model, "messages": messages_json(provider, request.messages)}
    s = request.sampling
    if s.temperature is not None:
        body["temperature"] = max(s.temperature, MIN_TEMPERATURE)
    if s.top_p is not None:
        body["top_p"] = min(max(s.top_p, 0.0), 1.0)
    if s.max_tokens is not None and s.max_tokens > 0:
        body["max_tokens"] = s.max_tokens
    if s.repetition_penalty is not None and s.repetition_penalty > 0:
        body["repetition_penalty"] = s.repetition_penalty
    if request.tools:
        body["functions"] = [function_json(t) for t in request.tools]
        body["function_call"] = function_call_json(request.tool_choice_json, request.tools)
    if stream:
        body["stream"] = True
        if update_interval > 0:
            body["update_interval"] = update_interval
    return orjson.dumps(body)


def function_json(tool: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool.name}
    if tool.description:
        fn["description"] = tool.description
    # `parameters` is required by GigaChat.
    fn["parameters"] = orjson.Fragment(tool.parameters_json) if tool.parameters_json else _EMPTY_PARAMETERS
    return fn


def function_call_json(tool_choice_json: bytes, tools: Sequence[Tool]) -> Any:
    """OpenAI's tool_choice as GigaChat's function_call. GigaChat's own default is "none", so a
    request with tools and no choice asks for "auto", as OpenAI means it; "required" can be
    forced only when there is exactly one function."""
    if not tool_choice_json:
        return "auto"
    choice = orjson.loads(tool_choice_json)
    if choice in ("auto", "none"):
        return choice
    if choice == "required":
        return {"name": tools[0].name} if len(tools) == 1 else "auto"
    fn = choice.get("function") if isinstance(choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    return {"name": name} if isinstance(name, str) and name else "auto"


def messages_json(provider: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """GigaChat carries one function_call per assistant message, so an assistant turn with
    several tool calls becomes one assistant message per call, each followed by its result."""
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        i += 1
        if m.role != "assistant" or not m.tool_calls:
            out.append(_message_json(m))
            continue
        results: list[Message] = []
        while i < len(messages) and messages[i].role == "tool":
            results.append(messages[i])
            i += 1
        out.extend(_call_turns(provider, m, results))
    return out


def _message_json(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return function_result_json(m, m.name)
    role = "system" if m.role == "developer" else m.role
    # Images would need an upload to /files and `attachments`: only the text parts go.
    return {"role": role, "content": m.text()}


def _call_turns(provider: str, m: Message, results: list[Message]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for n, call in enumerate(m.tool_calls):
        turns.append({"role": "assistant", "content": m.text() if n == 0 else "",
                      "function_call": {"name": call.name,
                                        "arguments": call_arguments(provider, call.arguments)}})
        match = next((r for r in results if r.tool_call_id == call.id), None)
        if match is not None:
            results.remove(match)
            turns.append(function_result_json(match, call.name))
    turns.extend(function_result_json(r, r.name) for r in results)
    return turns


def call_arguments(provider: str, arguments: str) -> orjson.Fragment:
    """OpenAI's arguments string as GigaChat's arguments object."""
    if not arguments.strip():
        return orjson.Fragment(b"{}")
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamRejected(f"{provider} takes tool call arguments only as a JSON object",
                               provider=provider)
    return orjson.Fragment(arguments.encode())


def function_result_json(m: Message, name: str) -> dict[str, Any]:
    """A tool result as GigaChat's `function` message, whose content must be JSON: text that
    is not JSON goes as a JSON string."""
    text = m.text()
    try:
        orjson.loads(text)
        content = text
    except orjson.JSONDecodeError:
        content = orjson.dumps(text).decode()
    out: dict[str, Any] = {"role": "function", "content": content}
    if name:
        out["name"] = name
    return out


def embeddings_body(inputs: Sequence[str], model: str) -> bytes:
    return orjson.dumps({"model": model, "input": list(inputs)})


# ---- responses ---------------------------------------------------------------------------

def parse_usage(raw: dict[str, Any]) -> TokenCounts:
    """GigaChat's prompt_tokens are the billed ones: the cached (precached_prompt_tokens) come
    on top of them, as Anthropic's cache reads do; OpenAI's prompt includes them."""
    cached = int(raw.get("precached_prompt_tokens") or 0)
    return TokenCounts(
        prompt=int(raw.get("prompt_tokens") or 0) + cached,
        completion=int(raw.get("completion_tokens") or 0),
        cached=cached,
    )


def _tool_calls(function_call: Any) -> tuple[ToolCall, ...]:
    if not isinstance(function_call, dict) or not function_call.get("name"):
        return ()
    args = function_call.get("arguments")
    text = args if isinstance(args, str) else orjson.dumps({} if args is None else args).decode()
    return (ToolCall(0, new_call_id(), str(function_call["name"]), text),)


def parse_completion(provider: str, data: dict[str, Any]) -> Completion:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamBadResponse(f"{provider} answered without choices", provider=provider,
                                  raw=data)
    msg = choices[0].get("message")
    if not isinstance(msg, dict):
        raise UpstreamBadResponse(f"{provider} answered a choice without a message",
                                  provider=provider, raw=data)
    calls = _tool_calls(msg.get("function_call"))
    content = msg.get("content")
    message = Message(role="assistant", content=None if calls and not content else content,
                      tool_calls=calls)
    usage = parse_usage(data["usage"]) if isinstance(data.get("usage"), dict) else None
    return Completion(message, finish_reason(choices[0].get("finish_reason"), bool(calls)), usage)


def parse_chunk(provider: str, chunk: dict[str, Any]) -> tuple[list[Delta], TokenCounts | None]:
    """One stream event (typed `chat.completion`, carrying `delta`): its deltas and usage."""
    if "choices" not in chunk and "message" in chunk:
        raise UpstreamServerError(f"{provider} failed mid-stream: {chunk['message']}",
                                  provider=provider, raw=chunk)
    deltas: list[Delta] = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            raise UpstreamBadResponse(f"{provider} streamed a choice without a delta",
                                      provider=provider, raw=chunk)
        role = delta.get("role") or ""
        reason = choice.get("finish_reason")
        if role == "function_in_progress" and not reason:
            continue  # progress notes of GigaChat's built-in functions, not answer text
        calls = _tool_calls(delta.get("function_call"))
        content = delta.get("content")
        deltas.append(Delta(
            index=choice.get("index") or 0,
            role="assistant" if role == "function_in_progress" else role,
            content=None if calls and not content else content,
            tool_calls=calls,
            finish_reason=finish_reason(reason, bool(calls)) if reason else "",
            reasoning=delta.get("reasoning_content"),
        ))
    usage = parse_usage(chunk["usage"]) if isinstance(chunk.get("usage"), dict) else None
    return deltas, usage


def parse_embeddings(provider: str, data: dict[str, Any], count: int) -> Embeddings:
    """Vectors in input order (by `index`); usage is the sum of the per-item prompt_tokens."""
    items = data.get("data")
    if not isinstance(items, list) or len(items) != count:
        raise UpstreamBadResponse(f"{provider} answered a different number of embeddings",
                                  provider=provider)
    ordered = sorted(items, key=lambda item: int(item["index"]))
    vectors = tuple(tuple(float(x) for x in item["embedding"]) for item in ordered)
    counts = [(item.get("usage") or {}).get("prompt_tokens") for item in ordered]
    known = [int(c) for c in counts if c is not None]
    return Embeddings(vectors, TokenCounts(prompt=sum(known)) if known else None)


def parse_token(provider: str, data: Any) -> tuple[str, float]:
    """The access token and when it expires, in epoch seconds. `expires_at` is in milliseconds
    (the spec's example shows seconds: both are read). The body is never put in an error: it
    holds a credential."""
    token = data.get("access_token") if isinstance(data, dict) else None
    expires = data.get("expires_at") if isinstance(data, dict) else None
    if (not isinstance(token, str) or not token or not isinstance(expires, int)
            or isinstance(expires, bool)):
        raise UpstreamBadResponse(f"{provider} token endpoint answered without a token",
                                  provider=provider)
    return token, expires / 1000 if expires > _MS_THRESHOLD else float(expires)


# ---- errors ------------------------------------------------------------------------------

def error_message(body: bytes) -> str:
    """The `message` of a GigaChat error body, or "" when the body is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else ""


def api_error(provider: str, status: int, body: bytes, retry_after: str | None) -> UpstreamError:
    detail = error_message(body)
    text = f"{provider} answered HTTP {status}" + (f": {detail}" if detail else "")
    return error_for_status(provider, status, body, retry_after, text)


def token_error(provider: str, status: int, body: bytes, retry_after: str | None) -> UpstreamError:
    """A refused token request is our credentials or scope being wrong (a 400 says "scope from
    db not fully includes consumed scope" or "Can't decode 'Authorization' header"), never the
    client's request: every 4xx but 408/429 is an auth error, so another deployment is tried."""
    detail = error_message(body)
    text = f"{provider} token endpoint answered HTTP {status}" + (f": {detail}" if detail else "")
    if 400 <= status < 500 and status not in (408, 429):
        return UpstreamAuthError(text, provider=provider, status=status, raw=raw_error(body))
    return error_for_status(provider, status, body, retry_after, text)
