"""Small constructors for router domain values, so unit tests state only what they vary."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from xrouter_router.domain.catalog import Catalog, Deployment, Model, Price
from xrouter_router.domain.types import ChatRequest, Message, ProviderPreferences

ALL_CAPS = frozenset({"tools", "json_mode", "vision", "streaming"})


def deployment(model_id: str, provider: str, *, caps: Iterable[str] = ("streaming",),
               prompt: str = "0", completion: str = "0", weight: float = 1.0,
               parameters: Iterable[str] = (), collects_data: bool = False) -> Deployment:
    return Deployment(
        id=f"{model_id}@{provider}",
        provider=provider,
        upstream_model=f"up-{model_id}",
        price=Price(Decimal(prompt), Decimal(completion)),
        context_length=8192,
        max_completion_tokens=1024,
        capabilities=frozenset(caps),
        weight=weight,
        parameters=frozenset(parameters),
        collects_data=collects_data,
    )


def model(model_id: str, *deployments: Deployment, aliases: tuple[str, ...] = ()) -> Model:
    return Model(id=model_id, name=model_id, deployments=deployments, aliases=aliases)


def catalog(*models: Model) -> Catalog:
    return Catalog(models)


def request(model_id: str = "m", *, text: str = "hello", messages: tuple[Message, ...] = (),
            fallback: tuple[str, ...] = (), provider: ProviderPreferences | None = None,
            **kwargs: object) -> ChatRequest:
    """A request for `model_id`; one user message saying `text` unless `messages` are given."""
    return ChatRequest(
        generation_id="gen-1",
        model=model_id,
        messages=messages or (Message(role="user", content=text),),
        fallback_models=fallback,
        provider=provider or ProviderPreferences(),
        **kwargs,  # type: ignore[arg-type]
    )
