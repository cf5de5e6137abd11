//! SQL for the daily report: read-only slices of drifts, reconcile runs,
//! mail and orders over a time window, and the `report_sends` ledger that
//! makes sending once-per-day survive restarts.
//!
//! Every query takes its instants as arguments (never `now()` in SQL), so a
//! report for a past date is the same whenever it is built.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Store, StoreError, parse_ts, ts};

/// A drift open at some instant.
#[derive(Debug, Clone)]
pub struct DriftRow {
    pub vendor: String,
    pub order_ref: String,
    pub kind: String,
    pub field: Option<String>,
    pub local_value: Option<Value>,
    pub remote_value: Option<Value>,
    pub cause: String,
    pub opened_at: DateTime<Utc>,
}

/// Per-vendor drift movement inside a window.
#[derive(Debug, Clone, Default)]
pub struct DriftMovement {
    pub vendor: String,
    pub opened: i64,
    pub closed: i64,
    pub closed_fixed: i64,
}

#[derive(Debug, Clone)]
pub struct RunRow {
    pub vendor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub reason: Option<String>,
    pub orders_remote: i64,
    pub orders_local: i64,
    pub drifts_found: i64,
    pub fixed: i64,
    pub closed: i64,
}

/// Messages archived in a window, by vendor (`None`: no vendor recognised) and disposition.
#[derive(Debug, Clone)]
pub struct MailCountRow {
    pub vendor: Option<String>,
    pub disposition: String,
    pub count: i64,
}

#[derive(Debug, Clone)]
pub struct QuarantinedRow {
    pub vendor: Option<String>,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub reason: Option<String>,
    pub archived_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct FormatAlertRow {
    pub vendor: String,
    pub detected_at: DateTime<Utc>,
    pub kind: String,
    pub field: Option<String>,
    pub baseline: f64,
    pub current: f64,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct StuckOrderRow {
    pub vendor: String,
    pub order_ref: String,
    pub status: Option<String>,
    pub vendor_status: Option<String>,
    pub last_delta_at: DateTime<Utc>,
}

/// A vendor with open orders, and when we last archived mail from it.
#[derive(Debug, Clone)]
pub struct VendorMailRow {
    pub vendor: String,
    pub open_orders: i64,
    pub last_mail_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    Pending,
    Sent,
    Failed,
}

#[derive(Debug, Clone)]
pub struct SendRow {
    pub report_date: NaiveDate,
    pub recipient: String,
    pub state: SendState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub message_id: String,
    pub sent_at: Option<DateTime<Utc>>,
}

/// What [`Store::begin_send`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginSend {
    /// Recorded as pending; go ahead. `attempt` counts from 1.
    Go { attempt: i64 },
    /// Already sent: do nothing.
    AlreadySent,
    /// Another attempt recorded `pending` less than the lease ago is probably
    /// still sending (a `report --send-due` beside `serve`): leave it alone.
    InFlight,
}

/// The terminal statuses as an SQL list (`'completed', 'cancelled'` plus
/// every declared `terminal = true` status): an order in one needs nothing
/// more from the vendor. Status words are `[a-z0-9_]` (`declare_statuses`
/// refuses anything else), so they are safe to write into the statement.
pub(crate) fn terminal_statuses_sql() -> String {
    crate::model::Status::terminal()
        .into_iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Orders not in a terminal status.
fn open_order() -> String {
    format!(
        "(status IS NULL OR status NOT IN ({}))",
        terminal_statuses_sql()
    )
}

fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn json_value(r: &AnyRow, i: usize) -> Result<Option<Value>> {
    let raw: Option<String> = r.try_get(i)?;
    // A value that is not JSON is still worth showing as text: the report must
    // not fail because one row was written oddly.
    Ok(raw.map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s))))
}

fn opt_ts(r: &AnyRow, i: usize) -> Result<Option<DateTime<Utc>>> {
    r.try_get::<Option<&str>, _>(i)?.map(parse_ts).transpose()
}

