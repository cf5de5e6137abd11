//! The dashboard: server-rendered pages at `/` for the people who run
//! driftwatch, with the same tokens and scopes as the API.
//!
//! A person signs in once by posting a token to `/signin`; that opens a
//! server-side session (only the SHA-256 of its random id is stored) held in
//! an `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind a TLS proxy).
//! The token never appears in a URL or a page. Pages need the `read` scope,
//! actions `admin`; every POST carries the session's synchronizer token and,
//! when the browser sends one, an Origin of this server.
//!
//! Every vendor-supplied string (subjects, statuses, fields, file names, raw
//! mail) goes through maud, which escapes by default; pages load no remote
//! resource, and the Content-Security-Policy (`default-src 'self'`) would
//! stop an inline script even if one slipped through. The only script is
//! `live.js`, a few lines that refresh the page when `/live` says something
//! changed.

mod actions;
mod pages;
mod view;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use maud::Markup;
use sha2::{Digest, Sha256};

use super::Shared;
use super::config::Scope;

/// How long a sign-in lasts.
const SESSION_HOURS: i64 = 12;
/// The session cookie's name.
const COOKIE: &str = "dw_session";
/// How often `/live` looks for changes the head watcher cannot see
/// (quarantined mail, drifts, alerts, actions: none of them append deltas).
const LIVE_POLL: Duration = Duration::from_millis(400);

/// The dashboard's routes, merged into the API's router (they are not API
/// routes: the OpenAPI document does not list them).
pub(super) fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(pages::vendors))
        .route("/signin", get(pages::signin_form).post(actions::signin))
        .route("/signout", post(actions::signout))
        .route("/drifts", get(pages::drifts))
        .route("/drifts/{id}/acknowledge", post(actions::acknowledge))
        .route("/orders/{vendor}/{order_ref}", get(pages::order))
        .route("/quarantine", get(pages::quarantine))
        .route("/messages/{id}", get(pages::message))
        .route("/messages/{id}/release", post(actions::release))
        .route("/vendors/{vendor}", get(pages::vendor))
        .route("/vendors/{vendor}/mute", post(actions::mute))
        .route("/reports", get(pages::reports))
        .route("/live", get(live))
        .route("/assets/live.js", get(live_js))
        .route("/assets/style.css", get(style_css))
        .layer(axum::middleware::map_response(harden))
}

/// Headers on every dashboard response: nothing but this server's own
/// files may load or run, no framing, no caching of pages with order data.
async fn harden(mut res: Response<Body>) -> Response<Body> {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Who is signed in, with what.
pub(super) struct Session {
    pub name: String,
    pub csrf: String,
    pub admin: bool,
    pub expires_at: DateTime<Utc>,
}

/// Why a request cannot go on: the page to answer with.
pub(super) enum Denied {
    /// Not signed in (or the session expired, or its token was removed).
    SignIn,
    /// Signed in without the scope this needs.
    Forbidden(&'static str),
    BadRequest(String),
    NotFound(String),
    Internal,
}

impl From<crate::store::StoreError> for Denied {
    fn from(e: crate::store::StoreError) -> Denied {
        tracing::error!(error = %e, "dashboard database read failed");
        Denied::Internal
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> axum::response::Response {
        let (status, title, detail) = match self {
            Denied::SignIn => return Redirect::to("/signin").into_response(),
            Denied::Forbidden(scope) => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                format!("This needs a token with the `{scope}` scope. Sign in with one."),
            ),
            Denied::BadRequest(d) => (StatusCode::BAD_REQUEST, "Bad request", d),
            Denied::NotFound(d) => (StatusCode::NOT_FOUND, "Not found", d),
            Denied::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server log has the cause.".to_string(),
            ),
        };
        (status, html(view::error_page(title, &detail))).into_response()
    }
}

/// A rendered page as a response. maud escapes the markup in every value;
/// the bidi overrides it lets through (which would show the rest of a line
/// reversed) are replaced here, once for the whole page: the templates hold
/// none, so each one came from outside.
pub(super) fn html(m: Markup) -> axum::response::Html<String> {
    let page = m.into_string();
    axum::response::Html(
        match driftwatch_core::clean::replace(&page, driftwatch_core::clean::reorders) {
            std::borrow::Cow::Borrowed(_) => page,
            std::borrow::Cow::Owned(cleaned) => cleaned,
        },
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random value (session ids, CSRF tokens): 32 bytes from the OS.
fn random_hex() -> Result<String, Denied> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a dashboard session");
        Denied::Internal
    })?;
    Ok(hex(&b))
}

