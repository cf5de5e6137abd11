//! SQL for the reconcile module: the view as of a key frame, the evidence for
//! attribution, key frames, runs and drifts.
//!
//! A run's writes (key frame, run row, drift rows, fix deltas and their view
//! updates) are one transaction: a crash mid-fix leaves the whole run or none.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::orders::{DELTA_COLUMNS, append_deltas, delta_from_row, update_views};
use super::{Result, Store, StoreError, parse_enum, parse_ts, ts};
use crate::model::{Delta, DeltaDraft, DeltaSource, Fields, Status};
use crate::view;
pub use driftwatch_core::reconcile::cutoff::{Cutoff, Evidence};
use driftwatch_core::reconcile::drift::{Cause, DriftKind, Outcome};
pub use driftwatch_core::reconcile::plan::RunCounts;

/// One order of the view as of a cutoff, borrowed from the chunk being read.
#[derive(Debug, Clone)]
pub struct AsOfOrder<'a> {
    pub order_ref: &'a str,
    /// `None`: the order exists now, but nothing about it was known at the
    /// cutoff (all its deltas are in flight).
    pub known: Option<KnownOrder<'a>>,
}

#[derive(Debug, Clone)]
pub struct KnownOrder<'a> {
    pub status: Option<Status>,
    /// The fields as the view stores them (a JSON object): the reader picks
    /// out what it compares, a million orders do not each build a map.
    /// Bytes, not `str`: the JSON reader checks the text it reads, so a
    /// separate UTF-8 pass over every order's fields would be paid twice.
    pub fields_json: &'a [u8],
    pub event_time: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct LastKeyFrame {
    pub id: i64,
    pub content_hash: Vec<u8>,
    pub row_count: i64,
    pub as_of: DateTime<Utc>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Outcome of the latest run that used it.
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone)]
pub struct NewKeyFrame {
    pub source: String,
    pub as_of: DateTime<Utc>,
    pub fetched_at: DateTime<Utc>,
    pub content_hash: [u8; 32],
    pub row_count: i64,
    pub complete: bool,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

#[derive(Debug, Clone)]
pub enum KeyFrameRef {
    None,
    Existing(i64),
    New(NewKeyFrame),
}

#[derive(Debug, Clone)]
pub struct NewDrift {
    /// An open drift on the same (order, kind, field) exists: update it.
    pub existing: bool,
    pub order_ref: String,
    pub kind: DriftKind,
    pub field: Option<String>,
    pub local_value: Option<String>,
    pub remote_value: Option<String>,
    pub cause: Cause,
}

/// Everything one run writes.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub vendor: String,
    pub policy: &'static str,
    pub source: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub key_frame: KeyFrameRef,
    pub counts: RunCounts,
    /// Upserted: an open drift on the same (order, kind, field) is seen again.
    pub drifts: Vec<NewDrift>,
    /// Close every open drift of the vendor this run did not see again.
    pub close_unseen: bool,
    /// Open drifts to close because a later delta agreed.
    pub close_agreed: Vec<i64>,
    /// Reconcile deltas to append; this run's drifts on their orders are closed as fixed.
    pub fixes: Vec<DeltaDraft>,
    /// The vendor's reconcile lease this run was planned under: checked in
    /// the write transaction, so a run that lost its lease writes nothing.
    pub fence: Option<super::Fence>,
}

