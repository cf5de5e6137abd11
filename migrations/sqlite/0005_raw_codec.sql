-- driftwatch schema, part 5: raw mail kept compressed, checked by zstd.
-- Mail is text and shrinks 3-4x; the archive is most of what ingest writes
-- (twice, with the WAL). Rows written before this migration stay as they are ('none').
ALTER TABLE messages ADD COLUMN raw_codec TEXT NOT NULL DEFAULT 'none'
    CHECK (raw_codec IN ('none', 'zstd'));
-- zstd's own content checksum now guards each archived message; the separate
-- SHA-256 of the raw bytes was never read and cost a second hash per message.
ALTER TABLE messages DROP COLUMN content_hash;
