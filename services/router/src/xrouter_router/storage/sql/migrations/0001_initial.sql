-- 0001: accounts, API keys, the credit ledger, generations (monthly partitions) and the daily rollup.
--
-- Applied by xrouter_router.storage.migrate in one transaction, which also records the version in
-- schema_migrations (version int primary key, applied_at timestamptz), the runner's own table.
--
-- Writes that must keep invariants go through the functions defined here, never through raw
-- INSERT/UPDATE: xrouter_post_credit (one ledger entry and the balance, atomically) and
-- xrouter_record_generation (one generation, its rollup and its debit, exactly once). A change to
-- what a function does ships as a new function name in a new migration, so replicas of two releases
-- running side by side each call the behaviour they were written for.

CREATE TABLE accounts (
    id          text PRIMARY KEY,
    name        text,
    -- Cached sum of credit_entries.amount for the account; see xrouter_reconcile().
    balance     numeric(20, 8) NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id              text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES accounts (id),
    key_hash        text NOT NULL UNIQUE,              -- HMAC-SHA256 of the key, lowercase hex
    prefix          text NOT NULL,                     -- the first characters, shown to users
    label           text,
    tier            text NOT NULL,
    expires_at      timestamptz,
    disabled        boolean NOT NULL DEFAULT false,
    allowed_models  text[] NOT NULL DEFAULT '{}',      -- empty: every model
    credit_limit    numeric(20, 8),                    -- null: no per-key limit
    rpm             integer,                           -- limits; null: the tier's
    rpd             integer,
    tpm             integer,
    concurrent      integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_account_id_idx ON api_keys (account_id);

-- The credit ledger: append-only entries against an account, the account's balance being the other
-- side. amount > 0 credits the account, amount < 0 debits it.
CREATE TABLE credit_entries (
    id             bigserial PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    account_id     text NOT NULL REFERENCES accounts (id),
    amount         numeric(20, 8) NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('top_up', 'usage', 'adjustment')),
    generation_id  text UNIQUE,                        -- one usage entry per generation
    reference      text,
    CONSTRAINT credit_entries_usage_has_generation CHECK (kind <> 'usage' OR generation_id IS NOT NULL)
);
CREATE INDEX credit_entries_account_idx ON credit_entries (account_id, created_at DESC);

-- Appends one entry and moves the balance by the same amount, in one statement (so in one
-- transaction). An entry for a generation already charged is skipped: the result is then NULL,
-- otherwise the new balance.
CREATE FUNCTION xrouter_post_credit(p_account_id text, p_amount numeric, p_kind text,
                                    p_generation_id text DEFAULT NULL, p_reference text DEFAULT NULL)
RETURNS numeric LANGUAGE sql AS $$
    WITH entry AS (
        INSERT INTO credit_entries (account_id, amount, kind, generation_id, reference)
        VALUES (p_account_id, p_amount, p_kind, p_generation_id, p_reference)
        ON CONFLICT (generation_id) DO NOTHING
        RETURNING account_id, amount
    )
    UPDATE accounts SET balance = accounts.balance + entry.amount
    FROM entry WHERE accounts.id = entry.account_id
    RETURNING accounts.balance
$$;

-- Accounts whose balance is not the sum of their entries; empty when the invariant holds.
CREATE FUNCTION xrouter_reconcile()
RETURNS TABLE (account_id text, balance numeric, ledger numeric, difference numeric)
LANGUAGE sql STABLE AS $$
    SELECT a.id, a.balance, coalesce(e.total, 0), a.balance - coalesce(e.total, 0)
    FROM accounts a
    LEFT JOIN (SELECT c.account_id, sum(c.amount) AS total FROM credit_entries c GROUP BY c.account_id) e
           ON e.account_id = a.id
    WHERE a.balance <> coalesce(e.total, 0)
    ORDER BY a.id
$$;

