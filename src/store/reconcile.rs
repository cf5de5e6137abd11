//! SQL for the reconcile module: the view as of a key frame, the evidence for
//! attribution, key frames, runs and drifts.
//!
//! A run's writes (key frame, run row, drift rows, fix deltas and their view
//! updates) are one transaction: a crash mid-fix leaves the whole run or none.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::Row;

use super::orders::{DELTA_COLUMNS, append_delta, delta_from_row, update_view};
use super::{Result, Store, StoreError, parse_enum, parse_ts, ts};
use crate::model::{Delta, DeltaDraft, DeltaSource, Fields, Status};
use crate::reconcile::drift::{Cause, DriftKind, Outcome};
use crate::view;

/// Which deltas count as known at a key frame's `as_of`: recorded by then, or
/// recorded within the grace window with an event time before it (mail in
/// transit when the vendor cut the export).
#[derive(Debug, Clone, Copy)]
pub struct Cutoff {
    pub as_of: DateTime<Utc>,
    pub grace_end: DateTime<Utc>,
}

impl Cutoff {
    pub fn knows(&self, d: &Delta) -> bool {
        d.recorded_at <= self.as_of
            || (d.recorded_at <= self.grace_end && d.draft.event_time <= self.as_of)
    }
}

/// One order of the view as of a cutoff.
#[derive(Debug, Clone)]
pub struct AsOfOrder {
    pub order_ref: String,
    /// `None`: the order exists now, but nothing about it was known at the
    /// cutoff (all its deltas are in flight).
    pub known: Option<KnownOrder>,
}

#[derive(Debug, Clone)]
pub struct KnownOrder {
    pub status: Option<Status>,
    pub fields: Fields,
    pub event_time: DateTime<Utc>,
}

/// A delta with whether a reparse superseded it.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub delta: Delta,
    pub superseded: bool,
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

#[derive(Debug, Clone, Default)]
pub struct RunCounts {
    pub orders_remote: i64,
    pub orders_local: i64,
    pub missing_local: i64,
    pub missing_remote: i64,
    pub status_mismatch: i64,
    pub field_mismatch: i64,
    pub key_frame_changes: i64,
    pub email_told: i64,
}

