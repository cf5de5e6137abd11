//! The raw archive and mailbox checkpoints: one transaction per fetched batch
//! covers the archive rows, their locations, their deltas, the order view and
//! the checkpoint, so a crash anywhere leaves either all of it or none.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Result, RuleHashes, Store, StoreError, orders, ts};
pub use crate::model::Disposition;
use crate::model::{Delta, DeltaDraft, DeltaSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

/// A message's raw bytes as the archive keeps them: zstd at a fast level,
/// with zstd's content checksum, so a damaged archive row fails to unpack
/// instead of yielding wrong mail.
/// Mail is text and shrinks 3-4x (the public test corpus: 3.7x), and the
/// archive is most of what ingest writes, twice with the WAL: compressing it
/// makes both the database smaller and the commit faster. What is archived
/// is still the exact bytes fetched; [`PackedRaw::unpack`] gives them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedRaw {
    codec: RawCodec,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawCodec {
    None,
    Zstd,
}

impl RawCodec {
    fn as_str(self) -> &'static str {
        match self {
            RawCodec::None => "none",
            RawCodec::Zstd => "zstd",
        }
    }
}

/// zstd's level 1: ~700 MB/s on one core here, 3.7x on real mail; higher
/// levels cost more CPU than the bytes they save are worth to a commit.
const ZSTD_LEVEL: i32 = 1;

impl PackedRaw {
    /// Takes the bytes so that mail that does not compress is kept without a copy.
    pub fn pack(raw: Vec<u8>) -> PackedRaw {
        thread_local! {
            // Setting up a compression context costs about as much as
            // compressing a 10 KB message: one per thread, reused.
            static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
                const { RefCell::new(None) };
        }
        let packed = COMPRESSOR.with_borrow_mut(|c| {
            if c.is_none() {
                *c = zstd::bulk::Compressor::new(ZSTD_LEVEL)
                    .and_then(|mut c| c.include_checksum(true).map(|_| c))
                    .ok();
            }
            c.as_mut().map(|c| c.compress(&raw))
        });
        match packed.unwrap_or_else(|| Err(std::io::Error::other("no zstd context"))) {
            Ok(bytes) if bytes.len() < raw.len() => PackedRaw {
                codec: RawCodec::Zstd,
                bytes,
            },
            // Already compressed (or tiny): keep it as it is.
            _ => PackedRaw {
                codec: RawCodec::None,
                bytes: raw,
            },
        }
    }

    /// The bytes as fetched.
    pub fn unpack(self) -> Result<Vec<u8>> {
        match self.codec {
            RawCodec::None => Ok(self.bytes),
            RawCodec::Zstd => zstd::stream::decode_all(&self.bytes[..]).map_err(|e| {
                StoreError::Corrupt(format!("archived message does not decompress: {e}"))
            }),
        }
    }

    fn from_row(codec: &str, bytes: Vec<u8>) -> Result<PackedRaw> {
        let codec = match codec {
            "none" => RawCodec::None,
            "zstd" => RawCodec::Zstd,
            other => return Err(StoreError::Corrupt(format!("unknown raw_codec `{other}`"))),
        };
        Ok(PackedRaw { codec, bytes })
    }
}

/// A fetched message with everything decided about it, ready to commit.
#[derive(Debug, Clone)]
pub struct ArchivedMessage {
    pub location: String,
    pub dedupe_key: [u8; 32],
    pub message_id: Option<String>,
    pub size: u64,
    pub raw: PackedRaw,
    pub raw_complete: bool,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub date_header: Option<DateTime<Utc>>,
    pub internal_date: Option<DateTime<Utc>>,
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub vendor: Option<String>,
    pub parser: Option<String>,
    pub parser_version: Option<u32>,
    pub deltas: Vec<DeltaDraft>,
}

#[derive(Debug, Clone)]
pub struct IngestBatch {
    pub source: String,
    pub folder: String,
    /// Recorded with the batch for IMAP; `None` for sources without UIDs
    /// (Maildir), whose progress is the set of committed locations.
    pub checkpoint: Option<Checkpoint>,
    pub messages: Vec<ArchivedMessage>,
}