-- One row per generation, partitioned by month of created_at (UTC). No foreign keys: the log
-- outlives keys, and partitions are dropped whole when they age out.
CREATE TABLE generations (
    id                 text NOT NULL,                  -- gen-...
    created_at         timestamptz NOT NULL,
    key_id             text,
    account_id         text,
    model              text,
    provider           text,
    streamed           boolean,
    prompt_tokens      integer,
    completion_tokens  integer,
    cached_tokens      integer,
    reasoning_tokens   integer,
    counts_native      boolean,                        -- token counts from the provider, not estimated
    cost               numeric(20, 8),
    latency_ms         integer,                        -- to the first token
    generation_ms      integer,
    finish_reason      text,
    status             text,
    attempts           jsonb,
    PRIMARY KEY (id, created_at)                       -- also the unique index on (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX generations_key_idx ON generations (key_id, created_at DESC);
CREATE INDEX generations_account_idx ON generations (account_id, created_at DESC);

-- A unique constraint on a partitioned table must include the partition key, so generations cannot
-- refuse a second row with the same id on its own (a retry may carry another created_at). This
-- small unpartitioned table can: claiming the id here with ON CONFLICT DO NOTHING, in the same
-- transaction as the generation insert, is what makes recording a generation idempotent.
CREATE TABLE generation_ids (
    id          text PRIMARY KEY,
    created_at  timestamptz NOT NULL
);

-- Requests, tokens and cost per UTC day. Absent key, account, model or provider roll up under ''.
CREATE TABLE usage_daily (
    day                date NOT NULL,
    account_id         text NOT NULL,
    key_id             text NOT NULL,
    model              text NOT NULL,
    provider           text NOT NULL,
    requests           bigint NOT NULL DEFAULT 0,
    prompt_tokens      bigint NOT NULL DEFAULT 0,
    completion_tokens  bigint NOT NULL DEFAULT 0,
    cost               numeric(20, 8) NOT NULL DEFAULT 0,
    PRIMARY KEY (day, account_id, key_id, model, provider)
);

-- Monthly partitions of generations from the current month on, `months` of them; returns how many
-- it created. Call it ahead of time (at start-up and daily): an insert with no partition fails.
CREATE FUNCTION xrouter_ensure_partitions(months integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    first_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    lo date;
    created integer := 0;
    part_name text;
BEGIN
    -- Serializes concurrent callers: CREATE TABLE IF NOT EXISTS alone can still race.
    PERFORM pg_advisory_xact_lock(hashtext('xrouter_ensure_partitions'));
    FOR i IN 0 .. months - 1 LOOP
        lo := first_month + make_interval(months => i);
        part_name := format('generations_%s', to_char(lo, 'YYYY_MM'));
        IF to_regclass(quote_ident(part_name)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF generations FOR VALUES FROM (%L) TO (%L)',
                           part_name, lo::timestamp AT TIME ZONE 'UTC',
                           (lo + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$$;

DO $$
BEGIN
    PERFORM xrouter_ensure_partitions(2);                -- this month and the next
END
$$;

-- Records one generation exactly once: claims the id, inserts the row, adds it to usage_daily and,
-- when it has an account and a positive cost, debits that account through the ledger, all in the
-- caller's transaction. `g` is a JSON object keyed by generations' column names. Returns false, and
-- changes nothing, when the id was already recorded; safe to retry after a failover.
CREATE FUNCTION xrouter_record_generation(g jsonb) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    r generations := jsonb_populate_record(NULL::generations, g);
BEGIN
    INSERT INTO generation_ids (id, created_at) VALUES (r.id, r.created_at) ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO generations SELECT r.*;
    INSERT INTO usage_daily AS u (day, account_id, key_id, model, provider,
                                  requests, prompt_tokens, completion_tokens, cost)
    VALUES ((r.created_at AT TIME ZONE 'UTC')::date, coalesce(r.account_id, ''), coalesce(r.key_id, ''),
            coalesce(r.model, ''), coalesce(r.provider, ''), 1, coalesce(r.prompt_tokens, 0),
            coalesce(r.completion_tokens, 0), coalesce(r.cost, 0))
    ON CONFLICT (day, account_id, key_id, model, provider) DO UPDATE
    SET requests = u.requests + 1,
        prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = u.completion_tokens + excluded.completion_tokens,
        cost = u.cost + excluded.cost;
    IF r.account_id IS NOT NULL AND coalesce(r.cost, 0) > 0 THEN
        PERFORM xrouter_post_credit(r.account_id, -r.cost, 'usage', r.id, NULL);
    END IF;
    RETURN true;
END
$$;
