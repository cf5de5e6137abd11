-- driftwatch schema, part 8: which rules classified each archived message
-- (a hash per vendor, see src/reparse.rs `rule_hashes`), so `reparse` re-reads
-- only mail whose rules changed. NULL (mail archived before this, skipped
-- mail, unknown rules) is always re-read.
ALTER TABLE messages ADD COLUMN rules BLOB;
-- Finds what a reparse must re-read without touching the rows (which hold the raw mail).
CREATE INDEX messages_reparse ON messages (raw_complete, disposition, vendor, rules, archived_at);
