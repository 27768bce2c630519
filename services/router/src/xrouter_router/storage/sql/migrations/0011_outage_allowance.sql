-- 0011: the outage allowance per plan (issue 17). RUB each router replica may admit for the
-- account's paid requests while Redis cannot check credits; NULL (every plan set before this
-- release) follows XROUTER_CREDITS_OUTAGE_ALLOWANCE. Read with each key (the key store's join),
-- so the credit guard knows it without a database call while Redis is down.

ALTER TABLE account_plans ADD COLUMN outage_allowance numeric(20, 8)
    CHECK (outage_allowance >= 0);
