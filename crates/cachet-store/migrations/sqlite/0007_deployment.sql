-- What every instance on this database must agree on (the token issuer, the
-- key-encryption key's identifier), claimed by the first to start: a replica
-- started with another value is refused at start rather than signing tokens
-- the others refuse or failing to open what they sealed.
CREATE TABLE deployment (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
