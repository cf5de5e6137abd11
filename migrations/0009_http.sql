-- driftwatch schema, part 9: what the HTTP API needs.

-- `/readyz` proves the database takes writes by committing this one row.
CREATE TABLE readiness_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at TEXT NOT NULL
);
