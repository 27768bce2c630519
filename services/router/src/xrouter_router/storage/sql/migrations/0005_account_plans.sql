-- 0004: account plans. The operator (master key) sets, per account, the highest tier and the
-- ceilings of the limits its keys may have; an account's management key cannot create or change
-- a key above them (domain/plans.py). A NULL ceiling is the tier's own limit. An account without
-- a row has the router's default plan (XROUTER_DEFAULT_PLAN_TIER).

CREATE TABLE account_plans (
    account_id  text PRIMARY KEY REFERENCES accounts (id),
    tier        text NOT NULL CHECK (tier IN ('free', 'pro', 'max')),
    rpm         integer CHECK (rpm >= 0),
    rpd         integer CHECK (rpd >= 0),
    tpm         integer CHECK (tpm >= 0),
    concurrent  integer CHECK (concurrent >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