#[derive(Debug, Clone, Default)]
pub struct RunWritten {
    pub run_id: i64,
    pub fixed: i64,
    pub closed: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DriftRow {
    pub id: i64,
    pub vendor: String,
    pub order_ref: String,
    pub kind: DriftKind,
    pub field: Option<String>,
    pub local_value: Option<String>,
    pub remote_value: Option<String>,
    pub cause: Cause,
    pub seen_count: i64,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_reason: Option<String>,
    pub fix_delta: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub vendor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub reason: Option<String>,
    pub source: Option<String>,
}

pub(super) const DRIFT_COLUMNS: &str =
    "id, vendor, order_ref, kind, field, local_value, remote_value, cause,
     seen_count, opened_at, closed_at, closed_reason, fix_delta";

pub(super) fn drift_from_row(r: &sqlx::any::AnyRow) -> Result<DriftRow> {
    Ok(DriftRow {
        id: r.try_get(0)?,
        vendor: r.try_get(1)?,
        order_ref: r.try_get(2)?,
        kind: parse_enum("drift kind", r.try_get::<&str, _>(3)?)?,
        field: r.try_get(4)?,
        local_value: r.try_get(5)?,
        remote_value: r.try_get(6)?,
        cause: parse_enum("drift cause", r.try_get::<&str, _>(7)?)?,
        seen_count: r.try_get(8)?,
        opened_at: parse_ts(r.try_get::<&str, _>(9)?)?,
        closed_at: r
            .try_get::<Option<&str>, _>(10)?
            .map(parse_ts)
            .transpose()?,
        closed_reason: r.try_get(11)?,
        fix_delta: r.try_get(12)?,
    })
}

/// Rows per multi-row drift INSERT (13 parameters each, far below SQLite's limit).
const DRIFT_INSERT_BATCH: usize = 200;

/// Orders per packed chunk in [`Store::view_as_of`]: a few MB of text.
const VIEW_CHUNK: i64 = 20_000;

/// Reads the packed rows [`packed_view_chunk`] returns.
fn unpack_orders(mut s: &str, each: &mut impl FnMut(AsOfOrder) -> Result<()>) -> Result<()> {
    let bad = |what: &str| StoreError::Corrupt(format!("packed order view: {what}"));
    const TS_LEN: usize = 27;
    while !s.is_empty() {
        let (len, rest) = s.split_once(':').ok_or_else(|| bad("no length"))?;
        let len: usize = len.parse().map_err(|_| bad("length"))?;
        let order_ref = rest.get(..len).ok_or_else(|| bad("order_ref"))?;
        let rest = &rest[len..];
        let (status, rest) = rest.split_once('\x1f').ok_or_else(|| bad("status"))?;
        let event_time = rest.get(..TS_LEN).ok_or_else(|| bad("event_time"))?;
        let rest = &rest[TS_LEN..];
        let (fields, rest) = rest.split_once('\x1e').ok_or_else(|| bad("fields"))?;
        each(AsOfOrder {
            order_ref,
            known: Some(KnownOrder {
                status: (!status.is_empty())
                    .then(|| parse_enum::<Status>("status", status))
                    .transpose()?,
                fields_json: fields.as_bytes(),
                event_time: parse_ts(event_time)?,
            }),
        })?;
        s = rest;
    }
    Ok(())
}

/// The untouched orders after `after`, a chunk of them packed by the server
/// into one string: a million rows one by one through the driver cost
/// seconds, packed they cost a fraction of that. Per row:
/// `<byte length>:<order_ref><status>\x1f<event_time><fields JSON>\x1e`
/// (JSON escapes control characters; status and event_time are ours).
/// (One aggregate per column measured slower here than this one string.)
async fn packed_view_chunk(
    conn: &mut sqlx::AnyConnection,
    vendor: &str,
    after: &str,
    as_of: &str,
) -> Result<sqlx::any::AnyRow> {
    Ok(sqlx::query(
        "SELECT string_agg(enc, '' ORDER BY order_ref), max(order_ref), count(*) FROM (
             SELECT order_ref, octet_length(order_ref) || ':' || order_ref
                    || coalesce(status, '') || chr(31) || event_time || fields || chr(30) AS enc
             FROM orders WHERE vendor = $1 AND order_ref > $2 AND updated_at <= $3
             ORDER BY order_ref LIMIT $4) AS chunk",
    )
    .bind(vendor)
    .bind(after)
    .bind(as_of)
    .bind(VIEW_CHUNK)
    .fetch_one(conn)
    .await?)
}

