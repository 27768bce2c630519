-- 0003: generation records that carry their charge. In the cluster mode a generation's cost
-- reaches the account with its record (through the Redis ledger stream and its consumer), in
-- the record's own transaction, so that the credit ledger and the generations reconcile by
-- construction and no charge waits on PostgreSQL in the request path.
--
-- xrouter_record_and_charge(batch, charged) records the batch exactly as
-- xrouter_record_generations does, then debits every generation named in `charged` (whose
-- cost is positive) by its cost: one 'usage' entry per generation id, ever (a repeated batch,
-- or a generation charged before through xrouter_post_credit, moves nothing), with the key's
-- spend and the account's balance in step. Accounts are locked in id order (no deadlocks
-- between concurrent batches). A charge to an account that does not exist refuses the whole
-- batch with invalid_parameter_value (SQLSTATE 22023), so the consumer can set that record
-- apart for an operator. Returns how many records were new.

CREATE FUNCTION xrouter_due_charges(batch jsonb, charged text[])
RETURNS TABLE (generation_id text, account_id text, key_id text, cost numeric)
LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT ON (g.id) g.id, g.account_id, g.key_id, g.cost::numeric(20, 8)
    FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(doc, n),
         jsonb_to_record(e.doc) AS g(id text, account_id text, key_id text, cost numeric)
    WHERE g.id = ANY (charged) AND g.cost::numeric(20, 8) > 0
    ORDER BY g.id, e.n
$$;

CREATE FUNCTION xrouter_record_and_charge(batch jsonb, charged text[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    recorded integer;
    missing text;
BEGIN
    recorded := xrouter_record_generations(batch);

    PERFORM 1 FROM accounts
    WHERE id IN (SELECT d.account_id FROM xrouter_due_charges(batch, charged) d)
    ORDER BY id FOR UPDATE;
    SELECT d.account_id INTO missing FROM xrouter_due_charges(batch, charged) d
    WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = d.account_id) LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE invalid_parameter_value USING MESSAGE = format('a charge for no account %L', missing);
    END IF;

    WITH posted AS (
        INSERT INTO credit_entries (account_id, amount, kind, generation_id, key_id)
        SELECT d.account_id, -d.cost, 'usage', d.generation_id, d.key_id
        FROM xrouter_due_charges(batch, charged) d
        ORDER BY d.generation_id
        ON CONFLICT (generation_id) DO NOTHING
        RETURNING credit_entries.account_id, credit_entries.key_id, credit_entries.amount
    ), spend AS (
        INSERT INTO key_spend AS s (key_id, spent)
        SELECT p.key_id, -sum(p.amount) FROM posted p WHERE p.key_id IS NOT NULL
        GROUP BY p.key_id ORDER BY p.key_id
        ON CONFLICT (key_id) DO UPDATE SET spent = s.spent + excluded.spent
    )
    UPDATE accounts a SET balance = a.balance + t.total
    FROM (SELECT p.account_id, sum(p.amount) AS total FROM posted p GROUP BY p.account_id) t
    WHERE a.id = t.account_id;
    RETURN recorded;
END
$$;
