-- driftwatch schema, part 10: the dashboard's sessions and the actions people take in it.
-- Plain SQL on purpose: migrations/postgres/0010_dashboard.sql is its twin.

-- A signed-in browser. The cookie holds a random session id; only its
-- SHA-256 (hex) is kept here, so a copy of the database cannot sign anyone
-- in. The token used to sign in is never stored: `token_name` names it, and
-- its scopes are looked up in the config on every request, so removing a
-- token from the config ends its sessions.
CREATE TABLE dashboard_sessions (
    id_digest   TEXT PRIMARY KEY,
    token_name  TEXT NOT NULL,
    -- The synchronizer token every POST of this session must carry.
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);

-- Every action taken in the dashboard: who (the token's name), when, what.
-- Append-only; an acknowledgement or a mute is the latest row of its kind.
CREATE TABLE dashboard_actions (
    id          INTEGER PRIMARY KEY,
    acted_at    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('acknowledge_drift', 'mute_silence', 'release_message')),
    vendor      TEXT,
    order_ref   TEXT,
    drift       INTEGER REFERENCES drifts (id),
    message     INTEGER REFERENCES messages (id),
    note        TEXT,
    mute_until  TEXT,
    -- What the action did (a release's new disposition and delta count).
    outcome     TEXT
);
CREATE INDEX dashboard_actions_time ON dashboard_actions (acted_at);
CREATE INDEX dashboard_actions_order ON dashboard_actions (vendor, order_ref);
CREATE INDEX dashboard_actions_drift ON dashboard_actions (drift);
