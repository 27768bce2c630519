-- 0008: the personal-data guard (issue 15). A key's policy ('' = its account's; 'off', 'mask',
-- 'block') and scope ('' = its account's; 'foreign': only before providers outside Russia;
-- 'always'), and the account's in its plan ('' = none: off, foreign).

ALTER TABLE api_keys ADD COLUMN pii_guard text NOT NULL DEFAULT ''
    CHECK (pii_guard IN ('', 'off', 'mask', 'block'));
ALTER TABLE api_keys ADD COLUMN pii_scope text NOT NULL DEFAULT ''
    CHECK (pii_scope IN ('', 'foreign', 'always'));
ALTER TABLE account_plans ADD COLUMN pii_guard text NOT NULL DEFAULT ''
    CHECK (pii_guard IN ('', 'off', 'mask', 'block'));
ALTER TABLE account_plans ADD COLUMN pii_scope text NOT NULL DEFAULT ''
    CHECK (pii_scope IN ('', 'foreign', 'always'));
