//! The outbox of outbound webhooks: events written in the same transaction
//! as the change they report, and the deliveries that carry them to each
//! subscription.
//!
//! Writers call one function per transaction (`record_run`,
//! `record_quarantined`, `record_format_alert`, `Store::record_silence`);
//! nothing here sends anything. The delivery worker (`http::outbound`)
//! moves events into per-subscription deliveries (`enqueue`), claims due
//! ones under the write lock with a lease (`claim`), and records each
//! attempt (`finish`), so two instances never both send a delivery unless
//! one of them stopped holding its lease.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::Row;

use super::{ArchivedMessage, Disposition, FormatAlert, Result, Store, StoreError, parse_ts, ts};

/// What an outbound webhook reports. The wire name (`drift.opened`) is the
/// Standard Webhooks `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
pub enum EventType {
    #[serde(rename = "drift.opened")]
    DriftOpened,
    #[serde(rename = "drift.closed")]
    DriftClosed,
    #[serde(rename = "keyframe.refused")]
    KeyframeRefused,
    #[serde(rename = "reconcile.failed")]
    ReconcileFailed,
    #[serde(rename = "format.changed")]
    FormatChanged,
    #[serde(rename = "vendor.silent")]
    VendorSilent,
    #[serde(rename = "mail.quarantined")]
    MailQuarantined,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::DriftOpened,
        EventType::DriftClosed,
        EventType::KeyframeRefused,
        EventType::ReconcileFailed,
        EventType::FormatChanged,
        EventType::VendorSilent,
        EventType::MailQuarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::DriftOpened => "drift.opened",
            EventType::DriftClosed => "drift.closed",
            EventType::KeyframeRefused => "keyframe.refused",
            EventType::ReconcileFailed => "reconcile.failed",
            EventType::FormatChanged => "format.changed",
            EventType::VendorSilent => "vendor.silent",
            EventType::MailQuarantined => "mail.quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One event to write.
#[derive(Debug, Clone)]
struct NewEvent {
    /// What happened, uniquely: a second record of it is dropped.
    key: String,
    kind: EventType,
    vendor: Option<String>,
    occurred_at: DateTime<Utc>,
    /// The event's `data` object, as JSON text.
    data: String,
}

/// Rows per multi-row insert (7 parameters each).
const INSERT_BATCH: usize = 500;

async fn insert(conn: &mut sqlx::AnyConnection, events: &[NewEvent]) -> Result<()> {
    for chunk in events.chunks(INSERT_BATCH) {
        let sql = format!(
            "INSERT INTO outbox_events (event_key, type, vendor, occurred_at, payload) VALUES {}
             ON CONFLICT (event_key) DO NOTHING",
            super::row_placeholders(1, 5, chunk.len())
        );
        let mut q = sqlx::query(super::bulk(conn, sql));
        for e in chunk {
            q = q
                .bind(&e.key)
                .bind(e.kind.as_str())
                .bind(&e.vendor)
                .bind(ts(e.occurred_at))
                .bind(&e.data);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A reconcile run's events, inside `record_run`'s transaction: each drift
/// it opened, each it closed, and the run itself when refused or failed.
pub(crate) async fn record_run(conn: &mut sqlx::AnyConnection, run_id: i64) -> Result<()> {
    let run = sqlx::query(
        "SELECT vendor, outcome, reason, finished_at, source FROM reconcile_runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_one(&mut *conn)
    .await?;
    let vendor: String = run.try_get(0)?;
    let outcome: String = run.try_get(1)?;
    let reason: Option<String> = run.try_get(2)?;
    let finished: Option<String> = run.try_get(3)?;
    let source: Option<String> = run.try_get(4)?;
    let at = finished
        .as_deref()
        .map(parse_ts)
        .transpose()?
        .unwrap_or_else(Utc::now);
    let mut events = Vec::new();
    let run_event = match outcome.as_str() {
        "refused" => Some(EventType::KeyframeRefused),
        "failed" => Some(EventType::ReconcileFailed),
        _ => None,
    };
    if let Some(kind) = run_event {
        events.push(NewEvent {
            key: format!("{}:{run_id}", kind.as_str()),
            kind,
            vendor: Some(vendor.clone()),
            occurred_at: at,
            data: json!({"run": run_id, "vendor": vendor, "source": source, "reason": reason})
                .to_string(),
        });
    }
    // Opened by this run, and closed by it (fixed, agreed, not seen again):
    // every close of the run carries its `finished_at`.
    let sql = format!(
        "SELECT {DRIFT_EVENT_COLUMNS} FROM drifts
         WHERE first_run = $1 OR (vendor = $2 AND closed_at = $3) ORDER BY id"
    );
    let rows = sqlx::query(super::bulk(conn, sql))
        .bind(run_id)
        .bind(&vendor)
        .bind(finished.as_deref().unwrap_or(""))
        .fetch_all(&mut *conn)
        .await?;
    for r in &rows {
        let id: i64 = r.try_get(0)?;
        let first_run: i64 = r.try_get(8)?;
        let closed_at: Option<&str> = r.try_get(10)?;
        // Serialised from borrowed columns: a run that fixes thousands of
        // orders writes two events for each, and building a JSON map per
        // event showed in the fix benchmark.
        let data = serde_json::to_string(&DriftEventData {
            cause: r.try_get(7)?,
            closed_at,
            closed_reason: r.try_get(11)?,
            drift: id,
            field: r.try_get(4)?,
            fix_delta: r.try_get(12)?,
            kind: r.try_get(3)?,
            local_value: r.try_get(5)?,
            opened_at: r.try_get(9)?,
            order_ref: r.try_get(2)?,
            remote_value: r.try_get(6)?,
            run: run_id,
            vendor: r.try_get(1)?,
        })
        .map_err(|e| StoreError::Corrupt(format!("drift event does not serialise: {e}")))?;
        if first_run == run_id {
            events.push(NewEvent {
                key: format!("drift.opened:{id}"),
                kind: EventType::DriftOpened,
                vendor: Some(vendor.clone()),
                occurred_at: at,
                data: data.clone(),
            });
        }
        if closed_at.is_some() {
            events.push(NewEvent {
                key: format!("drift.closed:{id}"),
                kind: EventType::DriftClosed,
                vendor: Some(vendor.clone()),
                occurred_at: at,
                data,
            });
        }
    }
    insert(conn, &events).await
}

/// A drift event's `data`. Fields in name order: the JSON text is what
/// `json!` wrote before (serde_json's maps sort their keys).
#[derive(serde::Serialize)]
struct DriftEventData<'a> {
    cause: &'a str,
    closed_at: Option<&'a str>,
    closed_reason: Option<&'a str>,
    drift: i64,
    field: Option<&'a str>,
    fix_delta: Option<i64>,
    kind: &'a str,
    local_value: Option<&'a str>,
    opened_at: &'a str,
    order_ref: &'a str,
    remote_value: Option<&'a str>,
    run: i64,
    vendor: &'a str,
}

const DRIFT_EVENT_COLUMNS: &str = "id, vendor, order_ref, kind, field, local_value, remote_value,
    cause, first_run, opened_at, closed_at, closed_reason, fix_delta";

/// `mail.quarantined` for each newly archived quarantined message of an
/// ingest batch, inside the batch's transaction.
pub(crate) async fn record_quarantined(
    conn: &mut sqlx::AnyConnection,
    messages: &[(i64, &ArchivedMessage)],
    now: DateTime<Utc>,
) -> Result<()> {
    let events: Vec<NewEvent> = messages
        .iter()
        .filter(|(_, m)| m.disposition == Disposition::Quarantined)
        .map(|(id, m)| NewEvent {
            key: format!("mail.quarantined:{id}"),
            kind: EventType::MailQuarantined,
            vendor: m.vendor.clone(),
            occurred_at: now,
            data: json!({
                "message": id,
                "vendor": m.vendor,
                "sender": m.sender,
                "subject": m.subject,
                "date": m.date_header.map(|d| d.to_rfc3339()),
                "reason": m.reason,
            })
            .to_string(),
        })
        .collect();
    insert(conn, &events).await
}

/// `format.changed` for a format alert, in the transaction that stores it.
pub(crate) async fn record_format_alert(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    a: &FormatAlert,
) -> Result<()> {
    let e = NewEvent {
        key: format!("format.changed:{id}"),
        kind: EventType::FormatChanged,
        vendor: Some(a.vendor.clone()),
        occurred_at: a.detected_at,
        data: json!({
            "alert": id,
            "vendor": a.vendor,
            "kind": a.kind,
            "field": a.field,
            "baseline": a.baseline,
            "current": a.current,
            "detail": a.detail,
        })
        .to_string(),
    };
    insert(conn, std::slice::from_ref(&e)).await
}

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub subscription: String,
    pub event: i64,
    pub kind: EventType,
    pub occurred_at: DateTime<Utc>,
    /// The event's `data` (JSON text), as written when it happened.
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; tried again at `retry_at`.
    Retry {
        retry_at: DateTime<Utc>,
    },
    /// Failed for the last time: no more attempts.
    Dead,
}

impl AttemptOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry { .. } => "retry",
            AttemptOutcome::Dead => "dead",
        }
    }
}

