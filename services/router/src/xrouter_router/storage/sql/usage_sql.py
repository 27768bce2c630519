"""SQL pieces the SQLite and PostgreSQL usage ledgers share: the WHERE clause of the filters given
and the checked list of report groups. Pure: no driver, no I/O; each caller passes its placeholder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.ledger import REPORT_GROUPS

# The key's account's residency policy, read with the key (its plan's; NULL without a plan).
ACCOUNT_RESIDENCY = ("(SELECT p.residency FROM account_plans p"
                     " WHERE p.account_id = api_keys.account_id)")


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
