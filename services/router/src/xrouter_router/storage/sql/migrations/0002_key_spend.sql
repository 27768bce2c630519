-- 0002: what the stores of storage/pg.py need beyond 0001: the key behind each usage entry and each
-- key's spend, credit postings that name the key, and generation records that move no money,
-- written in batches, for any month.
--
-- 0001's functions stay as they were (replicas of the release that calls them may still run);
-- the behaviours changed here ship under new names or signatures:
--   xrouter_post_credit(6 arguments)  - 0001's five, plus p_key_id; keeps key_spend in step
--   xrouter_record_generations(jsonb) - a batch, exactly once per id, rollups included, NO debit
--                                       (0001's xrouter_record_generation also debits the account;
--                                       the stores charge only through AccountStore.charge)
-- generations has no foreign key to accounts (0001 created none), so records of the operator's
-- "master" account, which has no row, are stored like any other.

ALTER TABLE credit_entries ADD COLUMN key_id text;
CREATE INDEX credit_entries_key_idx ON credit_entries (key_id, created_at DESC) WHERE key_id IS NOT NULL;

-- What each key's usage entries add up to, negated: a cache of
-- -sum(credit_entries.amount WHERE key_id = k), moved in the same statement as the entries (see
-- xrouter_reconcile_key_spend()). No foreign key: the spend outlives a deleted key, and a charge may
-- name a key this database does not hold.
CREATE TABLE key_spend (
    key_id  text PRIMARY KEY,
    spent   numeric(20, 8) NOT NULL
);

