"""The last good answer of each account read, for while the database is away.

`/v1/credits` and `/v1/key` read the account store and the ledger. Each answer is kept, per
caller (the key that asked) and per what it asked (its account's credits, a key's usage),
in a bounded LRU; when the database is unavailable (its calls fail fast with
DatabaseUnavailable while the router knows it is down) the read answers the kept value with
its age instead of failing. An entry is only ever served to the key that read it, after the
same authorisation checks as a fresh read; a caller that never read a thing still gets the
503. Each replica keeps its own entries (nothing is shared through Redis)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from xrouter_router.domain.errors import DatabaseUnavailable

T = TypeVar("T")
READ_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """A read's value; `age` is None when it is fresh, else the seconds since it was read."""

    value: T
    age: float | None = None


class ReadCache:
    """At most `size` answers, the least recently used leaving first."""

    def __init__(self, size: int = READ_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1:
            raise ValueError("size must be positive")
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[tuple[str, Hashable], tuple[object, float]] = OrderedDict()
        self.served = 0  # stale answers given

    def __len__(self) -> int:
        return len(self._entries)

    async def read(self, caller_id: str, what: Hashable,
                   fetch: Callable[[], Awaitable[T]]) -> Answer[T]:
        """`fetch()`'s value (kept for `caller_id`), or, when the database is unavailable,
        the value kept from `caller_id`'s last read of `what` with its age. With none kept,
        DatabaseUnavailable goes on."""
        entry = (caller_id, what)
        try:
            value = await fetch()
        except DatabaseUnavailable:
            kept = self._entries.get(entry)
            if kept is None:
                raise
            self._entries.move_to_end(entry)
            self.served += 1
            old, stored_at = kept
            return Answer(cast(T, old), max(0.0, self._clock() - stored_at))
        self._entries[entry] = (value, self._clock())
        self._entries.move_to_end(entry)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return Answer(value)


__all__ = ["READ_CACHE_SIZE", "Answer", "ReadCache"]
