"""The embedded mode's SQLite schema: the tables of the PostgreSQL one (SCHEMA), and the steps
that bring a file of an older version up to this one (migrate). SqliteDatabase (sqlite_db.py)
applies both when it first connects."""

from __future__ import annotations

import sqlite3

from xrouter_router.domain.errors import InternalError

# PRAGMA user_version of the files this code writes; files of an older version are migrated
# by the steps of _MIGRATIONS (from version N to N + 1), each in its own transaction.
SCHEMA_VERSION = 10
# The personal-data guard's policy and scope columns of keys and plans ("": not set).
_PII_COLUMNS = ("pii_guard TEXT NOT NULL DEFAULT '' CHECK (pii_guard IN ('', 'off', 'mask', 'block'))",
                "pii_scope TEXT NOT NULL DEFAULT '' CHECK (pii_scope IN ('', 'foreign', 'always'))")
_PLANS = """
CREATE TABLE IF NOT EXISTS account_plans (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id),
    tier TEXT NOT NULL CHECK (tier IN ('free', 'pro', 'max')),
    rpm INTEGER, rpd INTEGER, tpm INTEGER, concurrent INTEGER,
    updated_at REAL NOT NULL,
    residency TEXT NOT NULL DEFAULT '',
    """ + ",\n    ".join(_PII_COLUMNS) + """,
    outage_allowance TEXT
) STRICT;
"""
_USAGE_BUCKETS = ("cached_tokens", "cache_write_tokens", "reasoning_tokens")
_MIGRATIONS = {
    # 2: the cache write bucket of generations, and every bucket in the usage rollup.
    1: ["ALTER TABLE generations ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0",
        *(f"ALTER TABLE usage_daily ADD COLUMN {c} INTEGER NOT NULL DEFAULT 0"
          for c in _USAGE_BUCKETS)],
    # 3: account plans (as PostgreSQL's 0005_account_plans.sql), made by SCHEMA's CREATE TABLE IF
    # NOT EXISTS on every file, so the step has no statement of its own.
    2: [],
    # 4: the IP allow-list of keys (PostgreSQL's 0006_key_allowed_ips.sql); keys that exist get
    # an empty one (any address).
    3: ["ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]'"],
    # 5: residency (PostgreSQL's 0007_residency.sql): keys' and plans' policies (none) and the
    # jurisdiction of generations ("" unknown). account_plans is rebuilt, not altered: a file
    # older than version 3 got SCHEMA's table, which has the column already.
    4: ["ALTER TABLE api_keys ADD COLUMN residency TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE generations ADD COLUMN jurisdiction TEXT NOT NULL DEFAULT ''",
        _PLANS.replace("IF NOT EXISTS account_plans", "account_plans_v5"),
        "INSERT INTO account_plans_v5 (account_id, tier, rpm, rpd, tpm, concurrent, updated_at)"
        " SELECT account_id, tier, rpm, rpd, tpm, concurrent, updated_at FROM account_plans",
        "DROP TABLE account_plans",
        "ALTER TABLE account_plans_v5 RENAME TO account_plans"],
    # 6: the personal-data guard (PostgreSQL's 0008_pii_guard.sql): keys' and plans' policy and
    # scope (none). account_plans is rebuilt again, for the same reason as in step 5.
    5: [*(f"ALTER TABLE api_keys ADD COLUMN {c}" for c in _PII_COLUMNS),
        _PLANS.replace("IF NOT EXISTS account_plans", "account_plans_v6"),
        "INSERT INTO account_plans_v6 (account_id, tier, rpm, rpd, tpm, concurrent, updated_at,"
        " residency) SELECT account_id, tier, rpm, rpd, tpm, concurrent, updated_at, residency"
        " FROM account_plans",
        "DROP TABLE account_plans",
        "ALTER TABLE account_plans_v6 RENAME TO account_plans"],
    # 7: currencies (PostgreSQL's 0009_fx_rates.sql): each generation's price currency, rate, its
    # date and the cost in that currency (earlier ones were all in RUB); fx_rates comes from
    # SCHEMA.
    6: ["ALTER TABLE generations ADD COLUMN price_currency TEXT NOT NULL DEFAULT 'RUB'",
        "ALTER TABLE generations ADD COLUMN fx_rate TEXT",
        "ALTER TABLE generations ADD COLUMN cost_original INTEGER",
        "ALTER TABLE generations ADD COLUMN fx_date TEXT"],
    # 8: VAT (PostgreSQL's 0010_vat.sql). cost stays the gross debited; generations recorded
    # before had no VAT, so their net is their cost, their VAT and rate 0.
    7: ["ALTER TABLE generations ADD COLUMN cost_net INTEGER NOT NULL DEFAULT 0",
        "UPDATE generations SET cost_net = cost",
        "ALTER TABLE generations ADD COLUMN vat INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE generations ADD COLUMN vat_rate INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE usage_daily ADD COLUMN vat INTEGER NOT NULL DEFAULT 0"],
    # 9: the outage allowance per plan (PostgreSQL's 0011_outage_allowance.sql), as exact
    # decimal text (NULL: the global setting). account_plans is rebuilt, for the same reason as
    # in step 5.
    8: [_PLANS.replace("IF NOT EXISTS account_plans", "account_plans_v9"),
        "INSERT INTO account_plans_v9 (account_id, tier, rpm, rpd, tpm, concurrent, updated_at,"
        " residency, pii_guard, pii_scope) SELECT account_id, tier, rpm, rpd, tpm, concurrent,"
        " updated_at, residency, pii_guard, pii_scope FROM account_plans",
        "DROP TABLE account_plans",
        "ALTER TABLE account_plans_v9 RENAME TO account_plans"],
    # 10: console sessions and OAuth codes (PostgreSQL's 0012_sessions.sql), made by SCHEMA's
    # CREATE TABLE IF NOT EXISTS on every file, so the step has no statement of its own.
    9: [],
}

