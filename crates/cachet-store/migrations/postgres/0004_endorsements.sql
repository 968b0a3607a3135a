-- Endorsements fetched from the manufacturers (the SQLite schema's v6; see
-- migrations/sqlite/0006_endorsements.sql): one row per piece, shared by
-- every replica, so each is fetched once for all of them.
CREATE TABLE endorsements (
    key         TEXT   NOT NULL PRIMARY KEY,
    kind        TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    fetched_at  BIGINT NOT NULL,
    next_update BIGINT,
    source      TEXT   NOT NULL
);
