"""The personal-data guard's policy of a key or account: what to do with personal data
(`pii_guard`: off, mask or block) and before which providers (`pii_scope`: foreign, the
default, only before a provider whose jurisdiction is not "ru"; always, before every one).

A key's own value applies; a key without one ("") follows its account's (its plan's); neither
set is `off` / `foreign`. Only the master key may give a key a looser policy than its plan's."""

from __future__ import annotations

from dataclasses import dataclass

from xrouter_router.domain.errors import InvalidRequest

OFF, MASK, BLOCK = "off", "mask", "block"
GUARDS = (OFF, MASK, BLOCK)
FOREIGN, ALWAYS = "foreign", "always"
SCOPES = (FOREIGN, ALWAYS)
_RU = "ru"


def _checked(value: str, allowed: tuple[str, ...], param: str) -> str:
    text = value.strip().lower()
    if text and text not in allowed:
        raise InvalidRequest(f"{param} must be one of {list(allowed)} (or empty to clear it), "
                             f"got {value[:32]!r}", param=param)
    return text


def guard(value: str) -> str:
    """A `pii_guard` as given to the management API ("" clears it); InvalidRequest otherwise."""
    return _checked(value, GUARDS, "pii_guard")


def scope(value: str) -> str:
    """A `pii_scope` as given to the management API ("" clears it); InvalidRequest otherwise."""
    return _checked(value, SCOPES, "pii_scope")


@dataclass(frozen=True, slots=True)
class PiiPolicy:
    """The policy in force for a key's requests, and where its `guard` comes from ("key",
    "account" or "default")."""

    guard: str = OFF
    scope: str = FOREIGN
    source: str = "default"

    def applies(self, jurisdiction: str) -> bool:
        """Whether the guard acts before a provider in `jurisdiction` ("" unknown: foreign)."""
        return self.guard != OFF and (self.scope == ALWAYS or jurisdiction != _RU)


def effective(key_guard: str, key_scope: str, account_guard: str, account_scope: str) -> PiiPolicy:
    """The key's values where set, else its account's, else off / foreign."""
    scope_ = key_scope or account_scope or FOREIGN
    if key_guard:
        return PiiPolicy(key_guard, scope_, "key")
    if account_guard:
        return PiiPolicy(account_guard, scope_, "account")
    return PiiPolicy(OFF, scope_, "default")


def loosens(plan_guard: str, plan_scope: str, key_guard: str, key_scope: str) -> str:
    """What a key's own values would loosen of its plan's (empty: nothing): `off` under a plan
    that masks or blocks, `foreign` under a plan whose scope is `always`."""
    if plan_guard not in ("", OFF) and key_guard == OFF:
        return "pii_guard"
    if plan_scope == ALWAYS and key_scope == FOREIGN:
        return "pii_scope"
    return ""
