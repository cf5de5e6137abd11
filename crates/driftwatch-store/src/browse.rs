//! Paged reads behind the HTTP read API. Every list is keyset-paginated
//! (by key for orders, newest id first for the rest), so a page costs the
//! same at the start and deep into a large table.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::orders::{ORDER_COLUMNS, order_from_row};
use super::reconcile::{DRIFT_COLUMNS, drift_from_row};
use super::{DriftRow, QuarantineRow, Result, RunRow, Store, parse_ts};
use crate::model::{OrderState, Status};

/// What the API lists per vendor.
#[derive(Debug, Clone)]
pub struct VendorSummary {
    pub vendor: String,
    pub last_mail_at: Option<DateTime<Utc>>,
    pub last_key_frame_as_of: Option<DateTime<Utc>>,
    pub open_drifts: i64,
    pub quarantined: i64,
    pub open_orders: i64,
}

impl VendorSummary {
    /// The one silence rule (the report, the API and alerts): open orders
    /// and no mail archived since `cutoff`.
    pub fn is_silent(&self, cutoff: DateTime<Utc>) -> bool {
        self.open_orders > 0 && self.last_mail_at.is_none_or(|t| t < cutoff)
    }
}

/// Filters of the orders list; `after` is the last (vendor, order_ref) of the previous page.
#[derive(Debug, Clone, Default)]
pub struct OrderPage {
    pub vendor: Option<String>,
    pub status: Option<Status>,
    pub after: Option<(String, String)>,
    pub limit: i64,
}

impl Store {
    /// Every vendor the database knows (orders, mail or key frames), with its health at a glance.
    pub async fn vendor_summaries(&self) -> Result<Vec<VendorSummary>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH v(vendor) AS (
                 SELECT DISTINCT vendor FROM orders
                 UNION SELECT vendor FROM messages WHERE vendor IS NOT NULL
                 UNION SELECT vendor FROM key_frames)
             SELECT v.vendor,
                 (SELECT max(archived_at) FROM messages m WHERE m.vendor = v.vendor),
                 (SELECT max(as_of) FROM key_frames k WHERE k.vendor = v.vendor),
                 (SELECT count(*) FROM drifts d WHERE d.vendor = v.vendor AND d.closed_at IS NULL),
                 (SELECT count(*) FROM messages m WHERE m.vendor = v.vendor AND m.disposition = 'quarantined'),
                 (SELECT count(*) FROM orders o WHERE o.vendor = v.vendor
                     AND coalesce(o.status, '') NOT IN ({}))
             FROM v ORDER BY v.vendor",
            crate::report::terminal_statuses_sql()
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let ts = |i: usize| -> Result<Option<DateTime<Utc>>> {
                    r.try_get::<Option<&str>, _>(i)?.map(parse_ts).transpose()
                };
                Ok(VendorSummary {
                    vendor: r.try_get(0)?,
                    last_mail_at: ts(1)?,
                    last_key_frame_as_of: ts(2)?,
                    open_drifts: r.try_get(3)?,
                    quarantined: r.try_get(4)?,
                    open_orders: r.try_get(5)?,
                })
            })
            .collect()
    }

    pub async fn orders_page(&self, p: &OrderPage) -> Result<Vec<OrderState>> {
        let (av, ar) = p.after.clone().unzip();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE ($1 IS NULL OR vendor = $1) AND ($2 IS NULL OR status = $2)
               AND ($3 IS NULL OR (vendor, order_ref) > ($3, $4))
             ORDER BY vendor, order_ref LIMIT $5"
        )))
        .bind(&p.vendor)
        .bind(p.status.map(Status::as_str))
        .bind(av)
        .bind(ar)
        .bind(p.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Drifts newest first, before id `before`.
    pub async fn drifts_page(
        &self,
        vendor: Option<&str>,
        open: Option<bool>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DriftRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DRIFT_COLUMNS} FROM drifts
             WHERE ($1 IS NULL OR vendor = $1)
               AND ($2 IS NULL OR ($2 = (closed_at IS NULL)))
               AND ($3 IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        )))
        .bind(vendor)
        .bind(open)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(drift_from_row).collect()
    }

    /// Quarantined messages newest first, before id `before`.
    pub async fn quarantine_page(
        &self,
        vendor: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<QuarantineRow>> {
        let rows = sqlx::query(
            "SELECT id, archived_at, sender, subject, reason, vendor FROM messages
             WHERE disposition = 'quarantined' AND ($1 IS NULL OR vendor = $1)
               AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(vendor)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantineRow {
                    id: r.try_get(0)?,
                    archived_at: parse_ts(r.try_get::<&str, _>(1)?)?,
                    sender: r.try_get(2)?,
                    subject: r.try_get(3)?,
                    reason: r.try_get(4)?,
                    vendor: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Reconcile runs (dry runs are never stored) newest first, before id `before`.
    pub async fn runs_page(
        &self,
        vendor: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT id, vendor, started_at, finished_at, outcome, reason, source FROM reconcile_runs
             WHERE ($1 IS NULL OR vendor = $1) AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(vendor)
        .bind(before)
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
}
