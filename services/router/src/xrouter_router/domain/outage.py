"""The credit guard's outage allowance: while Redis cannot check an account's balance, this
replica admits that account's paid requests until their reservations add up to the allowance
(RUB per account per replica), instead of refusing them all. The requests are recorded and
charged as usual (their records reach PostgreSQL with their charges); when Redis answers again
the allowance is whole again, and Redis's next balance snapshot includes what was spent.

Worst case per account: `allowance x replicas` beyond its balance for one outage (each
replica's allowance is its own; nothing is shared while Redis is away). 0 turns it off (the
guard refuses with 503, as before). An account's plan may set its own allowance
(Plan.outage_allowance, carried by its keys), which replaces the global one for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class OutageAllowance:
    per_account: Decimal = Decimal(0)
    # What each account's live reservations (and settled costs) hold during this outage.
    _used: dict[str, Decimal] = field(default_factory=dict)
    # generation id -> (account, amount reserved, the account's allowance) for reservations
    # made from the allowance.
    _held: dict[str, tuple[str, Decimal, Decimal]] = field(default_factory=dict)
    admitted: int = 0  # requests admitted from an allowance (for metrics), ever
    refused: int = 0  # requests refused because the allowance was spent, ever

    @property
    def used(self) -> Decimal:
        """RUB of allowance in use now, all accounts together."""
        return sum(self._used.values(), Decimal(0))

    def used_by(self, account_id: str) -> Decimal:
        return self._used.get(account_id, Decimal(0))

    def take(self, generation_id: str, account_id: str, amount: Decimal,
             allowance: Decimal | None = None) -> bool:
        """Reserve `amount` from the account's allowance (`allowance`, its plan's, or None for
        the global `per_account`); False when it does not fit."""
        limit = self.per_account if allowance is None else allowance
        used = self._used.get(account_id, Decimal(0))
        if limit <= 0 or used + amount > limit:
            self.refused += 1
            return False
        self._used[account_id] = used + amount
        self._held[generation_id] = (account_id, amount, limit)
        self.admitted += 1
        return True

    def extend(self, generation_id: str, amount: Decimal) -> bool:
        """Grow a reservation made from the allowance (a stream's top-up)."""
        held = self._held.get(generation_id)
        if held is None:
            return False
        account_id, reserved, limit = held
        used = self._used.get(account_id, Decimal(0))
        if used + amount > limit:
            return False
        self._used[account_id] = used + amount
        self._held[generation_id] = (account_id, reserved + amount, limit)
        return True

    def settle(self, generation_id: str, cost: Decimal) -> None:
        """The generation cost `cost`: what it reserved beyond that is free again."""
        held = self._held.pop(generation_id, None)
        if held is None:
            return
        account_id, reserved, _ = held
        left = self._used.get(account_id, Decimal(0)) - reserved + min(cost, reserved)
        self._used[account_id] = max(Decimal(0), left)

    def restore(self) -> None:
        """Redis answers again: its balances decide from now on, and the next outage starts
        with a whole allowance (reservations still in flight settle through Redis)."""
        if self._used or self._held:
            self._used.clear()
            self._held.clear()
