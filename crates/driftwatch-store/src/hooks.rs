//! Webhook intake's SQL: the request, its deltas and the view update commit
//! in one transaction, so a webhook that got a 2xx is never lost, and a
//! repeated webhook-id is recognised by the unique key, not applied twice.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::orders::{append_deltas, update_views};
use super::{Result, Store, parse_ts, ts};
use crate::model::{Delta, DeltaDraft, DeltaSource};

/// A verified webhook request as received.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub vendor: String,
    pub webhook_id: String,
    pub received_at: DateTime<Utc>,
    /// JSON object of the headers kept.
    pub headers: String,
    pub body: Vec<u8>,
    /// The deltas parsed from it, or why it could not be parsed.
    pub parsed: std::result::Result<Vec<DeltaDraft>, String>,
}

/// What intake did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    Stored {
        id: i64,
        offsets: Vec<i64>,
    },
    Quarantined {
        id: i64,
    },
    /// This (vendor, webhook-id) was stored before: nothing applied.
    Duplicate {
        id: i64,
    },
}

/// A stored webhook, for `driftwatch hooks list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookRow {
    pub id: i64,
    pub vendor: String,
    pub webhook_id: String,
    pub received_at: DateTime<Utc>,
    pub disposition: String,
    pub reason: Option<String>,
    pub deltas: i64,
}

impl Store {
    pub async fn record_webhook(&self, w: &NewWebhook) -> Result<HookOutcome> {
        let mut tx = self.write_tx().await?;
        let (disposition, reason) = match &w.parsed {
            Ok(_) => ("parsed", None),
            Err(r) => ("quarantined", Some(r.as_str())),
        };
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO webhooks (vendor, webhook_id, received_at, headers, body, disposition, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (vendor, webhook_id) DO NOTHING RETURNING id",
        )
        .bind(&w.vendor)
        .bind(&w.webhook_id)
        .bind(ts(w.received_at))
        .bind(&w.headers)
        .bind(&w.body)
        .bind(disposition)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            let id =
                sqlx::query_scalar("SELECT id FROM webhooks WHERE vendor = $1 AND webhook_id = $2")
                    .bind(&w.vendor)
                    .bind(&w.webhook_id)
                    .fetch_one(&mut *tx)
                    .await?;
            return Ok(HookOutcome::Duplicate { id });
        };
        let drafts = match &w.parsed {
            Ok(d) => d,
            Err(_) => {
                tx.commit().await?;
                return Ok(HookOutcome::Quarantined { id });
            }
        };
        let offsets = apply(&mut tx, id, drafts, w.received_at).await?;
        tx.commit().await?;
        Ok(HookOutcome::Stored { id, offsets })
    }

    /// Stored webhooks, newest first.
    pub async fn webhooks(&self, limit: i64) -> Result<Vec<WebhookRow>> {
        let rows = sqlx::query(
            "SELECT w.id, w.vendor, w.webhook_id, w.received_at, w.disposition, w.reason,
                    (SELECT count(*) FROM webhook_deltas x WHERE x.webhook = w.id)
             FROM webhooks w ORDER BY w.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WebhookRow {
                    id: r.try_get(0)?,
                    vendor: r.try_get(1)?,
                    webhook_id: r.try_get(2)?,
                    received_at: parse_ts(r.try_get::<&str, _>(3)?)?,
                    disposition: r.try_get(4)?,
                    reason: r.try_get(5)?,
                    deltas: r.try_get(6)?,
                })
            })
            .collect()
    }
}

/// A stored webhook's body, for a replay.
#[derive(Debug, Clone)]
pub struct StoredWebhook {
    pub id: i64,
    pub vendor: String,
    pub received_at: DateTime<Utc>,
    pub body: Vec<u8>,
    /// Deltas it has already put in the log.
    pub deltas: i64,
}

impl Store {
    pub async fn webhook(&self, id: i64) -> Result<Option<StoredWebhook>> {
        let row = sqlx::query(
            "SELECT id, vendor, received_at, body,
                    (SELECT count(*) FROM webhook_deltas x WHERE x.webhook = w.id)
             FROM webhooks w WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredWebhook {
                id: r.try_get(0)?,
                vendor: r.try_get(1)?,
                received_at: parse_ts(r.try_get::<&str, _>(2)?)?,
                body: r.try_get(3)?,
                deltas: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// Applies a quarantined webhook parsed again (`hooks replay`), or
    /// records the new reason it still does not parse. A webhook that has
    /// deltas already is left alone: its deltas are in the log for good.
    pub async fn apply_replayed_webhook(
        &self,
        id: i64,
        received_at: DateTime<Utc>,
        parsed: &std::result::Result<Vec<DeltaDraft>, String>,
    ) -> Result<HookOutcome> {
        let mut tx = self.write_tx().await?;
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_deltas WHERE webhook = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if applied > 0 {
            return Ok(HookOutcome::Duplicate { id });
        }
        let drafts = match parsed {
            Ok(d) => d,
            Err(reason) => {
                sqlx::query("UPDATE webhooks SET reason = $1 WHERE id = $2")
                    .bind(reason)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(HookOutcome::Quarantined { id });
            }
        };
        let offsets = apply(&mut tx, id, drafts, received_at).await?;
        sqlx::query("UPDATE webhooks SET disposition = 'parsed', reason = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(HookOutcome::Stored { id, offsets })
    }
}

/// Appends a webhook's deltas, updates the view and links them to it.
async fn apply(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    drafts: &[DeltaDraft],
    received_at: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let deltas = drafts
        .iter()
        .map(|d| Delta::unlogged(DeltaSource::Webhook, d.clone(), received_at))
        .collect();
    let deltas = append_deltas(conn, deltas).await?;
    update_views(conn, &deltas).await?;
    for d in &deltas {
        sqlx::query(r#"INSERT INTO webhook_deltas ("offset", webhook) VALUES ($1, $2)"#)
            .bind(d.offset)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(deltas.iter().map(|d| d.offset).collect())
}
