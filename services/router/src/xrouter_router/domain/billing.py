"""The money path of every billable call, as one admission: `admit` (rate limits and a
concurrency slot, the models' token windows, then a credit reservation of the worst-case
cost) -> `extend` (a stream's top-ups) -> `conclude` (the ledger record, settlement at the real
cost, the holds and the slot back), exactly once. The admission is an async context manager
around the provider call: whatever way the block is left (an answer, a provider error, a bug,
a cancellation), it concludes on exit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from types import TracebackType

from xrouter_router.domain import accounting, fx, vat
from xrouter_router.domain.catalog import Deployment, Price
from xrouter_router.domain.errors import AllAttemptsFailed, Attempt, XRouterError
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.ledger import GenerationRecord
from xrouter_router.domain.limits import TokenAsk, TokenHold
from xrouter_router.domain.ports import Meter, Reservation, UsageLedger
from xrouter_router.domain.routing import Candidate
from xrouter_router.domain.types import (
    ChatRequest,
    Conversion,
    EmbeddingRequest,
    RateWindow,
    Served,
    TokenCounts,
    Usage,
)
from xrouter_router.domain.vat import DEFAULT_VAT, VatSchedule

# The tokens an image counts as, in a reservation and against a model's token limits.
IMAGE_TOKENS = 1500
# Tokens a stream must be able to afford before it starts, and how many more each top-up buys.
MIN_STREAM_TOKENS = 16
TOP_UP_TOKENS = 256


@dataclass(frozen=True, slots=True)
class Bill:
    """What one billable call may cost at most: an upper bound of its prompt's tokens and of its
    completion's (None: the deployments' cap), and whether it streams (then only a part of the
    worst case needs to fit at the start)."""

    generation_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int | None
    streamed: bool
    # A stream read whole before it is sent (it has a response_format to check): the provider
    # writes all of it before the client sees any, so all of its worst case must fit at once.
    buffered: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a generation ended, for its ledger record and its charge."""

    served: Served | None
    usage: Usage | None
    status: str
    finish_reason: str
    attempts: tuple[Attempt, ...] = ()
    latency_ms: int = 0


@dataclass(slots=True)
class Admission:
    """A call's hold on the money path. Only Billing creates one, inside `Billing.admit`."""

    key: ApiKey
    bill: Bill
    window: RateWindow | None
    reservation: Reservation | None
    price: Price
    started: float
    billing: Billing | None = None
    # The deployments the reservation was priced for: the only ones a call under it may reach.
    covers: Sequence[Deployment] = ()
    concluded: bool = False
    # What is already done of the conclusion (so an interrupted one resumes where it stopped).
    recorded: bool = False
    released: bool = False
    # What the key's windows of the candidate models' token limits hold (None: nothing asked).
    hold: TokenHold | None = None
    # The VAT rate in force when the call was admitted: its reservation and its charge are gross.
    vat_rate: Decimal = Decimal(0)

    @property
    def generation_id(self) -> str:
        return self.bill.generation_id

    @property
    def prompt_tokens(self) -> int:
        return self.bill.prompt_tokens

    def priced(self, tokens: TokenCounts, deployment: Deployment) -> Usage:
        """The tokens at the deployment's price in RUB (converted from its currency, fx.usage),
        gross: cost and prompt_cost with VAT at the admission's rate (the catalog's prices are
        net), as the response shows and the account pays. The conversion keeps the foreign
        cost, net."""
        usage, rate = fx.usage(tokens, deployment), self.vat_rate
        prompt = usage.prompt_cost
        return replace(usage, cost=usage.cost + vat.vat_of(usage.cost, rate),
                       prompt_cost=None if prompt is None else prompt + vat.vat_of(prompt, rate))

    def permits(self, deployment: Deployment) -> bool:
        """Whether a provider call to `deployment` may go out under this admission: it is live
        (not concluded) and its reservation was priced for that deployment."""
        return not self.concluded and deployment in self.covers

    def admits(self, model_id: str) -> bool:
        """Whether the model's token windows admitted the call (True when none was asked)."""
        return self.hold is None or self.hold.admits(model_id)

    def candidates(self, planned: Iterable[Candidate]) -> tuple[Candidate, ...]:
        """The planned candidates whose model's token windows admitted the call (every one when
        no window was asked)."""
        if self.hold is None:
            return tuple(planned)
        return tuple(c for c in planned if self.hold.admits(c.model.id))

    async def extend(self, completion_tokens: int) -> bool:
        """For streams: True while the tokens so far are paid for, topping the reservation up
        when they come close to it; False when the money has run out."""
        if self.billing is None:
            return True
        return await self.billing.extend(self, completion_tokens)

    async def conclude(self, outcome: Outcome) -> None:
        """Record, settle and release, once (a second call does nothing)."""
        if self.concluded:
            return
        self.concluded = True
        if self.billing is not None:
            await self.billing.conclude(self, outcome)