/// What a committed batch did, for logs and `ingest --once`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchOutcome {
    pub archived: u64,
    pub parsed: u64,
    pub quarantined: u64,
    pub ignored: u64,
    pub skipped: u64,
    /// Already archived from another location (a UIDVALIDITY resync, a second mailbox).
    pub duplicates: u64,
    /// This exact location was committed before (a batch re-offered after a crash).
    pub already_seen: u64,
    pub deltas: u64,
}

impl BatchOutcome {
    pub fn add(&mut self, o: &BatchOutcome) {
        self.archived += o.archived;
        self.parsed += o.parsed;
        self.quarantined += o.quarantined;
        self.ignored += o.ignored;
        self.skipped += o.skipped;
        self.duplicates += o.duplicates;
        self.already_seen += o.already_seen;
        self.deltas += o.deltas;
    }

    pub fn fetched(&self) -> u64 {
        self.archived + self.duplicates + self.already_seen
    }
}

/// Archive totals by disposition.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageCounts {
    pub messages: u64,
    pub locations: u64,
    pub parsed: u64,
    pub quarantined: u64,
    pub ignored: u64,
    pub skipped: u64,
    pub deltas: u64,
}

impl Store {
    pub async fn checkpoint(&self, source: &str, folder: &str) -> Result<Option<Checkpoint>> {
        let row = sqlx::query(
            "SELECT uidvalidity, last_uid FROM checkpoints WHERE source = $1 AND folder = $2",
        )
        .bind(source)
        .bind(folder)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(Checkpoint {
                uidvalidity: r.try_get::<i64, _>(0)? as u32,
                last_uid: r.try_get::<i64, _>(1)? as u32,
            }),
            None => None,
        })
    }

    /// Locations already committed for a source folder: how a Maildir source,
    /// which has no UIDs, knows what it has done.
    pub async fn known_locations(&self, source: &str, folder: &str) -> Result<HashSet<String>> {
        let rows = sqlx::query_scalar::<_, String>(
            "SELECT location FROM message_locations WHERE source = $1 AND folder = $2",
        )
        .bind(source)
        .bind(folder)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Commits one fetched batch atomically: archive rows, locations, deltas,
    /// order view and checkpoint.
    pub async fn commit_batch(&self, batch: &IngestBatch) -> Result<BatchOutcome> {
        self.commit_batch_stamped(batch, &RuleHashes::default())
            .await
    }

    /// [`Store::commit_batch`], stamping each new message with the hash of
    /// the rules that classified it, so `reparse` can skip it while they stay
    /// the same.
    pub async fn commit_batch_stamped(
        &self,
        batch: &IngestBatch,
        rules: &RuleHashes,
    ) -> Result<BatchOutcome> {
        let mut outcomes = self.commit_batches(&[(batch, rules)]).await?;
        Ok(outcomes.pop().unwrap_or_default())
    }

    /// Commits several batches of one source folder in one transaction
    /// (group commit): what a mailbox with a backlog queues up while the
    /// previous commit runs. A delta-heavy batch dirties a page of the view
    /// and of the order index per order it touches, and those pages are
    /// written to the WAL at every commit; batches committed together share
    /// them (the write-path benchmark, 4 batches per transaction: 1.09x).
    /// Each batch keeps its own
    /// checkpoint and stamps, in order, so the result equals committing them
    /// one after the other.
    pub async fn commit_batches(
        &self,
        batches: &[(&IngestBatch, &RuleHashes)],
    ) -> Result<Vec<BatchOutcome>> {
        let now = Utc::now();
        let mut tx = self.write_tx().await?;
        let mut outcomes = Vec::with_capacity(batches.len());
        for (batch, rules) in batches {
            outcomes.push(write_batch(&mut tx, batch, rules, now).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    pub async fn message_counts(&self) -> Result<MessageCounts> {
        let r = sqlx::query(
            "SELECT
                (SELECT count(*) FROM messages),
                (SELECT count(*) FROM message_locations),
                (SELECT count(*) FROM messages WHERE disposition = 'parsed'),
                (SELECT count(*) FROM messages WHERE disposition = 'quarantined'),
                (SELECT count(*) FROM messages WHERE disposition = 'ignored'),
                (SELECT count(*) FROM messages WHERE disposition = 'skipped'),
                (SELECT count(*) FROM deltas)",
        )
        .fetch_one(&self.pool)
        .await?;
        let g = |i: usize| -> Result<u64> { Ok(r.try_get::<i64, _>(i)? as u64) };
        Ok(MessageCounts {
            messages: g(0)?,
            locations: g(1)?,
            parsed: g(2)?,
            quarantined: g(3)?,
            ignored: g(4)?,
            skipped: g(5)?,
            deltas: g(6)?,
        })
    }

    /// Quarantined messages, newest first: (id, archived_at, sender, subject, reason).
    pub async fn quarantined(&self, limit: i64) -> Result<Vec<QuarantineRow>> {
        self.quarantine_page(None, None, limit).await
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QuarantineRow {
    pub id: i64,
    pub archived_at: DateTime<Utc>,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub reason: Option<String>,
    pub vendor: Option<String>,
}

/// One archived message with its raw bytes.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: i64,
    pub raw: Vec<u8>,
    pub raw_complete: bool,
    pub disposition: String,
    pub reason: Option<String>,
    pub vendor: Option<String>,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub archived_at: DateTime<Utc>,
    pub internal_date: Option<DateTime<Utc>>,
}

impl Store {
    pub async fn message(&self, id: i64) -> Result<Option<StoredMessage>> {
        let row = sqlx::query(
            "SELECT id, raw, raw_complete, disposition, reason, vendor, sender, subject, archived_at,
                    internal_date, raw_codec
             FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stored_from_row).transpose()
    }
}

pub(super) fn stored_from_row(r: &sqlx::any::AnyRow) -> Result<StoredMessage> {
    Ok(StoredMessage {
        id: r.try_get(0)?,
        raw: PackedRaw::from_row(r.try_get(10)?, r.try_get(1)?)?.unpack()?,
        raw_complete: r.try_get::<i64, _>(2)? != 0,
        disposition: r.try_get(3)?,
        reason: r.try_get(4)?,
        vendor: r.try_get(5)?,
        sender: r.try_get(6)?,
        subject: r.try_get(7)?,
        archived_at: super::parse_ts(r.try_get::<&str, _>(8)?)?,
        internal_date: r
            .try_get::<Option<&str>, _>(9)?
            .map(super::parse_ts)
            .transpose()?,
    })
}

/// One batch's archive rows, locations, deltas, view updates and checkpoint,
/// inside the caller's write transaction.
///
/// Statements are per batch, not per message (multi-row inserts, one lookup
/// per kind): each statement is a round trip to SQLite's worker thread, and
/// per-message statements were most of ingest's cost. Under the write lock
/// nobody else can insert, so ids and offsets are assigned here, in order.
async fn write_batch(
    tx: &mut sqlx::AnyConnection,
    batch: &IngestBatch,
    rules: &RuleHashes,
    now: DateTime<Utc>,
) -> Result<BatchOutcome> {
    let now_s = ts(now);
    let mut out = BatchOutcome::default();

    let locations: Vec<&str> = batch.messages.iter().map(|m| m.location.as_str()).collect();
    let seen = known_among(tx, &batch.source, &batch.folder, &locations).await?;
    let keys: Vec<&[u8]> = batch.messages.iter().map(|m| &m.dedupe_key[..]).collect();
    let mut ids: HashMap<[u8; 32], i64> = existing_ids(tx, &keys).await?;

    let mut next_id: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) + 1 FROM messages")
        .fetch_one(&mut *tx)
        .await?;
    let mut new_messages: Vec<(i64, &ArchivedMessage)> = Vec::new();
    let mut new_locations: Vec<(&str, i64)> = Vec::new();
    let mut seen_now: HashSet<&str> = HashSet::new();
    let mut derived_keys: HashMap<i64, [u8; 32]> = HashMap::new();
    for m in &batch.messages {
        if seen.contains(m.location.as_str()) || !seen_now.insert(m.location.as_str()) {
            out.already_seen += 1;
            continue;
        }
        let mut key = m.dedupe_key;
        if let Some(&same) = ids.get(&key) {
            let subject = raw_subject(&m.raw.clone().unpack()?);
            if subject != stored_subject(tx, same, &new_messages).await? {
                key = subject_key(&key, &subject);
                if !ids.contains_key(&key)
                    && let Some(&id) = existing_ids(tx, &[&key[..]]).await?.get(&key)
                {
                    ids.insert(key, id);
                }
            }
        }
        let id = match ids.get(&key) {
            Some(&id) => {
                out.duplicates += 1;
                id
            }
            None => {
                let id = next_id;
                next_id += 1;
                ids.insert(key, id);
                if key != m.dedupe_key {
                    derived_keys.insert(id, key);
                }
                new_messages.push((id, m));
                out.archived += 1;
                match m.disposition {
                    Disposition::Parsed => out.parsed += 1,
                    Disposition::Quarantined => out.quarantined += 1,
                    Disposition::Ignored => out.ignored += 1,
                    Disposition::Skipped => out.skipped += 1,
                }
                id
            }
        };
        new_locations.push((m.location.as_str(), id));
    }

    insert_messages(tx, &new_messages, &derived_keys, rules, &now_s).await?;
    super::outbox::record_quarantined(tx, &new_messages, now).await?;
    let mut deltas = Vec::new();
    for (id, m) in &new_messages {
        for d in &m.deltas {
            deltas.push(Delta {
                message: Some(*id),
                parser: m.parser.clone(),
                parser_version: m.parser_version.map(i64::from),
                ..Delta::unlogged(DeltaSource::Email, d.clone(), now)
            });
        }
    }
    out.deltas = deltas.len() as u64;
    let deltas = orders::append_deltas(tx, deltas).await?;
    orders::update_views(tx, &deltas).await?;
    insert_locations(tx, &batch.source, &batch.folder, &new_locations, &now_s).await?;

    if let Some(cp) = batch.checkpoint {
        sqlx::query(
            "INSERT INTO checkpoints (source, folder, uidvalidity, last_uid, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (source, folder) DO UPDATE SET
                 uidvalidity = excluded.uidvalidity,
                 -- A re-offered older batch must never move the checkpoint back.
                 last_uid = CASE WHEN checkpoints.uidvalidity = excluded.uidvalidity
                                 AND checkpoints.last_uid > excluded.last_uid
                                 THEN checkpoints.last_uid
                                 ELSE excluded.last_uid END,
                 updated_at = excluded.updated_at",
        )
        .bind(&batch.source)
        .bind(&batch.folder)
        .bind(i64::from(cp.uidvalidity))
        .bind(i64::from(cp.last_uid))
        .bind(&now_s)
        .execute(&mut *tx)
        .await?;
    }
    Ok(out)
}

/// Rows per multi-row statement: well under SQLite's 32,766 bound variables
/// for the widest table (18 columns).
const ROWS_PER_STATEMENT: usize = 500;

/// Which of these locations of a source folder were committed before.
async fn known_among(
    conn: &mut sqlx::AnyConnection,
    source: &str,
    folder: &str,
    locations: &[&str],
) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in locations.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT location FROM message_locations WHERE source = $1 AND folder = $2 AND location IN ({})",
            super::list_placeholders(3, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, String>(super::bulk(conn, sql))
            .bind(source)
            .bind(folder);
        for l in chunk {
            q = q.bind(*l);
        }
        found.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// The Subject header as sent: its bytes, folding and runs of whitespace
/// collapsed. Raw rather than decoded, so that a better decoder in a later
/// version never makes a re-fetched message look new.
fn raw_subject(raw: &[u8]) -> Vec<u8> {
    let mut value: Vec<u8> = Vec::new();
    let mut inside = false;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.first() {
            None => break,
            Some(b' ' | b'\t') if inside => {
                value.push(b' ');
                value.extend_from_slice(line);
            }
            Some(_) if inside => break,
            Some(_) => {
                if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
                    inside = true;
                    value.extend_from_slice(&line[8..]);
                }
            }
        }
    }
    value
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(&b' ')
}

/// The raw subject of message `id`: archived earlier, or new in this batch.
async fn stored_subject(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    batch: &[(i64, &ArchivedMessage)],
) -> Result<Vec<u8>> {
    if let Some((_, m)) = batch.iter().find(|(i, _)| *i == id) {
        return Ok(raw_subject(&m.raw.clone().unpack()?));
    }
    let (bytes, codec): (Vec<u8>, String) =
        sqlx::query_as("SELECT raw, raw_codec FROM messages WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(raw_subject(&PackedRaw::from_row(&codec, bytes)?.unpack()?))
}

/// The identity of a message that shares its Message-ID and body with an
/// archived one but not its subject. Patterns read subjects, and vendors
/// that reuse a Message-ID with a template body put the status there: the
/// two are different messages, and neither may be dropped as a duplicate.
fn subject_key(key: &[u8; 32], subject: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"subject\0");
    h.update(key);
    h.update(subject);
    h.finalize().into()
}

/// Ids of already archived messages among these identities.
async fn existing_ids(
    conn: &mut sqlx::AnyConnection,
    keys: &[&[u8]],
) -> Result<HashMap<[u8; 32], i64>> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT dedupe_key, id FROM messages WHERE dedupe_key IN ({})",
            super::list_placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (Vec<u8>, i64)>(super::bulk(conn, sql));
        for k in chunk {
            q = q.bind(*k);
        }
        for (key, id) in q.fetch_all(&mut *conn).await? {
            if let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) {
                found.insert(key, id);
            }
        }
    }
    Ok(found)
}

