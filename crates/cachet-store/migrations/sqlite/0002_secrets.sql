-- Key broker (schema v2): tenants on API keys, owners' sealed secrets, and
-- an index of the audit entries that concern each owner.

-- The tenant an API key acts for; secrets belong to tenants. NULL: none.
ALTER TABLE api_keys ADD COLUMN tenant TEXT;

-- Secrets, envelope-encrypted by the key broker: `sealed` is its JSON record
-- (wrapped data key + ciphertext); no plaintext value is ever stored.
CREATE TABLE secrets (
    owner       TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    policy      TEXT    NOT NULL,
    policy_hash TEXT    NOT NULL,
    sealed      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
) WITHOUT ROWID;

-- Which audit entries concern which owner (its secrets' changes, releases
-- and refusals), so each owner reads its own and no other's.
CREATE TABLE owner_audit (
    owner TEXT    NOT NULL,
    seq   INTEGER NOT NULL REFERENCES audit_log (seq),
    PRIMARY KEY (owner, seq)
) WITHOUT ROWID;
