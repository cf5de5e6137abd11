-- driftwatch schema, part 4: format-change alerts raised by parser health
-- tracking (a vendor's quarantine rate or a field's empty rate jumped).
CREATE TABLE format_alerts (
    id          INTEGER PRIMARY KEY,
    vendor      TEXT NOT NULL,
    detected_at TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('quarantine_rate', 'empty_field')),
    field       TEXT,
    baseline    REAL NOT NULL,
    current     REAL NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX format_alerts_vendor ON format_alerts (vendor, detected_at);
-- Recent deltas per vendor, for the empty-field rate.
CREATE INDEX deltas_vendor_offset ON deltas (vendor, offset);
-- A vendor's latest messages without reading their rows (which hold the raw mail).
CREATE INDEX messages_vendor_id ON messages (vendor, id, disposition);