impl Store {
    /// Open drifts at `at` (opened before it, not closed by it), counted by
    /// vendor, kind and cause: the figures, without loading every drift.
    pub async fn report_open_drift_breakdown(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<(String, String, String, i64)>> {
        let at = ts(at);
        let rows = sqlx::query(
            "SELECT vendor, kind, cause, count(*) FROM drifts
             WHERE opened_at < $1 AND (closed_at IS NULL OR closed_at >= $1)
             GROUP BY vendor, kind, cause",
        )
        .bind(&at)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }

    /// The `limit` worst drifts open at `at`. Worst: a wrong status first (it
    /// misleads whoever acts on the order), then an order we lack, one the
    /// vendor lacks, a field difference; the oldest first within a kind.
    pub async fn report_worst_open_drifts(
        &self,
        at: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DriftRow>> {
        let rows = sqlx::query(
            "SELECT vendor, order_ref, kind, field, local_value, remote_value, cause, opened_at
             FROM drifts WHERE opened_at < $1 AND (closed_at IS NULL OR closed_at >= $1)
             ORDER BY CASE kind WHEN 'status_mismatch' THEN 0 WHEN 'missing_local' THEN 1
                      WHEN 'missing_remote' THEN 2 ELSE 3 END,
                  opened_at, vendor, order_ref
             LIMIT $2",
        )
        .bind(ts(at))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DriftRow {
                    vendor: r.try_get(0)?,
                    order_ref: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    field: r.try_get(3)?,
                    local_value: json_value(r, 4)?,
                    remote_value: json_value(r, 5)?,
                    cause: r.try_get(6)?,
                    opened_at: parse_ts(r.try_get::<&str, _>(7)?)?,
                })
            })
            .collect()
    }

    /// Open drift count per vendor at `at`: one point of the trend.
    pub async fn report_open_drift_counts(&self, at: DateTime<Utc>) -> Result<Vec<(String, i64)>> {
        let at = ts(at);
        let rows = sqlx::query(
            "SELECT vendor, count(*) FROM drifts
             WHERE opened_at < $1 AND (closed_at IS NULL OR closed_at >= $2) GROUP BY vendor",
        )
        .bind(&at)
        .bind(&at)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Drifts opened and closed in `[from, to)`, per vendor.
    pub async fn report_drift_movement(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DriftMovement>> {
        let (from, to) = (ts(from), ts(to));
        let rows = sqlx::query(
            "SELECT vendor,
                 CAST(sum(CASE WHEN opened_at >= $1 AND opened_at < $2 THEN 1 ELSE 0 END) AS BIGINT),
                 CAST(sum(CASE WHEN closed_at >= $1 AND closed_at < $2 THEN 1 ELSE 0 END) AS BIGINT),
                 CAST(sum(CASE WHEN closed_at >= $1 AND closed_at < $2 AND closed_reason = 'fixed'
                          THEN 1 ELSE 0 END) AS BIGINT)
             FROM drifts
             WHERE (opened_at >= $1 AND opened_at < $2) OR (closed_at >= $1 AND closed_at < $2)
             GROUP BY vendor ORDER BY vendor",
        )
        .bind(&from)
        .bind(&to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DriftMovement {
                    vendor: r.try_get(0)?,
                    opened: r.try_get(1)?,
                    closed: r.try_get(2)?,
                    closed_fixed: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Reconcile runs started in `[from, to)`.
    pub async fn report_runs(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT vendor, started_at, finished_at, outcome, reason, orders_remote, orders_local,
                 missing_local + missing_remote + status_mismatch + field_mismatch, fixed, closed
             FROM reconcile_runs WHERE started_at >= $1 AND started_at < $2
             ORDER BY vendor, started_at, id",
        )
        .bind(ts(from))
        .bind(ts(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    vendor: r.try_get(0)?,
                    started_at: parse_ts(r.try_get::<&str, _>(1)?)?,
                    finished_at: opt_ts(r, 2)?,
                    outcome: r.try_get(3)?,
                    reason: r.try_get(4)?,
                    orders_remote: r.try_get(5)?,
                    orders_local: r.try_get(6)?,
                    drifts_found: r.try_get(7)?,
                    fixed: r.try_get(8)?,
                    closed: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Messages archived in `[from, to)`, by vendor and disposition.
    pub async fn report_mail_counts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MailCountRow>> {
        let rows = sqlx::query(
            "SELECT vendor, disposition, count(*) FROM messages
             WHERE archived_at >= $1 AND archived_at < $2 GROUP BY vendor, disposition",
        )
        .bind(ts(from))
        .bind(ts(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MailCountRow {
                    vendor: r.try_get(0)?,
                    disposition: r.try_get(1)?,
                    count: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// The first `limit` messages quarantined in `[from, to)`, oldest first.
    pub async fn report_quarantined(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<QuarantinedRow>> {
        let rows = sqlx::query(
            "SELECT vendor, sender, subject, reason, archived_at FROM messages
             WHERE disposition = 'quarantined' AND archived_at >= $1 AND archived_at < $2
             ORDER BY archived_at, id LIMIT $3",
        )
        .bind(ts(from))
        .bind(ts(to))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantinedRow {
                    vendor: r.try_get(0)?,
                    sender: r.try_get(1)?,
                    subject: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    archived_at: parse_ts(r.try_get::<&str, _>(4)?)?,
                })
            })
            .collect()
    }

    /// Format-change alerts detected in `[from, to)`.
    pub async fn report_format_alerts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FormatAlertRow>> {
        let rows = sqlx::query(
            "SELECT vendor, detected_at, kind, field, baseline, current, detail FROM format_alerts
             WHERE detected_at >= $1 AND detected_at < $2 ORDER BY vendor, detected_at, id",
        )
        .bind(ts(from))
        .bind(ts(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FormatAlertRow {
                    vendor: r.try_get(0)?,
                    detected_at: parse_ts(r.try_get::<&str, _>(1)?)?,
                    kind: r.try_get(2)?,
                    field: r.try_get(3)?,
                    baseline: r.try_get(4)?,
                    current: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Open orders whose last delta was recorded before `cutoff`, longest
    /// silent first (at most `limit`), and how many there are in all.
    pub async fn report_stuck_orders(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<StuckOrderRow>, i64)> {
        let cutoff = ts(cutoff);
        let open = open_order();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT vendor, order_ref, status, vendor_status, updated_at FROM orders
             WHERE {open} AND updated_at < $1 ORDER BY updated_at, vendor, order_ref LIMIT $2"
        )))
        .bind(&cutoff)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM orders WHERE {open} AND updated_at < $1"
        )))
        .bind(&cutoff)
        .fetch_one(&self.pool)
        .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(StuckOrderRow {
                    vendor: r.try_get(0)?,
                    order_ref: r.try_get(1)?,
                    status: r.try_get(2)?,
                    vendor_status: r.try_get(3)?,
                    last_delta_at: parse_ts(r.try_get::<&str, _>(4)?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    /// Stuck orders (see [`Store::report_stuck_orders`]) counted per vendor.
    pub async fn report_stuck_counts(&self, cutoff: DateTime<Utc>) -> Result<Vec<(String, i64)>> {
        let open = open_order();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT vendor, count(*) FROM orders WHERE {open} AND updated_at < $1 GROUP BY vendor"
        )))
        .bind(ts(cutoff))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Every vendor with open orders that we knew of before `before` (an order
    /// first heard of later did not exist yet for that day's report), with
    /// its last mail archived before `before`.
    pub async fn report_vendor_mail(&self, before: DateTime<Utc>) -> Result<Vec<VendorMailRow>> {
        let open = open_order();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT o.vendor, count(*),
                 (SELECT max(m.archived_at) FROM messages m
                  WHERE m.vendor = o.vendor AND m.archived_at < $1)
             FROM orders o
             WHERE {open}
               AND EXISTS (SELECT 1 FROM deltas d WHERE d.vendor = o.vendor
                           AND d.order_ref = o.order_ref AND d.recorded_at < $1)
             GROUP BY o.vendor ORDER BY o.vendor"
        )))
        .bind(ts(before))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VendorMailRow {
                    vendor: r.try_get(0)?,
                    open_orders: r.try_get(1)?,
                    last_mail_at: opt_ts(r, 2)?,
                })
            })
            .collect()
    }

    /// Vendors named anywhere a report looks, so a vendor with nothing to
    /// report still gets its (quiet) row.
    pub async fn report_vendors(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT vendor FROM orders UNION SELECT vendor FROM drifts
             UNION SELECT vendor FROM reconcile_runs
             UNION SELECT vendor FROM messages WHERE vendor IS NOT NULL ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    // ---- the send ledger ----

    /// Records an attempt to send `date`'s report to `recipient` as pending,
    /// unless it was already sent. Runs in one write transaction so two
    /// attempts cannot both see "not sent".
    ///
    /// A `pending` row whose attempt started less than `lease` before `now`
    /// is left to whoever started it; an older one was interrupted (crash,
    /// kill) and is taken over: "maybe sent" is sent again.
    pub async fn begin_send(
        &self,
        date: NaiveDate,
        recipient: &str,
        message_id: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<BeginSend> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT state, last_attempt_at FROM report_sends WHERE report_date = $1 AND recipient = $2",
        )
        .bind(date_text(date))
        .bind(recipient)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let state: &str = row.try_get(0)?;
            let last = parse_ts(row.try_get::<&str, _>(1)?)?;
            if state == "sent" {
                return Ok(BeginSend::AlreadySent);
            }
            if state == "pending" && last > now - lease {
                return Ok(BeginSend::InFlight);
            }
        }
        let now = ts(now);
        let attempt: i64 = sqlx::query_scalar(
            "INSERT INTO report_sends (report_date, recipient, state, attempts, created_at,
                 last_attempt_at, message_id)
             VALUES ($1, $2, 'pending', 1, $3, $4, $5)
             ON CONFLICT (report_date, recipient) DO UPDATE SET
                 state = 'pending', attempts = attempts + 1, last_attempt_at = excluded.last_attempt_at
             RETURNING attempts",
        )
        .bind(date_text(date))
        .bind(recipient)
        .bind(&now)
        .bind(&now)
        .bind(message_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(BeginSend::Go { attempt })
    }

    pub async fn finish_send(
        &self,
        date: NaiveDate,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE report_sends SET state = 'sent', sent_at = $1, last_error = NULL
             WHERE report_date = $2 AND recipient = $3",
        )
        .bind(ts(now))
        .bind(date_text(date))
        .bind(recipient)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn fail_send(&self, date: NaiveDate, recipient: &str, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE report_sends SET state = 'failed', last_error = $1
             WHERE report_date = $2 AND recipient = $3",
        )
        .bind(error)
        .bind(date_text(date))
        .bind(recipient)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every send recorded for dates from `since` on, oldest first.
    pub async fn report_sends(&self, since: NaiveDate) -> Result<Vec<SendRow>> {
        let rows = sqlx::query(
            "SELECT report_date, recipient, state, attempts, last_error, message_id, sent_at
             FROM report_sends WHERE report_date >= $1 ORDER BY report_date, recipient",
        )
        .bind(date_text(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let d: &str = r.try_get(0)?;
                let report_date = NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|e| StoreError::Corrupt(format!("report_date `{d}`: {e}")))?;
                let state = match r.try_get::<&str, _>(2)? {
                    "pending" => SendState::Pending,
                    "sent" => SendState::Sent,
                    "failed" => SendState::Failed,
                    other => return Err(StoreError::Corrupt(format!("send state `{other}`"))),
                };
                Ok(SendRow {
                    report_date,
                    recipient: r.try_get(1)?,
                    state,
                    attempts: r.try_get(3)?,
                    last_error: r.try_get(4)?,
                    message_id: r.try_get(5)?,
                    sent_at: opt_ts(r, 6)?,
                })
            })
            .collect()
    }
}
