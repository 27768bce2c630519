"""SQL the SQLite and PostgreSQL session stores share: the read of a session joined with its key
(one statement, the key's columns as each store's key store reads them). Pure: no driver, no
I/O; each caller passes its placeholder and its key decoder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from xrouter_router.domain.keys import MASTER, ApiKey
from xrouter_router.domain.sessions import MASTER_ROLE, Session


def session_query(key_columns: str, mark: str) -> str:
    """The session under a hash (`mark`: the placeholder), then its key's columns (NULL for the
    master key's). The session's columns are renamed so that the key's stay unambiguous."""
    return ("WITH s AS (SELECT key_id AS s_key, role AS s_role, created_at AS s_created,"
            f" expires_at AS s_expires FROM sessions WHERE token_hash = {mark})"
            f" SELECT s_role, s_created, s_expires, {key_columns}"
            " FROM s LEFT JOIN api_keys ON api_keys.id = s.s_key")


def session_of(row: Sequence[Any], key: Callable[[tuple[Any, ...]], ApiKey],
               unix: Callable[[Any], float]) -> Session | None:
    """The session of session_query's row (None when its key is gone)."""
    role, created, expires, *columns = row
    if role == MASTER_ROLE:
        return Session(MASTER, unix(created), unix(expires))
    if columns[0] is None:
        return None
    return Session(key(tuple(columns)), unix(created), unix(expires))


def session_row(hashed: str, session: Session) -> tuple[Any, ...]:
    """The columns of a new session, in insert_session's order (times as unix seconds)."""
    master = session.key.master
    return (hashed, None if master else session.key.id, "" if master else session.key.account_id,
            session.role, session.created_at, session.expires_at)


def insert_session(mark: str) -> str:
    return ("INSERT INTO sessions (token_hash, key_id, account_id, role, created_at, expires_at)"
            f" VALUES ({', '.join([mark] * 6)})")
