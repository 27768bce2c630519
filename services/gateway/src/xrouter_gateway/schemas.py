"""The public request schema of /v1/chat/completions, validated by msgspec in one pass.

Field names and ranges follow OpenAI's API and OpenRouter's documented parameters. Fields not
declared here are not rejected: they are passed through to OpenAI-compatible upstreams as-is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Meta(ge=1)]
Int32 = Annotated[int, Meta(ge=0, le=2**31 - 1)]
Price = Annotated[float | str, Meta(description="RUB per million tokens")]


class CacheControl(Struct, omit_defaults=True):
    """Anthropic's prompt-cache breakpoint, as both formats take it."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class ImageUrl(Struct):
    url: Annotated[str, Meta(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(Struct):
    """A part of a multi-part message: text, image_url, or another OpenAI part type
    (input_audio, file, ...) which is passed through untouched."""

    type: Annotated[str, Meta(min_length=1)]
    text: str | None = None
    image_url: ImageUrl | None = None


class FunctionCall(Struct):
    name: str
    arguments: str = ""


class ToolCallIn(Struct):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class ReasoningDetail(Struct):
    """OpenRouter's `reasoning_details` item: a previous answer's reasoning, sent back signed so
    the provider that signed it (Anthropic) can continue from it."""

    type: str
    text: str | None = None
    signature: str | None = None
    format: str | None = None
    index: int | None = None


class ChatMessage(Struct):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    reasoning_details: list[ReasoningDetail] | None = None


class FunctionDef(Struct):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(Struct):
    type: Literal["function"]
    function: FunctionDef
    # Anthropic's breakpoint on the definition (as LiteLLM takes it); other upstreams ignore it.
    cache_control: CacheControl | None = None


class NamedFunction(Struct):
    name: str


class ToolChoiceFunction(Struct):
    type: Literal["function"]
    function: NamedFunction


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class StreamOptions(Struct):
    include_usage: bool | None = None


class MaxPrice(Struct, forbid_unknown_fields=True):
    prompt: Price | None = None
    completion: Price | None = None
    request: Price | None = None
    image: Price | None = None


class ProviderPreferences(Struct, forbid_unknown_fields=True):
    """OpenRouter's `provider` object; unknown fields are a 400, not silently ignored."""

    order: list[str] | None = None
    allow_fallbacks: bool | None = None
    require_parameters: bool | None = None
    data_collection: Literal["allow", "deny"] | None = None
    only: list[str] | None = None
    ignore: list[str] | None = None
    quantizations: list[str] | None = None
    sort: Literal["price", "throughput", "latency"] | None = None
    max_price: MaxPrice | None = None


class ChatCompletionRequest(Struct):
    model: Annotated[str, Meta(min_length=1)] | None = None
    models: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(max_length=16)] | None = None
    messages: Annotated[list[ChatMessage], Meta(min_length=1)] | None = None
    prompt: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Meta(ge=1, le=2**31 - 1)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1, le=2**31 - 1)] | None = None
    temperature: Temperature | None = None
    top_p: Annotated[float, Meta(gt=0.0, le=1.0)] | None = None
    top_k: Int32 | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    repetition_penalty: Annotated[float, Meta(gt=0.0, le=2.0)] | None = None
    min_p: Unit | None = None
    top_a: Unit | None = None
    seed: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    stop: str | Annotated[list[str], Meta(max_length=16)] | None = None
    n: Annotated[int, Meta(ge=1, le=1)] | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    user: str | None = None
    provider: ProviderPreferences | None = None
    transforms: list[str] | None = None
    route: Literal["fallback"] | None = None


# Fields carried by typed proto fields; every other top-level key travels in extra_json.
TYPED_FIELDS = frozenset({
    "model", "models", "messages", "prompt", "stream", "stream_options", "max_tokens",
    "max_completion_tokens", "temperature", "top_p", "top_k", "frequency_penalty",
    "presence_penalty", "repetition_penalty", "seed", "stop", "n", "tools", "tool_choice",
    "response_format", "user", "provider", "transforms", "route",
})