/// Runs blocking work from async code: in place on a multi-thread runtime
/// (`serve`), so its other workers keep going; directly on a current-thread
/// one (the CLI), where there is nothing else to run.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// SQLite's view scan, on a connection of its own: sqlx hands each row
/// over with a copy of every value and a trip across threads, which for a
/// million orders cost more than the whole diff; here each row's text is
/// read in place. The touched list and the scan are one read transaction, so
/// an order that ingest updates meanwhile is in exactly one of the two.
/// The touched orders are refolded afterwards through the pool: the log
/// only grows, and [`Cutoff::knows`] drops what arrived since.
fn scan_sqlite_view(
    path: &std::path::Path,
    vendor: &str,
    as_of: &str,
    each: &mut impl FnMut(AsOfOrder) -> Result<()>,
) -> Result<Vec<String>> {
    let conn = sqlite_reader(path)?;
    // One pass: a touched order is told apart by its `updated_at` (fixed-width
    // UTC text, so text order is time order, as SQL compares it); a separate
    // query for them was a second scan of the table.
    let mut touched = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT order_ref, status, event_time, fields, updated_at FROM orders
         WHERE vendor = ?1 ORDER BY order_ref",
    )?;
    let mut rows = stmt.query([vendor])?;
    // Columns are read as bytes: only the key must be checked as UTF-8 here.
    // The fields JSON is checked by its reader, times and statuses by their
    // parsers, and a million orders' worth of separate UTF-8 passes showed
    // in the profile.
    fn bytes<'r>(r: &'r rusqlite::Row, i: usize) -> Result<&'r [u8]> {
        nullable_bytes(r, i)?
            .ok_or_else(|| StoreError::Corrupt("orders row with a NULL column".into()))
    }
    fn nullable_bytes<'r>(r: &'r rusqlite::Row, i: usize) -> Result<Option<&'r [u8]>> {
        match r.get_ref(i)? {
            rusqlite::types::ValueRef::Text(b) => Ok(Some(b)),
            rusqlite::types::ValueRef::Null => Ok(None),
            other => Err(StoreError::Corrupt(format!(
                "orders column {i} is {:?}, not text",
                other.data_type()
            ))),
        }
    }
    fn utf8<'r>(b: &'r [u8], what: &str) -> Result<&'r str> {
        std::str::from_utf8(b)
            .map_err(|e| StoreError::Corrupt(format!("orders {what} is not UTF-8: {e}")))
    }
    while let Some(r) = rows.next()? {
        let order_ref = utf8(bytes(r, 0)?, "order_ref")?;
        let (event_time, fields, updated_at) = (bytes(r, 2)?, bytes(r, 3)?, bytes(r, 4)?);
        if updated_at > as_of.as_bytes() {
            touched.push(order_ref.to_string());
            continue;
        }
        let status = nullable_bytes(r, 1)?.filter(|s| !s.is_empty());
        each(AsOfOrder {
            order_ref,
            known: Some(KnownOrder {
                status: status
                    .map(|s| parse_enum::<Status>("status", utf8(s, "status")?))
                    .transpose()?,
                fields_json: fields,
                event_time: match super::fast_ts(event_time) {
                    Some(t) => t,
                    None => parse_ts(utf8(event_time, "event_time")?)?,
                },
            }),
        })?;
    }
    drop(rows);
    drop(stmt);
    conn.execute_batch("COMMIT")?;
    Ok(touched)
}

/// A read transaction on a rusqlite connection of its own, for the reads
/// that go through too many rows for sqlx (see [`scan_sqlite_view`]).
fn sqlite_reader(path: &std::path::Path) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    // Read-write (never create) rather than read-only: a read-only handle
    // cannot always attach to the WAL index. `query_only` keeps it a reader.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA query_only = ON; BEGIN")?;
    Ok(conn)
}

/// SQLite's evidence read: one prepared lookup per order on the
/// `deltas_order` index, read in place, the orders split over two threads
/// (nothing else runs at this point of a run). Through sqlx (IN-lists,
/// every value copied and sent across threads) the ten thousand drifted
/// orders of a large run took longer than planning them.
fn evidence_sqlite(
    path: &std::path::Path,
    vendor: &str,
    refs: &[String],
) -> Result<HashMap<String, Vec<Evidence>>> {
    // In key order, lookups after the first in an index page find it cached.
    let mut refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    refs.sort_unstable();
    if refs.len() < 2 * EVIDENCE_SPLIT {
        return evidence_sqlite_part(path, vendor, &refs);
    }
    let (a, b) = refs.split_at(refs.len() / 2);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| evidence_sqlite_part(path, vendor, a));
        let b = evidence_sqlite_part(path, vendor, b);
        (a.join(), b)
    });
    let mut out = a.map_err(|_| StoreError::Corrupt("the evidence reader panicked".into()))??;
    out.extend(b?);
    Ok(out)
}

/// Below this many orders per half, a second thread costs more than it saves.
const EVIDENCE_SPLIT: usize = 500;

fn evidence_sqlite_part(
    path: &std::path::Path,
    vendor: &str,
    refs: &[&str],
) -> Result<HashMap<String, Vec<Evidence>>> {
    let conn = sqlite_reader(path)?;
    let mut out = HashMap::with_capacity(refs.len());
    let mut stmt = conn.prepare(&evidence_sql("d.order_ref = $2", ""))?;
    for &order_ref in refs {
        let mut rows = stmt.query((vendor, order_ref))?;
        let mut found = Vec::new();
        while let Some(r) = rows.next()? {
            found.push(Evidence {
                delta: delta_from_row(r)?,
                superseded: r.get::<_, i64>(13)? != 0,
            });
        }
        if !found.is_empty() {
            out.insert(order_ref.to_string(), found);
        }
    }
    drop(stmt);
    conn.execute_batch("COMMIT")?;
    Ok(out)
}

