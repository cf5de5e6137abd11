//! Webhook intake, `POST /v1/hooks/{vendor}`: verified (Standard Webhooks:
//! HMAC-SHA256 over `id.timestamp.body`, a timestamp window against
//! replays), size-limited, parsed by the vendor's JSON mapping, and
//! committed with its deltas before the 2xx. A body the mapping cannot read
//! is stored and quarantined with the reason, and still acknowledged: the
//! vendor did its part, and retrying would not make it parse.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Shared;
use super::config::{HookSettings, Scope};
use super::problem::Problem;
pub use super::signature::sign;
use super::signature::{decode_secret, signature_matches};
use crate::model::{DeltaDraft, Fields, TimeSource};
use crate::store::{HookOutcome, NewWebhook};

/// One vendor's intake, its secret decoded.
pub(super) struct Hook {
    pub settings: HookSettings,
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hook({}, key redacted)", self.settings.vendor)
    }
}

/// Resolves and decodes every hook secret at start: a missing or malformed
/// one stops `serve` with the vendor's name, never the value.
pub(super) async fn resolve(hooks: &[HookSettings]) -> anyhow::Result<HashMap<String, Hook>> {
    let mut out = HashMap::new();
    for h in hooks {
        let key = match &h.secret {
            None => None,
            Some(s) => {
                let v = s.resolve().await.map_err(|e| {
                    anyhow::anyhow!(
                        "webhook secret of `{}` ({s:?}) is not available: {e}",
                        h.vendor
                    )
                })?;
                Some(
                    decode_secret(&v)
                        .map_err(|e| anyhow::anyhow!("webhook secret of `{}` {e}", h.vendor))?,
                )
            }
        };
        out.insert(
            h.vendor.clone(),
            Hook {
                settings: h.clone(),
                key,
            },
        );
    }
    Ok(out)
}

fn refused(kind: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        kind,
        "Webhook not verified",
        detail,
    )
}

/// Checks the three Standard Webhooks headers against the body.
fn verify(
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    tolerance: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<(), Problem> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sigs)) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    ) else {
        return Err(refused(
            "bad-signature",
            "webhook-id, webhook-timestamp and webhook-signature are required",
        ));
    };
    let ts: i64 = ts
        .trim()
        .parse()
        .map_err(|_| refused("bad-signature", "webhook-timestamp is not Unix seconds"))?;
    let skew = (now.timestamp() - ts).unsigned_abs();
    if skew > tolerance.as_secs() {
        return Err(refused(
            "stale-timestamp",
            format!(
                "webhook-timestamp is {skew} s from now, outside the {} s window (a replay?)",
                tolerance.as_secs()
            ),
        ));
    }
    if signature_matches(key, id, ts, body, sigs) {
        Ok(())
    } else {
        Err(refused(
            "bad-signature",
            "no webhook-signature matches the body",
        ))
    }
}

fn text_at(v: &Value, pointer: &str, what: &str) -> Result<Option<String>, String> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("{what} at `{pointer}` is not text: {other}")),
    }
}

/// The vendor's mapping over a body: deltas, or why there are none.
pub(super) fn parse(
    hook: &HookSettings,
    body: &[u8],
    received: DateTime<Utc>,
) -> Result<Vec<DeltaDraft>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let m = &hook.mapping;
    let events: Vec<&Value> = match &m.items {
        None => vec![&doc],
        Some(p) => doc
            .pointer(p)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("no array at `{p}`"))?
            .iter()
            .collect(),
    };
    if events.is_empty() {
        return Err("no events in the body".into());
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = |msg: String| format!("event {i}: {msg}");
            let order_ref = text_at(e, &m.order_ref, "order_ref")
                .map_err(at)?
                .filter(|r| !r.trim().is_empty())
                .ok_or_else(|| at(format!("no order_ref at `{}`", m.order_ref)))?;
            let vendor_status = match &m.status {
                Some(p) => text_at(e, p, "status").map_err(at)?,
                None => None,
            };
            let status = match &vendor_status {
                Some(w) => Some(
                    *hook
                        .status_map
                        .get(w)
                        .ok_or_else(|| at(format!("status `{w}` is not in status_map")))?,
                ),
                None => None,
            };
            let (event_time, time_source) = match &m.event_time {
                Some(p) => {
                    let s = text_at(e, p, "event_time")
                        .map_err(at)?
                        .ok_or_else(|| at(format!("no event_time at `{p}`")))?;
                    let t = DateTime::parse_from_rfc3339(&s)
                        .map_err(|err| at(format!("event_time `{s}` is not RFC 3339: {err}")))?;
                    (t.with_timezone(&Utc), TimeSource::Vendor)
                }
                None => (received, TimeSource::Received),
            };
            let mut fields = Fields::new();
            for (name, p) in &m.fields {
                if let Some(v) = e.pointer(p).filter(|v| !v.is_null()) {
                    fields.insert(name.clone(), v.clone());
                }
            }
            Ok(DeltaDraft {
                vendor: hook.vendor.clone(),
                order_ref,
                status,
                vendor_status,
                fields,
                event_time,
                time_source,
            })
        })
        .collect()
}

