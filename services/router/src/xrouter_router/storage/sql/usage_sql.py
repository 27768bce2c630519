"""SQL pieces the SQLite and PostgreSQL usage ledgers share: the WHERE clause of the filters given
and the checked list of report groups. Pure: no driver, no I/O; each caller passes its placeholder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.ledger import REPORT_GROUPS

# A key's own policies and its account's (its plan's; NULL without a plan), read with the key in
# this order: residency, pii_guard, pii_scope, then the account's outage allowance.
_POLICIES = ("residency", "pii_guard", "pii_scope")
KEY_POLICIES = ", ".join([*_POLICIES, *(
    f"(SELECT p.{c} FROM account_plans p WHERE p.account_id = api_keys.account_id)"
    for c in (*_POLICIES, "outage_allowance"))])


def with_policies(key: ApiKey, values: Sequence[object]) -> ApiKey:
    """`key` with the policies of KEY_POLICIES' columns (an account without a plan: none)."""
    residency, pii_guard, pii_scope, *account = (str(v or "") for v in values[:6])
    return replace(key, residency=residency, pii_guard=pii_guard, pii_scope=pii_scope,
                   account_residency=account[0], account_pii_guard=account[1],
                   account_pii_scope=account[2],
                   account_outage_allowance=allowance(values[6]))


def allowance(value: object) -> Decimal | None:
    """An outage allowance column (PostgreSQL's numeric, SQLite's decimal text; NULL: none)."""
    return None if value is None else Decimal(str(value))


def where(conditions: Mapping[str, object | None]) -> tuple[str, list[object]]:
    """`WHERE a AND b` over the conditions whose value is not None (empty when none is), and those
    values in the same order, for the driver's placeholders."""
    clauses = [clause for clause, value in conditions.items() if value is not None]
    params = [value for value in conditions.values() if value is not None]
    return (f"WHERE {' AND '.join(clauses)}" if clauses else "", params)


def report_groups(group_by: Sequence[str]) -> list[str]:
    """The names to group a report by, first occurrence kept; InvalidRequest for an unknown one."""
    unknown = set(group_by) - REPORT_GROUPS
    if unknown:
        raise InvalidRequest(f"cannot group usage by {sorted(unknown)}", param="group_by")
    return list(dict.fromkeys(group_by))