/// SQLite's default limit on bound parameters is far above this; small
/// batches keep each statement cheap to prepare.
const IN_BATCH: usize = 400;

impl Store {
    /// Streams the vendor's orders as the view stood at `cut`. Orders whose
    /// every delta was known by then come straight from the view; only those
    /// touched since are refolded from the log.
    pub async fn view_as_of(
        &self,
        vendor: &str,
        cut: Cutoff,
        mut each: impl FnMut(AsOfOrder) -> Result<()>,
    ) -> Result<()> {
        let as_of = ts(cut.as_of);
        let mut conn = self.read_tx().await?;
        let touched = match &self.sqlite_path {
            Some(path) => blocking(|| scan_sqlite_view(path, vendor, &as_of, &mut each))?,
            None => Store::scan_packed_view(&mut conn, vendor, &as_of, &mut each).await?,
        };
        for chunk in touched.chunks(IN_BATCH) {
            let mut by_order = deltas_of(&mut conn, vendor, chunk, false).await?;
            for order_ref in chunk {
                let mut known: Vec<Delta> = by_order
                    .remove(order_ref)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| e.delta)
                    .filter(|d| cut.knows(d))
                    .collect();
                let state = view::fold(&mut known);
                let fields_json = match &state {
                    Some(s) => serde_json::to_string(&s.fields).map_err(|e| {
                        StoreError::Corrupt(format!("fields do not serialise: {e}"))
                    })?,
                    None => String::new(),
                };
                each(AsOfOrder {
                    order_ref,
                    known: state.map(|s| KnownOrder {
                        status: s.status,
                        fields_json: fields_json.as_bytes(),
                        event_time: s.event_time,
                    }),
                })?;
            }
        }
        conn.commit().await?;
        Ok(())
    }

    /// PostgreSQL's view scan: the untouched orders a packed chunk at a
    /// time, in one read transaction with the touched list, so an order
    /// that ingest updates meanwhile is in exactly one of the two (else it
    /// would show up as a false `missing_local`). The server packs the next
    /// chunk while this thread unpacks the current one. Returns the touched.
    async fn scan_packed_view(
        conn: &mut sqlx::AnyConnection,
        vendor: &str,
        as_of: &str,
        each: &mut impl FnMut(AsOfOrder) -> Result<()>,
    ) -> Result<Vec<String>> {
        let touched: Vec<String> = sqlx::query_scalar(
            "SELECT order_ref FROM orders WHERE vendor = $1 AND updated_at > $2",
        )
        .bind(vendor)
        .bind(as_of)
        .fetch_all(&mut *conn)
        .await?;
        let mut row = packed_view_chunk(conn, vendor, "", as_of).await?;
        loop {
            let n: i64 = row.try_get(2)?;
            if n == 0 {
                break;
            }
            let packed: &str = row.try_get(0)?;
            if n < VIEW_CHUNK {
                unpack_orders(packed, each)?;
                break;
            }
            let after: String = row.try_get(1)?;
            let (next, unpacked) =
                tokio::join!(packed_view_chunk(conn, vendor, &after, as_of), async {
                    unpack_orders(packed, each)
                });
            unpacked?;
            row = next?;
        }
        Ok(touched)
    }

    /// Every delta (superseded ones flagged) of the given orders: the evidence
    /// attribution reads.
    pub async fn reconcile_evidence(
        &self,
        vendor: &str,
        refs: &[String],
    ) -> Result<HashMap<String, Vec<Evidence>>> {
        if let Some(path) = &self.sqlite_path {
            return blocking(|| evidence_sqlite(path, vendor, refs));
        }
        let mut conn = self.pool.acquire().await?;
        evidence_pooled(&mut conn, vendor, refs).await
    }

    /// Subjects of quarantined messages that may be this vendor's, with the
    /// message's own date (or its arrival): a failed parse leaves no delta,
    /// only this.
    pub async fn quarantined_subjects(&self, vendor: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT subject, coalesce(date_header, internal_date, archived_at) FROM messages
             WHERE disposition = 'quarantined' AND subject IS NOT NULL
               AND (vendor = $1 OR vendor IS NULL)",
        )
        .bind(vendor)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, parse_ts(r.try_get::<&str, _>(1)?)?)))
            .collect()
    }

    /// The vendor's latest key frame, with the outcome of the last run on it.
    pub async fn last_key_frame(&self, vendor: &str) -> Result<Option<LastKeyFrame>> {
        let row = sqlx::query(
            "SELECT k.id, k.content_hash, k.row_count, k.as_of, k.etag, k.last_modified,
                    (SELECT outcome FROM reconcile_runs r WHERE r.key_frame = k.id ORDER BY r.id DESC LIMIT 1)
             FROM key_frames k WHERE k.vendor = $1 ORDER BY k.id DESC LIMIT 1",
        )
        .bind(vendor)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(LastKeyFrame {
            id: r.try_get(0)?,
            content_hash: r.try_get(1)?,
            row_count: r.try_get(2)?,
            as_of: parse_ts(r.try_get::<&str, _>(3)?)?,
            etag: r.try_get(4)?,
            last_modified: r.try_get(5)?,
            outcome: r
                .try_get::<Option<&str>, _>(6)?
                .map(|s| parse_enum::<Outcome>("run outcome", s))
                .transpose()?,
        }))
    }

    /// The key frame of the vendor's last trusted (`ok`) run: the baseline for
    /// the guard's row-count check and for "changed since".
    pub async fn last_good_key_frame(&self, vendor: &str) -> Result<Option<(i64, DateTime<Utc>)>> {
        let row = sqlx::query(
            "SELECT k.row_count, k.as_of FROM reconcile_runs r JOIN key_frames k ON k.id = r.key_frame
             WHERE r.vendor = $1 AND r.outcome = 'ok' ORDER BY r.id DESC LIMIT 1",
        )
        .bind(vendor)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, parse_ts(r.try_get::<&str, _>(1)?)?)))
            .transpose()
    }

    /// Drifts, newest first.
    pub async fn drifts(&self, vendor: Option<&str>, open_only: bool) -> Result<Vec<DriftRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DRIFT_COLUMNS} FROM drifts
             WHERE ($1 IS NULL OR vendor = $1) AND ($2 = 0 OR closed_at IS NULL)
             ORDER BY id DESC"
        )))
        .bind(vendor)
        .bind(i64::from(open_only))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(drift_from_row).collect()
    }

    /// Recent runs of a vendor, newest first.
    pub async fn reconcile_runs(&self, vendor: &str, limit: i64) -> Result<Vec<RunRow>> {
        self.runs_page(Some(vendor), None, limit).await
    }

    /// Appends deltas with given record times, one transaction. For a
    /// webhook intake or a simulator that replays a channel in its own time.
    pub async fn append_deltas_at(
        &self,
        source: DeltaSource,
        items: &[(DeltaDraft, DateTime<Utc>)],
    ) -> Result<Vec<i64>> {
        let mut tx = self.write_tx().await?;
        let deltas = items
            .iter()
            .map(|(d, at)| Delta::unlogged(source, d.clone(), *at))
            .collect();
        let deltas = append_deltas(&mut tx, deltas).await?;
        update_views(&mut tx, &deltas).await?;
        let offsets = deltas.iter().map(|d| d.offset).collect();
        tx.commit().await?;
        Ok(offsets)
    }

    /// Writes one run whole: key frame, run row, drifts, closes, fixes.
    pub async fn record_run(&self, run: &RunRecord) -> Result<RunWritten> {
        let mut tx = self.write_tx().await?;
        if let Some(f) = &run.fence {
            super::lease::fence(&mut tx, f).await?;
        }
        let finished = ts(run.finished_at);
        let key_frame = match &run.key_frame {
            KeyFrameRef::None => None,
            KeyFrameRef::Existing(id) => Some(*id),
            KeyFrameRef::New(k) => Some(
                sqlx::query_scalar::<_, i64>(
                    "INSERT INTO key_frames (vendor, source, as_of, fetched_at, content_hash,
                         row_count, complete, etag, last_modified)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(&run.vendor)
                .bind(&k.source)
                .bind(ts(k.as_of))
                .bind(ts(k.fetched_at))
                .bind(&k.content_hash[..])
                .bind(k.row_count)
                .bind(i64::from(k.complete))
                .bind(&k.etag)
                .bind(&k.last_modified)
                .fetch_one(&mut *tx)
                .await?,
            ),
        };
        let c = &run.counts;
        let run_id: i64 = sqlx::query_scalar(
            "INSERT INTO reconcile_runs (vendor, started_at, finished_at, key_frame, source, policy,
                 dry_run, outcome, reason, orders_remote, orders_local, missing_local,
                 missing_remote, status_mismatch, field_mismatch, key_frame_changes, email_told)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
        )
        .bind(&run.vendor)
        .bind(ts(run.started_at))
        .bind(&finished)
        .bind(key_frame)
        .bind(&run.source)
        .bind(run.policy)
        .bind(run.outcome.as_str())
        .bind(&run.reason)
        .bind(c.orders_remote)
        .bind(c.orders_local)
        .bind(c.missing_local)
        .bind(c.missing_remote)
        .bind(c.status_mismatch)
        .bind(c.field_mismatch)
        .bind(c.key_frame_changes)
        .bind(c.email_told)
        .fetch_one(&mut *tx)
        .await?;

        // Fixes first, so each drift row is written once, already closed when fixed.
        let fixes = run
            .fixes
            .iter()
            .map(|draft| Delta::unlogged(DeltaSource::Reconcile, draft.clone(), run.finished_at))
            .collect();
        let fixes = append_deltas(&mut tx, fixes).await?;
        update_views(&mut tx, &fixes).await?;
        let fix_of: HashMap<&str, i64> = fixes
            .iter()
            .map(|d| (d.draft.order_ref.as_str(), d.offset))
            .collect();
        let mut fixed = 0i64;
        let mut inserts: Vec<(&NewDrift, Option<i64>)> = Vec::new();
        for d in &run.drifts {
            let fix = fix_of.get(d.order_ref.as_str()).copied();
            fixed += i64::from(fix.is_some());
            let updated = if d.existing {
                sqlx::query(
                    "UPDATE drifts SET last_run = $1, seen_count = seen_count + 1,
                         local_value = $2, remote_value = $3,
                         closed_at = $4, closed_reason = $5, fix_delta = $6
                     WHERE vendor = $7 AND order_ref = $8 AND kind = $9 AND coalesce(field, '') = $10
                       AND closed_at IS NULL",
                )
                .bind(run_id)
                .bind(&d.local_value)
                .bind(&d.remote_value)
                .bind(fix.map(|_| finished.as_str()))
                .bind(fix.map(|_| "fixed"))
                .bind(fix)
                .bind(&run.vendor)
                .bind(&d.order_ref)
                .bind(d.kind.as_str())
                .bind(d.field.as_deref().unwrap_or(""))
                .execute(&mut *tx)
                .await?
                .rows_affected()
            } else {
                0
            };
            if updated == 0 {
                inserts.push((d, fix));
            }
        }
        // New drifts in multi-row statements: at 1% drift of a million orders
        // one statement per row would dominate the run.
        for chunk in inserts.chunks(DRIFT_INSERT_BATCH) {
            let sql = format!(
                "INSERT INTO drifts (vendor, order_ref, kind, field, local_value, remote_value,
                     cause, first_run, last_run, opened_at, closed_at, closed_reason, fix_delta)
                 VALUES {}",
                super::row_placeholders(1, 13, chunk.len())
            );
            let mut q = sqlx::query(super::bulk(&tx, sql));
            for (d, fix) in chunk {
                q = q
                    .bind(&run.vendor)
                    .bind(&d.order_ref)
                    .bind(d.kind.as_str())
                    .bind(&d.field)
                    .bind(&d.local_value)
                    .bind(&d.remote_value)
                    .bind(d.cause.as_str())
                    .bind(run_id)
                    .bind(run_id)
                    .bind(&finished)
                    .bind(fix.map(|_| finished.as_str()))
                    .bind(fix.map(|_| "fixed"))
                    .bind(*fix);
            }
            q.execute(&mut *tx).await?;
        }

        let mut closed = 0i64;
        if run.close_unseen {
            closed += sqlx::query(
                "UPDATE drifts SET closed_at = $1, closed_reason = 'agreed_by_key_frame'
                 WHERE vendor = $2 AND closed_at IS NULL AND last_run != $3",
            )
            .bind(&finished)
            .bind(&run.vendor)
            .bind(run_id)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
        }
        for id in &run.close_agreed {
            closed += sqlx::query(
                "UPDATE drifts SET closed_at = $1, closed_reason = 'agreed_by_delta'
                 WHERE id = $2 AND closed_at IS NULL",
            )
            .bind(&finished)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
        }
        sqlx::query("UPDATE reconcile_runs SET fixed = $1, closed = $2 WHERE id = $3")
            .bind(fixed)
            .bind(closed)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        super::outbox::record_run(&mut tx, run_id).await?;
        tx.commit().await?;
        Ok(RunWritten {
            run_id,
            fixed,
            closed,
        })
    }
}

