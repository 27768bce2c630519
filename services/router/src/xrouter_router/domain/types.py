"""Typed values that cross the router's layers: the canonical request, completions, stream parts.

Frozen, slotted dataclasses; no transport or driver types. JSON-valued fields the router never
inspects (tool schemas, response_format, pass-through parameters) stay as raw JSON bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from xrouter_router.domain.errors import Attempt


@dataclass(frozen=True, slots=True)
class ToolCall:
    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ContentPart:
    type: str
    text: str = ""
    image_url: str = ""
    detail: str = ""
    raw_json: bytes = b""


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str | None = None
    parts: tuple[ContentPart, ...] = ()
    name: str = ""
    tool_call_id: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None  # an answer's reasoning, where the model shows it
    # The provider's signature of `reasoning` (Anthropic's), so a client can send it back.
    reasoning_signature: str = ""

    def text(self) -> str:
        """The message's text, parts joined; images and other parts contribute nothing."""
        if self.content is not None:
            return self.content
        return "".join(p.text for p in self.parts if p.type == "text")


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters_json: bytes = b""
    strict: bool | None = None
    cache_control_json: bytes = b""  # Anthropic's cache breakpoint on the definition (JSON)


@dataclass(frozen=True, slots=True)
class Sampling:
    """Generation parameters every adapter knows how to translate (None: provider default)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderPreferences:
    """OpenRouter's `provider` object."""

    order: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    require_parameters: bool = False
    data_collection: str = ""
    only: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    sort: str = ""
    max_price_prompt: Decimal | None = None
    max_price_completion: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The canonical chat request, whatever API it arrived through."""

    generation_id: str
    model: str
    messages: tuple[Message, ...]
    sampling: Sampling = field(default_factory=Sampling)
    fallback_models: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice_json: bytes = b""
    response_format_json: bytes = b""
    user: str = ""
    provider: ProviderPreferences = field(default_factory=ProviderPreferences)
    extra_json: bytes = b""


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """A generation's tokens in OpenAI's sense: `prompt` includes the cache reads (`cached`) and
    the cache writes (`cache_write`); `completion` includes `reasoning`. Each bucket has its own
    price (see catalog.Price)."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    reasoning: int = 0
    cache_write: int = 0
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.prompt + self.completion


@dataclass(frozen=True, slots=True)
class Completion:
    """A provider's whole answer (one choice)."""

    message: Message
    finish_reason: str
    usage: TokenCounts | None = None
    system_fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed chunk of choice `index`."""

    index: int = 0
    role: str = ""
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = ""
    reasoning: str | None = None
    reasoning_signature: str = ""


@dataclass(frozen=True, slots=True)
class StreamBatch:
    """What a provider stream yields: the deltas already received, usage once known, and
    done=True on the batch that carried the provider's end-of-stream marker. head=True on a
    batch that is the start of a read whose rest was not parsed yet (it follows at once): a
    stream's first token need not wait for the rest of its first read."""

    deltas: tuple[Delta, ...] = ()
    usage: TokenCounts | None = None
    done: bool = False
    head: bool = False


@dataclass(frozen=True, slots=True)
class Conversion:
    """A cost in RUB converted from a deployment's own currency (domain/fx.py): the currency,
    the rate used (RUB per unit), the cost in that currency, and the Moscow date from which
    the rate is in force (None: a fixed rate)."""

    currency: str
    rate: Decimal
    cost: Decimal
    since: date | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts priced: what a generation cost, in RUB, and how much of it the prompt's
    buckets cost (None: not split; the rest is the completion's)."""

    tokens: TokenCounts
    cost: Decimal
    # Derived from the tokens and the price that made `cost`: not part of equality.
    prompt_cost: Decimal | None = field(default=None, compare=False)
    # Set when the deployment is priced in another currency than RUB.
    conversion: Conversion | None = field(default=None, compare=False)

    @property
    def prompt_share(self) -> Decimal:
        """The prompt's part of `cost` (never more than `cost`, which a cap may have cut)."""
        return min(self.prompt_cost or Decimal(0), self.cost)

    def capped(self, most: Decimal) -> Usage:
        """The same usage costing at most `most` (a stream cut when its reservation ran out)."""
        return self if self.cost <= most else Usage(self.tokens, most, self.prompt_cost,
                                                    self.conversion)


@dataclass(frozen=True, slots=True)
class Served:
    """Which model and provider served a request, after routing and failover."""

    model: str
    provider: str
    deployment: str
    created: int
    # The deployment's provider's jurisdiction (catalog; "" unknown): the ledger records it.
    jurisdiction: str = ""


@dataclass(frozen=True, slots=True)
class RateWindow:
    """What the X-RateLimit-* headers say: the tightest request limit and its window."""

    limit: int
    remaining: int
    reset: float  # unix seconds when the window resets


@dataclass(frozen=True, slots=True)
class ChatResult:
    served: Served
    completion: Completion
    usage: Usage
    # Every provider attempt, in order; the last one served the answer.
    attempts: tuple[Attempt, ...] = ()
    # The key's tightest request window after this request (None: unlimited).
    rate_limit: RateWindow | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    user: str = ""
    # The ledger's id for the call ('' : the router makes one).
    generation_id: str = ""


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One vector per input, in input order."""

    vectors: tuple[tuple[float, ...], ...]
    usage: TokenCounts | None = None
