//! The dashboard's SQL: sign-in sessions, the actions people take (each one
//! recorded with who, when and what), and the reads behind its pages that
//! the API's paged lists do not cover.
//!
//! Portable on purpose (SQLite and PostgreSQL): `$N` placeholders, columns
//! read by name, timestamps as [`ts`] text, no backend-only functions.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{DriftRow, Result, Store, StoreError, parse_enum, parse_ts, ts};
use driftwatch_core::reconcile::drift::{Cause, DriftKind};

/// The backend's row type, named once.
type DbRow = sqlx::any::AnyRow;

/// A signed-in browser, found by the digest of its cookie.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub token_name: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

pub use crate::model::{ActionKind, ActionRow};

/// The stored word of an action kind, read back.
fn parse_action_kind(s: &str) -> Result<ActionKind> {
    match s {
        "acknowledge_drift" => Ok(ActionKind::AcknowledgeDrift),
        "mute_silence" => Ok(ActionKind::MuteSilence),
        "release_message" => Ok(ActionKind::ReleaseMessage),
        other => Err(StoreError::Corrupt(format!("dashboard action `{other}`"))),
    }
}

/// An action to record: who, what, and what it was about.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub actor: String,
    pub kind: ActionKind,
    pub vendor: Option<String>,
    pub drift: Option<i64>,
    pub message: Option<i64>,
    pub note: Option<String>,
    pub mute_until: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
}

impl NewAction {
    pub fn new(actor: &str, kind: ActionKind) -> NewAction {
        NewAction {
            actor: actor.to_string(),
            kind,
            vendor: None,
            drift: None,
            message: None,
            note: None,
            mute_until: None,
            outcome: None,
        }
    }
}

/// Per vendor, what the at-a-glance page adds to [`super::VendorSummary`].
#[derive(Debug, Clone, Default)]
pub struct VendorGlance {
    pub last_key_frame_rows: Option<i64>,
    /// The outcome of the vendor's latest reconcile run (`ok`, `refused`, ...)
    /// and why: the guard's decision on the last key frame.
    pub last_run_outcome: Option<String>,
    pub last_run_reason: Option<String>,
    pub format_alerts: i64,
    pub latest_alert: Option<String>,
    pub muted_until: Option<DateTime<Utc>>,
}

/// The drifts list's filters; `opened_before` is the age filter.
#[derive(Debug, Clone, Default)]
pub struct DriftFilter {
    pub vendor: Option<String>,
    pub kind: Option<DriftKind>,
    pub cause: Option<Cause>,
    pub opened_before: Option<DateTime<Utc>>,
    pub order_ref: Option<String>,
    /// Closed drifts too (an order's timeline shows them all).
    pub include_closed: bool,
}

/// A drift as the dashboard lists it, with its latest acknowledgement.
#[derive(Debug, Clone)]
pub struct DashDrift {
    pub drift: DriftRow,
    /// (who, when, note) of the latest acknowledgement.
    pub acknowledged: Option<(String, DateTime<Utc>, String)>,
}

/// One key frame with the reconcile run that used it.
#[derive(Debug, Clone)]
pub struct KeyFrameRow {
    pub id: i64,
    pub vendor: String,
    pub source: String,
    pub as_of: DateTime<Utc>,
    pub fetched_at: DateTime<Utc>,
    pub row_count: i64,
    pub complete: bool,
    pub run_outcome: Option<String>,
    pub run_reason: Option<String>,
    pub drifts: i64,
    pub fixed: i64,
}

/// Drift kinds, worst first: a missing order hides work, a wrong status
/// misleads, a wrong field is a detail.
const KIND_RANK: &str = "CASE d.kind WHEN 'missing_local' THEN 0 WHEN 'status_mismatch' THEN 1
     WHEN 'missing_remote' THEN 2 ELSE 3 END";

