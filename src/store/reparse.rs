//! Reparse: replace what archived messages produced with what the current
//! parsers make of them. Old deltas are kept and marked superseded (the log is
//! never edited); the affected orders are refolded in the same transaction.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::ingest::{Disposition, StoredMessage, stored_from_row};
use super::orders::{append_deltas, delta_from_row, order_deltas_conn, refold_order};
use super::{Result, Store, ts};
use crate::model::{Delta, DeltaDraft, DeltaSource, OrderState};
use crate::view;

/// A message's new classification.
#[derive(Debug, Clone)]
pub struct Reparsed {
    pub message: i64,
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub vendor: Option<String>,
    pub parser: Option<String>,
    pub parser_version: Option<u32>,
    pub deltas: Vec<DeltaDraft>,
}

impl Reparsed {
    /// One of the new deltas, not yet in the log, as this message's parser gave it.
    fn delta(&self, d: &DeltaDraft, now: DateTime<Utc>) -> Delta {
        Delta {
            message: Some(self.message),
            parser: self.parser.clone(),
            parser_version: self.parser_version.map(i64::from),
            ..Delta::unlogged(DeltaSource::Email, d.clone(), now)
        }
    }
}

/// An order whose view a reparse changes: before and after.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrderChange {
    pub vendor: String,
    pub order_ref: String,
    pub before: Option<OrderState>,
    pub after: Option<OrderState>,
}

impl Store {
    /// Messages a reparse may change, after id `after`, a page at a time:
    /// complete raw messages that were parsed or quarantined.
    pub async fn reparse_page(
        &self,
        since: Option<DateTime<Utc>>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredMessage>> {
        let rows = sqlx::query(
            "SELECT id, raw, raw_complete, disposition, reason, vendor, sender, subject, archived_at,
                    internal_date, raw_codec
             FROM messages
             WHERE id > ?1 AND raw_complete = 1 AND disposition IN ('parsed', 'quarantined')
               AND (?2 IS NULL OR archived_at >= ?2)
             ORDER BY id LIMIT ?3",
        )
        .bind(after)
        .bind(since.map(ts))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_from_row).collect()
    }

    pub async fn reparse_count(&self, since: Option<DateTime<Utc>>) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages
             WHERE raw_complete = 1 AND disposition IN ('parsed', 'quarantined') AND (?1 IS NULL OR archived_at >= ?1)",
        )
        .bind(since.map(ts))
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    /// The deltas a message produced that the view still uses.
    pub async fn message_deltas(&self, message: i64) -> Result<Vec<Delta>> {
        let rows = sqlx::query(
            "SELECT d.offset, d.vendor, d.order_ref, d.source, d.status, d.vendor_status, d.fields,
                    d.event_time, d.time_source, d.recorded_at, d.message, d.parser, d.parser_version
             FROM deltas d
             WHERE d.message = ? AND d.offset NOT IN (SELECT offset FROM superseded_deltas)
             ORDER BY d.offset",
        )
        .bind(message)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delta_from_row).collect()
    }

    /// What the view of each affected order would become: nothing is written.
    pub async fn simulate_reparse(&self, changes: &[Reparsed]) -> Result<Vec<OrderChange>> {
        let mut conn = self.pool.acquire().await?;
        let replaced: BTreeSet<i64> = changes.iter().map(|c| c.message).collect();
        let now = Utc::now();
        let mut out = Vec::new();
        for (vendor, order_ref) in affected_orders(&mut conn, changes).await? {
            let mut ds: Vec<Delta> = order_deltas_conn(&mut conn, &vendor, &order_ref)
                .await?
                .into_iter()
                .filter(|d| d.message.is_none_or(|m| !replaced.contains(&m)))
                .collect();
            // New deltas would get offsets after every existing one.
            let mut next = i64::MAX / 2;
            for c in changes {
                for d in c
                    .deltas
                    .iter()
                    .filter(|d| d.vendor == vendor && d.order_ref == order_ref)
                {
                    next += 1;
                    ds.push(Delta {
                        offset: next,
                        ..c.delta(d, now)
                    });
                }
            }
            let current = super::orders::load_order(&mut conn, &vendor, &order_ref).await?;
            let after = view::fold(&mut ds);
            if !same_view(current.as_ref(), after.as_ref()) {
                out.push(OrderChange {
                    vendor,
                    order_ref,
                    before: current,
                    after,
                });
            }
        }
        Ok(out)
    }

    /// Applies a batch of reparse results in one transaction.
    pub async fn apply_reparse(&self, changes: &[Reparsed], reason: &str) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.write_tx().await?;
        let affected = affected_orders(&mut tx, changes).await?;
        let mut fresh = Vec::new();
        for c in changes {
            sqlx::query(
                "INSERT OR IGNORE INTO superseded_deltas (offset, superseded_at, reason)
                 SELECT offset, ?, ? FROM deltas
                 WHERE message = ? AND offset NOT IN (SELECT offset FROM superseded_deltas)",
            )
            .bind(ts(now))
            .bind(reason)
            .bind(c.message)
            .execute(&mut *tx)
            .await?;
            fresh.extend(c.deltas.iter().map(|d| c.delta(d, now)));
            sqlx::query(
                "UPDATE messages SET disposition = ?, reason = ?, vendor = ?, parser = ?, parser_version = ? WHERE id = ?",
            )
            .bind(c.disposition.as_str())
            .bind(&c.reason)
            .bind(&c.vendor)
            .bind(&c.parser)
            .bind(c.parser_version.map(i64::from))
            .bind(c.message)
            .execute(&mut *tx)
            .await?;
        }
        append_deltas(&mut tx, fresh).await?;
        for (vendor, order_ref) in affected {
            refold_order(&mut tx, &vendor, &order_ref).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Orders touched by the old or the new deltas of the changed messages.
async fn affected_orders(
    conn: &mut sqlx::SqliteConnection,
    changes: &[Reparsed],
) -> Result<BTreeSet<(String, String)>> {
    let mut set = BTreeSet::new();
    for c in changes {
        let old: Vec<(String, String)> = sqlx::query_as(
            "SELECT vendor, order_ref FROM deltas
             WHERE message = ? AND offset NOT IN (SELECT offset FROM superseded_deltas)",
        )
        .bind(c.message)
        .fetch_all(&mut *conn)
        .await?;
        set.extend(old);
        set.extend(
            c.deltas
                .iter()
                .map(|d| (d.vendor.clone(), d.order_ref.clone())),
        );
    }
    Ok(set)
}

/// Two views are the same for a user when status and fields agree; offsets
/// and recording times necessarily differ after a reparse.
fn same_view(a: Option<&OrderState>, b: Option<&OrderState>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.status == b.status
                && a.vendor_status == b.vendor_status
                && a.fields == b.fields
                && a.event_time == b.event_time
        }
        _ => false,
    }
}