/// An open drift whose order's view changed after the drift was opened.
#[derive(Debug, Clone)]
pub struct DriftWithView {
    pub drift: DriftRow,
    pub status: Option<Status>,
    pub fields: Fields,
}

impl Store {
    /// Open drifts of the vendor whose order has been updated since the drift
    /// opened: the only ones a later delta can have resolved. One indexed join,
    /// so an unchanged key frame stays cheap however many drifts are open.
    pub async fn open_drifts_with_newer_view(&self, vendor: &str) -> Result<Vec<DriftWithView>> {
        let cols = DRIFT_COLUMNS
            .split(',')
            .map(|c| format!("d.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {cols}, o.status, o.fields FROM drifts d
             JOIN orders o ON o.vendor = d.vendor AND o.order_ref = d.order_ref
             WHERE d.vendor = $1 AND d.closed_at IS NULL AND o.updated_at > d.opened_at"
        )))
        .bind(vendor)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DriftWithView {
                    drift: drift_from_row(r)?,
                    status: r
                        .try_get::<Option<&str>, _>(13)?
                        .map(|s| parse_enum::<Status>("status", s))
                        .transpose()?,
                    fields: serde_json::from_str(r.try_get::<&str, _>(14)?)
                        .map_err(|e| StoreError::Corrupt(format!("order fields: {e}")))?,
                })
            })
            .collect()
    }

    /// Open drifts of a vendor keyed by (order, kind, field), with how many
    /// consecutive key frames have seen each.
    pub async fn open_drift_counts(
        &self,
        vendor: &str,
    ) -> Result<HashMap<(String, DriftKind, String), i64>> {
        let rows = sqlx::query(
            "SELECT order_ref, kind, coalesce(field, ''), seen_count FROM drifts
             WHERE vendor = $1 AND closed_at IS NULL",
        )
        .bind(vendor)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (
                        r.try_get(0)?,
                        parse_enum("drift kind", r.try_get::<&str, _>(1)?)?,
                        r.try_get(2)?,
                    ),
                    r.try_get(3)?,
                ))
            })
            .collect()
    }
}

