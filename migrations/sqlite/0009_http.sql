-- driftwatch schema, part 9: what the HTTP API needs.

-- `/readyz` proves the database takes writes by committing this one row.
CREATE TABLE readiness_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at TEXT NOT NULL
);

-- Webhook intake: each request's raw body and headers, committed (with the
-- deltas parsed from it) before the 2xx. One row per (vendor, webhook-id):
-- a retried delivery is acknowledged and not applied again.
CREATE TABLE webhooks (
    id          INTEGER PRIMARY KEY,
    vendor      TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    received_at TEXT NOT NULL,
    -- JSON object of the request headers that matter (webhook-*, content-type).
    headers     TEXT NOT NULL,
    body        BLOB NOT NULL,
    disposition TEXT NOT NULL CHECK (disposition IN ('parsed', 'quarantined')),
    reason      TEXT,
    UNIQUE (vendor, webhook_id)
);

-- Which webhook each webhook delta came from (deltas.message is for mail).
CREATE TABLE webhook_deltas (
    offset  INTEGER PRIMARY KEY REFERENCES deltas (offset),
    webhook INTEGER NOT NULL REFERENCES webhooks (id)
);
