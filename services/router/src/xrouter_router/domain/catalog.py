"""The model catalog: models, their aliases and deployments, with prices per million tokens in
each deployment's currency (RUB unless it says otherwise; domain/fx.py converts the others)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from xrouter_router.domain.errors import InvalidRequest, ModelNotFound

_MILLION = Decimal(1_000_000)
CAPABILITIES = frozenset({"tools", "json_mode", "vision", "streaming", "embeddings"})


@dataclass(frozen=True, slots=True)
class Price:
    """RUB per one million tokens of each usage bucket. Cache reads and writes cost the prompt
    price and reasoning the completion price unless set (None)."""

    prompt: Decimal = Decimal(0)
    completion: Decimal = Decimal(0)
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None

    @property
    def cache_read_rate(self) -> Decimal:
        return self.prompt if self.cache_read is None else self.cache_read

    @property
    def cache_write_rate(self) -> Decimal:
        return self.prompt if self.cache_write is None else self.cache_write

    @property
    def reasoning_rate(self) -> Decimal:
        return self.completion if self.reasoning is None else self.reasoning

    @property
    def prompt_ceiling(self) -> Decimal:
        """The dearest price a prompt token can have (a cache write may cost more than a plain
        prompt token): what reservations charge each prompt token."""
        return max(self.prompt, self.cache_read_rate, self.cache_write_rate)

    @property
    def completion_ceiling(self) -> Decimal:
        return max(self.completion, self.reasoning_rate)


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to serve a model: a configured provider instance and the upstream's model name."""

    id: str
    provider: str
    upstream_model: str
    price: Price
    context_length: int
    max_completion_tokens: int
    capabilities: frozenset[str]
    weight: float = 1.0
    # Generation parameters it honours (empty: routing.BASE_PARAMETERS), for require_parameters.
    parameters: frozenset[str] = frozenset()
    # Whether the provider may store prompts or train on them (for data_collection: deny).
    collects_data: bool = False
    # Its provider's country (ISO 3166-1 alpha-2, lower case; "" unknown), for residency.
    jurisdiction: str = ""
    # The currency of the catalog's price (ISO 4217). In the catalog a request routes over
    # (fx.priced_catalog) `price` is always in RUB: `fx_rate` is the rate that converted it
    # (None: RUB, or no rate known, which `unpriced` says), `fx_date` the Moscow date from which
    # that rate is in force (None: a fixed rate) and `original_price` the catalog's.
    currency: str = "RUB"
    fx_rate: Decimal | None = None
    original_price: Price | None = None
    fx_date: date | None = None
    # Derived once, for routing on the hot path: prompt + completion price per token, and the
    # balancing weight (inverse square of that price, times `weight`).
    unit_price: float = field(init=False, repr=False, compare=False, default=0.0)
    # A foreign-currency price with no rate to convert it: never served (domain/fx.py).
    unpriced: bool = field(init=False, repr=False, compare=False, default=False)
    balance_weight: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self) -> None:
        unit = float((self.price.prompt + self.price.completion) / _MILLION)
        object.__setattr__(self, "unit_price", unit)
        object.__setattr__(self, "unpriced", self.currency != "RUB" and self.fx_rate is None)
        floor = max(unit, 1e-9)
        object.__setattr__(self, "balance_weight", self.weight / (floor * floor))


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """The operator's token limits of a model (None: unlimited): per request (prompt and
    completion together), and per API key in each minute and each UTC day (domain/limits.py)."""

    tokens_per_request: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None

    @property
    def windowed(self) -> bool:
        """Whether a key's use of the model is counted in windows."""
        return self.tokens_per_minute is not None or self.tokens_per_day is not None


NO_LIMITS = ModelLimits()


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    name: str
    deployments: tuple[Deployment, ...]
    description: str = ""
    created: int = 0
    aliases: tuple[str, ...] = ()
    limits: ModelLimits = NO_LIMITS

    @property
    def context_length(self) -> int:
        return max(d.context_length for d in self.deployments)

    @property
    def max_completion_tokens(self) -> int:
        return max(d.max_completion_tokens for d in self.deployments)

    @property
    def cheapest(self) -> Deployment:
        """The deployment whose price is shown for the model: the cheapest priced one (its
        price in RUB; when every one is unpriced, the cheapest in its own currency)."""
        priced = [d for d in self.deployments if not d.unpriced] or self.deployments
        return min(priced, key=lambda d: d.price.prompt + d.price.completion)

    @property
    def price(self) -> Price:
        return self.cheapest.price

    @property
    def unpriced(self) -> bool:
        """Whether no deployment of it has a price in RUB (a rate is missing for each)."""
        return all(d.unpriced for d in self.deployments)

    @property
    def capabilities(self) -> frozenset[str]:
        caps: frozenset[str] = frozenset()
        for d in self.deployments:
            caps |= d.capabilities
        return caps

    @property
    def jurisdictions(self) -> tuple[str, ...]:
        """Its deployments' jurisdictions, each once ("" for unknown)."""
        return tuple(dict.fromkeys(d.jurisdiction for d in self.deployments))

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.provider for d in self.deployments))


class Catalog:
    """Models indexed by id and by alias; ids and aliases are unique across the catalog."""

    def __init__(self, models: Iterable[Model]) -> None:
        self._models = tuple(models)
        self._index: dict[str, Model] = {}
        for model in self._models:
            if not model.deployments:
                raise ValueError(f"model {model.id!r} has no deployments")
            for name in (model.id, *model.aliases):
                if name in self._index:
                    raise ValueError(f"model id or alias {name!r} is defined twice")
                self._index[name] = model

    @property
    def models(self) -> tuple[Model, ...]:
        return self._models

    def serving(self, names: Sequence[str], deployment_id: str) -> tuple[Model, Deployment]:
        """The model among `names` (a request's model and fallbacks) with that deployment.
        Raises ModelNotFound, or InvalidRequest when none of them has it."""
        for name in names:
            model = self.resolve(name)
            for dep in model.deployments:
                if dep.id == deployment_id:
                    return model, dep
        raise InvalidRequest(f"No deployment {deployment_id!r} serves this request",
                             param="deployment")

    def resolve(self, name: str, *, param: str = "model") -> Model:
        model = self._index.get(name)
        if model is None:
            raise ModelNotFound(f"Model {name!r} does not exist", param=param)
        return model
