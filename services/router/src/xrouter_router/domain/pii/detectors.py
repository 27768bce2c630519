"""The regular-expression detectors: one precompiled pattern per kind, each match confirmed by
the kind's check (check digits, plausible passport series), and the one rule that resolves
overlapping findings. Compiled once at import; a call compiles nothing."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from xrouter_router.domain.pii.checksums import inn_valid, luhn_valid, snils_valid
from xrouter_router.domain.pii.kinds import Finding, Kind

# A number is a whole token: no digit, Latin letter or "_" touches it, no "+" or "/" precedes
# it (a phone's country code, a path), nor a digit across a decimal point, comma or dash (1,5,
# 2024-...); a "/" may follow it (an INN/KPP pair). Cyrillic letters may touch it (the
# Cyrillic abbreviation of INN glued to the digits), as sloppy Russian text writes them. Every
# pattern opens with the character class of its first character and only then looks behind it:
# that lets the regex engine skip to candidate characters instead of trying every position
# (four times faster on a Russian prompt).
_FIRST_DIGIT = r"[0-9](?<![0-9A-Za-z_+/][0-9])(?<![0-9][.,-][0-9])"
_LA = r"(?![0-9A-Za-z_])(?![.,-][0-9])"
# What separates digit groups of a phone: a space (or a no-break one), a dash (hyphen, en or em
# dash) with or without spaces around it, or nothing.
_SEP = r"(?:[ \u00a0]?[-\u2013\u2014][ \u00a0]?|[ \u00a0])?"

# +7 or 8, then a Russian area code (3-9..) and seven digits; a bare 7 only before a bracketed
# area code ("7 (916) ..."), as a bare 7 and ten digits is as often an account number.
_PHONE = re.compile(
    r"(?:\+(?<![\w+]\+)7|8(?<![\w+]8)|7(?<![\w+]7)(?=[ \u00a0]?\())" + _SEP
    + r"(?:\([3-9][0-9]{2}\)|[3-9][0-9]{2})" + _SEP + r"[0-9]{3}" + _SEP + r"[0-9]{2}" + _SEP
    + r"[0-9]{2}(?!\w|-[0-9])")
# Found from its "@" (the rarest character), the local part read backwards from there.
_EMAIL_DOMAIN = re.compile(r"@(?:[\w-]+\.)+[^\W\d_]{2,}(?![\w-])")
_EMAIL_LOCAL_MAX = 64
_SNILS = re.compile(
    _FIRST_DIGIT + r"(?:[0-9]{2}-[0-9]{3}-[0-9]{3}[ -][0-9]{2}|[0-9]{2} [0-9]{3} [0-9]{3} [0-9]{2}"
    r"|[0-9]{10})" + _LA)
_INN = re.compile(_FIRST_DIGIT + r"[0-9]{9}(?:[0-9]{2})?" + _LA)
_CARD = re.compile(
    _FIRST_DIGIT + r"(?:[0-9]{3}(?P<s>[ -])[0-9]{4}(?P=s)[0-9]{4}(?P=s)[0-9]{4}(?:(?P=s)[0-9]{3})?"
    r"|[0-9]{3}(?P<t>[ -])[0-9]{6}(?P=t)[0-9]{4,5}|[0-9]{12,18})" + _LA)
# A series (4 digits, often "XX XX") and a number (6 digits). Without a keyword shortly before
# it only the written-apart forms count ("45 07 123456", "4507 123456", "4507 № 123456",
# "4507, номер — 123456"): a bare run of ten digits, or two joined by a dash, is an order or
# document number as often as a passport.
_PASSPORT = re.compile(
    r"(?P<series>" + _FIRST_DIGIT + r"[0-9] ?[0-9]{2})"
    r"(?P<sep>-|,? ?(?:(?:№|N|номер) ?[\u2013\u2014:-]? ?)?)[0-9]{6}" + _LA)
# The keywords (lower case; "сери" for серия, серии) and how far before the series they count.
_PASSPORT_KEYWORDS = ("паспорт", "сери")
_PASSPORT_KEYWORD_GAP = 28
_DIGIT_OR_NEWLINE = re.compile(r"[0-9\n]")

_DIGIT = re.compile(r"[0-9]")
_NOT_DIGIT = re.compile(r"[^0-9]")
_LOCAL_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")


class Detector(Protocol):
    """Finds personal data of some kinds in one text (spans may overlap other detectors')."""

    def find(self, text: str) -> Iterable[Finding]: ...


Span = tuple[int, int]


def _digits(text: str) -> str:
    return _NOT_DIGIT.sub("", text)


def _checked(check: Callable[[str], bool]) -> Callable[[re.Match[str]], Span | None]:
    return lambda m: m.span() if check(_digits(m[0])) else None


def _passport(match: re.Match[str]) -> Span | None:
    # The series' last two digits are the year the form was printed: 1997 onwards.
    year = int(match["series"][-2:])
    if not (year >= 97 or year <= 29):
        return None
    sep = match["sep"]
    if sep == " " or " " in match["series"] or sep.strip(" ,:-\u2013\u2014"):  # a space, №, номер
        return match.span()
    start = match.start()
    window = match.string[max(0, start - _PASSPORT_KEYWORD_GAP - 7):start].lower()
    for word in _PASSPORT_KEYWORDS:  # str.rfind: a regex here cost more than the patterns
        at = window.rfind(word)
        if at >= 0:
            gap = window[at + len(word):]
            if len(gap) <= _PASSPORT_KEYWORD_GAP and not _DIGIT_OR_NEWLINE.search(gap):
                return match.span()
    return None


def _email(match: re.Match[str]) -> Span | None:
    text, at = match.string, match.start()
    start, stop = at, max(0, at - _EMAIL_LOCAL_MAX)
    while start > stop and (text[start - 1] in _LOCAL_PART or text[start - 1].isalnum()):
        start -= 1
    while start < at and text[start] == ".":  # a sentence's full stop is not the address's
        start += 1
    return (start, match.end()) if start < at else None


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: Kind
    pattern: re.Pattern[str]
    span: Callable[[re.Match[str]], Span | None]


_NUMBER_RULES: tuple[_Rule, ...] = (
    _Rule(Kind.CARD, _CARD, _checked(luhn_valid)),
    _Rule(Kind.SNILS, _SNILS, _checked(snils_valid)),
    _Rule(Kind.PASSPORT, _PASSPORT, _passport),
    _Rule(Kind.INN, _INN, _checked(inn_valid)),
    _Rule(Kind.PHONE, _PHONE, lambda m: m.span()),
)
_EMAIL_RULE = _Rule(Kind.EMAIL, _EMAIL_DOMAIN, _email)


class RegexDetector:
    """Phones, e-mail addresses, passports, SNILS, INN and bank cards: one pass per kind, and
    none at all for the digit kinds in a text without a digit (or for e-mail without "@")."""

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        rules: Sequence[_Rule] = _NUMBER_RULES if _DIGIT.search(text) else ()
        if "@" in text:
            rules = (*rules, _EMAIL_RULE)
        for rule in rules:
            for match in rule.pattern.finditer(text):
                span = rule.span(match)
                if span is not None:
                    found.append(Finding(rule.kind, *span))
        return found


def resolve(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Non-overlapping findings in text order. Where findings overlap, the longer span wins; at
    equal length the kind declared first in `Kind` wins (its docstring says why that order),
    then the earlier start. Deterministic whatever order the detectors ran in."""
    ordered = sorted(findings, key=lambda f: f.start)
    if all(a.end <= b.start for a, b in itertools.pairwise(ordered)):
        return tuple(ordered)  # the usual case: nothing overlaps
    kept: list[Finding] = []
    for cand in sorted(ordered, key=lambda f: (f.start - f.end, f.kind.priority, f.start)):
        if all(cand.end <= k.start or k.end <= cand.start for k in kept):
            kept.append(cand)
    kept.sort(key=lambda f: f.start)
    return tuple(kept)


REGEX_DETECTOR = RegexDetector()


def detect(text: str, detectors: Sequence[Detector] = (REGEX_DETECTOR,)) -> tuple[Finding, ...]:
    """Every piece of personal data the detectors find in `text`, overlaps resolved."""
    if len(detectors) == 1:
        return resolve(detectors[0].find(text))
    return resolve(f for d in detectors for f in d.find(text))
