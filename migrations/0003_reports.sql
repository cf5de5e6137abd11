-- driftwatch schema, part 3: daily report sends, recorded before and after
-- sending so a restart never sends twice and a missed day is sent later.
CREATE TABLE report_sends (
    report_date  TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    sent_at      TEXT,
    message_id   TEXT,
    PRIMARY KEY (report_date, recipient)
) WITHOUT ROWID;
