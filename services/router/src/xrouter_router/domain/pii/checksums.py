"""Check digits of the Russian identifiers and bank cards: what tells a real SNILS, INN or card
number from a look-alike run of digits. Each function takes the digits only (no separators)."""

from __future__ import annotations

_INN10_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN11_WEIGHTS = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
# SNILS numbers up to 001-001-998 were issued before the check number existed: no check holds
# for them, so a detector cannot tell them from filler such as 000-000-000 00 and skips them.
_SNILS_FIRST_CHECKED = 1_001_999


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False))


def _inn_digit(digits: str, weights: tuple[int, ...]) -> int:
    return _weighted(digits, weights) % 11 % 10


def inn_valid(digits: str) -> bool:
    """A 10-digit (legal entity) or 12-digit (person) INN whose check digits hold."""
    if len(digits) == 10:
        return _inn_digit(digits, _INN10_WEIGHTS) == int(digits[9])
    if len(digits) == 12:
        return (_inn_digit(digits, _INN11_WEIGHTS) == int(digits[10])
                and _inn_digit(digits, _INN12_WEIGHTS) == int(digits[11]))
    return False


def snils_check_number(first_nine: str) -> int:
    """The two-digit check number of a SNILS from its first nine digits."""
    total = _weighted(first_nine, (9, 8, 7, 6, 5, 4, 3, 2, 1))
    if total < 100:
        return total
    if total in (100, 101):
        return 0
    return total % 101 % 100


def snils_valid(digits: str) -> bool:
    """An 11-digit SNILS above 001-001-998 whose check number holds."""
    if len(digits) != 11 or int(digits[:9]) < _SNILS_FIRST_CHECKED:
        return False
    return snils_check_number(digits[:9]) == int(digits[9:])


def luhn_valid(digits: str) -> bool:
    """The Luhn check of a bank card number (the last digit checks the others)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