-- One entry and the balance (and, when the entry names a key, that key's spend) it moves, in one
-- transaction. The account row is locked first, so an unknown account is refused (SQLSTATE 23503,
-- as its foreign key would) even for a generation already charged. Returns NULL, and changes
-- nothing, when the generation already has its entry; otherwise the new balance. No defaults: a
-- call with three to five arguments still means 0001's function.
CREATE FUNCTION xrouter_post_credit(p_account_id text, p_amount numeric, p_kind text,
                                    p_generation_id text, p_key_id text, p_reference text)
RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    new_balance numeric;
BEGIN
    PERFORM 1 FROM accounts WHERE id = p_account_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE foreign_key_violation USING MESSAGE = format('no account %L', p_account_id),
                                          TABLE = 'accounts';
    END IF;
    INSERT INTO credit_entries (account_id, amount, kind, generation_id, key_id, reference)
    VALUES (p_account_id, p_amount, p_kind, p_generation_id, p_key_id, p_reference)
    ON CONFLICT (generation_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_key_id IS NOT NULL THEN
        INSERT INTO key_spend AS s (key_id, spent) VALUES (p_key_id, -p_amount)
        ON CONFLICT (key_id) DO UPDATE SET spent = s.spent + excluded.spent;
    END IF;
    UPDATE accounts SET balance = balance + p_amount WHERE id = p_account_id
    RETURNING balance INTO new_balance;
    RETURN new_balance;
END
$$;

-- Keys whose cached spend is not minus the sum of their entries; empty when the invariant holds.
CREATE FUNCTION xrouter_reconcile_key_spend()
RETURNS TABLE (key_id text, spent numeric, ledger numeric, difference numeric)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(s.key_id, e.key_id), coalesce(s.spent, 0), coalesce(e.total, 0),
           coalesce(s.spent, 0) - coalesce(e.total, 0)
    FROM key_spend s
    FULL JOIN (SELECT c.key_id, -sum(c.amount) AS total FROM credit_entries c
               WHERE c.key_id IS NOT NULL GROUP BY c.key_id) e ON e.key_id = s.key_id
    WHERE coalesce(s.spent, 0) <> coalesce(e.total, 0)
    ORDER BY 1
$$;

-- The partition of generations for the month starting on `month` (a first of the month), named as
-- xrouter_ensure_partitions names them. The advisory lock is taken only when the partition looks
-- missing, so the common call is one catalog lookup. After waiting for the lock, the partition a
-- concurrent caller just created may still be invisible to to_regclass (an advisory lock does not
-- refresh the catalog cache), but not to CREATE TABLE, hence IF NOT EXISTS.
CREATE FUNCTION xrouter_ensure_partition(month date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part_name text := format('generations_%s', to_char(month, 'YYYY_MM'));
BEGIN
    IF to_regclass(quote_ident(part_name)) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('xrouter_ensure_partitions'));
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF generations FOR VALUES FROM (%L) TO (%L)',
                       part_name, month::timestamp AT TIME ZONE 'UTC',
                       (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    END IF;
END
$$;

-- Records a batch of generations, each exactly once, with their rollups; returns how many were new.
-- `batch` is a JSON array of objects keyed by generations' column names, created_at being unix
-- seconds and cost a decimal string; a repeated id (in the batch, or recorded before) is skipped,
-- the first occurrence in the batch winning. Moves no money. Partitions for the batch's months are
-- created when missing, so a late or backdated record is never refused. Ids are claimed and
-- rollups updated in a fixed order, so that concurrent batches (two consumers, a retry beside a
-- claim) wait for each other instead of deadlocking.
CREATE FUNCTION xrouter_record_generations(batch jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month date;
    recorded integer;
BEGIN
    FOR month IN
        SELECT DISTINCT date_trunc('month', to_timestamp((e->>'created_at')::float8) AT TIME ZONE 'UTC')::date
        FROM jsonb_array_elements(batch) e
    LOOP
        PERFORM xrouter_ensure_partition(month);
    END LOOP;

    WITH incoming AS (
        SELECT DISTINCT ON (g.id)
               g.id, to_timestamp(g.created_at) AS created_at, g.key_id, g.account_id, g.model,
               g.provider, g.streamed, g.prompt_tokens, g.completion_tokens, g.cached_tokens,
               g.reasoning_tokens, g.counts_native, g.cost::numeric(20, 8) AS cost, g.latency_ms,
               g.generation_ms, g.finish_reason, g.status, g.attempts
        FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(doc, n),
             jsonb_to_record(e.doc) AS g(
                 id text, created_at float8, key_id text, account_id text, model text, provider text,
                 streamed boolean, prompt_tokens integer, completion_tokens integer,
                 cached_tokens integer, reasoning_tokens integer, counts_native boolean, cost numeric,
                 latency_ms integer, generation_ms integer, finish_reason text, status text,
                 attempts jsonb)
        ORDER BY g.id, e.n
    ), claimed AS (
        INSERT INTO generation_ids (id, created_at)
        SELECT id, created_at FROM incoming ORDER BY id
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    ), fresh AS (
        SELECT i.* FROM incoming i JOIN claimed c ON c.id = i.id
    ), stored AS (
        INSERT INTO generations (id, created_at, key_id, account_id, model, provider, streamed,
                                 prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
                                 counts_native, cost, latency_ms, generation_ms, finish_reason,
                                 status, attempts)
        SELECT * FROM fresh
    ), rolled AS (
        INSERT INTO usage_daily AS u (day, account_id, key_id, model, provider,
                                      requests, prompt_tokens, completion_tokens, cost)
        SELECT (created_at AT TIME ZONE 'UTC')::date, coalesce(account_id, ''), coalesce(key_id, ''),
               coalesce(model, ''), coalesce(provider, ''), count(*), coalesce(sum(prompt_tokens), 0),
               coalesce(sum(completion_tokens), 0), coalesce(sum(cost), 0)
        FROM fresh
        GROUP BY 1, 2, 3, 4, 5
        ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (day, account_id, key_id, model, provider) DO UPDATE
        SET requests = u.requests + excluded.requests,
            prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
            completion_tokens = u.completion_tokens + excluded.completion_tokens,
            cost = u.cost + excluded.cost
    )
    SELECT count(*) INTO recorded FROM claimed;
    RETURN recorded;
END
$$;