def prompt_bound(request: ChatRequest) -> int:
    """An upper bound of the prompt's tokens for the reservation, from its UTF-8 length alone
    (no tokenizer on the hot path): a token is at least one byte in any script, where a
    character ratio undercounts Chinese, emoji or, at 4 characters a token, Russian. Role
    markers add MESSAGE_OVERHEAD a message; each image gets a fixed allowance."""
    size = accounting.utf8_bound
    total = sum(size(m.text()) + size(m.name) + size(m.reasoning or "")
                + sum(size(c.name) + size(c.arguments) for c in m.tool_calls)
                for m in request.messages)
    total += sum(size(t.name) + size(t.description) + len(t.parameters_json)
                 for t in request.tools)
    total += len(request.response_format_json) + len(request.tool_choice_json)
    images = sum(1 for m in request.messages for p in m.parts if p.type == "image_url")
    return total + accounting.MESSAGE_OVERHEAD * len(request.messages) + IMAGE_TOKENS * images


def chat_bill(request: ChatRequest, *, stream: bool, buffered: bool = False) -> Bill:
    return Bill(request.generation_id, request.model, prompt_bound(request),
                request.sampling.max_tokens or None, stream, buffered)


def embedding_bill(request: EmbeddingRequest, generation_id: str) -> Bill:
    """Embeddings read their input and write nothing: a byte-level tokenizer never makes more
    tokens than the text has UTF-8 bytes (whatever its script), plus one per input."""
    tokens = sum(accounting.utf8_bound(text) + 1 for text in request.inputs)
    return Bill(generation_id, request.model, tokens, 0, False)


def worst_price(deployments: Sequence[Deployment]) -> Price:
    """The dearest prompt-side and completion-side prices (any bucket) among the deployments
    that may serve: a reservation charges every token at them."""
    return Price(max(d.price.prompt_ceiling for d in deployments),
                 max(d.price.completion_ceiling for d in deployments))


def cost_of(prompt: int, completion: int, price: Price, rate: Decimal = Decimal(0)) -> Decimal:
    """The gross cost (with VAT at `rate`) of so many tokens at the price."""
    net = accounting.price(TokenCounts(prompt=prompt, completion=completion), price)
    return net + vat.vat_of(net, rate)


def _converted(usage: Usage | None, split: vat.Split) -> Conversion | None:
    """The conversion the ledger records with the charge `split`: its usage's, the foreign
    (net) cost recomputed from the net charge when a cap cut the usage's (None for RUB)."""
    if usage is None or usage.conversion is None:
        return None
    conv = usage.conversion
    return conv if split.gross == usage.cost else replace(conv, cost=fx.from_rub(split.net,
                                                                               conv.rate))


def failed(exc: BaseException | None) -> Outcome:
    """The outcome of a block left without one: by an error, a cancellation, or a bug."""
    if isinstance(exc, XRouterError):
        attempts = exc.attempts if isinstance(exc, AllAttemptsFailed) else ()
        return Outcome(None, None, exc.kind.value, "error", tuple(attempts))
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return Outcome(None, None, "cancelled", "cancelled")
    return Outcome(None, None, "internal", "error")


class Admitted:
    """`async with billing.admit(...) as admission:` the provider call goes inside."""

    __slots__ = ("_admission", "_asks", "_bill", "_billing", "_deployments", "_key")

    def __init__(self, billing: Billing | None, key: ApiKey, bill: Bill,
                 deployments: Sequence[Deployment], asks: Sequence[TokenAsk] = ()) -> None:
        self._billing = billing
        self._key = key
        self._bill = bill
        self._deployments = deployments
        self._asks = asks
        self._admission: Admission | None = None

    async def __aenter__(self) -> Admission:
        if self._billing is None:
            self._admission = Admission(self._key, self._bill, None, None,
                                        worst_price(self._deployments), time.time())
        else:
            self._admission = await self._billing.enter(self._key, self._bill,
                                                         self._deployments, self._asks)
        self._admission.covers = self._deployments
        return self._admission

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._admission is not None and not self._admission.concluded:
            await self._admission.conclude(failed(exc))


class Unbilled:
    """No stores (tests, tools): admissions that hold nothing and record nothing."""

    def admit(self, key: ApiKey, bill: Bill, deployments: Sequence[Deployment],
              asks: Sequence[TokenAsk] = ()) -> Admitted:
        return Admitted(None, key, bill, deployments)


