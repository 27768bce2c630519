"""The embedded mode's windows of the models' token limits: each API key's tokens of each
limited model in the current minute and UTC day, exact within one router process. The Redis
Cluster adapter keeps the same windows in the credit script (storage/redis/meter.py)."""

from __future__ import annotations

from collections.abc import Sequence

from xrouter_router.domain.limits import TokenAsk, TokenHold, token_refusal, windows_of

_Window = tuple[str, str, int]  # key id, model id, the minute's or the day's number


class TokenWindows:
    """A window counts what running requests hold (their upper bound) and what ended ones
    used. Windows that ended are pruned when the minute turns, so memory holds only the current
    windows of the keys and models in use."""

    def __init__(self) -> None:
        self._minutes: dict[_Window, int] = {}
        self._days: dict[_Window, int] = {}
        self._pruned = -1

    @property
    def windows(self) -> int:
        """How many windows are held."""
        return len(self._minutes) + len(self._days)

    def used(self, key_id: str, model: str, now: float) -> tuple[int, int]:
        """The key's tokens of the model this minute and today."""
        minute, day = windows_of(now)
        return (self._minutes.get((key_id, model, minute), 0),
                self._days.get((key_id, model, day), 0))

    def take(self, key_id: str, asks: Sequence[TokenAsk], now: float) -> TokenHold:
        """Hold each ask in its model's windows if both have room; skip the models that have
        none. Raises RateLimited, naming the first model's full window, when none has room."""
        minute, day = windows_of(now)
        self._prune(minute, day)
        granted: list[TokenAsk] = []
        refusal = None
        for ask in asks:
            full = self._full(key_id, ask, minute, day)
            if full is None:
                granted.append(ask)
            elif refusal is None:
                refusal = token_refusal(ask, full[0], full[1], now)
        if not granted:
            assert refusal is not None
            raise refusal
        hold = TokenHold(tuple(granted), minute, day)
        self._add(key_id, hold, tuple(ask.tokens for ask in granted))
        return hold

    def settle(self, key_id: str, hold: TokenHold, served: str, tokens: int) -> None:
        """The generation ended: the model that served keeps `tokens`, the others give their
        hold back (in the windows of the admission, if they have not ended)."""
        self._add(key_id, hold, hold.settled(served, tokens), create=False)

    def _full(self, key_id: str, ask: TokenAsk, minute: int,
              day: int) -> tuple[str, int] | None:
        """Which window of the model cannot hold the ask ("minute" or "day") and its use."""
        used_minute = self._minutes.get((key_id, ask.model, minute), 0)
        if ask.per_minute is not None and used_minute + ask.tokens > ask.per_minute:
            return "minute", used_minute
        used_day = self._days.get((key_id, ask.model, day), 0)
        if ask.per_day is not None and used_day + ask.tokens > ask.per_day:
            return "day", used_day
        return None

    def _add(self, key_id: str, hold: TokenHold, amounts: Sequence[int], *,
             create: bool = True) -> None:
        for ask, amount in zip(hold.asks, amounts, strict=True):
            if ask.per_minute is not None:
                _count(self._minutes, (key_id, ask.model, hold.minute), amount, create)
            if ask.per_day is not None:
                _count(self._days, (key_id, ask.model, hold.day), amount, create)

    def _prune(self, minute: int, day: int) -> None:
        """When the minute turns: keep only the current windows (one pass over what is held)."""
        if minute > self._pruned:
            self._pruned = minute
            self._minutes = _current(self._minutes, minute)
            self._days = _current(self._days, day)


def _count(windows: dict[_Window, int], window: _Window, amount: int, create: bool) -> None:
    if create or window in windows:
        windows[window] = windows.get(window, 0) + amount


def _current(windows: dict[_Window, int], number: int) -> dict[_Window, int]:
    return {w: n for w, n in windows.items() if w[2] >= number}
