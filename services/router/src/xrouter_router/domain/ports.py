"""The narrow protocols the domain needs from the outside world, implemented by adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.fx import Rate
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.ledger import Account, GenerationRecord, UsageRow, UsageTotals
from xrouter_router.domain.limits import TokenAsk, TokenHold
from xrouter_router.domain.listings import AccountSummary, GenerationQuery, ListedGeneration, TopUp
from xrouter_router.domain.pkce import AuthGrant
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.sessions import Session
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    RateWindow,
    StreamBatch,
)


class ChatProvider(Protocol):
    """One configured upstream (an account at a provider). Errors raised are UpstreamError."""

    @property
    def name(self) -> str: ...

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        """One whole completion."""
        ...

    def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        """The completion as batches of deltas; the last batch has done=True when the
        provider signalled the end. Closing the iterator early closes the upstream request."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class EmbeddingProvider(Protocol):
    """An optional capability of a provider adapter: text embeddings."""

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embeddings: ...


class TokenCounter(Protocol):
    """Counts tokens locally, for providers that report no usage."""

    async def count(self, texts: Sequence[str]) -> int: ...


class Authenticator(Protocol):
    """Turns an API key, used from the client's address (empty: unknown), into the ApiKey it
    is; raises Unauthenticated, or AddressNotAllowed when the key's allow-list refuses the
    address."""

    async def authenticate(self, api_key: str, address: str = "") -> ApiKey: ...


class KeyStore(Protocol):
    """API keys by id and by keyed hash. Hashes are unique; the plain key is never stored."""

    async def create(self, key: ApiKey, hashed: str) -> None: ...

    async def by_hash(self, hashed: str) -> ApiKey | None: ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def list(self, account_id: str | None = None) -> list[ApiKey]: ...

    async def update(self, key: ApiKey) -> None: ...

    async def delete(self, key_id: str) -> bool: ...


class SessionStore(Protocol):
    """Console sessions by the keyed hash of their token (domain/sessions.py). A session ends
    with its key: deleting the key deletes its sessions."""

    async def create(self, hashed: str, session: Session) -> None: ...

    async def by_hash(self, hashed: str) -> Session | None:
        """The session with its key as the key store reads it now (MASTER for the master
        key's); None when there is no such session."""
        ...

    async def delete(self, hashed: str) -> bool: ...

    async def prune(self, now: float) -> int:
        """Deletes the sessions that expired before `now`; how many."""
        ...


class AuthCodeStore(Protocol):
    """OAuth codes by their keyed hash (domain/oauth.py). A code ends with its approving key
    (deleted or disabled)."""

    async def create(self, hashed: str, grant: AuthGrant) -> None: ...

    async def take(self, hashed: str) -> AuthGrant | None:
        """Deletes the code and returns what it stood for, atomically: of concurrent takes of
        one code, exactly one gets it. None when there is no such code."""
        ...

    async def prune(self, now: float) -> int:
        """Deletes the codes that expired before `now`; how many."""
        ...


class AccountStore(Protocol):
    """Accounts and their balances, moved only through credit-ledger entries: a top-up credits
    the account, a generation's charge debits it exactly once (keyed by generation id)."""

    async def create(self, account: Account) -> None: ...

    async def get(self, account_id: str) -> Account | None: ...

    async def top_up(self, account_id: str, amount: Decimal, reference: str) -> Decimal:
        """Credit the account; returns the new balance."""
        ...

    async def charge(self, account_id: str, key_id: str, generation_id: str,
                     amount: Decimal) -> bool:
        """Debit the account for a generation made with the key; False (and nothing changes)
        if that generation was already charged."""
        ...

    async def spent(self, key_id: str) -> Decimal:
        """What the key's generations have cost so far (for its credit limit)."""
        ...


class PlanStore(Protocol):
    """Each account's plan, as the operator set it (None: never set)."""

    async def get(self, account_id: str) -> Plan | None: ...

    async def set(self, account_id: str, plan: Plan) -> None:
        """Store the account's plan, replacing any; NotFound when the account does not exist."""
        ...


class RateStore(Protocol):
    """The exchange rates fetched (domain/fx.py), kept so that a restarted router prices with
    the last known ones."""

    async def load(self) -> list[Rate]:
        """The latest rates of each currency (those in force and those published ahead)."""
        ...

    async def save(self, rates: Sequence[Rate], fetched_at: float) -> None:
        """Store the rates, replacing one of the same currency and date."""
        ...


