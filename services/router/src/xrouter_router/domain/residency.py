"""Data residency: where a provider keeps the data it is sent (its jurisdiction, an ISO 3166-1
alpha-2 country code from the catalog) and the policy of a key or account that says where a
request may go (`residency`). Only one policy value restricts today: "ru", for Russian
citizens' personal data under 152-FZ art. 18 part 5 (see docs/compliance.md).

A key's own policy applies; a key without one ("") follows its account's; "any" lifts the
account's for that key (only the master key may give a key a looser policy than its account's
plan, as with every other plan ceiling)."""

from __future__ import annotations

import re

from xrouter_router.domain.errors import InvalidRequest

RU = "ru"
ANY = "any"
# The values a key or an account may carry ("" = not set: the key follows its account's; the
# account has none).
POLICIES = (RU, ANY)
# Provider types whose service is in Russia unless the catalog says otherwise; every other type
# must declare its jurisdiction, or is unknown ("": never "ru").
TYPE_JURISDICTIONS = {"gigachat": RU, "yandexgpt": RU}
FORBIDDEN = ("The residency policy 'ru' of this key or its account excludes every provider that "
             "could serve this request")
_CODE = re.compile(r"[a-z]{2}")


def jurisdiction(value: object) -> str:
    """A catalog jurisdiction in lower case; ValueError unless it is two ASCII letters."""
    text = value.lower() if isinstance(value, str) else ""
    if not _CODE.fullmatch(text):
        raise ValueError(f"must be an ISO 3166-1 alpha-2 country code such as \"ru\", got {value!r}")
    return text


def policy(value: str, param: str = "residency") -> str:
    """A residency policy as given to the management API ("" clears it); InvalidRequest
    naming `param` otherwise."""
    text = value.strip().lower()
    if text and text not in POLICIES:
        raise InvalidRequest(f"{param} must be one of {list(POLICIES)} (or empty to clear it), "
                             f"got {value[:32]!r}", param=param)
    return text


def effective(key_policy: str, account_policy: str) -> tuple[str, str]:
    """The policy that applies and where it comes from ("key", "account" or "default")."""
    if key_policy:
        return key_policy, "key"
    if account_policy:
        return account_policy, "account"
    return ANY, "default"


def excludes(required: str, provider_jurisdiction: str) -> str:
    """Why a deployment in `provider_jurisdiction` may not serve under policy `required`;
    empty when it may."""
    if required != RU or provider_jurisdiction == RU:
        return ""
    where = provider_jurisdiction or "unknown"
    return f"provider jurisdiction is {where!r}; the residency policy requires 'ru'"
