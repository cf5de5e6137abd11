//! `migrate-store`: copies one store into another (SQLite → PostgreSQL, or
//! back), table by table in key order, and proves the copy by counts and a
//! content hash per table read back from both sides.
//!
//! Resumable without a ledger: each table continues after the highest key the
//! target already holds (rows go in with `ON CONFLICT DO NOTHING`, a batch per
//! transaction), so a copy killed at any point picks up where it stopped. A
//! target that already held other data fails the verification instead of
//! being trusted.

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Row, TypeInfo, ValueRef};

use super::{Backend, Result, Store, StoreError};

/// Every table worth carrying over, parents before children, with its key
/// and columns. Leases and the readiness probe are per-deployment state and
/// stay behind.
const TABLES: &[(&str, &[&str], &[&str])] = &[
    (
        "messages",
        &["id"],
        &[
            "id",
            "dedupe_key",
            "message_id",
            "size",
            "raw",
            "raw_complete",
            "sender",
            "subject",
            "date_header",
            "internal_date",
            "archived_at",
            "disposition",
            "reason",
            "vendor",
            "parser",
            "parser_version",
            "raw_codec",
            "rules",
        ],
    ),
    (
        "message_locations",
        &["source", "folder", "location"],
        &["source", "folder", "location", "message", "fetched_at"],
    ),
    (
        "checkpoints",
        &["source", "folder"],
        &["source", "folder", "uidvalidity", "last_uid", "updated_at"],
    ),
    (
        "deltas",
        &["\"offset\""],
        &[
            "\"offset\"",
            "vendor",
            "order_ref",
            "source",
            "status",
            "vendor_status",
            "fields",
            "event_time",
            "time_source",
            "recorded_at",
            "message",
            "parser",
            "parser_version",
        ],
    ),
    (
        "superseded_deltas",
        &["\"offset\""],
        &["\"offset\"", "superseded_at", "reason"],
    ),
    (
        "orders",
        &["vendor", "order_ref"],
        &[
            "vendor",
            "order_ref",
            "status",
            "vendor_status",
            "fields",
            "event_time",
            "last_offset",
            "updated_at",
            "delta_count",
        ],
    ),
    (
        "key_frames",
        &["id"],
        &[
            "id",
            "vendor",
            "source",
            "as_of",
            "fetched_at",
            "content_hash",
            "row_count",
            "complete",
            "etag",
            "last_modified",
        ],
    ),
    (
        "reconcile_runs",
        &["id"],
        &[
            "id",
            "vendor",
            "started_at",
            "finished_at",
            "key_frame",
            "source",
            "policy",
            "dry_run",
            "outcome",
            "reason",
            "orders_remote",
            "orders_local",
            "missing_local",
            "missing_remote",
            "status_mismatch",
            "field_mismatch",
            "fixed",
            "closed",
            "key_frame_changes",
            "email_told",
        ],
    ),
    (
        "drifts",
        &["id"],
        &[
            "id",
            "vendor",
            "order_ref",
            "kind",
            "field",
            "local_value",
            "remote_value",
            "cause",
            "first_run",
            "last_run",
            "seen_count",
            "opened_at",
            "closed_at",
            "closed_reason",
            "fix_delta",
        ],
    ),
    (
        "report_sends",
        &["report_date", "recipient"],
        &[
            "report_date",
            "recipient",
            "state",
            "attempts",
            "last_error",
            "created_at",
            "last_attempt_at",
            "sent_at",
            "message_id",
        ],
    ),
    (
        "format_alerts",
        &["id"],
        &[
            "id",
            "vendor",
            "detected_at",
            "kind",
            "field",
            "baseline",
            "current",
            "detail",
        ],
    ),
    (
        "webhooks",
        &["id"],
        &[
            "id",
            "vendor",
            "webhook_id",
            "received_at",
            "headers",
            "body",
            "disposition",
            "reason",
        ],
    ),
    (
        "webhook_deltas",
        &["\"offset\""],
        &["\"offset\"", "webhook"],
    ),
    (
        "outbox_events",
        &["id"],
        &[
            "id",
            "event_key",
            "type",
            "vendor",
            "occurred_at",
            "payload",
        ],
    ),
    (
        "outbox_cursors",
        &["subscription"],
        &["subscription", "last_event"],
    ),
    (
        "outbox_deliveries",
        &["subscription", "event"],
        &[
            "subscription",
            "event",
            "state",
            "attempts",
            "next_attempt_at",
            "lease_holder",
            "lease_until",
            "delivered_at",
        ],
    ),
    (
        "outbox_attempts",
        &["id"],
        &[
            "id",
            "subscription",
            "event",
            "attempt",
            "attempted_at",
            "duration_ms",
            "status_code",
            "error",
            "outcome",
        ],
    ),
];

