//! Webhook intake's SQL: the request, its deltas and the view update commit
//! in one transaction, so a webhook that got a 2xx is never lost, and a
//! repeated webhook-id is recognised by the unique key, not applied twice.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::orders::{append_deltas, update_views};
use super::{Result, Store, StoreError, parse_ts, ts};

/// Rows per multi-row statement (within both backends' parameter limits).
const INSERT_BATCH: usize = 400;
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
        let mut out = self.record_webhooks(std::slice::from_ref(w)).await?;
        out.pop()
            .ok_or_else(|| StoreError::Corrupt("a webhook write returned no outcome".into()))
    }

    /// Records several webhooks in one transaction (group commit: intake
    /// gathers the requests that arrive while the previous commit runs), each
    /// with the outcome `record_webhook` would give it, in order. Multi-row
    /// statements: the cost of a commit is paid once for all of them.
    pub async fn record_webhooks(&self, ws: &[NewWebhook]) -> Result<Vec<HookOutcome>> {
        let mut tx = self.write_tx().await?;
        let mut known: HashMap<(&str, &str), i64> = HashMap::new();
        let mut by_vendor: HashMap<&str, Vec<&str>> = HashMap::new();
        for w in ws {
            by_vendor
                .entry(w.vendor.as_str())
                .or_default()
                .push(w.webhook_id.as_str());
        }
        for (vendor, ids) in &by_vendor {
            for chunk in ids.chunks(INSERT_BATCH) {
                let sql = format!(
                    "SELECT id, webhook_id FROM webhooks WHERE vendor = $1 AND webhook_id IN ({})",
                    super::list_placeholders(2, chunk.len())
                );
                let mut q = sqlx::query_as::<_, (i64, String)>(super::bulk(&tx, sql)).bind(*vendor);
                for id in chunk {
                    q = q.bind(*id);
                }
                for (id, hook_id) in q.fetch_all(&mut *tx).await? {
                    if let Some(k) = chunk.iter().find(|x| **x == hook_id) {
                        known.insert((vendor, k), id);
                    }
                }
            }
        }
        // Ids assigned here, under the write lock, so each request's row is
        // known without relying on the order of a multi-row RETURNING.
        let mut next_id: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) + 1 FROM webhooks")
            .fetch_one(&mut *tx)
            .await?;
        let mut new_rows: Vec<(i64, &NewWebhook)> = Vec::new();
        let mut ids: Vec<(i64, bool)> = Vec::with_capacity(ws.len());
        for w in ws {
            match known.get(&(w.vendor.as_str(), w.webhook_id.as_str())) {
                Some(&id) => ids.push((id, false)),
                None => {
                    let id = next_id;
                    next_id += 1;
                    known.insert((w.vendor.as_str(), w.webhook_id.as_str()), id);
                    new_rows.push((id, w));
                    ids.push((id, true));
                }
            }
        }
        for chunk in new_rows.chunks(INSERT_BATCH) {
            let sql = format!(
                "INSERT INTO webhooks (id, vendor, webhook_id, received_at, headers, body, disposition, reason)
                 VALUES {}",
                super::row_placeholders(1, 8, chunk.len())
            );
            let mut q = sqlx::query(super::bulk(&tx, sql));
            for (id, w) in chunk {
                let (disposition, reason) = match &w.parsed {
                    Ok(_) => ("parsed", None),
                    Err(r) => ("quarantined", Some(r.as_str())),
                };
                q = q
                    .bind(*id)
                    .bind(&w.vendor)
                    .bind(&w.webhook_id)
                    .bind(ts(w.received_at))
                    .bind(&w.headers)
                    .bind(&w.body)
                    .bind(disposition)
                    .bind(reason);
            }
            q.execute(&mut *tx).await?;
        }
        let applied: Vec<(i64, &[DeltaDraft], DateTime<Utc>)> = new_rows
            .iter()
            .filter_map(|(id, w)| w.parsed.as_ref().ok().map(|d| (*id, &d[..], w.received_at)))
            .collect();
        let mut offsets = apply(&mut tx, &applied).await?;
        tx.commit().await?;
        Ok(ws
            .iter()
            .zip(ids)
            .map(|(w, (id, new))| match (new, &w.parsed) {
                (false, _) => HookOutcome::Duplicate { id },
                (true, Err(_)) => HookOutcome::Quarantined { id },
                (true, Ok(_)) => HookOutcome::Stored {
                    id,
                    offsets: offsets.remove(&id).unwrap_or_default(),
                },
            })
            .collect())
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
        let offsets = apply(&mut tx, &[(id, &drafts[..], received_at)])
            .await?
            .remove(&id)
            .unwrap_or_default();
        sqlx::query("UPDATE webhooks SET disposition = 'parsed', reason = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(HookOutcome::Stored { id, offsets })
    }
}

/// Appends webhooks' deltas, updates the view and links each delta to its
/// webhook. Returns the offsets per webhook id.
async fn apply(
    conn: &mut sqlx::AnyConnection,
    hooks: &[(i64, &[DeltaDraft], DateTime<Utc>)],
) -> Result<HashMap<i64, Vec<i64>>> {
    let mut owner = Vec::new();
    let mut deltas = Vec::new();
    for (id, drafts, received_at) in hooks {
        for d in *drafts {
            owner.push(*id);
            deltas.push(Delta::unlogged(
                DeltaSource::Webhook,
                d.clone(),
                *received_at,
            ));
        }
    }
    let deltas = append_deltas(conn, deltas).await?;
    update_views(conn, &deltas).await?;
    let links: Vec<(i64, i64)> = deltas.iter().map(|d| d.offset).zip(owner).collect();
    for chunk in links.chunks(INSERT_BATCH) {
        let sql = format!(
            r#"INSERT INTO webhook_deltas ("offset", webhook) VALUES {}"#,
            super::row_placeholders(1, 2, chunk.len())
        );
        let mut q = sqlx::query(super::bulk(conn, sql));
        for (offset, id) in chunk {
            q = q.bind(*offset).bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    for (offset, id) in links {
        out.entry(id).or_default().push(offset);
    }
    Ok(out)
}
