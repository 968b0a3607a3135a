-- Tenants (the SQLite schema's v5): API keys may expire, and reference-value
-- sets belong to an owner.

-- After this instant (Unix seconds) the key is refused (`api_key_expired`).
-- NULL: the key does not expire.
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;

-- Reference-value sets are keyed by (owner, name): owner '' is the operator
-- (sets appraisal policies read), any other owner a tenant (sets only that
-- tenant's release policies read). `shared_with` (JSON array of tenant
-- names, or ["*"] for every tenant) lists the tenants whose release policies
-- also read an operator set; tenant sets are never shared. Existing sets
-- become operator sets, shared with nobody.
ALTER TABLE reference_sets ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE reference_sets ADD COLUMN shared_with TEXT NOT NULL DEFAULT '[]';
ALTER TABLE reference_sets DROP CONSTRAINT reference_sets_pkey;
ALTER TABLE reference_sets ADD PRIMARY KEY (owner, name);
