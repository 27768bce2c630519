-- 0010: VAT (issue 15). Catalog prices are net; a generation is charged gross, and its record
-- keeps the parts: cost (the gross debited, unchanged in meaning for balances and reservations)
-- = cost_net + vat, and vat_rate, the fraction in force when it ran (0.22). usage_daily sums the
-- VAT beside the cost (its net is cost - vat). Generations recorded before this release had no
-- VAT: they get vat 0, vat_rate 0 and cost_net = cost; documents written before it (in the Redis
-- ledger stream) carry no vat and record the same. xrouter_record_generations is redefined to
-- record and roll up the new columns (xrouter_record_and_charge calls it; it charges `cost`),
-- with 0009's currency columns.

-- The three are nullable as cache_write_tokens and jurisdiction are, for 0001's
-- xrouter_record_generation (which fills every column from its document): NULL reads as no VAT
-- (vat and vat_rate 0, cost_net = cost).
ALTER TABLE generations
    ADD COLUMN cost_net numeric(20, 8),
    ADD COLUMN vat numeric(20, 8),
    ADD COLUMN vat_rate numeric(9, 8);
UPDATE generations SET cost_net = cost, vat = 0, vat_rate = 0;

ALTER TABLE usage_daily ADD COLUMN vat numeric(20, 8) NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION xrouter_record_generations(batch jsonb) RETURNS integer
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
               g.generation_ms, g.finish_reason, g.status, g.attempts,
               coalesce(g.cache_write_tokens, 0) AS cache_write_tokens,
               coalesce(g.jurisdiction, '') AS jurisdiction,
               coalesce(g.price_currency, 'RUB') AS price_currency, g.fx_rate,
               g.cost_original::numeric(20, 8) AS cost_original, g.fx_date,
               coalesce(g.vat, 0)::numeric(20, 8) AS vat,
               coalesce(g.vat_rate, 0)::numeric(9, 8) AS vat_rate,
               (g.cost - coalesce(g.vat, 0))::numeric(20, 8) AS cost_net
        FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(doc, n),
             jsonb_to_record(e.doc) AS g(
                 id text, created_at float8, key_id text, account_id text, model text, provider text,
                 streamed boolean, prompt_tokens integer, completion_tokens integer,
                 cached_tokens integer, reasoning_tokens integer, counts_native boolean, cost numeric,
                 latency_ms integer, generation_ms integer, finish_reason text, status text,
                 attempts jsonb, cache_write_tokens integer, jurisdiction text,
                 price_currency text, fx_rate numeric, cost_original numeric, fx_date date,
                 vat numeric, vat_rate numeric)
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
                                 status, attempts, cache_write_tokens, jurisdiction,
                                 price_currency, fx_rate, cost_original, fx_date, vat,
                                 vat_rate, cost_net)
        SELECT * FROM fresh
    ), rolled AS (
        INSERT INTO usage_daily AS u (day, account_id, key_id, model, provider,
                                      requests, prompt_tokens, completion_tokens, cost,
                                      cached_tokens, cache_write_tokens, reasoning_tokens, vat)
        SELECT (created_at AT TIME ZONE 'UTC')::date, coalesce(account_id, ''), coalesce(key_id, ''),
               coalesce(model, ''), coalesce(provider, ''), count(*), coalesce(sum(prompt_tokens), 0),
               coalesce(sum(completion_tokens), 0), coalesce(sum(cost), 0),
               coalesce(sum(cached_tokens), 0), coalesce(sum(cache_write_tokens), 0),
               coalesce(sum(reasoning_tokens), 0), coalesce(sum(vat), 0)
        FROM fresh
        GROUP BY 1, 2, 3, 4, 5
        ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (day, account_id, key_id, model, provider) DO UPDATE
        SET requests = u.requests + excluded.requests,
            prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
            completion_tokens = u.completion_tokens + excluded.completion_tokens,
            cost = u.cost + excluded.cost,
            cached_tokens = u.cached_tokens + excluded.cached_tokens,
            cache_write_tokens = u.cache_write_tokens + excluded.cache_write_tokens,
            reasoning_tokens = u.reasoning_tokens + excluded.reasoning_tokens,
            vat = u.vat + excluded.vat
    )
    SELECT count(*) INTO recorded FROM claimed;
    RETURN recorded;
END
$$;
