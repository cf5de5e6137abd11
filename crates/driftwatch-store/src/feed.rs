//! The delta log as readers outside the process see it: where it ends, a
//! wake-up when it grows, and a snapshot of the view with the offset it is
//! consistent at.
//!
//! Offsets are assigned under the write lock (SQLite's `BEGIN IMMEDIATE`,
//! PostgreSQL's advisory write lock), so they
//! commit in order: a reader that has seen offset N and reads `offset > N`
//! later can never miss a delta that committed in between.

use std::sync::LazyLock;

use futures_util::TryStreamExt;
use sqlx::{Any, AnyConnection, Transaction};
use tokio::sync::watch;

use super::orders::{ORDER_COLUMNS, order_from_row};
use super::{Result, Store};
use crate::model::OrderState;

/// The highest offset handed out by `append_deltas` in this process. Sent
/// before the transaction commits; a listener re-reads the log head until it
/// gets there (or its own poll interval passes, if the transaction rolled back).
static APPENDED: LazyLock<watch::Sender<i64>> = LazyLock::new(|| watch::Sender::new(0));

/// Called by the append path with the last offset it assigned.
pub(super) fn notify_appended(last_offset: i64) {
    APPENDED.send_replace(last_offset);
}

/// Wakes when deltas are appended in this process (see [`APPENDED`]).
pub fn appended() -> watch::Receiver<i64> {
    APPENDED.subscribe()
}

async fn log_end(conn: &mut AnyConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar(r#"SELECT coalesce(max("offset"), 0) FROM deltas"#)
            .fetch_one(conn)
            .await?,
    )
}

/// The whole order view as of one offset, read in chunks inside one read
/// transaction so the view cannot move under it and memory stays flat.
pub struct Snapshot {
    tx: Transaction<'static, Any>,
    /// Every delta up to here is in the view, and none after it.
    pub offset: i64,
    after: Option<(String, String)>,
}

impl Snapshot {
    /// The next orders in (vendor, order_ref) order; empty at the end.
    pub async fn next_chunk(&mut self, limit: i64) -> Result<Vec<OrderState>> {
        // A separate statement for the first chunk keeps the key range
        // usable by the primary key (an `OR` would scan).
        let after = match &self.after {
            Some(_) => "(vendor, order_ref) > ($1, $2)",
            None => "$1 IS NULL AND $2 IS NULL",
        };
        let (v, r) = self.after.clone().unzip();
        let rows: Vec<_> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE {after}
             ORDER BY vendor, order_ref LIMIT $3"
        )))
        .bind(v)
        .bind(r)
        .bind(limit)
        .fetch(&mut *self.tx)
        .try_collect()
        .await?;
        let orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>>>()?;
        if let Some(o) = orders.last() {
            self.after = Some((o.vendor.clone(), o.order_ref.clone()));
        }
        Ok(orders)
    }
}

impl Store {
    /// The last offset the log has handed out (0 for an empty log). Offsets
    /// at or below it can be served; a cursor past it comes from another log.
    pub async fn log_end(&self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        log_end(&mut conn).await
    }

    /// Opens a read transaction on the view and the offset it reflects.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut tx = self.read_tx().await?;
        // The first read starts the transaction's snapshot; the view rows
        // read later in it are as of this same commit.
        let offset = log_end(&mut tx).await?;
        Ok(Snapshot {
            tx,
            offset,
            after: None,
        })
    }

    /// Proves the database takes writes now: takes the write lock and
    /// commits one tiny row. Used by `/readyz`.
    pub async fn probe_write(&self) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO readiness_probe (id, probed_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .bind(super::ts(chrono::Utc::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
