-- driftwatch schema, part 1: the raw archive, mailbox checkpoints, the delta log
-- and the order view. Migrations are append-only: never edit one that shipped.
-- Timestamps are TEXT in one fixed UTC format (YYYY-MM-DDTHH:MM:SS.ffffffZ), so
-- text order is time order.

-- One row per distinct message, however many mailboxes/UIDs it was seen at.
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    -- sha256 over Message-ID + body (line endings normalised), or over the
    -- whole message when it has no Message-ID: the same mail re-fetched after a
    -- UIDVALIDITY change or delivered to a second mailbox maps to one row.
    dedupe_key    BLOB NOT NULL UNIQUE,
    content_hash  BLOB NOT NULL,
    message_id    TEXT,
    size          INTEGER NOT NULL,
    -- The message as fetched; for a message over the size limit, its header only.
    raw           BLOB NOT NULL,
    raw_complete  INTEGER NOT NULL CHECK (raw_complete IN (0, 1)),
    sender        TEXT,
    subject       TEXT,
    date_header   TEXT,
    internal_date TEXT,
    archived_at   TEXT NOT NULL,
    disposition   TEXT NOT NULL CHECK (disposition IN ('parsed', 'quarantined', 'ignored', 'skipped')),
    reason        TEXT,
    vendor        TEXT,
    parser        TEXT,
    parser_version INTEGER
);
CREATE INDEX messages_disposition ON messages (disposition, archived_at);
CREATE INDEX messages_vendor ON messages (vendor, archived_at);

-- Every place a message was fetched from: the proof that each fetch is accounted for.
CREATE TABLE message_locations (
    source     TEXT NOT NULL,
    folder     TEXT NOT NULL,
    location   TEXT NOT NULL,
    message    INTEGER NOT NULL REFERENCES messages (id),
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (source, folder, location)
) WITHOUT ROWID;

-- IMAP progress per mailbox folder. Written in the same transaction as the
-- messages it covers.
CREATE TABLE checkpoints (
    source      TEXT NOT NULL,
    folder      TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (source, folder)
) WITHOUT ROWID;

-- The append-only delta log. `offset` is a delta's identity and the cursor
-- readers resume from; AUTOINCREMENT so an offset is never reused.
CREATE TABLE deltas (
    offset         INTEGER PRIMARY KEY AUTOINCREMENT,
    vendor         TEXT NOT NULL,
    order_ref      TEXT NOT NULL,
    source         TEXT NOT NULL CHECK (source IN ('email', 'webhook', 'reconcile', 'manual')),
    status         TEXT,
    vendor_status  TEXT,
    fields         TEXT NOT NULL DEFAULT '{}',
    event_time     TEXT NOT NULL,
    time_source    TEXT NOT NULL CHECK (time_source IN ('vendor', 'date_header', 'received')),
    recorded_at    TEXT NOT NULL,
    message        INTEGER REFERENCES messages (id),
    parser         TEXT,
    parser_version INTEGER
);
CREATE INDEX deltas_order ON deltas (vendor, order_ref, event_time, offset);
CREATE INDEX deltas_message ON deltas (message);

-- Deltas replaced by a reparse stay in the log (it is never edited); this
-- table says which ones the view no longer uses.
CREATE TABLE superseded_deltas (
    offset        INTEGER PRIMARY KEY REFERENCES deltas (offset),
    superseded_at TEXT NOT NULL,
    reason        TEXT NOT NULL
);

-- The order view: a pure function of the non-superseded deltas (see src/view.rs).
CREATE TABLE orders (
    vendor        TEXT NOT NULL,
    order_ref     TEXT NOT NULL,
    status        TEXT,
    vendor_status TEXT,
    fields        TEXT NOT NULL,
    event_time    TEXT NOT NULL,
    last_offset   INTEGER NOT NULL,
    updated_at    TEXT NOT NULL,
    delta_count   INTEGER NOT NULL,
    PRIMARY KEY (vendor, order_ref)
) WITHOUT ROWID;
CREATE INDEX orders_status ON orders (vendor, status);