async fn insert_messages(
    conn: &mut sqlx::AnyConnection,
    rows: &[(i64, &ArchivedMessage)],
    derived_keys: &HashMap<i64, [u8; 32]>,
    rules: &RuleHashes,
    now: &str,
) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT / 4) {
        let sql = format!(
            "INSERT INTO messages (id, dedupe_key, message_id, size, raw, raw_codec, raw_complete,
                 sender, subject, date_header, internal_date, archived_at, disposition, reason,
                 vendor, parser, parser_version, rules)
             VALUES {}",
            super::row_placeholders(1, 18, chunk.len())
        );
        let mut q = sqlx::query(super::bulk(conn, sql));
        for (id, m) in chunk {
            q = q
                .bind(*id)
                .bind(&derived_keys.get(id).unwrap_or(&m.dedupe_key)[..])
                .bind(&m.message_id)
                .bind(m.size as i64)
                .bind(&m.raw.bytes)
                .bind(m.raw.codec.as_str())
                .bind(i64::from(m.raw_complete))
                .bind(&m.sender)
                .bind(&m.subject)
                .bind(m.date_header.map(ts))
                .bind(m.internal_date.map(ts))
                .bind(now)
                .bind(m.disposition.as_str())
                .bind(&m.reason)
                .bind(&m.vendor)
                .bind(&m.parser)
                .bind(m.parser_version.map(i64::from))
                .bind(
                    rules
                        .stamp(m.disposition, m.vendor.as_deref())
                        .map(|s| s.to_vec()),
                );
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_locations(
    conn: &mut sqlx::AnyConnection,
    source: &str,
    folder: &str,
    rows: &[(&str, i64)],
    now: &str,
) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO message_locations (source, folder, location, message, fetched_at) VALUES {}",
            super::row_placeholders(1, 5, chunk.len())
        );
        let mut q = sqlx::query(super::bulk(conn, sql));
        for (location, id) in chunk {
            q = q
                .bind(source)
                .bind(folder)
                .bind(*location)
                .bind(*id)
                .bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_subject_is_the_header_as_sent_unfolded() {
        let raw = b"From: a@b\r\nSUBJECT: Order 90001 -\r\n  Accepted\r\nX: y\r\n\r\nSubject: body";
        assert_eq!(raw_subject(raw), b"Order 90001 - Accepted");
        assert_eq!(raw_subject(b"Subject:\tA  B\n\nbody"), b"A B");
        assert_eq!(raw_subject(b"From: a@b\n\nSubject: body"), b"");
    }

    #[test]
    fn packed_raw_gives_back_the_exact_bytes() {
        let mail = b"Subject: Order 48213\r\n\r\nInspection scheduled.\r\n".repeat(50);
        let mut noise = vec![0u8; 4096];
        let mut x = 1u32;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        for raw in [mail.clone(), noise, Vec::new()] {
            let packed = PackedRaw::pack(raw.clone());
            assert!(packed.bytes.len() <= raw.len(), "never stored larger");
            assert_eq!(packed.unpack().unwrap(), raw);
        }
        assert_eq!(PackedRaw::pack(mail).codec, RawCodec::Zstd);
        let broken = PackedRaw::from_row("zstd", b"not zstd".to_vec()).unwrap();
        assert!(
            broken.unpack().is_err(),
            "corruption is an error, not a panic"
        );
        assert!(PackedRaw::from_row("lzma", vec![]).is_err());
    }
}
