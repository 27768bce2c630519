-- 0009: currencies (issue 15). Each generation's price currency ('RUB', or NULL for those
-- recorded before this release: RUB), the rate that converted its cost (RUB per unit; NULL for
-- RUB), the Moscow date from which that rate was in force (NULL: RUB or a fixed rate) and its
-- cost in that currency (NULL for RUB); fx_rates keeps the Central Bank's rates
-- fetched, each with the Moscow date from which it is in force, so that a restarted router
-- prices with the last known ones (domain/fx.py). xrouter_record_generations is redefined to
-- record the new columns.

ALTER TABLE generations ADD COLUMN price_currency text;
ALTER TABLE generations ADD COLUMN fx_rate numeric;
ALTER TABLE generations ADD COLUMN cost_original numeric(20, 8);
ALTER TABLE generations ADD COLUMN fx_date date;

CREATE TABLE fx_rates (
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    effective date NOT NULL,
    rate numeric NOT NULL CHECK (rate > 0),
    source text NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (currency, effective)
);

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
               g.cost_original::numeric(20, 8) AS cost_original, g.fx_date
        FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(doc, n),
             jsonb_to_record(e.doc) AS g(
                 id text, created_at float8, key_id text, account_id text, model text, provider text,
                 streamed boolean, prompt_tokens integer, completion_tokens integer,
                 cached_tokens integer, reasoning_tokens integer, counts_native boolean, cost numeric,
                 latency_ms integer, generation_ms integer, finish_reason text, status text,
                 attempts jsonb, cache_write_tokens integer, jurisdiction text,
                 price_currency text, fx_rate numeric, cost_original numeric, fx_date date)
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
                                 price_currency, fx_rate, cost_original, fx_date)
        SELECT * FROM fresh
    ), rolled AS (
        INSERT INTO usage_daily AS u (day, account_id, key_id, model, provider,
                                      requests, prompt_tokens, completion_tokens, cost,
                                      cached_tokens, cache_write_tokens, reasoning_tokens)
        SELECT (created_at AT TIME ZONE 'UTC')::date, coalesce(account_id, ''), coalesce(key_id, ''),
               coalesce(model, ''), coalesce(provider, ''), count(*), coalesce(sum(prompt_tokens), 0),
               coalesce(sum(completion_tokens), 0), coalesce(sum(cost), 0),
               coalesce(sum(cached_tokens), 0), coalesce(sum(cache_write_tokens), 0),
               coalesce(sum(reasoning_tokens), 0)
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
            reasoning_tokens = u.reasoning_tokens + excluded.reasoning_tokens
    )
    SELECT count(*) INTO recorded FROM claimed;
    RETURN recorded;
END
$$;