class UsageLedger(Protocol):
    """Generation records, written exactly once (a repeated id is ignored), read back only by
    the key or account that made them, and summed from rollups."""

    async def record(self, record: GenerationRecord) -> None: ...

    async def get(self, generation_id: str) -> GenerationRecord | None: ...

    async def totals(self, *, key_id: str | None = None, account_id: str | None = None,
                     since: float | None = None) -> UsageTotals: ...

    async def report(self, *, account_id: str | None, group_by: Sequence[str], since: float,
                     until: float) -> list[UsageRow]: ...

    async def charged(self, *, account_id: str, since: float,
                      until: float) -> list[GenerationRecord]:
        """The account's generations that cost something, made in [since, until), oldest first
        (then by id): the lines of a statement."""
        ...


class Listings(Protocol):
    """What people's pages list, read from the database (domain/listings.py)."""

    async def generations(self, query: GenerationQuery) -> list[ListedGeneration]:
        """Up to query.limit + 1 generations matching the query, newest first (by created_at,
        then id, both descending), each with its key's label."""
        ...

    async def top_ups(self, account_id: str, limit: int) -> list[TopUp]:
        """The account's latest `limit` top-ups, newest first."""
        ...

    async def accounts(self) -> list[AccountSummary]:
        """Every account, by id."""
        ...


class Limiter(Protocol):
    """Rate limits and concurrency per key, exact across router replicas."""

    async def acquire(self, key: ApiKey, now: float) -> RateWindow | None:
        """Count one request and take a concurrency slot; raises RateLimited. None when the key
        has no request limit."""
        ...

    async def release(self, key: ApiKey) -> None:
        """Give the concurrency slot back."""
        ...

    async def add_tokens(self, key: ApiKey, tokens: int, now: float) -> None:
        """Count tokens against tokens_per_minute (checked by the next acquire)."""
        ...


@dataclass(frozen=True, slots=True)
class Reservation:
    generation_id: str
    account_id: str
    key_id: str
    amount: Decimal


class CreditGuard(Protocol):
    """Reservations of worst-case cost against the account's balance and the key's credit
    limit, so concurrent requests can never overspend; settled with the real cost."""

    async def reserve(self, key: ApiKey, generation_id: str, amount: Decimal,
                      *, partial_from: Decimal | None = None) -> Reservation:
        """Reserve `amount`, or, when `partial_from` is given, as much as is available if that
        is at least `partial_from`. Raises InsufficientCredits (metadata.limit_source)."""
        ...

    async def extend(self, key: ApiKey, reservation: Reservation,
                     amount: Decimal) -> Reservation | None:
        """Grow a reservation by `amount`; None when it does not fit."""
        ...

    async def settle(self, reservation: Reservation, cost: Decimal) -> None:
        """Count `cost` as spent (exactly once per generation) and release the rest. Called once
        the generation's record is written. The charge reaches the AccountStore here
        (InProcessCreditGuard) or with that record (RedisCreditGuard, with the stream ledger)."""
        ...


class Meter(Protocol):
    """The admission port's stores: a key's limits, its windows of the models' token limits and
    its account's credits in one call at each end of a generation (InProcessMeter over the
    in-process Limiter, TokenWindows and CreditGuard; RedisMeter: one script each), and a
    stream's top-ups in between. Billing uses nothing else."""

    async def admit(self, key: ApiKey, generation_id: str, amount: Decimal, *,
                    partial_from: Decimal | None, now: float,
                    tokens: Sequence[TokenAsk] = ()) -> tuple[RateWindow | None, Reservation,
                                                              TokenHold | None]:
        """Count the request against the key's limits, hold `tokens` in the key's windows of
        each model that has room for them (the hold says which; None when no tokens were
        asked for or the windows are not counted), then reserve as CreditGuard.reserve does.
        Raises RateLimited (limits are checked first; then the models' windows, when none has
        room) or InsufficientCredits (for both refusals the request still counts, its
        concurrency slot goes back and no window holds anything)."""
        ...

    async def extend(self, key: ApiKey, reservation: Reservation,
                     amount: Decimal) -> Reservation | None:
        """Grow a reservation as CreditGuard.extend does; None when it does not fit."""
        ...

    async def charge(self, reservation: Reservation, cost: Decimal) -> None:
        """Settle a generation this replica did not admit (one whose router died: Billing.
        conclude_orphan) as CreditGuard.settle does: its reservation, wherever it is held, goes
        back; no slot, token or window of this replica is touched."""
        ...

    async def conclude(self, key: ApiKey, reservation: Reservation, cost: Decimal, tokens: int,
                       now: float, *, hold: TokenHold | None = None, served: str = "") -> None:
        """Settle as CreditGuard.settle does, count the tokens, settle the hold (the model that
        `served` keeps `tokens`, the others give theirs back), give the concurrency slot back.
        Never raises but may be interrupted (cancelled): Billing then concludes again, which
        finishes it (settlements, holds included, are idempotent per generation; the slot goes
        back once)."""
        ...
