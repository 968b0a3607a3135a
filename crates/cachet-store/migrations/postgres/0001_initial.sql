-- Cachet store, PostgreSQL schema v1: the same tables as the SQLite schema
-- (v1 to v3 in one step), for several `cachet serve` replicas sharing one
-- database. Times are Unix seconds (UTC) as BIGINT; binary values are BYTEA.

-- Verifier nonces: issued by POST /v1/challenge, consumed at most once
-- (one UPDATE ... WHERE consumed_at IS NULL: the row lock decides the winner).
CREATE TABLE nonces (
    nonce       BYTEA   PRIMARY KEY,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    consumed_at BIGINT
);
CREATE INDEX nonces_expires ON nonces (expires_at);

-- Admin API keys: only a SHA-256 of the secret part is kept. `tenant`: the
-- owner of secrets the key acts for (NULL: none).
CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT,
    tenant      TEXT
);

-- Token signing keys: public key, custody handle (for the local custody the
-- PKCS#8 private key), certificate chain (JSON array of hex DER), lifecycle.
CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY,
    alg         TEXT    NOT NULL,
    custody     TEXT    NOT NULL,
    public_spki BYTEA   NOT NULL,
    handle      BYTEA   NOT NULL,
    cert_chain  TEXT    NOT NULL DEFAULT '[]',
    created_at  BIGINT  NOT NULL,
    active_from BIGINT  NOT NULL,
    revoked_at  BIGINT
);

-- Tamper-evident audit log: each row carries the hash of the previous row.
-- `seq` is assigned as MAX(seq)+1 under a transaction-scoped advisory lock
-- (see postgres.rs), so replicas append to one gapless chain.
CREATE TABLE audit_log (
    seq          BIGINT  PRIMARY KEY,
    ts           BIGINT  NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    tee          TEXT,
    outcome      TEXT    NOT NULL,
    failed_check TEXT,
    token_id     TEXT,
    detail       TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL
);

-- Secrets, envelope-encrypted by the key broker: `sealed` is its JSON record
-- (wrapped data key + ciphertext); no plaintext value is ever stored.
CREATE TABLE secrets (
    owner       TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    policy      TEXT    NOT NULL,
    policy_hash TEXT    NOT NULL,
    sealed      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    version     BIGINT  NOT NULL,
    PRIMARY KEY (owner, name)
);

-- Which audit entries concern which owner, so each owner reads its own.
CREATE TABLE owner_audit (
    owner TEXT    NOT NULL,
    seq   BIGINT  NOT NULL REFERENCES audit_log (seq),
    PRIMARY KEY (owner, seq)
);

-- Every version of every appraisal policy (Rego text); the current policy of
-- a name is its highest version.
CREATE TABLE policies (
    name       TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    text       TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    created_by TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);

-- Named reference-value sets: `doc` is the set's JSON (cachet-appraise RefSet).
CREATE TABLE reference_sets (
    name       TEXT    PRIMARY KEY,
    doc        TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL,
    updated_by TEXT    NOT NULL
);
