//! `/metrics` in the Prometheus text format (0.0.4). Counts the database
//! keeps are read from it at scrape time; in-memory states come from
//! [`crate::telemetry`]. Nothing is counted twice in two places.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::config::Scope;
use super::problem::Problem;
use crate::config::Mailbox;
use crate::store::{OutboundCounts, Scrape};
use crate::telemetry::{SourceState, SourceStatus};

/// Escapes a label value per the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Renders one scrape. Pure, so the format is unit-tested without a server.
pub(super) fn render(
    scrape: &Scrape,
    sources: &std::collections::BTreeMap<(String, String), SourceStatus>,
    idle_mailboxes: &[String],
    feed_readers: i64,
    outbound: &OutboundCounts,
) -> String {
    let mut o = Out(String::new());
    o.family(
        "driftwatch_messages",
        "gauge",
        "Messages fetched, by mailbox, folder, vendor and disposition (parsed, quarantined, ignored, skipped); every one is archived.",
    );
    for m in &scrape.messages {
        o.sample(
            "driftwatch_messages",
            &[
                ("mailbox", &m.mailbox),
                ("folder", &m.folder),
                ("vendor", &m.vendor),
                ("disposition", &m.disposition),
            ],
            m.count,
        );
    }
    o.family(
        "driftwatch_deltas_total",
        "counter",
        "Deltas in the log, by source (email, webhook, reconcile, manual).",
    );
    for (source, n) in &scrape.deltas {
        o.sample("driftwatch_deltas_total", &[("source", source)], n);
    }
    o.family(
        "driftwatch_open_drifts",
        "gauge",
        "Open drifts by vendor and kind.",
    );
    for (vendor, kind, n) in &scrape.open_drifts {
        o.sample(
            "driftwatch_open_drifts",
            &[("vendor", vendor), ("kind", kind)],
            n,
        );
    }
    o.family(
        "driftwatch_reconcile_runs_total",
        "counter",
        "Reconcile runs (not dry runs) by vendor and outcome.",
    );
    for (vendor, outcome, n) in &scrape.runs {
        o.sample(
            "driftwatch_reconcile_runs_total",
            &[("vendor", vendor), ("outcome", outcome)],
            n,
        );
    }
    o.family(
        "driftwatch_reconcile_last_duration_seconds",
        "gauge",
        "Duration of each vendor's latest reconcile, labelled with its outcome.",
    );
    for r in &scrape.last_runs {
        if let Some(f) = r.finished_at {
            let secs = (f - r.started_at).num_milliseconds() as f64 / 1000.0;
            o.sample(
                "driftwatch_reconcile_last_duration_seconds",
                &[("vendor", &r.vendor), ("outcome", &r.outcome)],
                secs,
            );
        }
    }
    o.family(
        "driftwatch_mail_lag_seconds",
        "summary",
        "Seconds from a message's Date header to its commit, over the latest 1000 messages.",
    );
    let mut lags = scrape.recent_lags.clone();
    lags.sort_by(f64::total_cmp);
    for q in [0.5, 0.9, 0.99] {
        o.sample(
            "driftwatch_mail_lag_seconds",
            &[("quantile", &q.to_string())],
            quantile(&lags, q),
        );
    }
    o.sample(
        "driftwatch_mail_lag_seconds_sum",
        &[],
        lags.iter().sum::<f64>(),
    );
    o.sample("driftwatch_mail_lag_seconds_count", &[], lags.len());
    o.family(
        "driftwatch_source_reconnects_total",
        "counter",
        "Reconnects of a mail source after a failure, since this process started.",
    );
    for ((mailbox, folder), st) in sources {
        o.sample(
            "driftwatch_source_reconnects_total",
            &[("mailbox", mailbox), ("folder", folder)],
            st.reconnects,
        );
    }
    o.family(
        "driftwatch_imap_idling",
        "gauge",
        "1 while an IMAP folder is caught up and in IDLE, else 0.",
    );
    for ((mailbox, folder), st) in sources {
        if idle_mailboxes.contains(mailbox) {
            let idling = matches!(st.state, SourceState::Waiting);
            o.sample(
                "driftwatch_imap_idling",
                &[("mailbox", mailbox), ("folder", folder)],
                u8::from(idling),
            );
        }
    }
    o.family(
        "driftwatch_webhooks",
        "gauge",
        "Webhooks stored by intake, by vendor and disposition (parsed, quarantined); refused requests are not stored.",
    );
    for (vendor, disposition, n) in &scrape.webhooks {
        o.sample(
            "driftwatch_webhooks",
            &[("vendor", vendor), ("disposition", disposition)],
            n,
        );
    }
    o.family(
        "driftwatch_outbound_attempts_total",
        "counter",
        "Outbound alert delivery attempts, by subscription and outcome (delivered, retry, dead).",
    );
    for (sub, outcome, n) in &outbound.attempts {
        o.sample(
            "driftwatch_outbound_attempts_total",
            &[("subscription", sub), ("outcome", outcome)],
            n,
        );
    }
    o.family(
        "driftwatch_outbound_deliveries",
        "gauge",
        "Outbound alert deliveries, by subscription and state (pending, delivered, dead).",
    );
    for (sub, state, n) in &outbound.deliveries {
        o.sample(
            "driftwatch_outbound_deliveries",
            &[("subscription", sub), ("state", state)],
            n,
        );
    }
    o.family(
        "driftwatch_feed_readers",
        "gauge",
        "Connected delta feed readers (long polls and SSE streams).",
    );
    o.sample("driftwatch_feed_readers", &[], feed_readers);
    o.0
}

pub(super) async fn metrics(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    s.tokens.check(&headers, Scope::Read)?;
    let scrape = s.store.scrape().await?;
    let idle: Vec<String> = s
        .config
        .mailboxes
        .iter()
        .filter_map(|m| match m {
            Mailbox::Imap(i) if i.idle => Some(i.name.clone()),
            _ => None,
        })
        .collect();
    let text = render(
        &scrape,
        &crate::telemetry::source_statuses(),
        &idle,
        crate::telemetry::feed_readers(),
        &s.store.outbound_counts().await?,
    );
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}