fn opt_ts(r: &DbRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    r.try_get::<Option<String>, _>(col)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

fn req_ts(r: &DbRow, col: &str) -> Result<DateTime<Utc>> {
    parse_ts(&r.try_get::<String, _>(col)?)
}

const ACTION_COLUMNS: &str = "id, acted_at, actor, action, vendor, order_ref, drift, message, note,
     mute_until, outcome";

fn action_from_row(r: &DbRow) -> Result<ActionRow> {
    Ok(ActionRow {
        id: r.try_get("id")?,
        acted_at: req_ts(r, "acted_at")?,
        actor: r.try_get("actor")?,
        kind: parse_action_kind(&r.try_get::<String, _>("action")?)?,
        vendor: r.try_get("vendor")?,
        order_ref: r.try_get("order_ref")?,
        drift: r.try_get("drift")?,
        message: r.try_get("message")?,
        note: r.try_get("note")?,
        mute_until: opt_ts(r, "mute_until")?,
        outcome: r.try_get("outcome")?,
    })
}

impl Store {
    /// Records a new session and drops expired ones.
    pub async fn create_session(
        &self,
        id_digest: &str,
        token_name: &str,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_digest, token_name, csrf, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_digest)
        .bind(token_name)
        .bind(csrf)
        .bind(ts(now))
        .bind(ts(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The unexpired session with this digest.
    pub async fn session(&self, id_digest: &str, now: DateTime<Utc>) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT token_name, csrf, expires_at FROM dashboard_sessions
             WHERE id_digest = $1 AND expires_at > $2",
        )
        .bind(id_digest)
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                token_name: r.try_get("token_name")?,
                csrf: r.try_get("csrf")?,
                expires_at: req_ts(&r, "expires_at")?,
            })
        })
        .transpose()
    }

    pub async fn end_session(&self, id_digest: &str) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_digest = $1")
            .bind(id_digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records an action; for an acknowledgement, the drift's vendor and
    /// order are looked up and `None` is returned when there is no such drift.
    pub async fn record_action(&self, a: &NewAction, now: DateTime<Utc>) -> Result<Option<i64>> {
        let mut tx = self.write_tx().await?;
        let (mut vendor, mut order_ref) = (a.vendor.clone(), None);
        if let Some(drift) = a.drift {
            let Some(row) = sqlx::query("SELECT vendor, order_ref FROM drifts WHERE id = $1")
                .bind(drift)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            vendor = Some(row.try_get("vendor")?);
            order_ref = Some(row.try_get::<String, _>("order_ref")?);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dashboard_actions
                 (acted_at, actor, action, vendor, order_ref, drift, message, note, mute_until, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(ts(now))
        .bind(&a.actor)
        .bind(a.kind.as_str())
        .bind(vendor)
        .bind(order_ref)
        .bind(a.drift)
        .bind(a.message)
        .bind(&a.note)
        .bind(a.mute_until.map(ts))
        .bind(&a.outcome)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Actions taken in `[from, to)`, oldest first.
    pub async fn actions_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ActionRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM dashboard_actions
             WHERE acted_at >= $1 AND acted_at < $2 ORDER BY acted_at, id"
        )))
        .bind(ts(from))
        .bind(ts(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    /// Vendors whose silence alert is muted at `at`: by the latest mute
    /// recorded by then, which lasts past `at`.
    pub async fn muted_vendors(&self, at: DateTime<Utc>) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT a.vendor FROM dashboard_actions a
             WHERE a.action = 'mute_silence' AND a.mute_until > $1
               AND a.id = (SELECT max(x.id) FROM dashboard_actions x
                           WHERE x.action = 'mute_silence' AND x.vendor = a.vendor
                             AND x.acted_at <= $1)",
        )
        .bind(ts(at))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("vendor")?))
            .collect()
    }

    /// Actions about one order: acknowledgements of its drifts, and the
    /// release of any message that produced one of its deltas.
    pub async fn order_actions(&self, vendor: &str, order_ref: &str) -> Result<Vec<ActionRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLUMNS} FROM dashboard_actions
             WHERE (vendor = $1 AND order_ref = $2)
                OR message IN (SELECT d.message FROM deltas d
                               WHERE d.vendor = $1 AND d.order_ref = $2 AND d.message IS NOT NULL)
             ORDER BY acted_at, id"
        )))
        .bind(vendor)
        .bind(order_ref)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    /// What the vendors page shows beyond [`Store::vendor_summaries`], for `vendor`.
    /// Alerts count from `alerts_since`; a mute counts while it lasts past `now`.
    pub async fn vendor_glance(
        &self,
        vendor: &str,
        alerts_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<VendorGlance> {
        let run = sqlx::query(
            "SELECT r.outcome, r.reason, k.row_count FROM reconcile_runs r
             LEFT JOIN key_frames k ON k.id = r.key_frame
             WHERE r.vendor = $1 ORDER BY r.id DESC LIMIT 1",
        )
        .bind(vendor)
        .fetch_optional(&self.pool)
        .await?;
        let alerts = sqlx::query(
            "SELECT count(*) AS n, max(detected_at) AS latest FROM format_alerts
             WHERE vendor = $1 AND detected_at >= $2",
        )
        .bind(vendor)
        .bind(ts(alerts_since))
        .fetch_one(&self.pool)
        .await?;
        let latest_alert: Option<String> = match alerts.try_get::<Option<String>, _>("latest")? {
            Some(at) => {
                sqlx::query_scalar(
                    "SELECT detail FROM format_alerts WHERE vendor = $1 AND detected_at = $2
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(vendor)
                .bind(at)
                .fetch_optional(&self.pool)
                .await?
            }
            None => None,
        };
        let mute: Option<String> = sqlx::query_scalar(
            "SELECT mute_until FROM dashboard_actions
             WHERE action = 'mute_silence' AND vendor = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(vendor)
        .fetch_optional(&self.pool)
        .await?;
        let muted_until = mute
            .as_deref()
            .map(parse_ts)
            .transpose()?
            .filter(|u| *u > now);
        Ok(VendorGlance {
            last_key_frame_rows: match &run {
                Some(r) => r.try_get("row_count")?,
                None => None,
            },
            last_run_outcome: run.as_ref().map(|r| r.try_get("outcome")).transpose()?,
            last_run_reason: match &run {
                Some(r) => r.try_get("reason")?,
                None => None,
            },
            format_alerts: alerts.try_get("n")?,
            latest_alert,
            muted_until,
        })
    }

    /// Drifts worst first (kind, then oldest), each with its latest acknowledgement.
    pub async fn dashboard_drifts(&self, f: &DriftFilter, limit: i64) -> Result<Vec<DashDrift>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT d.id, d.vendor, d.order_ref, d.kind, d.field, d.local_value, d.remote_value,
                 d.cause, d.seen_count, d.opened_at, d.closed_at, d.closed_reason, d.fix_delta,
                 a.actor AS ack_actor, a.acted_at AS ack_at, a.note AS ack_note
             FROM drifts d
             LEFT JOIN dashboard_actions a ON a.id = (
                 SELECT max(x.id) FROM dashboard_actions x
                 WHERE x.action = 'acknowledge_drift' AND x.drift = d.id)
             WHERE ($1 = 1 OR d.closed_at IS NULL)
               AND ($2 = '' OR d.vendor = $2)
               AND ($3 = '' OR d.kind = $3)
               AND ($4 = '' OR d.cause = $4)
               AND ($5 = '' OR d.opened_at < $5)
               AND ($6 = '' OR d.order_ref = $6)
             ORDER BY {KIND_RANK}, d.opened_at, d.id LIMIT $7"
        )))
        .bind(i64::from(f.include_closed))
        .bind(f.vendor.clone().unwrap_or_default())
        .bind(f.kind.map_or("", DriftKind::as_str))
        .bind(f.cause.map_or("", Cause::as_str))
        .bind(f.opened_before.map(ts).unwrap_or_default())
        .bind(f.order_ref.clone().unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let ack = match r.try_get::<Option<String>, _>("ack_actor")? {
                    Some(actor) => Some((
                        actor,
                        req_ts(r, "ack_at")?,
                        r.try_get::<Option<String>, _>("ack_note")?
                            .unwrap_or_default(),
                    )),
                    None => None,
                };
                Ok(DashDrift {
                    drift: DriftRow {
                        id: r.try_get("id")?,
                        vendor: r.try_get("vendor")?,
                        order_ref: r.try_get("order_ref")?,
                        kind: parse_enum("drift kind", &r.try_get::<String, _>("kind")?)?,
                        field: r.try_get("field")?,
                        local_value: r.try_get("local_value")?,
                        remote_value: r.try_get("remote_value")?,
                        cause: parse_enum("drift cause", &r.try_get::<String, _>("cause")?)?,
                        seen_count: r.try_get("seen_count")?,
                        opened_at: req_ts(r, "opened_at")?,
                        closed_at: opt_ts(r, "closed_at")?,
                        closed_reason: r.try_get("closed_reason")?,
                        fix_delta: r.try_get("fix_delta")?,
                    },
                    acknowledged: ack,
                })
            })
            .collect()
    }

    /// A vendor's key frames newest first, each with the run that used it
    /// (the guard's decision) and the drifts it opened.
    pub async fn key_frame_history(&self, vendor: &str, limit: i64) -> Result<Vec<KeyFrameRow>> {
        let rows = sqlx::query(
            "SELECT k.id, k.vendor, k.source, k.as_of, k.fetched_at, k.row_count, k.complete,
                 r.outcome, r.reason,
                 coalesce(r.missing_local + r.missing_remote + r.status_mismatch + r.field_mismatch, 0)
                     AS drifts,
                 coalesce(r.fixed, 0) AS fixed
             FROM key_frames k
             LEFT JOIN reconcile_runs r ON r.id = (
                 SELECT max(x.id) FROM reconcile_runs x WHERE x.key_frame = k.id)
             WHERE k.vendor = $1 ORDER BY k.id DESC LIMIT $2",
        )
        .bind(vendor)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyFrameRow {
                    id: r.try_get("id")?,
                    vendor: r.try_get("vendor")?,
                    source: r.try_get("source")?,
                    as_of: req_ts(r, "as_of")?,
                    fetched_at: req_ts(r, "fetched_at")?,
                    row_count: r.try_get("row_count")?,
                    complete: r.try_get::<i64, _>("complete")? == 1,
                    run_outcome: r.try_get("outcome")?,
                    run_reason: r.try_get("reason")?,
                    drifts: r.try_get("drifts")?,
                    fixed: r.try_get("fixed")?,
                })
            })
            .collect()
    }

    /// Refused or failed reconcile runs of `vendor` that have no key frame
    /// (the fetch or the guard stopped them before one was kept), newest first.
    pub async fn runs_without_key_frame(
        &self,
        vendor: &str,
        limit: i64,
    ) -> Result<Vec<(DateTime<Utc>, String, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT started_at, outcome, reason FROM reconcile_runs
             WHERE vendor = $1 AND key_frame IS NULL ORDER BY id DESC LIMIT $2",
        )
        .bind(vendor)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    req_ts(r, "started_at")?,
                    r.try_get("outcome")?,
                    r.try_get("reason")?,
                ))
            })
            .collect()
    }

    /// The webhook each of an order's webhook deltas came from: (offset, webhook id, webhook-id header).
    pub async fn order_webhooks(
        &self,
        vendor: &str,
        order_ref: &str,
    ) -> Result<Vec<(i64, i64, String)>> {
        let rows = sqlx::query(
            "SELECT wd.offset AS delta, w.id AS webhook, w.webhook_id FROM webhook_deltas wd
             JOIN webhooks w ON w.id = wd.webhook
             JOIN deltas d ON d.offset = wd.offset
             WHERE d.vendor = $1 AND d.order_ref = $2",
        )
        .bind(vendor)
        .bind(order_ref)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("delta")?,
                    r.try_get("webhook")?,
                    r.try_get("webhook_id")?,
                ))
            })
            .collect()
    }

    /// A cheap summary of everything the dashboard shows: it changes when a
    /// delta, message, drift, alert, key frame or action is added or a drift
    /// closes, which is when an open page refreshes.
    pub async fn dashboard_fingerprint(&self) -> Result<String> {
        let r = sqlx::query(
            "SELECT (SELECT max(d.offset) FROM deltas d) AS deltas,
                 (SELECT max(id) FROM messages) AS messages,
                 (SELECT max(id) FROM drifts) AS drifts,
                 (SELECT count(*) FROM drifts WHERE closed_at IS NULL) AS open_drifts,
                 (SELECT max(id) FROM format_alerts) AS alerts,
                 (SELECT max(id) FROM key_frames) AS key_frames,
                 (SELECT max(id) FROM reconcile_runs) AS runs,
                 (SELECT max(id) FROM dashboard_actions) AS actions,
                 (SELECT count(*) FROM messages WHERE disposition = 'quarantined') AS quarantined",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut parts = Vec::new();
        for c in [
            "deltas",
            "messages",
            "drifts",
            "open_drifts",
            "alerts",
            "key_frames",
            "runs",
            "actions",
            "quarantined",
        ] {
            parts.push(r.try_get::<Option<i64>, _>(c)?.unwrap_or(0).to_string());
        }
        Ok(parts.join("."))
    }
}
