//! `/healthz` (the process answers) and `/readyz` (it can do its job: the
//! store takes writes, every mailbox is connected or retrying on schedule,
//! and no vendor's last reconcile failed). Both are open to anyone, as
//! orchestrators probe without credentials; they say nothing secret.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::Shared;
use crate::config::Mailbox;
use crate::telemetry::SourceState;

/// How long the write probe may wait for the write lock: a long ingest
/// batch holds it for a moment, a stuck writer for longer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A source in backoff counts as on schedule until this long after its retry was due.
const RETRY_GRACE: Duration = Duration::from_secs(10);

pub(super) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

pub(super) async fn readyz(State(s): State<Shared>) -> Response {
    let mut checks = Vec::new();
    let store = match tokio::time::timeout(PROBE_TIMEOUT, s.store.probe_write()).await {
        Ok(Ok(())) => (true, "writable".to_string()),
        Ok(Err(e)) => (false, format!("write failed: {e}")),
        Err(_) => (false, format!("no write lock within {PROBE_TIMEOUT:?}")),
    };
    checks.push(Check {
        name: "store".into(),
        ok: store.0,
        detail: store.1,
    });

    let statuses = crate::telemetry::source_statuses();
    let now = Instant::now();
    for mailbox in &s.config.mailboxes {
        let folders: Vec<&str> = match mailbox {
            Mailbox::Imap(m) => m.folders.iter().map(String::as_str).collect(),
            Mailbox::Maildir(_) => vec!["maildir"],
        };
        for folder in folders {
            let st = statuses.get(&(mailbox.name().to_string(), folder.to_string()));
            let (ok, detail) = match st.map(|s| s.state) {
                None => (false, "not started".to_string()),
                Some(SourceState::Syncing) => (true, "syncing".to_string()),
                Some(SourceState::Waiting) => (true, "connected, waiting for mail".to_string()),
                Some(SourceState::Backoff { retry_at }) if now <= retry_at + RETRY_GRACE => {
                    (true, "failed; reconnecting within its backoff".to_string())
                }
                Some(SourceState::Backoff { .. }) => {
                    (false, "failed and overdue for its retry".to_string())
                }
            };
            checks.push(Check {
                name: format!("mailbox {}/{folder}", mailbox.name()),
                ok,
                detail,
            });
        }
    }

    match s.store.last_reconcile_runs().await {
        Ok(runs) => {
            for r in runs.iter().filter(|r| r.outcome == "failed") {
                checks.push(Check {
                    name: format!("vendor {}", r.vendor),
                    ok: false,
                    detail: format!(
                        "last reconcile failed: {}",
                        r.reason.as_deref().unwrap_or("no reason recorded")
                    ),
                });
            }
        }
        Err(e) => checks.push(Check {
            name: "reconcile".into(),
            ok: false,
            detail: format!("cannot read reconcile runs: {e}"),
        }),
    }

    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if ready {
        json!({"status": "ready", "checks": checks})
    } else {
        json!({
            "type": "urn:driftwatch:problem:not-ready",
            "title": "Not ready",
            "status": 503,
            "detail": checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("; "),
            "checks": checks,
        })
    };
    let mut res = (status, Json(body)).into_response();
    if !ready {
        res.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
    }
    res
}
