"""The API key format, shared so that the gateway can refuse a mistyped key without a lookup:
`xr-<tier>-<32 base62 characters>-<6-character checksum>`, the checksum being CRC-32 of the
rest in base62. Keys without the `xr-` prefix (the operator's master key) are not checked here."""

from __future__ import annotations

import re
import secrets
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FORMAT = re.compile(r"^xr-([a-z]{2,16})-([0-9A-Za-z]{32})-([0-9A-Za-z]{6})$")


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")[-width:]


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), 6)


def generate(tier: str) -> str:
    """A new key for `tier`: 190 bits of randomness plus the checksum."""
    body = f"xr-{tier}-" + "".join(secrets.choice(ALPHABET) for _ in range(32))
    return f"{body}-{checksum(body)}"


def is_xrouter_key(key: str) -> bool:
    """True when the key has the shape of our keys (its checksum may still be wrong)."""
    return _FORMAT.match(key) is not None


def well_formed(key: str) -> bool:
    """True for a key of our format whose checksum matches."""
    match = _FORMAT.match(key)
    if match is None:
        return False
    return checksum(key[: -7]) == match.group(3)


def tier_of(key: str) -> str:
    match = _FORMAT.match(key)
    return match.group(1) if match else ""


def display_prefix(key: str) -> str:
    """What may be shown of a key after creation: its tier and first characters."""
    return key[: len("xr-") + len(tier_of(key)) + 1 + 6] + "..."
