-- driftwatch schema, part 2: key frames, reconcile runs and drifts.

-- One full-state pull from a vendor (an export file or a complete API listing).
CREATE TABLE key_frames (
    id            INTEGER PRIMARY KEY,
    vendor        TEXT NOT NULL,
    source        TEXT NOT NULL,
    as_of         TEXT NOT NULL,
    fetched_at    TEXT NOT NULL,
    content_hash  BLOB NOT NULL,
    row_count     INTEGER NOT NULL,
    -- 0 when a paginated listing stopped before its last page.
    complete      INTEGER NOT NULL CHECK (complete IN (0, 1)),
    etag          TEXT,
    last_modified TEXT
);
CREATE INDEX key_frames_vendor ON key_frames (vendor, id);

-- Every reconcile attempt, including the ones the guard refused. A dry run
-- writes nothing, so it has no row.
CREATE TABLE reconcile_runs (
    id              INTEGER PRIMARY KEY,
    vendor          TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    key_frame       INTEGER REFERENCES key_frames (id),
    -- Path or URL the key frame came from (also for runs whose fetch failed).
    source          TEXT,
    policy          TEXT NOT NULL CHECK (policy IN ('flag', 'fix')),
    dry_run         INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    outcome         TEXT NOT NULL CHECK (outcome IN ('running', 'ok', 'unchanged', 'refused', 'failed')),
    reason          TEXT,
    orders_remote   INTEGER NOT NULL DEFAULT 0,
    orders_local    INTEGER NOT NULL DEFAULT 0,
    missing_local   INTEGER NOT NULL DEFAULT 0,
    missing_remote  INTEGER NOT NULL DEFAULT 0,
    status_mismatch INTEGER NOT NULL DEFAULT 0,
    field_mismatch  INTEGER NOT NULL DEFAULT 0,
    fixed           INTEGER NOT NULL DEFAULT 0,
    closed          INTEGER NOT NULL DEFAULT 0,
    -- Reliability of the email channel: of the orders whose state changed
    -- since the previous key frame (key_frame_changes), how many the email
    -- deltas had already told us (email_told).
    key_frame_changes INTEGER NOT NULL DEFAULT 0,
    email_told        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX reconcile_runs_vendor ON reconcile_runs (vendor, id);

-- A difference between the local view and a key frame. Open while closed_at
-- is NULL; one open row per (vendor, order, kind, field).
CREATE TABLE drifts (
    id             INTEGER PRIMARY KEY,
    vendor         TEXT NOT NULL,
    order_ref      TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('missing_local', 'missing_remote', 'status_mismatch', 'field_mismatch')),
    field          TEXT,
    -- JSON values: what we think, what the vendor says.
    local_value    TEXT,
    remote_value   TEXT,
    cause          TEXT NOT NULL CHECK (cause IN ('missed_email', 'late_email', 'parse_error', 'vendor_regression', 'unexplained')),
    first_run      INTEGER NOT NULL REFERENCES reconcile_runs (id),
    last_run       INTEGER NOT NULL REFERENCES reconcile_runs (id),
    seen_count     INTEGER NOT NULL DEFAULT 1,
    opened_at      TEXT NOT NULL,
    closed_at      TEXT,
    closed_reason  TEXT CHECK (closed_reason IN ('agreed_by_key_frame', 'agreed_by_delta', 'fixed')),
    fix_delta      INTEGER REFERENCES deltas (offset)
);
CREATE UNIQUE INDEX drifts_one_open ON drifts (vendor, order_ref, kind, coalesce(field, '')) WHERE closed_at IS NULL;
CREATE INDEX drifts_vendor ON drifts (vendor, closed_at);
