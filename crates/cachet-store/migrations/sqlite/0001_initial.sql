-- Cachet store, SQLite schema v1. Times are Unix seconds (UTC).

-- Verifier nonces: issued by POST /v1/challenge, consumed at most once.
CREATE TABLE nonces (
    nonce       BLOB    PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    consumed_at INTEGER
) WITHOUT ROWID;
CREATE INDEX nonces_expires ON nonces (expires_at);

-- Admin API keys: only a SHA-256 of the secret part is kept.
CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY NOT NULL,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Token signing keys: public key, custody handle (for the local custody the
-- PKCS#8 private key), certificate chain, and lifecycle times.
CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY NOT NULL,
    alg         TEXT    NOT NULL,
    custody     TEXT    NOT NULL,
    public_spki BLOB    NOT NULL,
    handle      BLOB    NOT NULL,
    cert_chain  TEXT    NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL,
    active_from INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Tamper-evident audit log: each row carries the hash of the previous row.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY NOT NULL,
    ts          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    tee         TEXT,
    outcome     TEXT    NOT NULL,
    failed_check TEXT,
    token_id    TEXT,
    detail      TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
