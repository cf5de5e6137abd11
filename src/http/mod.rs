//! The HTTP server inside `serve`: the delta feed (long poll, SSE,
//! snapshot), the read API, health, Prometheus metrics and the dashboard
//! (server-rendered pages at `/`, see `dashboard`).
//!
//! This is the only module that knows HTTP and wire formats: it turns the
//! store's typed rows into JSON and problem documents; it reads through
//! `Store` methods and never writes SQL. It listens on loopback unless the
//! config says otherwise, and every route but the health probes needs a
//! bearer token with the right scope.

mod api;
mod auth;
pub mod config;
mod dashboard;
mod feed;
mod health;
pub mod hooks;
mod metrics;
pub mod outbound;
mod problem;
mod rate;
pub mod signature;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::routing::{MethodRouter, get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::Config;
use crate::store::Store;
use auth::Tokens;
use config::HttpSettings;
use problem::Problem;

/// What every handler shares.
struct Inner {
    store: Store,
    config: Config,
    settings: HttpSettings,
    tokens: Tokens,
    /// Webhook intake per vendor.
    hooks: std::collections::HashMap<String, hooks::Hook>,
    /// Intake's rate limit, per vendor.
    hook_rate: rate::Limiter,
    /// Intake's group commit.
    committer: hooks::Committer,
    /// The end of the delta log, as last seen by the feed's watcher.
    head: watch::Receiver<i64>,
    /// Fires on shutdown: long polls answer and streams end, so the server
    /// can stop without waiting on idle readers.
    shutdown: CancellationToken,
}

type Shared = Arc<Inner>;

/// A bound, not yet running server: binding and token resolution happen in
/// `bind` so a bad address or a missing token stops `serve` at start.
pub struct Server {
    listener: Listening,
    /// Where it listens (port 0 resolved).
    addr: Option<SocketAddr>,
    inner: Shared,
    head: watch::Sender<i64>,
    outbound: outbound::Outbound,
}

impl Server {
    pub async fn bind(
        store: Store,
        config: Config,
        settings: HttpSettings,
        shutdown: CancellationToken,
    ) -> Result<Server> {
        let tokens = Tokens::resolve(&settings.tokens, settings.token_rate).await?;
        let hooks = hooks::resolve(&settings.hooks).await?;
        let outbound = outbound::Outbound::build(
            store.clone(),
            &settings.subscriptions,
            silent_after_hours(&config),
        )
        .await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {} ([http] listen)", settings.listen))?;
        let addr = listener.local_addr().ok();
        let listener = match &settings.tls {
            None => Listening::Plain(listener),
            Some(files) => Listening::Tls(
                tls::TlsListener::new(listener, files, shutdown.clone())
                    .context("cannot serve HTTPS ([http] tls_cert_file, tls_key_file)")?,
            ),
        };
        let end = store
            .log_end()
            .await
            .context("cannot read the end of the delta log")?;
        let (head, head_rx) = watch::channel(end);
        let hook_rate = rate::Limiter::new(settings.hook_rate, "vendor");
        let committer = hooks::Committer::start(store.clone());
        Ok(Server {
            listener,
            addr,
            head,
            outbound,
            inner: Arc::new(Inner {
                store,
                config,
                settings,
                tokens,
                hooks,
                hook_rate,
                committer,
                head: head_rx,
                shutdown,
            }),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Serves until the shutdown token fires, then lets in-flight requests finish.
    pub async fn run(self) {
        let s = self.inner.clone();
        let watcher = tokio::spawn(feed::watch_head(
            s.store.clone(),
            self.head,
            s.settings.feed_poll,
            s.shutdown.clone(),
        ));
        let alerts = tokio::spawn(self.outbound.run(s.shutdown.clone()));
        info!(
            listen = %self.addr.map(|a| a.to_string()).unwrap_or_default(),
            tls = matches!(self.listener, Listening::Tls(_)),
            "HTTP API listening"
        );
        let shutdown = s.shutdown.clone();
        let app = router(s);
        let stop = async move { shutdown.cancelled().await };
        let served = match self.listener {
            Listening::Plain(l) => axum::serve(l, app).with_graceful_shutdown(stop).await,
            Listening::Tls(l) => axum::serve(l, app).with_graceful_shutdown(stop).await,
        };
        if let Err(e) = served {
            error!(error = %e, "HTTP server failed");
        }
        let _ = watcher.await;
        let _ = alerts.await;
        info!("HTTP API stopped");
    }
}

/// The bound socket: plain HTTP, or HTTPS terminated here.
enum Listening {
    Plain(TcpListener),
    Tls(tls::TlsListener),
}

/// When a vendor counts as silent: the report's setting, used by the
/// API, the dashboard and `vendor.silent` alerts alike.
fn silent_after_hours(config: &Config) -> u32 {
    config.report.as_ref().map_or(48, |r| r.silent_after_hours)
}

/// Every route, in one table so a test can check the OpenAPI document
/// describes each of them.
fn routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![
        ("/healthz", get(health::healthz)),
        ("/readyz", get(health::readyz)),
        ("/metrics", get(metrics::metrics)),
        ("/v1/deltas", get(feed::long_poll)),
        ("/v1/deltas/stream", get(feed::stream)),
        ("/v1/snapshot", get(feed::snapshot)),
        ("/v1/vendors", get(api::vendors)),
        ("/v1/orders", get(api::orders)),
        ("/v1/orders/{vendor}/{order_ref}", get(api::order)),
        ("/v1/drifts", get(api::drifts)),
        ("/v1/quarantine", get(api::quarantine)),
        ("/v1/runs", get(api::runs)),
        ("/v1/messages/{id}", get(api::message)),
        ("/v1/messages/{id}/raw", get(api::message_raw)),
        ("/v1/openapi.json", get(api::openapi)),
        ("/v1/hooks/{vendor}", post(hooks::intake)),
    ]
}

fn router(s: Shared) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |r, (path, route)| r.route(path, route))
        .merge(dashboard::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(s)
}

async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("no route {}", uri.path()))
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not take that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_describes_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(api::OPENAPI).unwrap();
        let mut documented: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut served: Vec<&str> = routes().into_iter().map(|(p, _)| p).collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