/// `POST /v1/hooks/{vendor}`
pub(super) async fn intake(
    State(s): State<Shared>,
    Path(vendor): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let hook = s
        .hooks
        .get(&vendor)
        .ok_or_else(|| Problem::not_found(format!("no webhook intake for vendor `{vendor}`")))?;
    let limit = hook.settings.max_body_bytes;
    let too_big = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Body too large",
            format!("the body exceeds {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_big())?;
    let now = Utc::now();
    match &hook.key {
        Some(key) => verify(key, &headers, &body, hook.settings.tolerance, now)?,
        None => {
            s.tokens.check(&headers, Scope::Ingest)?;
        }
    }
    // Counted once verified, so nobody without the vendor's secret can use up its limit.
    s.hook_rate.check(&vendor)?;
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Problem::bad_request("webhook-id is required"))?;
    let kept: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("webhook-") || *n == header::CONTENT_TYPE)
        .map(|(n, v)| {
            (
                n.to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let parsed = parse(&hook.settings, &body, now);
    let outcome = s
        .committer
        .commit(NewWebhook {
            vendor: vendor.clone(),
            webhook_id,
            received_at: now,
            headers: Value::Object(kept).to_string(),
            body: body.to_vec(),
            parsed,
        })
        .await?;
    let (status, body) = match outcome {
        HookOutcome::Stored { id, offsets } => (
            StatusCode::OK,
            json!({"id": id, "status": "applied", "offsets": offsets}),
        ),
        HookOutcome::Quarantined { id } => {
            tracing::warn!(vendor = %vendor, webhook = id, "webhook body could not be parsed; quarantined");
            (
                StatusCode::ACCEPTED,
                json!({"id": id, "status": "quarantined"}),
            )
        }
        HookOutcome::Duplicate { id } => (StatusCode::OK, json!({"id": id, "status": "duplicate"})),
    };
    Ok((status, axum::Json(body)).into_response())
}

/// Requests gathered into one commit at most.
const GROUP: usize = 256;

type Waiter = tokio::sync::oneshot::Sender<Result<HookOutcome, bool>>;

/// Group commit for intake: requests that arrive while a commit runs are
/// written together in the next one, so concurrent vendors share the cost
/// of a transaction instead of queueing for the write lock one by one.
/// Each request is still answered only after its own commit.
pub(super) struct Committer {
    tx: tokio::sync::mpsc::Sender<(NewWebhook, Waiter)>,
}

impl Committer {
    /// Starts the committing task; it ends when the server (the last
    /// `Committer`) is dropped, after answering what it was given.
    pub fn start(store: crate::store::Store) -> Committer {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(NewWebhook, Waiter)>(4 * GROUP);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(GROUP);
            while rx.recv_many(&mut batch, GROUP).await > 0 {
                let (hooks, waiters): (Vec<NewWebhook>, Vec<Waiter>) = batch.drain(..).unzip();
                match store.record_webhooks(&hooks).await {
                    Ok(outcomes) => {
                        for (w, o) in waiters.into_iter().zip(outcomes) {
                            let _ = w.send(Ok(o));
                        }
                    }
                    Err(e) => {
                        let transient = e.is_transient();
                        if transient {
                            tracing::warn!(error = %e, requests = waiters.len(), "webhook intake: database busy; answering 503");
                        } else {
                            tracing::error!(error = %e, requests = waiters.len(), "webhook intake: commit failed");
                        }
                        for w in waiters {
                            let _ = w.send(Err(transient));
                        }
                    }
                }
            }
        });
        Committer { tx }
    }

    /// Commits one webhook (with whatever else is waiting) and returns its outcome.
    async fn commit(&self, w: NewWebhook) -> Result<HookOutcome, Problem> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let failed = || {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "storing the webhook failed; the server log has the cause",
            )
        };
        self.tx.send((w, tx)).await.map_err(|_| failed())?;
        match rx.await.map_err(|_| failed())? {
            Ok(o) => Ok(o),
            Err(true) => Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
                "the database is busy; retry shortly",
            )
            .retry_after(1)),
            Err(false) => Err(failed()),
        }
    }
}

/// `driftwatch hooks replay ID`: parses a stored webhook again with the
/// vendor's current mapping; applies it if it was quarantined and now
/// parses. Returns the new offsets, or why it still does not parse.
pub async fn replay(
    store: &crate::store::Store,
    config: &crate::config::Config,
    id: i64,
) -> anyhow::Result<Result<Vec<i64>, String>> {
    let w = store
        .webhook(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no stored webhook {id}"))?;
    if w.deltas > 0 {
        anyhow::bail!(
            "webhook {id} was applied already ({} delta(s) in the log)",
            w.deltas
        );
    }
    let hook = config
        .http
        .as_ref()
        .and_then(|h| h.hooks.iter().find(|x| x.vendor == w.vendor))
        .ok_or_else(|| {
            anyhow::anyhow!("no [[http.hook]] for vendor `{}` in the config", w.vendor)
        })?;
    let parsed = parse(hook, &w.body, w.received_at);
    match (
        store
            .apply_replayed_webhook(id, w.received_at, &parsed)
            .await?,
        parsed,
    ) {
        (HookOutcome::Stored { offsets, .. }, _) => Ok(Ok(offsets)),
        (_, Err(reason)) => Ok(Err(reason)),
        (_, Ok(_)) => anyhow::bail!("webhook {id} was applied meanwhile"),
    }
}
