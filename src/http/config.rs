//! The `[http]` table: where the API listens and who may call it.
//!
//! The listener stays on loopback unless the config says otherwise, and a
//! non-loopback address without TLS is refused unless the operator confirms
//! a TLS-terminating proxy sits in front (`behind_proxy = true`). Tokens are
//! references to env vars or files, resolved when the server starts and kept
//! only as SHA-256 digests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;
use crate::store::EventType;
use driftwatch_core::toml_source::{ConfigError, TomlSource};

/// The address used when `listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    enabled: Option<bool>,
    listen: Option<String>,
    behind_proxy: Option<bool>,
    #[serde(default)]
    token: Vec<RawToken>,
    #[serde(default)]
    hook: Vec<RawHook>,
    #[serde(default)]
    subscription: Vec<RawSubscription>,
    sse_heartbeat_secs: Option<u64>,
    feed_poll_ms: Option<u64>,
    max_wait_secs: Option<u64>,
    token_rate_per_sec: Option<f64>,
    token_burst: Option<u32>,
    hook_rate_per_sec: Option<f64>,
    hook_burst: Option<u32>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    name: String,
    url: String,
    events: Vec<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    allow_http: Option<bool>,
    timeout_secs: Option<u64>,
    max_attempts: Option<u32>,
    retry_initial_ms: Option<u64>,
    retry_max_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    scopes: Vec<Scope>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    vendor: String,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    tolerance_secs: Option<u64>,
    max_body_bytes: Option<usize>,
    mapping: RawHookMapping,
    #[serde(default)]
    status_map: std::collections::BTreeMap<String, crate::model::Status>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHookMapping {
    items: Option<String>,
    order_ref: String,
    status: Option<String>,
    event_time: Option<String>,
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
}

/// Where each value sits in a vendor's webhook JSON (RFC 6901 pointers).
#[derive(Debug, Clone)]
pub struct HookMapping {
    /// An array of events in one body; absent: the body is one event.
    pub items: Option<String>,
    pub order_ref: String,
    pub status: Option<String>,
    /// RFC 3339; absent: the time the webhook was received.
    pub event_time: Option<String>,
    pub fields: std::collections::BTreeMap<String, String>,
}

/// Webhook intake for one vendor: `POST /v1/hooks/{vendor}`.
#[derive(Debug, Clone)]
pub struct HookSettings {
    pub vendor: String,
    /// The Standard Webhooks secret (`whsec_<base64>`); without one, the
    /// sender must present a bearer token with the `ingest` scope.
    pub secret: Option<Secret>,
    /// How far webhook-timestamp may be from now: the replay window.
    pub tolerance: Duration,
    pub max_body_bytes: usize,
    pub mapping: HookMapping,
    /// The vendor's status words → canonical status.
    pub status_map: std::collections::BTreeMap<String, crate::model::Status>,
}

/// What a bearer token may do. `admin` implies the other two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The feed, the read API and `/metrics`.
    Read,
    /// Posting to webhook intake with a token instead of a vendor signature.
    Ingest,
    /// Everything, including replaying stored webhooks.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
        }
    }
}

/// A configured token: a name for logs, where its value lives, what it may do.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub name: String,
    pub secret: Secret,
    pub scopes: Vec<Scope>,
}

/// An outbound webhook subscription: where alerts go and which ones.
#[derive(Debug, Clone)]
pub struct SubscriptionSettings {
    /// Names the subscription in `hooks deliveries`, metrics and webhook ids.
    pub name: String,
    pub url: reqwest::Url,
    pub events: Vec<EventType>,
    /// The Standard Webhooks signing secret (`whsec_<base64>`).
    pub secret: Secret,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Attempts before a delivery is given up (`dead`).
    pub max_attempts: u32,
    /// The wait after the first failure; doubles per failure up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// A token bucket's settings: a steady rate and how many requests may come at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: u32,
}

/// Certificate and key files for serving HTTPS directly.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// The operator confirmed a TLS-terminating proxy in front of a
    /// non-loopback listener.
    pub behind_proxy: bool,
    pub tokens: Vec<TokenSettings>,
    pub hooks: Vec<HookSettings>,
    /// An SSE comment is sent this often on an idle stream, so proxies and
    /// clients can tell a quiet feed from a dead connection.
    pub sse_heartbeat: Duration,
    /// How often the feed looks for commits made by another process on the
    /// same database (commits in this process wake readers at once).
    pub feed_poll: Duration,
    /// Upper bound of a long poll's `wait`.
    pub max_wait: Duration,
    pub subscriptions: Vec<SubscriptionSettings>,
    /// Per bearer token (by name).
    pub token_rate: RateLimit,
    /// Per vendor, on webhook intake.
    pub hook_rate: RateLimit,
    /// Serve HTTPS with these files (reloaded when they change).
    pub tls: Option<TlsFiles>,
}

