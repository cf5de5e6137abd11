//! The dashboard's POSTs: signing in and out, and the three `admin`
//! actions, each recorded with who (the token's name), when and what.

use axum::Form;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, NaiveDate, Utc};
use serde::Deserialize;
use tracing::info;

use super::super::Shared;
use super::super::config::Scope;
use super::{
    COOKIE, Denied, SESSION_HOURS, actor, html, random_hex, reader, same_origin, secure,
    session_cookie, session_digest, view,
};
use crate::store::{ActionKind, NewAction};

/// The longest note kept with an action.
const MAX_NOTE: usize = 2000;

fn form<T>(f: Result<Form<T>, FormRejection>) -> Result<T, Denied> {
    f.map(|Form(t)| t)
        .map_err(|e| Denied::BadRequest(e.body_text()))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, Denied> {
    p.map(|Path(t)| t)
        .map_err(|e| Denied::BadRequest(e.body_text()))
}

fn note(text: &str) -> Result<String, Denied> {
    let t = text.trim();
    if t.chars().count() > MAX_NOTE {
        return Err(Denied::BadRequest(format!(
            "a note is at most {MAX_NOTE} characters"
        )));
    }
    Ok(t.to_string())
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    token: String,
}

/// `POST /signin`: the token, once, in the form body; a session cookie back.
pub(super) async fn signin(
    State(s): State<Shared>,
    headers: HeaderMap,
    f: Result<Form<SignIn>, FormRejection>,
) -> Result<Response, Denied> {
    if !same_origin(&headers) {
        return Err(Denied::Forbidden("read (and a request from this site)"));
    }
    let f = form(f)?;
    let refuse = |msg: &str| {
        Ok((StatusCode::UNAUTHORIZED, html(view::signin_page(Some(msg)))).into_response())
    };
    let Some(name) = s.tokens.name_of(f.token.trim()).map(str::to_string) else {
        info!("dashboard sign-in refused: unknown token");
        return refuse("That token is not valid.");
    };
    if s.tokens.named_allows(&name, Scope::Read) != Some(true) {
        return refuse("That token has neither the read nor the admin scope.");
    }
    let id = random_hex()?;
    let csrf = random_hex()?;
    let now = Utc::now();
    let ttl = Duration::hours(SESSION_HOURS);
    s.store
        .create_session(&session_digest(&id), &name, &csrf, now, now + ttl)
        .await?;
    info!(token = %name, "dashboard sign-in");
    let cookie = session_cookie(&id, ttl.num_seconds(), secure(&s));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    csrf: String,
}

/// `POST /signout`: ends the session here and in the browser.
pub(super) async fn signout(
    State(s): State<Shared>,
    headers: HeaderMap,
    f: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, Denied> {
    let f = form(f)?;
    let session = reader(&s, &headers).await?;
    if !same_origin(&headers) || !super::same(&session.csrf, &f.csrf) {
        return Err(Denied::BadRequest(
            "this form has expired; reload the page and try again".into(),
        ));
    }
    if let Some(id) = super::cookie_value(&headers, COOKIE) {
        s.store.end_session(&session_digest(id)).await?;
    }
    let cookie = session_cookie("", 0, secure(&s));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/signin")).into_response())
}

#[derive(Deserialize)]
pub(super) struct Acknowledge {
    csrf: String,
    note: String,
}

/// `POST /drifts/{id}/acknowledge`: the drift stays listed, marked.
pub(super) async fn acknowledge(
    State(s): State<Shared>,
    headers: HeaderMap,
    p: Result<Path<i64>, PathRejection>,
    f: Result<Form<Acknowledge>, FormRejection>,
) -> Result<Response, Denied> {
    let id = path(p)?;
    let f = form(f)?;
    let who = actor(&s, &headers, &f.csrf).await?;
    let note = note(&f.note)?;
    if note.is_empty() {
        return Err(Denied::BadRequest(
            "say why in the note when acknowledging a drift".into(),
        ));
    }
    let action = NewAction {
        drift: Some(id),
        note: Some(note),
        ..NewAction::new(&who.name, ActionKind::AcknowledgeDrift)
    };
    s.store
        .record_action(&action, Utc::now())
        .await?
        .ok_or_else(|| Denied::NotFound(format!("no drift {id}")))?;
    info!(actor = %who.name, drift = id, "drift acknowledged");
    Ok(Redirect::to(&format!("/drifts#drift-{id}")).into_response())
}

#[derive(Deserialize)]
pub(super) struct Mute {
    csrf: String,
    /// The last day of the mute (`YYYY-MM-DD`), in the report's time zone.
    until: String,
    #[serde(default)]
    note: String,
}

/// `POST /vendors/{vendor}/mute`: no silence alert for the vendor through `until`.
pub(super) async fn mute(
    State(s): State<Shared>,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    f: Result<Form<Mute>, FormRejection>,
) -> Result<Response, Denied> {
    let vendor = path(p)?;
    let f = form(f)?;
    let who = actor(&s, &headers, &f.csrf).await?;
    let note = note(&f.note)?;
    let date = NaiveDate::parse_from_str(f.until.trim(), "%Y-%m-%d").map_err(|_| {
        Denied::BadRequest(format!("`{}` is not a date (YYYY-MM-DD)", f.until.trim()))
    })?;
    let next = date
        .succ_opt()
        .ok_or_else(|| Denied::BadRequest("that date is too far away".into()))?;
    let until = match &s.config.report {
        Some(r) => crate::report::build::day_start(r.timezone, next),
        None => next.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
    };
    let now = Utc::now();
    if until <= now {
        return Err(Denied::BadRequest(format!("{date} has already passed")));
    }
    let known = s
        .store
        .vendor_summaries()
        .await?
        .iter()
        .any(|v| v.vendor == vendor);
    if !known {
        return Err(Denied::NotFound(format!("no vendor `{vendor}`")));
    }
    let action = NewAction {
        vendor: Some(vendor.clone()),
        note: Some(note),
        mute_until: Some(until),
        ..NewAction::new(&who.name, ActionKind::MuteSilence)
    };
    s.store.record_action(&action, now).await?;
    info!(actor = %who.name, vendor = %vendor, until = %until, "silence alert muted");
    Ok(Redirect::to(&format!("/vendors/{}", view::seg(&vendor))).into_response())
}

/// `POST /messages/{id}/release`: reparses a quarantined message through the
/// parsers as they are on disk now.
pub(super) async fn release(
    State(s): State<Shared>,
    headers: HeaderMap,
    p: Result<Path<i64>, PathRejection>,
    f: Result<Form<CsrfOnly>, FormRejection>,
) -> Result<Response, Denied> {
    let id = path(p)?;
    let f = form(f)?;
    let who = actor(&s, &headers, &f.csrf).await?;
    let m = s
        .store
        .message(id)
        .await?
        .ok_or_else(|| Denied::NotFound(format!("no message {id}")))?;
    if m.disposition != "quarantined" {
        return Err(Denied::BadRequest(format!(
            "message {id} is {}, not quarantined",
            m.disposition
        )));
    }
    let config = s.config.clone();
    let loaded = tokio::task::spawn_blocking(move || crate::app::load_rules(&config))
        .await
        .map_err(|_| Denied::Internal)?;
    let (registry, rules) = loaded.map_err(|e| {
        Denied::BadRequest(format!(
            "the parsers cannot be loaded, so nothing was released: {e:#}"
        ))
    })?;
    let released = crate::reparse::release(&s.store, &registry, &rules, id)
        .await?
        .ok_or_else(|| Denied::NotFound(format!("no message {id}")))?;
    let outcome = match released.disposition.as_str() {
        "parsed" => format!("parsed: {} delta(s)", released.deltas),
        other => format!(
            "still {other}: {}",
            released.reason.as_deref().unwrap_or("no reason given")
        ),
    };
    let action = NewAction {
        vendor: released.vendor.clone(),
        message: Some(id),
        outcome: Some(outcome.clone()),
        ..NewAction::new(&who.name, ActionKind::ReleaseMessage)
    };
    s.store.record_action(&action, Utc::now()).await?;
    info!(actor = %who.name, message = id, outcome = %outcome, "quarantined message released");
    Ok(Redirect::to(&format!("/messages/{id}")).into_response())
}
