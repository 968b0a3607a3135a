-- Endorsements fetched from the manufacturers (Intel PCS/PCCS, AMD KDS,
-- NVIDIA RIM service), kept so that attestations survive a source that is
-- down and so each piece is fetched once. `key` says what it is (kind, FMSPC
-- / product+hwid+TCB / RIM id), never where it came from; `body` is the
-- cachet-endorse `Fetched` JSON (the vendor's bytes, base64). A cache: losing
-- a row only costs a fetch.
CREATE TABLE endorsements (
    key         TEXT    NOT NULL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    fetched_at  INTEGER NOT NULL,
    next_update INTEGER,
    source      TEXT    NOT NULL
) WITHOUT ROWID;
