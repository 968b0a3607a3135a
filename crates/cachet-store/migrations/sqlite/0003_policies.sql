-- Appraisal policies and reference values (schema v3).

-- Every version of every appraisal policy (Rego text), kept: the current
-- policy of a name is its highest version. `created_by` is the audit actor
-- (API key id); `hash` is `sha-256:<hex>` of the text, as tokens record it.
CREATE TABLE policies (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;

-- Named reference-value sets: `doc` is the set's JSON (cachet-appraise
-- `RefSet`: description, expires, values with expiry and provenance).
CREATE TABLE reference_sets (
    name       TEXT    NOT NULL PRIMARY KEY,
    doc        TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL
) WITHOUT ROWID;
