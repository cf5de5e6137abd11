//! The dashboard's pages (GET). Each reads through `Store` methods and
//! renders with maud; every vendor-supplied string is rendered as text.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::super::Shared;
use super::view::{ago, json_text, layout, order_link, seg, value, when, when_opt};
use super::{Denied, Session, html, reader, session};
use crate::model::DeltaSource;
use crate::parse::Mail;
use crate::reconcile::drift::{Cause, DriftKind};
use crate::store::{ActionRow, DriftFilter, StoredMessage};

/// Rows per list page.
const LIST: i64 = 200;
/// Raw mail shown on a page, at most (the API serves the whole message).
const RAW_SHOWN: usize = 256 * 1024;
/// Format alerts count on the vendors page over this many days.
const ALERT_DAYS: i64 = 7;

pub(super) async fn render(
    s: &Shared,
    session: &Session,
    title: &str,
    body: Markup,
) -> Result<Response, Denied> {
    let fp = s.store.dashboard_fingerprint().await?;
    Ok(html(layout(title, session, &fp, body)).into_response())
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Denied> {
    q.map(|Query(t)| t)
        .map_err(|e| Denied::BadRequest(e.body_text()))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, Denied> {
    p.map(|Path(t)| t)
        .map_err(|e| Denied::BadRequest(e.body_text()))
}

fn silent_after_hours(s: &Shared) -> i64 {
    i64::from(
        s.config
            .report
            .as_ref()
            .map_or(48, |r| r.silent_after_hours),
    )
}

/// `GET /signin`: the form (or straight to the vendors when signed in).
pub(super) async fn signin_form(State(s): State<Shared>, headers: HeaderMap) -> Response {
    match session(&s, &headers).await {
        Ok(Some(_)) => axum::response::Redirect::to("/").into_response(),
        _ => html(super::view::signin_page(None)).into_response(),
    }
}

/// `GET /`: every vendor at a glance.
pub(super) async fn vendors(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, Denied> {
    let session = reader(&s, &headers).await?;
    let now = Utc::now();
    let silent_cutoff = now - Duration::hours(silent_after_hours(&s));
    let mut cards = Vec::new();
    for v in s.store.vendor_summaries().await? {
        let g = s
            .store
            .vendor_glance(&v.vendor, now - Duration::days(ALERT_DAYS), now)
            .await?;
        let silent = v.open_orders > 0 && v.last_mail_at.is_none_or(|t| t < silent_cutoff);
        let guard_refused = matches!(g.last_run_outcome.as_deref(), Some("refused" | "failed"));
        let mut problems = Vec::new();
        if guard_refused {
            problems.push("last key frame refused");
        }
        if silent && g.muted_until.is_none() {
            problems.push("silent");
        }
        if g.format_alerts > 0 {
            problems.push("format change");
        }
        if v.quarantined > 0 {
            problems.push("quarantine");
        }
        if v.open_drifts > 0 {
            problems.push("drifts");
        }
        let health = if problems.is_empty() {
            "ok".to_string()
        } else {
            problems.join(", ")
        };
        cards.push(html! {
            section.card data-vendor=(v.vendor) {
                h2 { a href={ "/vendors/" (seg(&v.vendor)) } { (v.vendor) } }
                p class={ "health " @if problems.is_empty() { "ok" } @else { "bad" } } data-field="health" { (health) }
                dl {
                    dt { "Last mail" }
                    dd data-field="last-mail" { (when_opt(v.last_mail_at)) @if let Some(t) = v.last_mail_at { " (" (ago(t, now)) " ago)" } }
                    dt { "Last key frame" }
                    dd data-field="last-key-frame" {
                        (when_opt(v.last_key_frame_as_of))
                        @if let Some(n) = g.last_key_frame_rows { ", " (n) " rows" }
                    }
                    dt { "Guard" }
                    dd data-field="guard" {
                        @match &g.last_run_outcome {
                            Some(o) => { span class={ "outcome " (o) } { (o) } @if let Some(r) = &g.last_run_reason { ": " (r) } }
                            None => span.muted { "no run yet" },
                        }
                    }
                    dt { "Open drifts" }
                    dd data-field="open-drifts" { a href={ "/drifts?vendor=" (seg(&v.vendor)) } { (v.open_drifts) } }
                    dt { "Quarantined" }
                    dd data-field="quarantined" { a href={ "/quarantine?vendor=" (seg(&v.vendor)) } { (v.quarantined) } }
                    dt { "Silence" }
                    dd data-field="silence" {
                        @if let Some(u) = g.muted_until { "muted until " (when(u)) }
                        @else if silent { span.bad { "silent" } " (open orders, no mail for " (silent_after_hours(&s)) " h)" }
                        @else { "no" }
                    }
                    dt { "Format alerts (" (ALERT_DAYS) " d)" }
                    dd data-field="format-alerts" {
                        (g.format_alerts)
                        @if let Some(a) = &g.latest_alert { br; span.small { (a) } }
                    }
                }
            }
        });
    }
    let body = html! {
        @if cards.is_empty() { p { "No vendor has mail, orders or key frames yet." } }
        div.cards { @for c in cards { (c) } }
    };
    render(&s, &session, "Vendors", body).await
}

#[derive(Debug, Deserialize)]
pub(super) struct DriftsQuery {
    vendor: Option<String>,
    kind: Option<String>,
    cause: Option<String>,
    /// Only drifts open at least this many days.
    min_age_days: Option<String>,
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// A filter value: absent or empty is "any", anything else must parse.
fn typed<T: std::str::FromStr>(what: &str, v: Option<String>) -> Result<Option<T>, Denied>
where
    T::Err: std::fmt::Display,
{
    nonempty(v)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|e| Denied::BadRequest(format!("`{what}`: {e}")))
        })
        .transpose()
}

fn select(name: &str, label: &str, options: &[String], chosen: Option<&str>) -> Markup {
    html! {
        label {
            (label)
            select name=(name) {
                option value="" { "any" }
                @for o in options {
                    option value=(o) selected[chosen == Some(o.as_str())] { (o) }
                }
            }
        }
    }
}

/// `GET /drifts?vendor=&kind=&cause=&min_age_days=`: open drifts worst first.
pub(super) async fn drifts(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<DriftsQuery>, QueryRejection>,
) -> Result<Response, Denied> {
    let session = reader(&s, &headers).await?;
    let q = query(q)?;
    let now = Utc::now();
    let min_age = match nonempty(q.min_age_days) {
        Some(d) => Some(d.trim().parse::<u32>().map_err(|_| {
            Denied::BadRequest("`min_age_days` must be a whole number of days".into())
        })?),
        None => None,
    };
    let filter = DriftFilter {
        vendor: nonempty(q.vendor),
        kind: typed::<DriftKind>("kind", q.kind)?,
        cause: typed::<Cause>("cause", q.cause)?,
        opened_before: min_age.map(|d| now - Duration::days(i64::from(d))),
        order_ref: None,
        include_closed: false,
    };
    let drifts = s.store.dashboard_drifts(&filter, LIST).await?;
    let vendors: Vec<String> = s
        .store
        .vendor_summaries()
        .await?
        .into_iter()
        .map(|v| v.vendor)
        .collect();
    let kinds: Vec<String> = DriftKind::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    let causes: Vec<String> = Cause::ALL.iter().map(|c| c.as_str().to_string()).collect();
    let ages: Vec<String> = ["1", "2", "7", "30"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let body = html! {
        form.filters method="get" action="/drifts" {
            (select("vendor", "Vendor", &vendors, filter.vendor.as_deref()))
            (select("kind", "Kind", &kinds, filter.kind.map(DriftKind::as_str)))
            (select("cause", "Cause", &causes, filter.cause.map(Cause::as_str)))
            (select("min_age_days", "Open at least (days)", &ages, min_age.map(|d| d.to_string()).as_deref()))
            button type="submit" { "Filter" }
        }
        p data-field="drift-count" { (drifts.len()) " open drift" @if drifts.len() != 1 { "s" } @if drifts.len() as i64 == LIST { " (first " (LIST) ")" } }
        @for dd in &drifts {
            @let d = &dd.drift;
            section.card.drift id={ "drift-" (d.id) } data-drift=(d.id) data-acknowledged=[dd.acknowledged.as_ref().map(|_| "yes")] {
                h2 {
                    span class={ "kind " (d.kind.as_str()) } { (d.kind.as_str()) } " "
                    a href=(order_link(&d.vendor, &d.order_ref)) { (d.vendor) " / " (d.order_ref) }
                }
                dl {
                    @if let Some(f) = &d.field { dt { "Field" } dd { (f) } }
                    dt { "Ours" } dd data-field="local" { (json_text(d.local_value.as_deref())) }
                    dt { "Vendor's" } dd data-field="remote" { (json_text(d.remote_value.as_deref())) }
                    dt { "Cause" } dd { (d.cause.as_str()) }
                    dt { "Open since" } dd { (when(d.opened_at)) " (" (ago(d.opened_at, now)) "), seen in " (d.seen_count) " run(s)" }
                }
                @if let Some((who, at, note)) = &dd.acknowledged {
                    p.ack data-field="ack" { "Acknowledged by " strong { (who) } " at " (when(*at)) ": " (note) }
                }
                @if session.admin {
                    form.action method="post" action={ "/drifts/" (d.id) "/acknowledge" } {
                        input type="hidden" name="csrf" value=(session.csrf);
                        label { "Note" input type="text" name="note" required maxlength="2000"; }
                        button type="submit" { @if dd.acknowledged.is_some() { "Acknowledge again" } @else { "Acknowledge" } }
                    }
                }
            }
        }
    };
    render(&s, &session, "Open drifts", body).await
}

/// One thing on an order's time axis.
struct Moment {
    at: DateTime<Utc>,
    kind: &'static str,
    what: Markup,
    from: Markup,
}

fn action_text(a: &ActionRow) -> Markup {
    html! {
        (crate::report::model::describe_action(a))
        @if let Some(m) = a.message { " (" a href={ "/messages/" (m) } { "message " (m) } ")" }
    }
}

/// `GET /orders/{vendor}/{order_ref}`: everything known about one order on one time axis.
pub(super) async fn order(
    State(s): State<Shared>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Denied> {
    let session = reader(&s, &headers).await?;
    let (vendor, order_ref) = path(p)?;
    let view = s.store.order(&vendor, &order_ref).await?;
    let deltas = s.store.order_deltas(&vendor, &order_ref).await?;
    let drifts = s
        .store
        .dashboard_drifts(
            &DriftFilter {
                vendor: Some(vendor.clone()),
                order_ref: Some(order_ref.clone()),
                include_closed: true,
                ..Default::default()
            },
            LIST,
        )
        .await?;
    if view.is_none() && deltas.is_empty() && drifts.is_empty() {
        return Err(Denied::NotFound(format!(
            "no order `{order_ref}` at vendor `{vendor}`"
        )));
    }
    let hooks = s.store.order_webhooks(&vendor, &order_ref).await?;
    let frames = s.store.key_frame_history(&vendor, 50).await?;
    let actions = s.store.order_actions(&vendor, &order_ref).await?;
    let mut axis: Vec<Moment> = Vec::new();
    for d in &deltas {
        let kind = match d.source {
            DeltaSource::Email => "email",
            DeltaSource::Webhook => "webhook",
            DeltaSource::Reconcile => "fix",
            DeltaSource::Manual => "manual",
        };
        let from = match d.source {
            DeltaSource::Email => html! {
                @if let Some(m) = d.message { a href={ "/messages/" (m) } { "mail " (m) } } @else { "mail" }
                @if let Some(p) = &d.parser { ", parser " (p) @if let Some(v) = d.parser_version { " v" (v) } }
            },
            DeltaSource::Webhook => match hooks.iter().find(|h| h.0 == d.offset) {
                Some((_, id, wid)) => html! { "webhook " (id) " (webhook-id " (wid) ")" },
                None => html! { "webhook" },
            },
            DeltaSource::Reconcile => html! { "reconcile fix from a key frame" },
            DeltaSource::Manual => html! { "manual" },
        };
        axis.push(Moment {
            at: d.draft.event_time,
            kind,
            what: html! {
                "delta " (d.offset) ": "
                @if let Some(st) = d.draft.status { "status " strong data-field="status" { (st.as_str()) } }
                @if let Some(vs) = &d.draft.vendor_status { " (vendor says " span data-field="vendor-status" { (vs) } ")" }
                @for (k, v) in &d.draft.fields { " · " (k) " = " span data-field="field" { (value(v)) } }
                span.small { " recorded " (when(d.recorded_at)) ", time from " (d.draft.time_source.as_str()) }
            },
            from,
        });
    }
    for k in &frames {
        axis.push(Moment {
            at: k.as_of,
            kind: "key frame",
            what: html! {
                "key frame " (k.id) ": " (k.row_count) " rows"
                @if let Some(o) = &k.run_outcome { ", run " span class={ "outcome " (o) } { (o) } @if let Some(r) = &k.run_reason { ": " (r) } }
            },
            from: html! { (k.source) },
        });
    }
    for d in drifts.iter().map(|d| &d.drift) {
        axis.push(Moment {
            at: d.opened_at,
            kind: "drift",
            what: html! { "drift " (d.id) " opened: " (d.kind.as_str()) @if let Some(f) = &d.field { " " (f) } ", ours " (json_text(d.local_value.as_deref())) ", vendor's " (json_text(d.remote_value.as_deref())) " (" (d.cause.as_str()) ")" },
            from: html! { "reconcile" },
        });
        if let Some(c) = d.closed_at {
            axis.push(Moment {
                at: c,
                kind: "drift",
                what: html! { "drift " (d.id) " closed: " (d.closed_reason.as_deref().unwrap_or("")) @if let Some(f) = d.fix_delta { " by fix delta " (f) } },
                from: html! { "reconcile" },
            });
        }
    }
    for a in &actions {
        axis.push(Moment {
            at: a.acted_at,
            kind: "action",
            what: action_text(a),
            from: html! { "dashboard, " (a.actor) },
        });
    }
    axis.sort_by_key(|m| m.at);
    let title = format!("Order {order_ref} at {vendor}");
    let body = html! {
        @if let Some(v) = &view {
            section.card data-field="view" {
                h2 { "Now" }
                dl {
                    dt { "Status" } dd data-field="current-status" { (v.status.map(|s| s.as_str()).unwrap_or("(none)")) @if let Some(vs) = &v.vendor_status { " (" (vs) ")" } }
                    @for (k, val) in &v.fields { dt { (k) } dd { (value(val)) } }
                    dt { "As of" } dd { (when(v.event_time)) ", " (v.delta_count) " delta(s)" }
                }
            }
        }
        h2 { "Timeline" }
        ol.timeline {
            @for m in &axis {
                li data-kind=(m.kind) {
                    span.t { (when(m.at)) }
                    span class={ "badge " (m.kind.replace(' ', "-")) } { (m.kind) }
                    div.what { (m.what) }
                    div.from { "from " (m.from) }
                }
            }
        }
    };
    render(&s, &session, &title, body).await
}

#[derive(Debug, Deserialize)]
pub(super) struct VendorQuery {
    vendor: Option<String>,
}

/// What the parser saw in a message: subject, text, HTML as text, attachments.
fn decoded(m: &StoredMessage) -> Markup {
    let Some(mail) = Mail::parse(&m.raw, m.internal_date) else {
        return html! { p.bad { "The raw bytes do not parse as a message." } };
    };
    let attachments: Vec<_> = mail.attachments().collect();
    html! {
        dl.decoded {
            dt { "Subject" } dd data-field="subject" { (mail.subject()) }
            dt { "Text" } dd { pre data-field="text" { (mail.text()) } }
            dt { "HTML as text" } dd { pre data-field="html-text" { (mail.html_text()) } }
            dt { "Attachments" }
            dd {
                @if attachments.is_empty() { span.muted { "none" } }
                ul { @for a in &attachments {
                    li data-field="attachment" { (a.name.as_deref().unwrap_or("(no name)")) " · " (a.content_type) " · " (a.bytes.len()) " bytes" }
                } }
            }
        }
    }
}

/// `GET /quarantine?vendor=`: each quarantined message, its reason and what the parser saw.
pub(super) async fn quarantine(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<VendorQuery>, QueryRejection>,
) -> Result<Response, Denied> {
    let session = reader(&s, &headers).await?;
    let q = query(q)?;
    let rows = s
        .store
        .quarantine_page(nonempty(q.vendor).as_deref(), None, 50)
        .await?;
    let mut items = Vec::new();
    for r in &rows {
        let m = s.store.message(r.id).await?;
        items.push(html! {
            section.card data-message=(r.id) {
                h2 { a href={ "/messages/" (r.id) } { "Message " (r.id) } " · " (r.vendor.as_deref().unwrap_or("no vendor")) }
                p data-field="card-subject" { strong { (r.subject.as_deref().unwrap_or("(no subject)")) } }
                p.reason data-field="reason" { (r.reason.as_deref().unwrap_or("(no reason recorded)")) }
                p.small { "From " (r.sender.as_deref().unwrap_or("(unknown)")) ", archived " (when(r.archived_at)) }
                @if let Some(m) = &m { details { summary { "What the parser saw" } (decoded(m)) } }
                @if session.admin { (release_form(&session, r.id)) }
            }
        });
    }
    let body = html! {
        p data-field="quarantine-count" { (rows.len()) " quarantined message" @if rows.len() != 1 { "s" } " (newest first, at most 50)" }
        @for i in items { (i) }
    };
    render(&s, &session, "Quarantine", body).await
}

fn release_form(session: &Session, id: i64) -> Markup {
    html! {
        form.action method="post" action={ "/messages/" (id) "/release" } {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { "Release (reparse with the current rules)" }
        }
    }
}

/// `GET /messages/{id}`: one archived message, decoded, and its raw text.
pub(super) async fn message(
    State(s): State<Shared>,
    headers: HeaderMap,
    p: Result<Path<i64>, PathRejection>,
) -> Result<Response, Denied> {
    let session = reader(&s, &headers).await?;
    let id = path(p)?;
    let m = s
        .store
        .message(id)
        .await?
        .ok_or_else(|| Denied::NotFound(format!("no message {id}")))?;
    let raw = String::from_utf8_lossy(&m.raw[..m.raw.len().min(RAW_SHOWN)]).into_owned();
    let body = html! {
        dl {
            dt { "Disposition" } dd data-field="disposition" { (m.disposition) }
            @if let Some(r) = &m.reason { dt { "Reason" } dd data-field="reason" { (r) } }
            dt { "Vendor" } dd { (m.vendor.as_deref().unwrap_or("(none)")) }
            dt { "From" } dd { (m.sender.as_deref().unwrap_or("(unknown)")) }
            dt { "Archived" } dd { (when(m.archived_at)) }
            @if !m.raw_complete { dt { "Note" } dd { "Over the size limit: only its header was kept." } }
        }
        @if session.admin && m.disposition == "quarantined" { (release_form(&session, id)) }
        h2 { "Decoded" }
        (decoded(&m))
        h2 { "Raw message" }
        @if m.raw.len() > RAW_SHOWN { p.small { "First " (RAW_SHOWN) " of " (m.raw.len()) " bytes; the API serves it whole at /v1/messages/" (id) "/raw." } }
        pre.raw data-field="raw" { (raw) }
    };
    render(&s, &session, &format!("Message {id}"), body).await
}

/// `GET /vendors/{vendor}`: key-frame history (rows, drifts, guard decisions, refusals).
pub(super) async fn vendor(
    State(s): State<Shared>,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, Denied> {
    let session = reader(&s, &headers).await?;
    let vendor = path(p)?;
    let frames = s.store.key_frame_history(&vendor, LIST).await?;
    let refused = s.store.runs_without_key_frame(&vendor, 50).await?;
    let now = Utc::now();
    let glance = s
        .store
        .vendor_glance(&vendor, now - Duration::days(ALERT_DAYS), now)
        .await?;
    let body = html! {
        p {
            a href={ "/drifts?vendor=" (seg(&vendor)) } { "Open drifts" } " · "
            a href={ "/quarantine?vendor=" (seg(&vendor)) } { "Quarantine" }
            @if let Some(u) = glance.muted_until { " · silence alert muted until " (when(u)) }
        }
        h2 { "Key frames" }
        div.scroll {
            table {
                thead { tr { th { "As of" } th { "Rows" } th { "Complete" } th { "Guard" } th { "Drifts" } th { "Fixed" } th { "Source" } } }
                tbody {
                    @for k in &frames {
                        tr data-key-frame=(k.id) {
                            td { (when(k.as_of)) }
                            td data-field="rows" { (k.row_count) }
                            td { @if k.complete { "yes" } @else { "no" } }
                            td data-field="guard" { @match &k.run_outcome { Some(o) => { span class={ "outcome " (o) } { (o) } @if let Some(r) = &k.run_reason { ": " (r) } }, None => "no run" } }
                            td data-field="drifts" { (k.drifts) }
                            td { (k.fixed) }
                            td.small { (k.source) }
                        }
                    }
                }
            }
        }
        @if frames.is_empty() { p.muted { "No key frame yet." } }
        @if !refused.is_empty() {
            h2 { "Runs without a key frame" }
            ul { @for (at, outcome, reason) in &refused { li { (when(*at)) " " span class={ "outcome " (outcome) } { (outcome) } @if let Some(r) = reason { ": " (r) } } } }
        }
        @if session.admin {
            h2 { "Mute the silence alert" }
            form.action method="post" action={ "/vendors/" (seg(&vendor)) "/mute" } {
                input type="hidden" name="csrf" value=(session.csrf);
                label { "Until (last day, inclusive)" input type="date" name="until" required; }
                label { "Note" input type="text" name="note" maxlength="2000"; }
                button type="submit" { "Mute" }
            }
        }
    };
    render(&s, &session, &format!("Vendor {vendor}"), body).await
}

#[derive(Debug, Deserialize)]
pub(super) struct ReportQuery {
    date: Option<String>,
}

/// `GET /reports?date=`: the daily report of a day, with the actions taken that day.
pub(super) async fn reports(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, Denied> {
    let session = reader(&s, &headers).await?;
    let q = query(q)?;
    let now = Utc::now();
    let tz = s.config.report.as_ref().map(|r| r.timezone);
    let today = match tz {
        Some(tz) => now.with_timezone(&tz).date_naive(),
        None => now.date_naive(),
    };
    let date = match nonempty(q.date) {
        Some(d) => NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").map_err(|_| {
            Denied::BadRequest(format!("`{}` is not a date (YYYY-MM-DD)", d.trim()))
        })?,
        None => today,
    };
    let start = |d: NaiveDate| match tz {
        Some(tz) => crate::report::build::day_start(tz, d),
        None => d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
    };
    let next = date.succ_opt().unwrap_or(date);
    // Without a [report] table the page lists the day's actions itself.
    let actions = s.store.actions_between(start(date), start(next)).await?;
    let sends = s.store.report_sends(today - Duration::days(14)).await?;
    let text = match &s.config.report {
        Some(settings) => Some(
            crate::report::build(&s.store, date, settings, now)
                .await
                .map(|r| crate::report::render_text(&r))?,
        ),
        None => None,
    };
    let days: Vec<NaiveDate> = (0..14)
        .filter_map(|i| today.checked_sub_signed(Duration::days(i)))
        .collect();
    let body = html! {
        nav.days {
            @for d in &days {
                a href={ "/reports?date=" (d) } class=[(*d == date).then_some("current")] { (d.format("%b %d")) }
            }
        }
        h2 { "Report for " (date) }
        @let sent: Vec<_> = sends.iter().filter(|x| x.report_date == date).collect();
        p.small {
            @if sent.is_empty() { "Not delivered (yet)." }
            @for x in &sent { (x.recipient) ": " (format!("{:?}", x.state).to_lowercase()) @if let Some(t) = x.sent_at { " at " (when(t)) } ". " }
        }
        @match &text {
            Some(t) => { pre.report data-field="report" { (t) } },
            None => {
                p.muted { "No [report] table in the config: no daily report is built. Dashboard actions that day:" }
                ul data-field="actions" { @for a in &actions { li { (when(a.acted_at)) " " strong { (a.actor) } " " (action_text(a)) } } }
            },
        }
    };
    render(&s, &session, "Daily reports", body).await
}