/// The evidence read through the pool (PostgreSQL's way), IN-lists of
/// [`IN_BATCH`] orders.
async fn evidence_pooled(
    conn: &mut sqlx::AnyConnection,
    vendor: &str,
    refs: &[String],
) -> Result<HashMap<String, Vec<Evidence>>> {
    let mut out = HashMap::new();
    for chunk in refs.chunks(IN_BATCH) {
        out.extend(deltas_of(conn, vendor, chunk, true).await?);
    }
    Ok(out)
}

/// The deltas of one vendor's orders that `orders` picks (`$1` is the
/// vendor), superseded ones flagged in the last column, by order and event:
/// the one query both evidence reads run.
fn evidence_sql(orders: &str, filter: &str) -> String {
    format!(
        r#"SELECT {DELTA_COLUMNS}, CASE WHEN s."offset" IS NULL THEN 0 ELSE 1 END FROM deltas d
         LEFT JOIN superseded_deltas s ON s."offset" = d."offset"
         WHERE d.vendor = $1 AND {orders} {filter}
         ORDER BY d.order_ref, d.event_time, d."offset""#
    )
}

/// Each order's deltas, superseded ones flagged (or left out), in event
/// order: one statement for these orders of one vendor.
pub(super) async fn deltas_of(
    conn: &mut sqlx::AnyConnection,
    vendor: &str,
    refs: &[String],
    with_superseded: bool,
) -> Result<HashMap<String, Vec<Evidence>>> {
    let filter = if with_superseded {
        ""
    } else {
        r#"AND s."offset" IS NULL"#
    };
    let sql = evidence_sql(
        &format!(
            "d.order_ref IN ({})",
            super::list_placeholders(2, refs.len())
        ),
        filter,
    );
    let mut q = sqlx::query(super::bulk(conn, sql)).bind(vendor);
    for r in refs {
        q = q.bind(r);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut out: HashMap<String, Vec<Evidence>> = HashMap::new();
    for r in &rows {
        let delta = delta_from_row(r)?;
        let superseded = r.try_get::<i64, _>(13)? != 0;
        out.entry(delta.draft.order_ref.clone())
            .or_default()
            .push(Evidence { delta, superseded });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's evidence read (rusqlite, split over two threads) gives what
    /// the general read through the pool gives (PostgreSQL's path): every
    /// delta of each order in event order, superseded ones flagged, orders
    /// without deltas absent.
    #[tokio::test]
    async fn sqlite_evidence_is_what_the_pool_reads() {
        use crate::model::TimeSource;
        use chrono::TimeZone;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let n = 3 * EVIDENCE_SPLIT;
        let mut items = Vec::new();
        for i in 0..n {
            // Two deltas per order, the later-logged one told as earlier.
            for (k, status) in [(2, Status::Scheduled), (1, Status::Accepted)] {
                items.push((
                    DeltaDraft {
                        vendor: "v".into(),
                        order_ref: format!("O-{i:05}"),
                        status: Some(status),
                        vendor_status: Some(format!("word {k}")),
                        fields: [("fee".to_string(), serde_json::json!(i))].into(),
                        event_time: t0 + chrono::TimeDelta::minutes(k),
                        time_source: TimeSource::Vendor,
                    },
                    t0,
                ));
            }
        }
        let offsets = store
            .append_deltas_at(DeltaSource::Email, &items)
            .await
            .unwrap();
        let mut conn = store.pool.acquire().await.unwrap();
        for o in offsets.iter().step_by(7) {
            sqlx::query(
                r#"INSERT INTO superseded_deltas ("offset", superseded_at, reason) VALUES ($1, $2, 'test')"#,
            )
            .bind(o)
            .bind(ts(t0))
            .execute(&mut *conn)
            .await
            .unwrap();
        }
        // Out of key order, with an order that has no delta.
        let mut refs: Vec<String> = (0..n).rev().map(|i| format!("O-{i:05}")).collect();
        refs.push("O-none".into());
        let fast = store.reconcile_evidence("v", &refs).await.unwrap();
        let general = evidence_pooled(&mut conn, "v", &refs).await.unwrap();
        let view = |m: &HashMap<String, Vec<Evidence>>| {
            let mut v: Vec<_> = m
                .iter()
                .map(|(k, es)| {
                    let es: Vec<_> = es.iter().map(|e| (e.delta.clone(), e.superseded)).collect();
                    (k.clone(), es)
                })
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(fast.len(), n);
        assert!(!fast.contains_key("O-none"));
        assert_eq!(view(&fast), view(&general));
        let first = &fast["O-00000"];
        assert!(first[0].delta.draft.event_time < first[1].delta.draft.event_time);
        assert!(first[1].superseded, "offset 1 was superseded");
        assert_eq!(
            fast.values().flatten().filter(|e| e.superseded).count(),
            offsets.len().div_ceil(7)
        );
    }

    #[test]
    fn fast_ts_agrees_with_parse_ts() {
        for t in ["2026-11-25T13:55:27.123456Z", "2024-02-29T00:00:00.000000Z"] {
            assert_eq!(crate::fast_ts(t.as_bytes()), Some(parse_ts(t).unwrap()));
        }
        assert_eq!(crate::fast_ts(b"2026-02-30T00:00:00.000000Z"), None);
        assert_eq!(crate::fast_ts(b"2026-11-25T13:55:27Z"), None);
        // What the fast path refuses, the format reader still reads.
        assert!(parse_ts("2026-11-25T13:55:27Z").is_ok());
    }

    #[test]
    fn packed_rows_round_trip() {
        let packed = "5:a:b|cscheduled\x1f2026-11-25T13:55:27.123456Z{\"fee\":1.5}\x1e3:xyz\x1f2026-11-25T13:55:27.000000Z{}\x1e";
        let mut got = vec![];
        unpack_orders(packed, &mut |o| {
            got.push((
                o.order_ref.to_string(),
                o.known.as_ref().and_then(|k| k.status),
                o.known
                    .map(|k| String::from_utf8_lossy(k.fields_json).into_owned()),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "a:b|c");
        assert_eq!(got[0].1, Some(Status::Scheduled));
        assert_eq!(got[0].2.as_deref(), Some("{\"fee\":1.5}"));
        assert_eq!(got[1].1, None);
        assert!(unpack_orders("9:short", &mut |_| Ok(())).is_err());
    }
}
