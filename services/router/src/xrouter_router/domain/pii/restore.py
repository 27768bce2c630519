"""Putting the personal data back into an answer: whole, or incrementally as a stream of deltas.

A placeholder is `[KIND_N]`. One the mapping does not know (the model invented it) stays as it
is. The streaming restorer holds back only what may still become a known placeholder, so the
concatenation of what it emits equals the whole-text restoration for any split of the answer."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from xrouter_router.domain.pii.kinds import Kind

_PLACEHOLDER = re.compile(r"\[[A-Z]+_[0-9]+\]")


def placeholder(kind: Kind, number: int) -> str:
    """The placeholder of the `number`-th distinct value of `kind` in a request."""
    return f"[{kind.name}_{number}]"


def placeholders_in(texts: Iterable[str]) -> frozenset[str]:
    """Every placeholder-shaped token the texts already contain (known to a mapping or not)."""
    return frozenset(token for text in texts if "[" in text for token in _PLACEHOLDER.findall(text))


def restore(text: str, mapping: Mapping[str, str]) -> str:
    """`text` with every placeholder of `mapping` replaced by its value (values not rescanned)."""
    if not mapping or "[" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: mapping.get(m[0], m[0]), text)


class StreamRestorer:
    """Restores an answer fed as deltas: `feed` returns what is safe to send now, `flush` the
    rest at the end of the stream. Holds back at most one partial placeholder, and only one that
    is a prefix of a placeholder in the mapping ("[PHO" waits for "NE_1]"; "[a" does not wait)."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = mapping
        self._partials = frozenset(key[:i] for key in mapping for i in range(1, len(key)))
        self._pending = ""

    def feed(self, delta: str) -> str:
        text = self._pending + delta if self._pending else delta
        # A placeholder holds one "[" (its first character), so only the text from the last
        # "[" on can be the start of one that the next delta completes.
        start = text.rfind("[")
        if start >= 0 and text[start:] in self._partials:
            self._pending = text[start:]
            return restore(text[:start], self._mapping)
        self._pending = ""
        return restore(text, self._mapping)

    @property
    def held(self) -> str:
        """What is held back now: empty, or the start of a placeholder of the mapping."""
        return self._pending

    def flush(self) -> str:
        """What is held back when the stream ends: a partial placeholder, sent as it is."""
        rest, self._pending = self._pending, ""
        return rest
