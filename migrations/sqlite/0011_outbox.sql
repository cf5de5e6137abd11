-- driftwatch schema, part 11: outbound webhooks (alerts when it happens).

-- The outbox: one row per event, written in the same transaction as the
-- change it reports (a drift opened or closed, a run refused or failed, a
-- message quarantined, a format alert, a vendor gone silent). `event_key`
-- names what happened (`drift.opened:42`), so an event recorded twice (two
-- instances noticing the same silence) is stored once.
CREATE TABLE outbox_events (
    id          INTEGER PRIMARY KEY,
    event_key   TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    vendor      TEXT,
    occurred_at TEXT NOT NULL,
    -- The event's `data` object (JSON), fixed when it happened.
    payload     TEXT NOT NULL
);

-- How far each subscription has taken events into its deliveries. A new
-- subscription starts at the end of the outbox: it gets what happens next.
CREATE TABLE outbox_cursors (
    subscription TEXT PRIMARY KEY,
    last_event   INTEGER NOT NULL
);

-- One row per (subscription, event): its state and the lease of the
-- instance sending it, so two instances never both send in the normal case.
CREATE TABLE outbox_deliveries (
    subscription    TEXT NOT NULL,
    event           INTEGER NOT NULL REFERENCES outbox_events (id),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_holder    TEXT,
    lease_until     TEXT,
    delivered_at    TEXT,
    PRIMARY KEY (subscription, event)
);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (state, next_attempt_at);

-- Every attempt and its answer, for `driftwatch hooks deliveries` and /metrics.
CREATE TABLE outbox_attempts (
    id           INTEGER PRIMARY KEY,
    subscription TEXT NOT NULL,
    event        INTEGER NOT NULL REFERENCES outbox_events (id),
    attempt      INTEGER NOT NULL,
    attempted_at TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead'))
);
CREATE INDEX outbox_attempts_event ON outbox_attempts (subscription, event);

-- A run's events read the drifts it opened (closes use drifts_vendor).
CREATE INDEX drifts_first_run ON drifts (first_run);
