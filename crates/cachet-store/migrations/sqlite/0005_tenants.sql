-- Tenants (schema v5): API keys may expire, and reference-value sets belong
-- to an owner.

-- After this instant (Unix seconds) the key is refused (`api_key_expired`).
-- NULL: the key does not expire.
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;

-- Reference-value sets are keyed by (owner, name): owner '' is the operator
-- (sets appraisal policies read), any other owner a tenant (sets only that
-- tenant's release policies read). `shared_with` (JSON array of tenant
-- names, or ["*"] for every tenant) lists the tenants whose release policies
-- also read an operator set; tenant sets are never shared. SQLite cannot
-- change a primary key in place, so the table is rebuilt; existing sets
-- become operator sets, shared with nobody.
CREATE TABLE reference_sets_v5 (
    owner       TEXT    NOT NULL DEFAULT '',
    name        TEXT    NOT NULL,
    doc         TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT    NOT NULL,
    shared_with TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (owner, name)
) WITHOUT ROWID;
INSERT INTO reference_sets_v5 (owner, name, doc, updated_at, updated_by)
    SELECT '', name, doc, updated_at, updated_by FROM reference_sets;
DROP TABLE reference_sets;
ALTER TABLE reference_sets_v5 RENAME TO reference_sets;