# Mirrors 0001_initial.sql (timestamps as unix seconds, booleans as 0/1, text[] and jsonb as JSON
# text). generations.id is a plain primary key: unpartitioned, it needs no generation_ids table.
# Usage entries carry the key they were charged through; key_spent caches each key's sum of them
# (as accounts.balance caches the account's), so spent() reads one row.
SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    balance INTEGER NOT NULL DEFAULT 0,  -- the sum of the account's credit_entries.amount
    created_at REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    tier TEXT NOT NULL,
    expires_at REAL,
    disabled INTEGER NOT NULL DEFAULT 0,
    allowed_models TEXT NOT NULL DEFAULT '[]',
    credit_limit INTEGER,
    rpm INTEGER, rpd INTEGER, tpm INTEGER, concurrent INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    allowed_ips TEXT NOT NULL DEFAULT '[]',
    residency TEXT NOT NULL DEFAULT '',
    """ + ",\n    ".join(_PII_COLUMNS) + """
) STRICT;
CREATE INDEX IF NOT EXISTS api_keys_account_id_idx ON api_keys (account_id);
CREATE TABLE IF NOT EXISTS credit_entries (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    amount INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('top_up', 'usage', 'adjustment')),
    generation_id TEXT UNIQUE,
    key_id TEXT,
    reference TEXT,
    CHECK (kind <> 'usage' OR generation_id IS NOT NULL)
) STRICT;
CREATE INDEX IF NOT EXISTS credit_entries_account_idx ON credit_entries (account_id, created_at);
CREATE TABLE IF NOT EXISTS key_spent (
    key_id TEXT PRIMARY KEY,
    spent INTEGER NOT NULL  -- minus the sum of credit_entries.amount of the key's usage entries
) STRICT;
-- generations: fx_rate is RUB per unit of price_currency (a decimal string), NULL for RUB;
-- cost_original the cost in price_currency (units of 1e-8), NULL for RUB; fx_date the Moscow date
-- from which fx_rate was in force (YYYY-MM-DD), NULL for a fixed rate; cost (gross) = cost_net +
-- vat; vat_rate the fraction (0.22) in units of 1e-8, as money. No comments inside the table:
-- SQLite's DROP COLUMN (the upgrade tests use it) rewrites its text and a comment can swallow
-- the comma or parenthesis that follows.
CREATE TABLE IF NOT EXISTS generations (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    key_id TEXT NOT NULL, account_id TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
    streamed INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
    counts_native INTEGER NOT NULL,
    cost INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL, generation_ms INTEGER NOT NULL,
    finish_reason TEXT NOT NULL, status TEXT NOT NULL,
    attempts TEXT NOT NULL,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    jurisdiction TEXT NOT NULL DEFAULT '',
    price_currency TEXT NOT NULL DEFAULT 'RUB',
    fx_rate TEXT,
    cost_original INTEGER,
    fx_date TEXT,
    cost_net INTEGER NOT NULL DEFAULT 0,
    vat INTEGER NOT NULL DEFAULT 0,
    vat_rate INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS generations_key_idx ON generations (key_id, created_at);
CREATE INDEX IF NOT EXISTS generations_account_idx ON generations (account_id, created_at);
-- Every account's latest generations (PostgreSQL's 0013); made on every open, so files of any
-- version get it without a step of their own.
CREATE INDEX IF NOT EXISTS generations_created_idx ON generations (created_at);
CREATE TABLE IF NOT EXISTS fx_rates (  -- the Central Bank's rates fetched (domain/fx.py)
    currency TEXT NOT NULL,
    effective TEXT NOT NULL,  -- the Moscow date from which it is in force, YYYY-MM-DD
    rate TEXT NOT NULL,  -- RUB per one unit, a decimal string
    source TEXT NOT NULL,
    fetched_at REAL NOT NULL,
    PRIMARY KEY (currency, effective)
) STRICT;
CREATE TABLE IF NOT EXISTS usage_daily (
    day TEXT NOT NULL,  -- the UTC date, YYYY-MM-DD
    account_id TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    vat INTEGER NOT NULL DEFAULT 0,  -- the part of cost that is VAT
    PRIMARY KEY (day, account_id, key_id, model, provider)
) STRICT;
CREATE INDEX IF NOT EXISTS usage_daily_account_idx ON usage_daily (account_id, day);
CREATE INDEX IF NOT EXISTS usage_daily_key_idx ON usage_daily (key_id, day);
-- Console sessions (domain/sessions.py; key_id NULL: the master key) and OAuth PKCE codes
-- (domain/oauth.py; challenge '' when the app sent none), by the keyed hash of the token or code.
-- Both end with their key: deleted (the foreign keys) or disabled (the trigger; enabling the key
-- again revives none of them).
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    key_id TEXT REFERENCES api_keys (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL CHECK (role IN ('master', 'management', 'key')),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    CHECK ((role = 'master') = (key_id IS NULL))
) STRICT;
CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS sessions_key_id_idx ON sessions (key_id);
CREATE TABLE IF NOT EXISTS auth_codes (
    code_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    app_host TEXT NOT NULL,
    challenge TEXT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('', 'S256', 'plain')),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS auth_codes_expires_at_idx ON auth_codes (expires_at);
CREATE INDEX IF NOT EXISTS auth_codes_key_id_idx ON auth_codes (key_id);
CREATE TRIGGER IF NOT EXISTS api_keys_disabled_ends_sessions AFTER UPDATE OF disabled ON api_keys
WHEN NEW.disabled BEGIN
    DELETE FROM sessions WHERE key_id = NEW.id;
    DELETE FROM auth_codes WHERE key_id = NEW.id;
END;
""" + _PLANS


def migrate(conn: sqlite3.Connection) -> None:
    """Stamp a new file with SCHEMA_VERSION; migrate an older one up to it."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    if version > SCHEMA_VERSION:
        raise InternalError(f"the database has schema version {version}; this XRouter knows "
                            f"{SCHEMA_VERSION}")
    for step in range(version, SCHEMA_VERSION):
        statements = "".join(f"{statement}; " for statement in _MIGRATIONS[step])
        conn.executescript(f"BEGIN IMMEDIATE; {statements}PRAGMA user_version = {step + 1}; COMMIT;")
