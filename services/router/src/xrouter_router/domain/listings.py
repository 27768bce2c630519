"""What people's pages list: generations a page at a time (newest first, paged by an opaque
keyset cursor over (created_at, id)), an account's top-ups and every account, with the checks
of what a query may ask. Who may list what is decided in accounts_service.py."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from decimal import Decimal

from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.ledger import GenerationRecord

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Unix seconds of 9999-12-31T23:59:59Z: the latest time every store can hold.
LATEST = 253402300799.0


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of generations ends: the next page holds those strictly older, by
    (created_at, id). Opaque to clients: base64url of a JSON pair, exact (a float's repr)."""

    created_at: float
    id: str

    def encode(self) -> str:
        text = json.dumps([self.created_at, self.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    @staticmethod
    def decode(text: str) -> Cursor:
        """InvalidRequest (param "before") for anything encode() did not make."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            created_at, gen_id = json.loads(raw)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidRequest("before is not a cursor this API returned",
                                 param="before") from None
        if (type(created_at) not in (int, float) or not isinstance(gen_id, str)
                or not 0 <= created_at <= LATEST):
            raise InvalidRequest("before is not a cursor this API returned", param="before")
        return Cursor(float(created_at), gen_id)


def checked_time(value: float | None, param: str) -> float | None:
    """A filter's unix time, refused unless finite and between 1970 and 9999."""
    if value is not None and not (math.isfinite(value) and 0 <= value <= LATEST):
        raise InvalidRequest(f"{param} must be a time between 1970 and 9999", param=param)
    return value


def checked_limit(limit: int) -> int:
    """A page size: 0 means DEFAULT_LIMIT; else 1 to MAX_LIMIT."""
    if limit == 0:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be from 1 to {MAX_LIMIT}", param="limit")
    return limit


@dataclass(frozen=True, slots=True)
class GenerationQuery:
    """One page's filters (None: no filter), already scoped to what the caller may see."""

    account_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    since: float | None = None  # created at or after
    until: float | None = None  # created before
    before: Cursor | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True, slots=True)
class ListedGeneration:
    record: GenerationRecord
    key_label: str  # "" when the key has no label or no longer exists


@dataclass(frozen=True, slots=True)
class GenerationPage:
    generations: list[ListedGeneration]
    next_before: Cursor | None  # None: no older page


@dataclass(frozen=True, slots=True)
class TopUp:
    amount: Decimal
    reference: str
    created_at: float


@dataclass(frozen=True, slots=True)
class AccountSummary:
    id: str
    name: str
    balance: Decimal
    plan: str  # the tier of the plan the operator set; "" when none was
    created_at: float


def page_of(rows: list[ListedGeneration], limit: int) -> GenerationPage:
    """The page from up to limit + 1 rows read (one more than shown tells an older page exists)."""
    shown = rows[:limit]
    more = len(rows) > limit
    last = shown[-1].record if shown else None
    return GenerationPage(shown, Cursor(last.created_at, last.id) if more and last else None)
