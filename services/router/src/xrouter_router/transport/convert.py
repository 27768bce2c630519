"""Translation between xrouter.v1 protobuf messages and domain types, and nothing else."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from xrouter.v1 import router_pb2 as pb
from xrouter_router.domain.catalog import Model
from xrouter_router.domain.errors import Attempt, InvalidRequest
from xrouter_router.domain.routing import Plan
from xrouter_router.domain.service import StreamEvent
from xrouter_router.domain.stats import ProviderStatus
from xrouter_router.domain.types import (
    ChatRequest,
    ChatResult,
    ContentPart,
    Delta,
    EmbeddingRequest,
    Embeddings,
    Message,
    ProviderPreferences,
    RateWindow,
    Sampling,
    Served,
    Tool,
    ToolCall,
    Usage,
)

_MILLION = Decimal(1_000_000)
_MAX_PRICE = Decimal(10) ** 12


def _calls(calls: object) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(c.index, c.id, c.name, c.arguments) for c in calls)  # type: ignore[attr-defined]


def _message(m: pb.Message) -> Message:
    return Message(
        role=m.role,
        content=m.content if m.HasField("content") else None,
        parts=tuple(ContentPart(p.type, p.text, p.image_url, p.detail, p.raw_json) for p in m.parts),
        name=m.name,
        tool_call_id=m.tool_call_id,
        tool_calls=_calls(m.tool_calls) if m.tool_calls else (),
        # A previous answer's reasoning goes back upstream only signed (domain/types.Message).
        reasoning=m.reasoning if m.reasoning_signature and m.HasField("reasoning") else None,
        reasoning_signature=m.reasoning_signature,
    )


def _price(value: str, param: str) -> Decimal | None:
    if not value:
        return None
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise InvalidRequest(f"{param} must be a decimal number", param=param) from None
    # The gateway sends only plain decimals; a caller of the gRPC API directly might not, and
    # NaN or a 10^999999999 exponent would fail in the routing arithmetic.
    if not price.is_finite() or price < 0 or price > _MAX_PRICE:
        raise InvalidRequest(f"{param} must be a finite decimal from 0 to {_MAX_PRICE:f}",
                             param=param)
    return price


_SORTS = frozenset({"", "price", "latency", "throughput"})


def _preferences(p: pb.ProviderPreferences) -> ProviderPreferences:
    if p.sort not in _SORTS:
        raise InvalidRequest("provider.sort must be price, latency or throughput",
                             param="provider.sort")
    return ProviderPreferences(
        order=tuple(p.order),
        allow_fallbacks=p.allow_fallbacks if p.HasField("allow_fallbacks") else True,
        require_parameters=p.require_parameters,
        data_collection=p.data_collection,
        only=tuple(p.only),
        ignore=tuple(p.ignore),
        sort=p.sort,
        max_price_prompt=_price(p.max_price_prompt, "provider.max_price.prompt"),
        max_price_completion=_price(p.max_price_completion, "provider.max_price.completion"),
    )


def request_from_proto(r: pb.ChatRequest) -> ChatRequest:
    if not r.model:
        raise InvalidRequest("model is required", param="model")
    if not r.messages:
        raise InvalidRequest("messages must not be empty", param="messages")
    return ChatRequest(
        generation_id=r.generation_id,
        model=r.model,
        messages=tuple(_message(m) for m in r.messages),
        sampling=Sampling(
            max_tokens=r.max_tokens if r.HasField("max_tokens") else None,
            temperature=r.temperature if r.HasField("temperature") else None,
            top_p=r.top_p if r.HasField("top_p") else None,
            top_k=r.top_k if r.HasField("top_k") else None,
            frequency_penalty=r.frequency_penalty if r.HasField("frequency_penalty") else None,
            presence_penalty=r.presence_penalty if r.HasField("presence_penalty") else None,
            repetition_penalty=r.repetition_penalty if r.HasField("repetition_penalty") else None,
            seed=r.seed if r.HasField("seed") else None,
            stop=tuple(r.stop),
        ),
        fallback_models=tuple(r.models),
        tools=tuple(Tool(t.name, t.description, t.parameters_json,
                         t.strict if t.HasField("strict") else None, t.cache_control_json)
                    for t in r.tools),
        tool_choice_json=r.tool_choice_json,
        response_format_json=r.response_format_json,
        user=r.user,
        provider=_preferences(r.provider) if r.HasField("provider") else ProviderPreferences(),
        extra_json=r.extra_json,
    )


def _tool_calls_pb(calls: tuple[ToolCall, ...]) -> list[pb.ToolCall]:
    return [pb.ToolCall(index=c.index, id=c.id, name=c.name, arguments=c.arguments) for c in calls]


def usage_to_proto(u: Usage) -> pb.Usage:
    t = u.tokens
    out = pb.Usage(prompt_tokens=t.prompt, completion_tokens=t.completion, total_tokens=t.total,
                   cached_tokens=t.cached, reasoning_tokens=t.reasoning,
                   cache_write_tokens=t.cache_write, cost=format(u.cost.normalize(), "f"),
                   estimated=t.estimated)
    if u.prompt_cost is not None:
        out.prompt_cost = format(u.prompt_share.normalize(), "f")
    return out


def attempts_to_proto(attempts: tuple[Attempt, ...]) -> list[pb.AttemptInfo]:
    return [pb.AttemptInfo(model=a.model, provider=a.provider, deployment=a.deployment,
                           outcome=a.outcome, latency_ms=a.latency_ms, status=a.status)
            for a in attempts]


def result_to_proto(generation_id: str, result: ChatResult) -> pb.ChatResponse:
    c = result.completion
    m = c.message
    message = pb.Message(role=m.role or "assistant", tool_calls=_tool_calls_pb(m.tool_calls))
    if m.content is not None:
        message.content = m.content
    if m.reasoning is not None:
        message.reasoning = m.reasoning
        message.reasoning_signature = m.reasoning_signature
    return pb.ChatResponse(
        id=generation_id,
        model=result.served.model,
        provider=result.served.provider,
        created=result.served.created,
        choices=[pb.Choice(index=0, message=message, finish_reason=c.finish_reason)],
        usage=usage_to_proto(result.usage),
        system_fingerprint=c.system_fingerprint,
        deployment=result.served.deployment,
        attempts=attempts_to_proto(result.attempts),
        rate_limit=rate_limit_to_proto(result.rate_limit),
    )


def rate_limit_to_proto(window: RateWindow | None) -> pb.RateLimitInfo | None:
    if window is None:
        return None
    return pb.RateLimitInfo(limit=window.limit, remaining=max(0, window.remaining),
                            reset=int(window.reset))


def _delta(d: Delta) -> pb.ChunkDelta:
    out = pb.ChunkDelta(index=d.index, role=d.role, finish_reason=d.finish_reason)
    if d.content is not None:
        out.content = d.content
    if d.reasoning is not None:
        out.reasoning = d.reasoning
    if d.reasoning_signature:
        out.reasoning_signature = d.reasoning_signature
    if d.tool_calls:
        out.tool_calls.extend(_tool_calls_pb(d.tool_calls))
    return out


def event_to_proto(ev: StreamEvent, error: pb.ErrorDetail | None) -> pb.ChatStreamEvent:
    out = pb.ChatStreamEvent(chunks=[_delta(d) for d in ev.deltas])
    if ev.served is not None:
        out.model = ev.served.model
        out.provider = ev.served.provider
        out.created = ev.served.created
        out.deployment = ev.served.deployment
        out.attempts.extend(attempts_to_proto(ev.attempts))
    window = rate_limit_to_proto(ev.rate_limit)
    if window is not None:
        out.rate_limit.CopyFrom(window)
    if ev.end is not None:
        out.end.usage.CopyFrom(usage_to_proto(ev.end.usage))
        if error is not None:
            out.end.error.CopyFrom(error)
    return out


def per_token(price_per_million: Decimal) -> str:
    value = (price_per_million / _MILLION).normalize()
    return format(value, "f")


def model_to_proto(m: Model) -> pb.ModelInfo:
    shown = m.cheapest
    price = shown.price
    caps = m.capabilities
    params = ["max_tokens", "temperature", "top_p", "stop", "seed", "frequency_penalty",
              "presence_penalty"]
    if "tools" in caps:
        params += ["tools", "tool_choice"]
    if "json_mode" in caps:
        params += ["response_format"]
    return pb.ModelInfo(
        id=m.id, name=m.name, description=m.description, created=m.created,
        context_length=m.context_length, max_completion_tokens=m.max_completion_tokens,
        price_prompt=per_token(price.prompt), price_completion=per_token(price.completion),
        price_cache_read=per_token(price.cache_read_rate),
        price_cache_write=per_token(price.cache_write_rate),
        price_reasoning=per_token(price.reasoning_rate),
        providers=list(m.providers), supported_parameters=params,
        input_modalities=["text", "image"] if "vision" in caps else ["text"],
        aliases=list(m.aliases), jurisdictions=list(m.jurisdictions),
        price_currency=shown.currency, unpriced=m.unpriced,
        fx_rate="" if shown.fx_rate is None else decimal_text(shown.fx_rate),
        original_price_prompt=per_token(shown.original_price.prompt)
        if shown.original_price is not None else "",
        original_price_completion=per_token(shown.original_price.completion)
        if shown.original_price is not None else "",
    )


def decimal_text(value: Decimal) -> str:
    """A decimal as a plain string (no exponent, no trailing zeros)."""
    return format(value.normalize(), "f")


def explain_to_proto(route: Plan) -> pb.ExplainResponse:
    out = pb.ExplainResponse(strategy=route.strategy,
                             order=[c.deployment.id for c in route.candidates])
    for s in route.scored:
        item = pb.ExplainCandidate(
            model=s.model, provider=s.deployment.provider, deployment=s.deployment.id,
            price_prompt=format(s.deployment.price.prompt.normalize(), "f"),
            price_completion=format(s.deployment.price.completion.normalize(), "f"),
            rejected_by=s.rejected_by, score=s.score, health=s.health, position=s.position)
        if s.latency_ms is not None:
            item.latency_ms = s.latency_ms
        if s.throughput is not None:
            item.throughput = s.throughput
        out.candidates.append(item)
    return out


def status_to_proto(statuses: list[ProviderStatus]) -> pb.ProviderStatusResponse:
    out = pb.ProviderStatusResponse()
    for st in statuses:
        item = pb.ProviderStatusInfo(name=st.name, status=st.status, updated=st.updated)
        if st.latency_ms is not None:
            item.latency_ms = st.latency_ms
        if st.success_rate is not None:
            item.success_rate = st.success_rate
        out.providers.append(item)
    return out


def embed_request_from_proto(r: pb.EmbedRequest) -> EmbeddingRequest:
    if not r.model:
        raise InvalidRequest("model is required", param="model")
    if not r.input:
        raise InvalidRequest("input must not be empty", param="input")
    return EmbeddingRequest(model=r.model, inputs=tuple(r.input),
                            dimensions=r.dimensions if r.HasField("dimensions") else None,
                            user=r.user, generation_id=r.generation_id)


def embeddings_to_proto(served: Served, result: Embeddings, usage: Usage) -> pb.EmbedResponse:
    return pb.EmbedResponse(model=served.model, provider=served.provider,
                            data=[pb.EmbeddingVector(values=v) for v in result.vectors],
                            usage=usage_to_proto(usage))
