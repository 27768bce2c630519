"""SQL pieces the SQLite and PostgreSQL usage ledgers share: the WHERE clause of the filters given,
the checked list of report groups and the query of a page of generations. Pure: no driver, no
I/O; each caller passes its placeholder."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.ledger import REPORT_GROUPS
from xrouter_router.domain.listings import GenerationQuery

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


def generations_sql(columns: str, query: GenerationQuery, mark: str, *, table: str,
                    id_expr: str, time: Callable[[float], object]) -> tuple[str, list[object]]:
    """The query of up to query.limit + 1 generations, newest first, each with its key's label;
    `table` is how the columns name generations, `id_expr` its id as ordered (bytewise), `time`
    a unix time as the driver passes created_at. The cursor's row comparison comes with a plain
    bound on created_at, so that an index on (account_id or key_id, created_at) ranges over it."""
    t = table
    def at(ts: float | None) -> object | None:
        return None if ts is None else time(ts)
    clause, params = where({f"{t}.account_id = {mark}": query.account_id,
                            f"{t}.key_id = {mark}": query.key_id,
                            f"{t}.model = {mark}": query.model,
                            f"{t}.provider = {mark}": query.provider,
                            f"{t}.created_at >= {mark}": at(query.since),
                            f"{t}.created_at < {mark}": at(query.until)})
    if query.before is not None:
        bound = time(query.before.created_at)
        after = (f"{t}.created_at <= {mark} AND ({t}.created_at, {id_expr}) < ({mark}, {mark})")
        clause = f"{clause} AND {after}" if clause else f"WHERE {after}"
        params += [bound, bound, query.before.id]
    label = f"(SELECT k.label FROM api_keys k WHERE k.id = {t}.key_id)"
    sql = (f"SELECT {columns}, {label} FROM generations {t} {clause}"
           f" ORDER BY {t}.created_at DESC, {id_expr} DESC LIMIT {mark}")
    return sql, [*params, query.limit + 1]
