//! The page shell and the small pieces every page uses. maud escapes every
//! `(value)` it renders; nothing here builds HTML from strings.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::Session;

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · driftwatch" }
            link rel="stylesheet" href="/assets/style.css";
            script src="/assets/live.js" defer {}
        }
    }
}

/// A signed-in page. `fingerprint` is what `/live` said last when the page
/// was built; live.js refreshes `<main>` when the stream says otherwise.
pub(super) fn layout(title: &str, session: &Session, fingerprint: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-fingerprint=(fingerprint) {
                header.top {
                    nav {
                        a href="/" { "Vendors" }
                        a href="/drifts" { "Drifts" }
                        a href="/quarantine" { "Quarantine" }
                        a href="/reports" { "Reports" }
                    }
                    div.who {
                        span { (session.name) @if session.admin { " · admin" } }
                        form method="post" action="/signout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
                footer {
                    span id="live-status" { "static" }
                    " · session until " (when(session.expires_at))
                }
            }
        }
    }
}

pub(super) fn signin_page(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body {
                main id="main" class="narrow" {
                    h1 { "Sign in to driftwatch" }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action="/signin" {
                        label for="token" { "API token (read or admin scope)" }
                        input id="token" name="token" type="password" autocomplete="current-password" required;
                        button type="submit" { "Sign in" }
                    }
                    p.hint { "The token is sent once; the browser keeps only a session cookie." }
                }
            }
        }
    }
}

pub(super) fn error_page(title: &str, detail: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main id="main" class="narrow" {
                    h1 { (title) }
                    p.error { (detail) }
                    p { a href="/" { "Back to the vendors" } " · " a href="/signin" { "Sign in" } }
                }
            }
        }
    }
}

/// A timestamp readers scan: `2026-11-24 09:00 UTC`, machine-readable too.
pub(super) fn when(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) { (t.format("%Y-%m-%d %H:%M UTC")) } }
}

pub(super) fn when_opt(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => when(t),
        None => html! { span.muted { "never" } },
    }
}

pub(super) fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    crate::report::model::age(t, now)
}

/// One URL path segment: everything but unreserved characters percent-encoded,
/// so a vendor name or order reference with `/`, `?` or `#` stays one segment.
pub(super) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(super) fn order_link(vendor: &str, order_ref: &str) -> String {
    format!("/orders/{}/{}", seg(vendor), seg(order_ref))
}

/// A stored JSON value as a reader sees it.
pub(super) fn value(v: &serde_json::Value) -> String {
    crate::report::model::display_value(v)
}

/// A drift's JSON-text value (`local_value`/`remote_value`) for display.
pub(super) fn json_text(v: Option<&str>) -> String {
    match v {
        None => "(none)".into(),
        Some(t) => serde_json::from_str::<serde_json::Value>(t)
            .map(|v| value(&v))
            .unwrap_or_else(|_| t.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_segment_cannot_escape_its_place() {
        assert_eq!(seg("acme/../x?y#z"), "acme%2F..%2Fx%3Fy%23z");
        assert_eq!(seg("48213"), "48213");
        assert_eq!(order_link("a b", "<x>"), "/orders/a%20b/%3Cx%3E");
    }
}