/// One attempt to record.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub subscription: String,
    pub event: i64,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// An attempt as `driftwatch hooks deliveries` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptRow {
    pub subscription: String,
    pub event: i64,
    pub event_type: String,
    pub vendor: Option<String>,
    pub attempt: i64,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub outcome: String,
}

/// Per subscription: attempts by outcome, and deliveries still pending.
#[derive(Debug, Clone, Default)]
pub struct OutboundCounts {
    /// (subscription, outcome, count)
    pub attempts: Vec<(String, String, i64)>,
    /// (subscription, state, count)
    pub deliveries: Vec<(String, String, i64)>,
}

impl Store {
    /// `vendor.silent` once per silence: the key holds the vendor's last
    /// mail time, so every instance noticing the same silence records one
    /// event, and mail followed by a new silence records another.
    pub async fn record_silence(
        &self,
        vendor: &str,
        last_mail_at: Option<DateTime<Utc>>,
        silent_after_hours: u32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let last = last_mail_at.map(ts);
        let e = NewEvent {
            key: format!(
                "vendor.silent:{vendor}:{}",
                last.as_deref().unwrap_or("never")
            ),
            kind: EventType::VendorSilent,
            vendor: Some(vendor.to_string()),
            occurred_at: now,
            data: json!({
                "vendor": vendor,
                "last_mail_at": last_mail_at.map(|t| t.to_rfc3339()),
                "silent_after_hours": silent_after_hours,
            })
            .to_string(),
        };
        let mut tx = self.write_tx().await?;
        insert(&mut tx, std::slice::from_ref(&e)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves new events into deliveries for each subscription that wants
    /// them; a subscription seen for the first time starts at the outbox's
    /// end. Returns how many deliveries were created.
    pub async fn outbox_enqueue(
        &self,
        subscriptions: &[(String, Vec<EventType>)],
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64> {
        // Most passes find nothing new: ask without the write lock first.
        let sql = format!(
            "SELECT count(*), coalesce(sum(CASE WHEN last_event < (SELECT coalesce(max(id), 0)
                 FROM outbox_events) THEN 1 ELSE 0 END), 0) FROM outbox_cursors
             WHERE subscription IN ({})",
            super::list_placeholders(1, subscriptions.len().max(1))
        );
        let mut q = sqlx::query_as::<_, (i64, i64)>(super::bulk_for(self.backend, sql));
        if subscriptions.is_empty() {
            q = q.bind("");
        }
        for (name, _) in subscriptions {
            q = q.bind(name);
        }
        let (cursors, behind) = q.fetch_one(&self.pool).await?;
        if behind == 0 && cursors >= subscriptions.len() as i64 {
            return Ok(0);
        }
        let mut tx = self.write_tx().await?;
        let mut created = 0;
        for (name, wanted) in subscriptions {
            let cursor: Option<i64> =
                sqlx::query_scalar("SELECT last_event FROM outbox_cursors WHERE subscription = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(cursor) = cursor else {
                sqlx::query(
                    "INSERT INTO outbox_cursors (subscription, last_event)
                     SELECT $1, coalesce(max(id), 0) FROM outbox_events",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
                continue;
            };
            let rows = sqlx::query_as::<_, (i64, String)>(
                "SELECT id, type FROM outbox_events WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(cursor)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let Some((last, _)) = rows.last() else {
                continue;
            };
            let due: Vec<i64> = rows
                .iter()
                .filter(|(_, t)| EventType::parse(t).is_some_and(|t| wanted.contains(&t)))
                .map(|(id, _)| *id)
                .collect();
            for chunk in due.chunks(INSERT_BATCH) {
                let sql = format!(
                    "INSERT INTO outbox_deliveries (subscription, event, state, next_attempt_at) VALUES {}
                     ON CONFLICT (subscription, event) DO NOTHING",
                    super::row_placeholders(1, 4, chunk.len())
                );
                let mut q = sqlx::query(super::bulk(&tx, sql));
                for id in chunk {
                    q = q.bind(name).bind(id).bind("pending").bind(ts(now));
                }
                created += q.execute(&mut *tx).await?.rows_affected();
            }
            sqlx::query("UPDATE outbox_cursors SET last_event = $1 WHERE subscription = $2")
                .bind(last)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Claims up to `limit` due deliveries of `subscriptions` for `holder`
    /// until `now + lease`, under the write lock: another instance sees
    /// them leased and leaves them alone.
    pub async fn outbox_claim(
        &self,
        subscriptions: &[String],
        holder: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        if subscriptions.is_empty() {
            return Ok(Vec::new());
        }
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM outbox_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 LIMIT 1",
        )
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT d.subscription, d.event, e.type, e.occurred_at, e.payload, d.attempts
             FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event
             WHERE d.state = 'pending' AND d.next_attempt_at <= $1
               AND (d.lease_until IS NULL OR d.lease_until < $2)
               AND d.subscription IN ({})
             ORDER BY d.next_attempt_at, d.event LIMIT ${}",
            super::list_placeholders(3, subscriptions.len()),
            subscriptions.len() + 3
        );
        let now_s = ts(now);
        let mut q = sqlx::query(super::bulk(&tx, sql)).bind(&now_s).bind(&now_s);
        for s in subscriptions {
            q = q.bind(s);
        }
        let rows = q.bind(limit).fetch_all(&mut *tx).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get(2)?;
            out.push(Claimed {
                subscription: r.try_get(0)?,
                event: r.try_get(1)?,
                kind: EventType::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("outbox event type `{kind}`")))?,
                occurred_at: parse_ts(r.try_get::<&str, _>(3)?)?,
                payload: r.try_get(4)?,
                attempts: r.try_get(5)?,
            });
        }
        let until = ts(now + lease);
        for c in &out {
            sqlx::query(
                "UPDATE outbox_deliveries SET lease_holder = $1, lease_until = $2
                 WHERE subscription = $3 AND event = $4",
            )
            .bind(holder)
            .bind(&until)
            .bind(&c.subscription)
            .bind(c.event)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records an attempt and moves its delivery on, if `holder` still holds
    /// it (a lease that ran out may have passed it to another instance,
    /// whose record then stands). Returns whether the delivery was updated.
    pub async fn outbox_finish(&self, holder: &str, a: &Attempt) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let attempt: i64 = sqlx::query_scalar(
            "SELECT count(*) + 1 FROM outbox_attempts WHERE subscription = $1 AND event = $2",
        )
        .bind(&a.subscription)
        .bind(a.event)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO outbox_attempts (subscription, event, attempt, attempted_at, duration_ms,
                 status_code, error, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&a.subscription)
        .bind(a.event)
        .bind(attempt)
        .bind(ts(a.attempted_at))
        .bind(a.duration_ms)
        .bind(a.status_code.map(i64::from))
        .bind(&a.error)
        .bind(a.outcome.as_str())
        .execute(&mut *tx)
        .await?;
        let (state, next, delivered) = match a.outcome {
            AttemptOutcome::Delivered => ("delivered", a.attempted_at, Some(ts(a.attempted_at))),
            AttemptOutcome::Retry { retry_at } => ("pending", retry_at, None),
            AttemptOutcome::Dead => ("dead", a.attempted_at, None),
        };
        let updated = sqlx::query(
            "UPDATE outbox_deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2,
                 delivered_at = $3, lease_holder = NULL, lease_until = NULL
             WHERE subscription = $4 AND event = $5 AND lease_holder = $6",
        )
        .bind(state)
        .bind(ts(next))
        .bind(delivered)
        .bind(&a.subscription)
        .bind(a.event)
        .bind(holder)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated > 0)
    }

    /// Delivery attempts, newest first (`driftwatch hooks deliveries`).
    pub async fn outbox_attempts(
        &self,
        subscription: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AttemptRow>> {
        let rows = sqlx::query(
            "SELECT a.subscription, a.event, e.type, e.vendor, a.attempt, a.attempted_at,
                    a.duration_ms, a.status_code, a.error, a.outcome
             FROM outbox_attempts a JOIN outbox_events e ON e.id = a.event
             WHERE ($1 = '' OR a.subscription = $1)
             ORDER BY a.id DESC LIMIT $2",
        )
        .bind(subscription.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    subscription: r.try_get(0)?,
                    event: r.try_get(1)?,
                    event_type: r.try_get(2)?,
                    vendor: r.try_get(3)?,
                    attempt: r.try_get(4)?,
                    attempted_at: parse_ts(r.try_get::<&str, _>(5)?)?,
                    duration_ms: r.try_get(6)?,
                    status_code: r.try_get(7)?,
                    error: r.try_get(8)?,
                    outcome: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Attempts by outcome and deliveries by state, per subscription (`/metrics`).
    pub async fn outbound_counts(&self) -> Result<OutboundCounts> {
        let attempts = sqlx::query_as::<_, (String, String, i64)>(
            "SELECT subscription, outcome, count(*) FROM outbox_attempts
             GROUP BY subscription, outcome ORDER BY subscription, outcome",
        )
        .fetch_all(&self.pool)
        .await?;
        let deliveries = sqlx::query_as::<_, (String, String, i64)>(
            "SELECT subscription, state, count(*) FROM outbox_deliveries
             GROUP BY subscription, state ORDER BY subscription, state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(OutboundCounts {
            attempts,
            deliveries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Subscribers already stored events written by `json!`: the struct
    /// writes the same text, key for key, with and without the optional parts.
    #[test]
    fn drift_event_data_is_the_json_it_replaced() {
        for (closed, field) in [
            (None, None),
            (Some("2026-12-02T10:00:00.000000Z"), Some("fee")),
        ] {
            let data = DriftEventData {
                cause: "late_email",
                closed_at: closed,
                closed_reason: closed.map(|_| "fixed"),
                drift: 42,
                field,
                fix_delta: closed.map(|_| 7),
                kind: "status_mismatch",
                local_value: Some("\"scheduled\""),
                opened_at: "2026-12-01T10:00:00.000000Z",
                order_ref: "A-1 \"quoted\"",
                remote_value: None,
                run: 3,
                vendor: "acme",
            };
            let old = json!({
                "drift": 42,
                "vendor": "acme",
                "order_ref": "A-1 \"quoted\"",
                "kind": "status_mismatch",
                "field": field,
                "local_value": Some("\"scheduled\""),
                "remote_value": None::<&str>,
                "cause": "late_email",
                "run": 3,
                "opened_at": "2026-12-01T10:00:00.000000Z",
                "closed_at": closed,
                "closed_reason": closed.map(|_| "fixed"),
                "fix_delta": closed.map(|_| 7),
            });
            assert_eq!(serde_json::to_string(&data).unwrap(), old.to_string());
        }
    }
}