/// What the database keeps of a session id.
fn session_digest(id: &str) -> String {
    hex(&Sha256::digest(id.as_bytes()))
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request's session, if it has a live one whose token is still configured.
async fn session(s: &Shared, headers: &HeaderMap) -> Result<Option<Session>, Denied> {
    let Some(id) = cookie_value(headers, COOKIE) else {
        return Ok(None);
    };
    let Some(row) = s.store.session(&session_digest(id), Utc::now()).await? else {
        return Ok(None);
    };
    let Some(read) = s.tokens.named_allows(&row.token_name, Scope::Read) else {
        return Ok(None);
    };
    if !read {
        return Ok(None);
    }
    let admin = s
        .tokens
        .named_allows(&row.token_name, Scope::Admin)
        .unwrap_or(false);
    Ok(Some(Session {
        name: row.token_name,
        csrf: row.csrf,
        admin,
        expires_at: row.expires_at,
    }))
}

/// A session with the `read` scope, or a redirect to the sign-in form.
pub(super) async fn reader(s: &Shared, headers: &HeaderMap) -> Result<Session, Denied> {
    session(s, headers).await?.ok_or(Denied::SignIn)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A POST from a page this server rendered: when the browser names the
/// page's origin (Origin, or Referer without it), it must be this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let matches = |url: &str| {
        ["http://", "https://"].iter().any(|scheme| {
            url.strip_prefix(scheme).is_some_and(|rest| {
                rest == host || rest.strip_prefix(host).is_some_and(|p| p.starts_with('/'))
            })
        })
    };
    match headers.get(header::ORIGIN) {
        Some(o) => o.to_str().is_ok_and(matches),
        None => headers
            .get(header::REFERER)
            .is_none_or(|r| r.to_str().is_ok_and(matches)),
    }
}

/// A session allowed to act: signed in, the form's CSRF token is the
/// session's, the request comes from this site, and the token has `admin`.
pub(super) async fn actor(s: &Shared, headers: &HeaderMap, csrf: &str) -> Result<Session, Denied> {
    if !same_origin(headers) {
        return Err(Denied::Forbidden("admin (and a request from this site)"));
    }
    let session = session(s, headers).await?.ok_or(Denied::SignIn)?;
    if !same(&session.csrf, csrf) {
        return Err(Denied::BadRequest(
            "this form has expired; reload the page and try again".into(),
        ));
    }
    if !session.admin {
        return Err(Denied::Forbidden("admin"));
    }
    Ok(session)
}

/// `Secure` when the dashboard is reached over HTTPS: the server itself
/// speaks plain HTTP, so that means the operator's TLS proxy in front
/// (`behind_proxy = true`). Forwarded headers are not trusted (README,
/// "Behind a reverse proxy").
fn secure(s: &Shared) -> bool {
    s.settings.behind_proxy
}

fn session_cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `GET /live`: Server-Sent Events telling an open page that what it shows
/// changed. Wakes on the delta feed's head (new deltas, at once) and polls a
/// cheap fingerprint for everything else; sends the fingerprint when it moves.
async fn live(
    State(s): State<Shared>,
    headers: HeaderMap,
) -> Result<axum::response::Response, Denied> {
    reader(&s, &headers).await?;
    struct Live {
        s: Shared,
        head: tokio::sync::watch::Receiver<i64>,
        last: Option<String>,
    }
    let state = Live {
        head: s.head.clone(),
        s: s.clone(),
        last: None,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.last.is_some() {
                tokio::select! {
                    _ = st.s.shutdown.cancelled() => return None,
                    r = st.head.changed() => { r.ok()?; }
                    _ = tokio::time::sleep(LIVE_POLL) => {}
                }
            }
            match st.s.store.dashboard_fingerprint().await {
                Ok(fp) if st.last.as_deref() != Some(fp.as_str()) => {
                    st.last = Some(fp.clone());
                    let e = Event::default().event("change").data(fp);
                    return Some((Ok::<_, Infallible>(e), st));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard live read failed; closing the stream");
                    return None;
                }
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(s.settings.sse_heartbeat))
        .into_response())
}

fn asset(content_type: &'static str, body: &'static str) -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn live_js() -> axum::response::Response {
    asset("text/javascript; charset=utf-8", include_str!("live.js"))
}

async fn style_css() -> axum::response::Response {
    asset("text/css; charset=utf-8", include_str!("style.css"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                *k,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn a_post_from_another_site_is_refused() {
        let h = headers(&[
            ("host", "127.0.0.1:8787"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!same_origin(&h));
        let h = headers(&[
            ("host", "127.0.0.1:8787"),
            ("origin", "http://127.0.0.1:8787.evil"),
        ]);
        assert!(!same_origin(&h));
        let h = headers(&[
            ("host", "127.0.0.1:8787"),
            ("origin", "http://127.0.0.1:8787"),
        ]);
        assert!(same_origin(&h));
        let h = headers(&[("host", "127.0.0.1:8787"), ("referer", "http://evil/x")]);
        assert!(!same_origin(&h));
        let h = headers(&[
            ("host", "127.0.0.1:8787"),
            ("referer", "http://127.0.0.1:8787/drifts"),
        ]);
        assert!(same_origin(&h));
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_over_https() {
        let c = session_cookie("abc", 60, true);
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Max-Age=60",
            "Path=/",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!session_cookie("abc", 60, false).contains("Secure"));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = headers(&[("cookie", "x_dw_session=no; dw_session=yes; other=1")]);
        assert_eq!(cookie_value(&h, COOKIE), Some("yes"));
    }
}
