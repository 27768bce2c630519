-- 0012: console sessions and OAuth PKCE codes (issue 14; docs/oauth.md). Only keyed hashes of
-- session tokens and codes are stored (HMAC-SHA256 under XROUTER_KEY_SECRET, as key_hash). A
-- session authenticates as the key that opened it (key_id NULL: the master key, role 'master')
-- and ends with it; a code belongs to the management key that approved it. Both end when their key
-- is deleted (the foreign keys) or disabled (the trigger; enabling the key again revives none).

CREATE TABLE sessions (
    token_hash  text PRIMARY KEY,
    key_id      text REFERENCES api_keys (id) ON DELETE CASCADE,
    account_id  text NOT NULL DEFAULT '',
    role        text NOT NULL CHECK (role IN ('master', 'management', 'key')),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    CHECK ((role = 'master') = (key_id IS NULL))
);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX sessions_key_id_idx ON sessions (key_id);

CREATE TABLE auth_codes (
    code_hash   text PRIMARY KEY,
    key_id      text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    account_id  text NOT NULL,
    app_host    text NOT NULL,
    challenge   text NOT NULL,  -- '' when the app sent none
    method      text NOT NULL CHECK (method IN ('', 'S256', 'plain')),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX auth_codes_expires_at_idx ON auth_codes (expires_at);
CREATE INDEX auth_codes_key_id_idx ON auth_codes (key_id);

CREATE FUNCTION xrouter_end_sessions_of_disabled_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sessions WHERE key_id = NEW.id;
    DELETE FROM auth_codes WHERE key_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_disabled_ends_sessions AFTER UPDATE OF disabled ON api_keys
    FOR EACH ROW WHEN (NEW.disabled) EXECUTE FUNCTION xrouter_end_sessions_of_disabled_key();