impl HttpSettings {
    /// The settings of an `[http]` table with nothing set.
    pub fn defaults() -> HttpSettings {
        HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            behind_proxy: false,
            tokens: vec![],
            hooks: vec![],
            sse_heartbeat: Duration::from_secs(15),
            feed_poll: Duration::from_millis(250),
            max_wait: Duration::from_secs(60),
            subscriptions: vec![],
            token_rate: RateLimit {
                per_sec: 50.0,
                burst: 200,
            },
            hook_rate: RateLimit {
                per_sec: 200.0,
                burst: 1000,
            },
            tls: None,
        }
    }
}

/// A relative path in the config is relative to the config file's directory.
fn under(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

/// `https` always; plain `http` only to a loopback host (a receiver on
/// this machine) or when the operator says so.
fn outbound_url(text: &str, allow_http: bool) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            if crate::store::is_loopback_host(url.host_str().unwrap_or_default()) || allow_http {
                Ok(url)
            } else {
                Err(format!(
                    "`{text}` is plain http to another machine: alerts and their signatures would \
                     cross the network readable; use https, or set allow_http = true"
                ))
            }
        }
        other => Err(format!("`{other}` URLs cannot receive webhooks; use https")),
    }
}

/// Validates `[http]`; `None` when `enabled = false`.
pub fn validate(
    src: &TomlSource,
    raw: RawHttp,
    base: &Path,
) -> Result<Option<HttpSettings>, ConfigError> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let d = HttpSettings::defaults();
    let listen = match &raw.listen {
        None => d.listen,
        Some(s) => s.parse::<SocketAddr>().map_err(|e| {
            src.error(
                "http.listen",
                format!("`{s}` is not an address:port ({e}); e.g. \"{DEFAULT_LISTEN}\""),
            )
        })?,
    };
    let behind_proxy = raw.behind_proxy.unwrap_or(false);
    let tls = match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(c), Some(k)) => Some(TlsFiles {
            cert: under(base, c),
            key: under(base, k),
        }),
        (None, None) => None,
        (Some(_), None) => return Err(src.error("http.tls_cert_file", "set tls_key_file too")),
        (None, Some(_)) => return Err(src.error("http.tls_key_file", "set tls_cert_file too")),
    };
    if !listen.ip().is_loopback() && !behind_proxy && tls.is_none() {
        return Err(src.error(
            "http.listen",
            format!(
                "{listen} is reachable from other machines over plain HTTP; set tls_cert_file and \
                 tls_key_file, or serve it behind a TLS-terminating reverse proxy and set \
                 behind_proxy = true, or listen on 127.0.0.1"
            ),
        ));
    }
    let mut tokens: Vec<TokenSettings> = Vec::new();
    for (i, t) in raw.token.into_iter().enumerate() {
        let key = |k: &str| format!("http.token[{i}].{k}");
        if tokens.iter().any(|x| x.name == t.name) {
            return Err(src.error(&key("name"), format!("duplicate token name `{}`", t.name)));
        }
        let secret = match (t.token_env, t.token_file) {
            (Some(v), None) => Secret::Env(v),
            (None, Some(p)) => Secret::File(if p.is_absolute() { p } else { base.join(p) }),
            (None, None) => {
                return Err(src.error(&key("name"), "set token_env or token_file"));
            }
            (Some(_), Some(_)) => {
                return Err(src.error(
                    &key("token_file"),
                    "conflicts with `token_env`: give one source",
                ));
            }
        };
        if t.scopes.is_empty() {
            return Err(src.error(&key("scopes"), "list at least one of read, ingest, admin"));
        }
        tokens.push(TokenSettings {
            name: t.name,
            secret,
            scopes: t.scopes,
        });
    }
    let mut hooks: Vec<HookSettings> = Vec::new();
    for (i, h) in raw.hook.into_iter().enumerate() {
        let key = |k: &str| format!("http.hook[{i}].{k}");
        if hooks.iter().any(|x| x.vendor == h.vendor) {
            return Err(src.error(&key("vendor"), format!("duplicate hook for `{}`", h.vendor)));
        }
        let secret = match (h.secret_env, h.secret_file) {
            (Some(v), None) => Some(Secret::Env(v)),
            (None, Some(p)) => Some(Secret::File(if p.is_absolute() { p } else { base.join(p) })),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(src.error(
                    &key("secret_file"),
                    "conflicts with `secret_env`: give one source",
                ));
            }
        };
        let m = h.mapping;
        for (k, p) in [
            ("mapping.order_ref", Some(&m.order_ref)),
            ("mapping.items", m.items.as_ref()),
            ("mapping.status", m.status.as_ref()),
            ("mapping.event_time", m.event_time.as_ref()),
        ]
        .into_iter()
        .chain(m.fields.values().map(|p| ("mapping.fields", Some(p))))
        {
            if let Some(p) = p
                && !p.is_empty()
                && !p.starts_with('/')
            {
                return Err(src.error(
                    &key(k),
                    format!("`{p}` is not a JSON pointer (it starts with `/`, e.g. \"/order/id\")"),
                ));
            }
        }
        hooks.push(HookSettings {
            vendor: h.vendor,
            secret,
            tolerance: Duration::from_secs(h.tolerance_secs.unwrap_or(300)),
            max_body_bytes: h.max_body_bytes.unwrap_or(1024 * 1024),
            mapping: HookMapping {
                items: m.items,
                order_ref: m.order_ref,
                status: m.status,
                event_time: m.event_time,
                fields: m.fields,
            },
            status_map: h.status_map,
        });
    }
    let mut subscriptions: Vec<SubscriptionSettings> = Vec::new();
    for (i, r) in raw.subscription.into_iter().enumerate() {
        let key = |k: &str| format!("http.subscription[{i}].{k}");
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(src.error(
                &key("name"),
                "use letters, digits, `-` and `_` (it becomes part of each webhook-id)",
            ));
        }
        if subscriptions.iter().any(|x| x.name == r.name) {
            return Err(src.error(&key("name"), format!("duplicate subscription `{}`", r.name)));
        }
        let url = outbound_url(&r.url, r.allow_http.unwrap_or(false))
            .map_err(|e| src.error(&key("url"), e))?;
        let mut events = Vec::new();
        for e in &r.events {
            let t = EventType::parse(e).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                src.error(
                    &key("events"),
                    format!("unknown event `{e}`; known: {}", known.join(", ")),
                )
            })?;
            if !events.contains(&t) {
                events.push(t);
            }
        }
        if events.is_empty() {
            return Err(src.error(&key("events"), "list at least one event"));
        }
        let secret = match (r.secret_env, r.secret_file) {
            (Some(v), None) => Secret::Env(v),
            (None, Some(p)) => Secret::File(under(base, p)),
            (None, None) => {
                return Err(src.error(
                    &key("secret_env"),
                    "set secret_env or secret_file: every alert is signed",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(src.error(
                    &key("secret_file"),
                    "conflicts with `secret_env`: give one source",
                ));
            }
        };
        let max_attempts = r.max_attempts.unwrap_or(15);
        if max_attempts == 0 {
            return Err(src.error(&key("max_attempts"), "must be at least 1"));
        }
        subscriptions.push(SubscriptionSettings {
            name: r.name,
            url,
            events,
            secret,
            timeout: Duration::from_secs(r.timeout_secs.unwrap_or(10).max(1)),
            max_attempts,
            retry_initial: Duration::from_millis(r.retry_initial_ms.unwrap_or(5000).max(10)),
            retry_max: Duration::from_secs(r.retry_max_secs.unwrap_or(3600).max(1)),
        });
    }
    let rate = |per_sec: Option<f64>, burst: Option<u32>, d: RateLimit, k: &str| {
        let r = RateLimit {
            per_sec: per_sec.unwrap_or(d.per_sec),
            burst: burst.unwrap_or(d.burst),
        };
        if !(r.per_sec.is_finite() && r.per_sec > 0.0) || r.burst == 0 {
            return Err(src.error(
                &format!("http.{k}_rate_per_sec"),
                format!("{k}_rate_per_sec must be above 0 and {k}_burst at least 1"),
            ));
        }
        Ok(r)
    };
    let token_rate = rate(
        raw.token_rate_per_sec,
        raw.token_burst,
        d.token_rate,
        "token",
    )?;
    let hook_rate = rate(raw.hook_rate_per_sec, raw.hook_burst, d.hook_rate, "hook")?;
    let secs = |v: Option<u64>, dflt: Duration| v.map(Duration::from_secs).unwrap_or(dflt);
    let sse_heartbeat = secs(raw.sse_heartbeat_secs, d.sse_heartbeat);
    let feed_poll = raw
        .feed_poll_ms
        .map(Duration::from_millis)
        .unwrap_or(d.feed_poll);
    if sse_heartbeat.is_zero() {
        return Err(src.error("http.sse_heartbeat_secs", "must be at least 1"));
    }
    if !(10..=1000).contains(&feed_poll.as_millis()) {
        return Err(src.error(
            "http.feed_poll_ms",
            "must be between 10 and 1000 (readers are promised a commit within 1 s)",
        ));
    }
    Ok(Some(HttpSettings {
        listen,
        behind_proxy,
        tokens,
        hooks,
        sse_heartbeat,
        feed_poll,
        max_wait: secs(raw.max_wait_secs, d.max_wait),
        subscriptions,
        token_rate,
        hook_rate,
        tls,
    }))
}