#[derive(Debug, Clone)]
pub struct NewDrift {
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
    /// Reconcile deltas to append; each closes the open drifts of its order as fixed.
    pub fixes: Vec<DeltaDraft>,
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

const DRIFT_COLUMNS: &str = "id, vendor, order_ref, kind, field, local_value, remote_value, cause,
     seen_count, opened_at, closed_at, closed_reason, fix_delta";

fn drift_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<DriftRow> {
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

/// SQLite's default limit on bound parameters is far above this; small
/// batches keep each statement cheap to prepare.
const IN_BATCH: usize = 400;

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

impl Store {
    /// Streams the vendor's orders as the view stood at `cut`. Orders whose
    /// every delta was known by then come straight from the view; only those
    /// touched since are refolded from the log.
    pub async fn view_as_of(
        &self,
        vendor: &str,
        cut: Cutoff,
        mut each: impl FnMut(AsOfOrder),
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let as_of = ts(cut.as_of);
        let mut touched = Vec::new();
        {
            let mut rows = sqlx::query(
                "SELECT order_ref, status, fields, event_time, updated_at FROM orders WHERE vendor = ?",
            )
            .bind(vendor)
            .fetch(&mut *conn);
            while let Some(r) = rows.try_next().await? {
                let order_ref: String = r.try_get(0)?;
                let updated_at: &str = r.try_get(4)?;
                if updated_at > as_of.as_str() {
                    touched.push(order_ref);
                    continue;
                }
                let fields: Fields = serde_json::from_str(r.try_get::<&str, _>(2)?)
                    .map_err(|e| StoreError::Corrupt(format!("order fields: {e}")))?;
                each(AsOfOrder {
                    order_ref,
                    known: Some(KnownOrder {
                        status: r
                            .try_get::<Option<&str>, _>(1)?
                            .map(|s| parse_enum::<Status>("status", s))
                            .transpose()?,
                        fields,
                        event_time: parse_ts(r.try_get::<&str, _>(3)?)?,
                    }),
                });
            }
        }
        for chunk in touched.chunks(IN_BATCH) {
            let mut by_order = self.deltas_of(&mut conn, vendor, chunk, false).await?;
            for order_ref in chunk {
                let mut known: Vec<Delta> = by_order
                    .remove(order_ref)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| e.delta)
                    .filter(|d| cut.knows(d))
                    .collect();
                let state = view::fold(&mut known);
                each(AsOfOrder {
                    order_ref: order_ref.clone(),
                    known: state.map(|s| KnownOrder {
                        status: s.status,
                        fields: s.fields,
                        event_time: s.event_time,
                    }),
                });
            }
        }
        Ok(())
    }

    async fn deltas_of(
        &self,
        conn: &mut sqlx::SqliteConnection,
        vendor: &str,
        refs: &[String],
        with_superseded: bool,
    ) -> Result<HashMap<String, Vec<Evidence>>> {
        let filter = if with_superseded {
            ""
        } else {
            "AND s.offset IS NULL"
        };
        let sql = format!(
            "SELECT {DELTA_COLUMNS}, s.offset IS NOT NULL FROM deltas d
             LEFT JOIN superseded_deltas s ON s.offset = d.offset
             WHERE d.vendor = ? AND d.order_ref IN ({}) {filter}
             ORDER BY d.order_ref, d.event_time, d.offset",
            placeholders(refs.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(vendor);
        for r in refs {
            q = q.bind(r);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        let mut out: HashMap<String, Vec<Evidence>> = HashMap::new();
        for r in &rows {
            let delta = delta_from_row(r)?;
            let superseded: bool = r.try_get(13)?;
            out.entry(delta.draft.order_ref.clone())
                .or_default()
                .push(Evidence { delta, superseded });
        }
        Ok(out)
    }

    /// Every delta (superseded ones flagged) of the given orders: the evidence
    /// attribution reads.
    pub async fn reconcile_evidence(
        &self,
        vendor: &str,
        refs: &[String],
    ) -> Result<HashMap<String, Vec<Evidence>>> {
        let mut conn = self.pool.acquire().await?;
        let mut out = HashMap::new();
        for chunk in refs.chunks(IN_BATCH) {
            out.extend(self.deltas_of(&mut conn, vendor, chunk, true).await?);
        }
        Ok(out)
    }

    /// Subjects of quarantined messages that may be this vendor's, with the
    /// message's own date (or its arrival): a failed parse leaves no delta,
    /// only this.
    pub async fn quarantined_subjects(&self, vendor: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT subject, coalesce(date_header, internal_date, archived_at) FROM messages
             WHERE disposition = 'quarantined' AND subject IS NOT NULL
               AND (vendor = ? OR vendor IS NULL)",
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
             FROM key_frames k WHERE k.vendor = ? ORDER BY k.id DESC LIMIT 1",
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
             WHERE r.vendor = ? AND r.outcome = 'ok' ORDER BY r.id DESC LIMIT 1",
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
             WHERE (?1 IS NULL OR vendor = ?1) AND (?2 = 0 OR closed_at IS NULL)
             ORDER BY id DESC"
        )))
        .bind(vendor)
        .bind(open_only)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(drift_from_row).collect()
    }

    /// Recent runs of a vendor, newest first.
    pub async fn reconcile_runs(&self, vendor: &str, limit: i64) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT id, vendor, started_at, finished_at, outcome, reason, source FROM reconcile_runs
             WHERE vendor = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(vendor)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    id: r.try_get(0)?,
                    vendor: r.try_get(1)?,
                    started_at: parse_ts(r.try_get::<&str, _>(2)?)?,
                    finished_at: r.try_get::<Option<&str>, _>(3)?.map(parse_ts).transpose()?,
                    outcome: r.try_get(4)?,
                    reason: r.try_get(5)?,
                    source: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Appends deltas with given record times, one transaction. For a
    /// webhook intake or a simulator that replays a channel in its own time.
    pub async fn append_deltas_at(
        &self,
        source: DeltaSource,
        items: &[(DeltaDraft, DateTime<Utc>)],
    ) -> Result<Vec<i64>> {
        let mut tx = self.write_tx().await?;
        let mut offsets = Vec::with_capacity(items.len());
        for (d, at) in items {
            let delta = append_delta(&mut tx, source, d, None, None, None, *at).await?;
            update_view(&mut tx, &delta).await?;
            offsets.push(delta.offset);
        }
        tx.commit().await?;
        Ok(offsets)
    }

    /// Writes one run whole: key frame, run row, drifts, closes, fixes.
    pub async fn record_run(&self, run: &RunRecord) -> Result<RunWritten> {
        let mut tx = self.write_tx().await?;
        let finished = ts(run.finished_at);
        let key_frame = match &run.key_frame {
            KeyFrameRef::None => None,
            KeyFrameRef::Existing(id) => Some(*id),
            KeyFrameRef::New(k) => Some(
                sqlx::query_scalar::<_, i64>(
                    "INSERT INTO key_frames (vendor, source, as_of, fetched_at, content_hash,
                         row_count, complete, etag, last_modified)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(&run.vendor)
                .bind(&k.source)
                .bind(ts(k.as_of))
                .bind(ts(k.fetched_at))
                .bind(&k.content_hash[..])
                .bind(k.row_count)
                .bind(k.complete)
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
             VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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

        for d in &run.drifts {
            let updated = sqlx::query(
                "UPDATE drifts SET last_run = ?, seen_count = seen_count + 1,
                     local_value = ?, remote_value = ?
                 WHERE vendor = ? AND order_ref = ? AND kind = ? AND coalesce(field, '') = ?
                   AND closed_at IS NULL",
            )
            .bind(run_id)
            .bind(&d.local_value)
            .bind(&d.remote_value)
            .bind(&run.vendor)
            .bind(&d.order_ref)
            .bind(d.kind.as_str())
            .bind(d.field.as_deref().unwrap_or(""))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                sqlx::query(
                    "INSERT INTO drifts (vendor, order_ref, kind, field, local_value, remote_value,
                         cause, first_run, last_run, opened_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
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
                .execute(&mut *tx)
                .await?;
            }
        }

        let mut closed = 0i64;
        if run.close_unseen {
            closed += sqlx::query(
                "UPDATE drifts SET closed_at = ?, closed_reason = 'agreed_by_key_frame'
                 WHERE vendor = ? AND closed_at IS NULL AND last_run != ?",
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
                "UPDATE drifts SET closed_at = ?, closed_reason = 'agreed_by_delta'
                 WHERE id = ? AND closed_at IS NULL",
            )
            .bind(&finished)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
        }

        let mut fixed = 0i64;
        for draft in &run.fixes {
            let delta = append_delta(
                &mut tx,
                DeltaSource::Reconcile,
                draft,
                None,
                None,
                None,
                run.finished_at,
            )
            .await?;
            update_view(&mut tx, &delta).await?;
            fixed += sqlx::query(
                "UPDATE drifts SET closed_at = ?, closed_reason = 'fixed', fix_delta = ?
                 WHERE vendor = ? AND order_ref = ? AND closed_at IS NULL AND last_run = ?",
            )
            .bind(&finished)
            .bind(delta.offset)
            .bind(&run.vendor)
            .bind(&draft.order_ref)
            .bind(run_id)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
        }
        sqlx::query("UPDATE reconcile_runs SET fixed = ?, closed = ? WHERE id = ?")
            .bind(fixed)
            .bind(closed)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
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
             WHERE d.vendor = ? AND d.closed_at IS NULL AND o.updated_at > d.opened_at"
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
             WHERE vendor = ? AND closed_at IS NULL",
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