/// Rows per copied batch (and per transaction on the target).
const BATCH: usize = 500;

/// One column value, whatever the backend.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    fn read(row: &AnyRow, i: usize) -> Result<Cell> {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            return Ok(Cell::Null);
        }
        let kind = raw.type_info().name().to_ascii_uppercase();
        Ok(match kind.as_str() {
            "BIGINT" | "INTEGER" | "SMALLINT" => Cell::Int(row.try_get(i)?),
            "DOUBLE" | "REAL" => Cell::Real(row.try_get(i)?),
            "TEXT" => Cell::Text(row.try_get(i)?),
            "BLOB" => Cell::Blob(row.try_get(i)?),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "column {i} holds a value of type {other} driftwatch does not write"
                )));
            }
        })
    }

    /// Feeds the table hash: type-tagged and length-prefixed, so two
    /// different rows never hash alike by concatenation.
    fn hash(&self, h: &mut Sha256) {
        match self {
            Cell::Null => h.update([0]),
            Cell::Int(v) => {
                h.update([1]);
                h.update(v.to_le_bytes());
            }
            Cell::Real(v) => {
                h.update([2]);
                h.update(v.to_bits().to_le_bytes());
            }
            Cell::Text(s) => {
                h.update([3]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Cell::Blob(b) => {
                h.update([4]);
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
    }
}

fn bind<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    c: &Cell,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    match c {
        Cell::Null => q,
        Cell::Int(v) => q.bind(*v),
        Cell::Real(v) => q.bind(*v),
        Cell::Text(s) => q.bind(s.clone()),
        Cell::Blob(b) => q.bind(b.clone()),
    }
}

/// What one table looked like after the copy, on both sides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableCopy {
    pub table: String,
    /// Rows this run wrote (0 for a table a previous run finished).
    pub copied: u64,
    pub rows: u64,
    pub sha256: String,
}

impl Store {
    /// Copies everything from `self` into `target` and verifies it.
    /// `progress` hears about each batch (table, rows copied so far).
    pub async fn copy_into(
        &self,
        target: &Store,
        mut progress: impl FnMut(&str, u64),
    ) -> Result<Vec<TableCopy>> {
        let mut out = Vec::new();
        for (table, key, cols) in TABLES {
            let mut after = target.last_key(table, key).await?;
            let mut copied = 0u64;
            loop {
                let rows = self
                    .rows_after(table, key, cols, after.as_deref(), BATCH)
                    .await?;
                let Some(last) = rows.last() else { break };
                after = Some(last[..key.len()].to_vec());
                target.insert_rows(table, key, cols, &rows).await?;
                copied += rows.len() as u64;
                progress(table, copied);
                if rows.len() < BATCH {
                    break;
                }
            }
            target.advance_identity(table, key).await?;
            let (src_rows, src_hash) = self.table_digest(table, key, cols).await?;
            let (dst_rows, dst_hash) = target.table_digest(table, key, cols).await?;
            if (src_rows, &src_hash) != (dst_rows, &dst_hash) {
                return Err(StoreError::Corrupt(format!(
                    "table {table} differs after the copy: {src_rows} rows (sha256 {src_hash}) in the source, \
                     {dst_rows} rows (sha256 {dst_hash}) in the target; was the target empty?"
                )));
            }
            out.push(TableCopy {
                table: table.to_string(),
                copied,
                rows: src_rows,
                sha256: src_hash,
            });
        }
        Ok(out)
    }

    async fn last_key(&self, table: &str, key: &[&str]) -> Result<Option<Vec<Cell>>> {
        let cols = key.join(", ");
        let desc = key
            .iter()
            .map(|k| format!("{k} DESC"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {cols} FROM {table} ORDER BY {desc} LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| (0..key.len()).map(|i| Cell::read(&r, i)).collect())
            .transpose()
    }

    async fn rows_after(
        &self,
        table: &str,
        key: &[&str],
        cols: &[&str],
        after: Option<&[Cell]>,
        limit: usize,
    ) -> Result<Vec<Vec<Cell>>> {
        let keys = key.join(", ");
        let filter = match after {
            Some(_) => format!(
                "WHERE ({keys}) > ({})",
                super::list_placeholders(1, key.len())
            ),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {} FROM {table} {filter} ORDER BY {keys} LIMIT {limit}",
            cols.join(", ")
        );
        let mut q = sqlx::query(super::bulk_for(self.backend, sql));
        for c in after.unwrap_or_default() {
            q = bind(q, c);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| (0..cols.len()).map(|i| Cell::read(r, i)).collect())
            .collect()
    }

    async fn insert_rows(
        &self,
        table: &str,
        key: &[&str],
        cols: &[&str],
        rows: &[Vec<Cell>],
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        // Within the bound-parameter limits of both backends.
        let per = (30_000 / cols.len()).clamp(1, 200);
        for chunk in rows.chunks(per) {
            // NULLs are written as literals: a bound NULL carries a type,
            // and PostgreSQL refuses a text NULL for a BIGINT column.
            let mut values = String::new();
            let mut n = 0;
            for (i, row) in chunk.iter().enumerate() {
                values.push_str(if i == 0 { "(" } else { ", (" });
                for (j, c) in row.iter().enumerate() {
                    if j > 0 {
                        values.push_str(", ");
                    }
                    if *c == Cell::Null {
                        values.push_str("NULL");
                    } else {
                        n += 1;
                        values.push_str(&format!("${n}"));
                    }
                }
                values.push(')');
            }
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES {values} ON CONFLICT ({}) DO NOTHING",
                cols.join(", "),
                key.join(", ")
            );
            let mut q = sqlx::query(super::bulk(&tx, sql));
            for c in chunk.iter().flatten() {
                if *c != Cell::Null {
                    q = bind(q, c);
                }
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// PostgreSQL identity columns do not see explicit ids: move each
    /// sequence past the copied rows so new rows do not collide.
    async fn advance_identity(&self, table: &str, key: &[&str]) -> Result<()> {
        if self.backend != Backend::Postgres || key != ["id"] || table == "messages" {
            return Ok(());
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM (SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                 coalesce((SELECT max(id) FROM {table}), 0) + 1, false)) AS s"
        )))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Row count and a SHA-256 over every row in key order.
    async fn table_digest(
        &self,
        table: &str,
        key: &[&str],
        cols: &[&str],
    ) -> Result<(u64, String)> {
        let sql = format!(
            "SELECT {} FROM {table} ORDER BY {}",
            cols.join(", "),
            key.join(", ")
        );
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut rows = sqlx::query(super::bulk_for(self.backend, sql)).fetch(&self.pool);
        while let Some(r) = rows.try_next().await? {
            for i in 0..cols.len() {
                Cell::read(&r, i)?.hash(&mut h);
            }
            n += 1;
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((n, hex))
    }
}
