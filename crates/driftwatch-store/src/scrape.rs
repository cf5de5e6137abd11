//! What `/metrics` and `/readyz` read from the database at scrape time:
//! counts the database already keeps, so they survive restarts and include
//! work done by other processes on the same database.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Result, Store, parse_ts};

/// Messages per fetch location's mailbox/folder, vendor and disposition.
#[derive(Debug, Clone)]
pub struct MessageCount {
    pub mailbox: String,
    pub folder: String,
    /// Empty when no vendor was recognised.
    pub vendor: String,
    pub disposition: String,
    pub count: i64,
}

/// A vendor's latest (non-dry-run) reconcile.
#[derive(Debug, Clone)]
pub struct LastRun {
    pub vendor: String,
    pub outcome: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// Everything a scrape reads, in one read transaction.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub messages: Vec<MessageCount>,
    /// (source, count)
    pub deltas: Vec<(String, i64)>,
    /// (vendor, kind, count)
    pub open_drifts: Vec<(String, String, i64)>,
    /// (vendor, outcome, count)
    pub runs: Vec<(String, String, i64)>,
    pub last_runs: Vec<LastRun>,
    /// Seconds from a message's Date header to its commit, for the most
    /// recent messages that have one.
    pub recent_lags: Vec<f64>,
    /// (vendor, disposition, count) of stored webhooks.
    pub webhooks: Vec<(String, String, i64)>,
}

/// How many recent messages the lag summary covers.
const LAG_WINDOW: i64 = 1000;

async fn last_runs(conn: &mut sqlx::AnyConnection) -> Result<Vec<LastRun>> {
    let rows = sqlx::query(
        "SELECT r.vendor, r.outcome, r.started_at, r.finished_at, r.reason FROM reconcile_runs r
         WHERE r.id = (SELECT max(id) FROM reconcile_runs x WHERE x.vendor = r.vendor AND x.dry_run = 0)
         ORDER BY r.vendor",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LastRun {
                vendor: r.try_get(0)?,
                outcome: r.try_get(1)?,
                started_at: parse_ts(r.try_get::<&str, _>(2)?)?,
                finished_at: r.try_get::<Option<&str>, _>(3)?.map(parse_ts).transpose()?,
                reason: r.try_get(4)?,
            })
        })
        .collect()
}

impl Store {
    /// Each vendor's latest reconcile, for `/readyz`.
    pub async fn last_reconcile_runs(&self) -> Result<Vec<LastRun>> {
        let mut conn = self.pool.acquire().await?;
        last_runs(&mut conn).await
    }

    pub async fn scrape(&self) -> Result<Scrape> {
        let mut tx = self.read_tx().await?;
        let messages = sqlx::query(
            "SELECT l.source, l.folder, coalesce(m.vendor, ''), m.disposition, count(*)
             FROM message_locations l JOIN messages m ON m.id = l.message
             GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(MessageCount {
                mailbox: r.try_get(0)?,
                folder: r.try_get(1)?,
                vendor: r.try_get(2)?,
                disposition: r.try_get(3)?,
                count: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let deltas = sqlx::query_as::<_, (String, i64)>(
            "SELECT source, count(*) FROM deltas GROUP BY source ORDER BY source",
        )
        .fetch_all(&mut *tx)
        .await?;
        let open_drifts = sqlx::query_as::<_, (String, String, i64)>(
            "SELECT vendor, kind, count(*) FROM drifts WHERE closed_at IS NULL
             GROUP BY vendor, kind ORDER BY vendor, kind",
        )
        .fetch_all(&mut *tx)
        .await?;
        let runs = sqlx::query_as::<_, (String, String, i64)>(
            "SELECT vendor, outcome, count(*) FROM reconcile_runs WHERE dry_run = 0
             GROUP BY vendor, outcome ORDER BY vendor, outcome",
        )
        .fetch_all(&mut *tx)
        .await?;
        let last_runs = last_runs(&mut tx).await?;
        let recent_lags = sqlx::query_as::<_, (String, String)>(
            "SELECT archived_at, date_header FROM messages WHERE date_header IS NOT NULL
             ORDER BY id DESC LIMIT $1",
        )
        .bind(LAG_WINDOW)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|(archived, sent)| {
            let lag = parse_ts(archived)? - parse_ts(sent)?;
            Ok(lag.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6)
        })
        .collect::<Result<Vec<f64>>>()?;
        let webhooks = sqlx::query_as::<_, (String, String, i64)>(
            "SELECT vendor, disposition, count(*) FROM webhooks
             GROUP BY vendor, disposition ORDER BY vendor, disposition",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Scrape {
            webhooks,
            messages,
            deltas,
            open_drifts,
            runs,
            last_runs,
            recent_lags,
        })
    }
}