class Billing:
    """The admission port: one Meter (limits and credits, in-process or Redis Cluster) and the
    usage ledger, around every billable call."""

    def __init__(self, meter: Meter, ledger: UsageLedger, *,
                 wall: Callable[[], float] = time.time,
                 vat: VatSchedule = DEFAULT_VAT,
                 on_window: Callable[[ApiKey, RateWindow], None] | None = None,
                 settle_behind: bool = False) -> None:
        self._meter = meter
        self._ledger = ledger
        self._wall = wall
        self._vat = vat
        # Told the key's tightest request window after each admission (metrics: keys near
        # their rate limits).
        self._on_window = on_window
        # The settlement after the record, without waiting for it (a Meter a round trip away:
        # conclude() returns once the record is durable; see conclude()).
        self._settle_behind = settle_behind
        self._releasing: set[asyncio.Task[None]] = set()

    def admit(self, key: ApiKey, bill: Bill, deployments: Sequence[Deployment],
              asks: Sequence[TokenAsk] = ()) -> Admitted:
        """Entering raises RateLimited or InsufficientCredits; leaving concludes. `asks`: what
        the key's windows of each candidate model with token limits are to hold (limits.fit);
        the admission's candidates() are those whose model had room."""
        return Admitted(self, key, bill, deployments, asks)

    async def drain(self) -> None:
        """At shutdown, before the stores close: wait for the releases still running (those of
        conclusions a second cancellation interrupted, and with settle_behind those that follow
        the answers)."""
        while self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    async def enter(self, key: ApiKey, bill: Bill, deployments: Sequence[Deployment],
                    asks: Sequence[TokenAsk] = ()) -> Admission:
        now = self._wall()
        price = worst_price(deployments)
        rate = self._vat.rate_at(now)
        if key.master:
            return Admission(key, bill, None, None, price, now, self, vat_rate=rate)
        cap = max(d.max_completion_tokens for d in deployments)
        completion = cap if bill.completion_tokens is None else min(bill.completion_tokens, cap)
        # Gross: the balance is debited net + VAT, so the worst case must cover the VAT too.
        amount = cost_of(bill.prompt_tokens, completion, price, rate)
        partial = (cost_of(bill.prompt_tokens, MIN_STREAM_TOKENS, price, rate)
                   if bill.streamed and not bill.buffered else None)
        window, reservation, hold = await self._meter.admit(
            key, bill.generation_id, amount, partial_from=partial, now=now, tokens=asks)
        if window is not None and self._on_window is not None:
            self._on_window(key, window)
        return Admission(key, bill, window, reservation, price, now, self, hold=hold,
                         vat_rate=rate)

    async def extend(self, admission: Admission, completion_tokens: int) -> bool:
        held = admission.reservation
        if held is None:
            return True
        rate = admission.vat_rate
        spent = cost_of(admission.prompt_tokens, completion_tokens, admission.price, rate)
        if spent + cost_of(0, TOP_UP_TOKENS // 4, admission.price, rate) <= held.amount:
            return True
        grown = await self._meter.extend(admission.key, held,
                                         cost_of(0, TOP_UP_TOKENS, admission.price, rate))
        if grown is not None:
            admission.reservation = grown
            return True
        return spent <= held.amount

    async def conclude(self, admission: Admission, outcome: Outcome) -> None:
        """Write the ledger record, settle, count tokens, release the concurrency slot. The
        record comes first: in the cluster mode the charge travels with it (see
        RedisCreditGuard), and a generation that could not be recorded is not charged. When
        this is interrupted (cancelled again, a store failed), the settlement and the release
        finish in a task of their own that no cancellation stops. With `settle_behind`, they
        always do, and this returns once the record is durable: the answer does not wait for
        the settlement's round trip (the reservation it releases holds at least the cost
        meanwhile; a router that dies before it leaves the reservation to lapse, as one that
        dies during it does)."""
        usage = outcome.usage
        cost = usage.cost if usage is not None else Decimal(0)
        if admission.reservation is not None and cost > admission.reservation.amount \
                and outcome.status == "budget_exhausted":
            # The stream was cut when its reservation ran out: it cannot cost more than that.
            cost = admission.reservation.amount
        # The cost is gross (Admission.priced); splitting it gives back the net it was made of,
        # exactly (|rounding| < 1e-8 / 2 either way), and splits a capped cost at the same rate.
        split = vat.Split.from_gross(cost, admission.vat_rate)
        tokens = usage.tokens.total if usage is not None else 0
        served = outcome.served.model if outcome.served is not None else ""
        try:
            await self._ledger.record(self._record(admission, outcome, split))
            admission.recorded = True
            if not self._settle_behind:
                await self._release(admission, cost, tokens, served)
                return
        except BaseException:
            if not admission.released:
                done = admission.recorded  # a generation not recorded costs and counts nothing
                await asyncio.shield(self._behind(
                    admission, cost if done else Decimal(0), tokens if done else 0,
                    served if done else ""))
            raise
        self._behind(admission, cost, tokens, served)
        # One loop turn: the settlement runs up to its first wait, by which its Redis command
        # is queued on the lane's connection to the account's node, ahead of any command this
        # process sends for a later request of the account (Redis runs a connection's commands
        # in order: that request's admission sees the slot and the hold given back).
        await asyncio.sleep(0)

    async def conclude_orphan(self, key: ApiKey, bill: Bill, served: Served,
                              deployment: Deployment, tokens: TokenCounts, *,
                              finish_reason: str) -> Usage | None:
        """Record and charge a stream whose router died after the client got part of it (the
        gateway's estimate of `tokens`): status "router_lost". None, and nothing done, when the
        generation already has a record (the ledger is exactly-once by id; so is the charge).
        The charge is never more than the request's worst case on the served deployment (its
        prompt bound and completion cap at that deployment's dearest prices, with VAT): what
        the dead router could have reserved for it there. Its reservation goes back with the
        settlement (it would lapse after the reservation TTL otherwise)."""
        if await self._ledger.get(bill.generation_id) is not None:
            return None
        now = self._wall()
        rate = self._vat.rate_at(now)
        price = worst_price([deployment])
        completion = min(bill.completion_tokens or deployment.max_completion_tokens,
                         deployment.max_completion_tokens)
        cap = cost_of(bill.prompt_tokens, completion, price, rate)
        reservation = None if key.master else Reservation(
            bill.generation_id, key.account_id, key.id, cap)
        admission = Admission(key, bill, None, reservation, price, now, self,
                              covers=(deployment,), vat_rate=rate)
        usage = admission.priced(tokens, deployment).capped(cap)
        split = vat.Split.from_gross(usage.cost, rate)
        await self._ledger.record(self._record(
            admission, Outcome(served, usage, "router_lost", finish_reason), split))
        if reservation is not None:
            await self._meter.charge(reservation, split.gross)
        return usage

    def _record(self, admission: Admission, outcome: Outcome,
                split: vat.Split) -> GenerationRecord:
        key, served = admission.key, outcome.served
        conv = _converted(outcome.usage, split)
        tokens = outcome.usage.tokens if outcome.usage is not None else None
        return GenerationRecord(
            id=admission.generation_id, created_at=admission.started, key_id=key.id,
            account_id=key.account_id, model=served.model if served else admission.bill.model,
            provider=served.provider if served else "", streamed=admission.bill.streamed,
            prompt_tokens=tokens.prompt if tokens else 0,
            completion_tokens=tokens.completion if tokens else 0,
            cached_tokens=tokens.cached if tokens else 0,
            reasoning_tokens=tokens.reasoning if tokens else 0,
            cache_write_tokens=tokens.cache_write if tokens else 0,
            counts_native=bool(tokens and not tokens.estimated), cost=split.gross,
            vat=split.vat, vat_rate=split.rate,
            latency_ms=outcome.latency_ms,
            generation_ms=int((self._wall() - admission.started) * 1000),
            finish_reason=outcome.finish_reason, status=outcome.status,
            attempts=outcome.attempts, jurisdiction=served.jurisdiction if served else "",
            price_currency=conv.currency if conv else fx.RUB,
            fx_rate=conv.rate if conv else None, cost_original=conv.cost if conv else None,
            fx_date=conv.since if conv else None)

    def _behind(self, admission: Admission, cost: Decimal, tokens: int,
                served: str) -> asyncio.Task[None]:
        """_release in a task of its own, which no cancellation of the request stops; drain()
        waits for it."""
        task = asyncio.ensure_future(self._release(admission, cost, tokens, served))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
        return task

    async def _release(self, admission: Admission, cost: Decimal, tokens: int,
                       served: str) -> None:
        """Settle, count the tokens (against the served model's windows too), give the holds and
        the concurrency slot back (nothing for the master key). Safe to run again after an
        interruption: the Meter finishes what was left."""
        if admission.reservation is not None and not admission.released:
            await self._meter.conclude(admission.key, admission.reservation, cost, tokens,
                                       self._wall(), hold=admission.hold, served=served)
        admission.released = True
