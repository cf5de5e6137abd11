-- driftwatch schema, part 3: daily report sends, recorded before and after
-- sending so a restart never sends twice and a missed day is sent later.
--
-- One row per (report date, recipient). `pending` is written before the SMTP
-- transaction and `sent` after it; a row left `pending` by a crash means
-- "maybe sent" and is sent again with the same Message-ID (at-least-once:
-- a report is never lost, and a rare duplicate is recognisable as one).
-- The recipient `file:<dir>` stands for the report files in output_dir.
CREATE TABLE report_sends (
    report_date     TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    last_attempt_at TEXT NOT NULL,
    sent_at         TEXT,
    message_id      TEXT NOT NULL,
    PRIMARY KEY (report_date, recipient)
) WITHOUT ROWID;
CREATE INDEX report_sends_state ON report_sends (state, report_date);
