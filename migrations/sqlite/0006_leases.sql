-- driftwatch schema, part 6: one writer at a time.
-- A lease names a piece of work (`reconcile:<vendor>`, `ingest:<mailbox>/<folder>`)
-- and who holds it until when. `token` grows by one with every grant: a write
-- checks, inside its own transaction, that its token is still the lease's and
-- unexpired, so a holder that stalled past its lease can never commit.
-- Plain SQL on purpose: the PostgreSQL store uses the same table and statements.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      INTEGER NOT NULL,
    expires_at TEXT NOT NULL
);
