"""What is recorded: one GenerationRecord per generation (exactly once), account balances moved
by a double-entry credit ledger, and the usage totals and reports read back from rollups."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from xrouter_router.domain.errors import Attempt
from xrouter_router.domain.keys import MASTER


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str = ""
    balance: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class GenerationRecord:
    id: str
    created_at: float
    key_id: str
    account_id: str
    model: str
    provider: str
    streamed: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    counts_native: bool
    cost: Decimal
    latency_ms: int
    generation_ms: int
    finish_reason: str
    status: str  # success | stream_error | error kind
    # Prompt tokens written to the provider's cache (part of prompt_tokens, as cached_tokens are).
    cache_write_tokens: int = 0
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    # The serving provider's jurisdiction from the catalog ("" unknown, or no provider served).
    jurisdiction: str = ""
    # The currency of the serving deployment's price; for one not in RUB, the rate that
    # converted the cost (RUB per unit), the cost in that currency (domain/fx.py) and the
    # Moscow date from which the rate was in force (None: a fixed rate).
    price_currency: str = "RUB"
    fx_rate: Decimal | None = None
    cost_original: Decimal | None = None
    fx_date: date | None = None
    # `cost` is gross (what the account is debited): cost_net + vat. vat_rate is the fraction
    # in force when the generation ran (0.22). Records made before VAT was kept have none.
    vat: Decimal = Decimal(0)
    vat_rate: Decimal = Decimal(0)

    @property
    def cost_net(self) -> Decimal:
        return self.cost - self.vat


def charge_of(record: GenerationRecord) -> Decimal:
    """What the generation debits its account: its cost, except for the operator's master key,
    which spends no credits (its account has no balance)."""
    return Decimal(0) if record.key_id == MASTER.id or record.cost <= 0 else record.cost


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)  # gross: cost_net + vat
    # The prompt's cache reads and writes and the completion's reasoning (parts of the above).
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    vat: Decimal = Decimal(0)

    @property
    def cost_net(self) -> Decimal:
        return self.cost - self.vat


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a usage report (the group's fields that were asked for are set)."""

    day: str = ""
    key_id: str = ""
    model: str = ""
    provider: str = ""
    totals: UsageTotals = field(default_factory=UsageTotals)


REPORT_GROUPS = frozenset({"day", "key", "model", "provider"})
