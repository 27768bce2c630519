"""What the guard reports: the kinds of personal data it knows and one finding (kind and span)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """A kind of personal data. The value is what a 400 names; the name labels placeholders.

    The order of declaration is the priority between findings of equal length over the same
    characters (see detectors.resolve): an e-mail, a card, a SNILS (11 and more digits under a
    check), a passport (found only when written apart or after a keyword, so that context beats
    the one-in-ten chance of a bare ten-digit series and number passing an INN check), an INN,
    then a phone (no check digit at all); then what the optional NER detector finds (pii_ner.py):
    a person's name and an address or place, which never beat a checked number."""

    EMAIL = "email"
    CARD = "card"
    SNILS = "snils"
    PASSPORT = "passport"
    INN = "inn"
    PHONE = "phone"
    PERSON = "person"
    ADDRESS = "address"

    @property
    def priority(self) -> int:
        return _PRIORITY[self]


_PRIORITY = {kind: i for i, kind in enumerate(Kind)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data: its kind and its span `text[start:end]`."""

    kind: Kind
    start: int
    end: int
