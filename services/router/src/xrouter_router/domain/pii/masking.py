"""Masking a request: every finding replaced by a typed placeholder numbered per kind, the same
value getting the same placeholder across all texts of the request, with the mapping that
restores them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from xrouter_router.domain.pii.detectors import REGEX_DETECTOR, Detector, detect
from xrouter_router.domain.pii.kinds import Kind
from xrouter_router.domain.pii.restore import StreamRestorer, placeholder, placeholders_in, restore


@dataclass(frozen=True, slots=True)
class Masked:
    """The masked texts (in the order given), the placeholder -> value mapping (read-only; it
    holds the personal data: keep it in the request's memory only), and the kinds found
    (sorted by name, what a block names)."""

    texts: tuple[str, ...]
    mapping: Mapping[str, str]
    kinds: tuple[Kind, ...]

    def restore(self, answer: str) -> str:
        return restore(answer, self.mapping)

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self.mapping)


class _Numbering:
    """Hands out placeholders per kind from 1, skipping any that the request already contains
    literally, so that restoring never turns the client's own text into a value."""

    def __init__(self, texts: Sequence[str]) -> None:
        self._taken = placeholders_in(texts)
        self._by_value: dict[str, str] = {}
        self._count: dict[Kind, int] = {}
        self.mapping: dict[str, str] = {}

    def placeholder(self, kind: Kind, value: str) -> str:
        known = self._by_value.get(value)
        if known is not None:
            return known
        number = self._count.get(kind, 0)
        while True:
            number += 1
            token = placeholder(kind, number)
            if token not in self._taken:
                break
        self._count[kind] = number
        self._by_value[value] = token
        self.mapping[token] = value
        return token


def mask(texts: Sequence[str], detectors: Sequence[Detector] = (REGEX_DETECTOR,)) -> Masked:
    """Masks every text of one request (system, user, assistant and tool parts alike)."""
    numbering = _Numbering(texts)
    kinds: set[Kind] = set()
    masked: list[str] = []
    for text in texts:
        findings = detect(text, detectors)
        if not findings:
            masked.append(text)
            continue
        parts: list[str] = []
        at = 0
        for f in findings:
            kinds.add(f.kind)
            parts += (text[at:f.start], numbering.placeholder(f.kind, text[f.start:f.end]))
            at = f.end
        parts.append(text[at:])
        masked.append("".join(parts))
    return Masked(tuple(masked), MappingProxyType(numbering.mapping), sorted_kinds(kinds))


def sorted_kinds(kinds: set[Kind]) -> tuple[Kind, ...]:
    """Kinds in the one order every report uses: by name."""
    return tuple(sorted(kinds, key=lambda k: k.value))
