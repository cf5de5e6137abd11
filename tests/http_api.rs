//! The HTTP server inside `serve`: loopback by default, tokens and scopes,
//! problem documents, health, readiness and metrics, with a real client.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use reqwest::StatusCode;
use support::app::Serving;
use support::http::{ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, client, http_config, wait_healthy};
use support::vendor_mail;

/// This machine's address on its default route, if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?; // TEST-NET-1: no packet is sent by connect
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn api_is_not_reachable_on_a_non_loopback_address_by_default() {
    // With no `listen`, the address is loopback.
    let (cfg, _) = http_config("");
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("listen"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg.path, text).unwrap();
    let http = cfg.load().http.expect("[http] is enabled");
    assert_eq!(http.listen, "127.0.0.1:8787".parse::<SocketAddr>().unwrap());

    // A running server answers on loopback and refuses connections on the
    // machine's other address at the same port.
    let (cfg, base) = http_config("");
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    wait_healthy(&base).await;
    let port = base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    match non_loopback_ip() {
        Some(ip) => {
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect((ip, port)),
            )
            .await;
            assert!(
                matches!(r, Ok(Err(_))),
                "connecting to {ip}:{port} must be refused, got {r:?}"
            );
        }
        None => {
            eprintln!(
                "this machine has no non-loopback address; checked the configured listener instead"
            );
            assert!(app.config.http.as_ref().unwrap().listen.ip().is_loopback());
        }
    }
    serving.stop().await;
}

#[test]
fn public_listener_is_refused_unless_tls_or_a_proxy_protects_it() {
    let (cfg, _) = http_config("");
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    std::fs::write(&cfg.path, &text).unwrap();
    let e = driftwatch::config::Config::load(&cfg.path).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("http.listen"), "{e}");
    assert!(e.message.contains("behind_proxy"), "{e}");
    assert!(e.message.contains("tls_cert_file"), "{e}");
    // Serving HTTPS itself, it may listen there.
    let text = text.replace(
        "[http]\n",
        "[http]\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"\n",
    );
    std::fs::write(&cfg.path, text).unwrap();
    driftwatch::config::Config::load(&cfg.path).expect("a public listener with TLS loads");
}

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = client().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

async fn assert_problem(res: reqwest::Response, status: StatusCode, kind: &str) {
    assert_eq!(res.status(), status);
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "errors are RFC 9457 problem documents"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("urn:driftwatch:problem:{kind}"),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401_and_wrong_scope_gets_403() {
    let (cfg, base) = http_config("");
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    wait_healthy(&base).await;
    for path in [
        "/v1/deltas",
        "/v1/snapshot",
        "/metrics",
        "/v1/deltas/stream",
    ] {
        let url = format!("{base}{path}");
        let res = get(&url, None).await;
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer realm=\"driftwatch\"",
            "{path}"
        );
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert_problem(
            get(&url, Some("not-a-token")).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        assert_problem(
            get(&url, Some(INGEST_TOKEN)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
        if path != "/v1/deltas/stream" {
            assert_eq!(
                get(&url, Some(READ_TOKEN)).await.status(),
                StatusCode::OK,
                "{path}"
            );
            assert_eq!(
                get(&url, Some(ADMIN_TOKEN)).await.status(),
                StatusCode::OK,
                "{path}"
            );
        }
    }
    // Health probes are open; unknown routes and bad queries are problems too.
    assert_eq!(
        get(&format!("{base}/healthz"), None).await.status(),
        StatusCode::OK
    );
    assert_problem(
        get(&format!("{base}/v2/nothing"), Some(READ_TOKEN)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_problem(
        get(&format!("{base}/v1/deltas?after=abc"), Some(READ_TOKEN)).await,
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
    assert_problem(
        get(&format!("{base}/v1/deltas?limit=0"), Some(READ_TOKEN)).await,
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
    let res = client()
        .delete(format!("{base}/v1/deltas"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    serving.stop().await;
}

#[tokio::test]
async fn token_values_never_reach_the_log_or_debug_output() {
    let (cfg, _) = http_config("");
    let config = cfg.load();
    let shown = format!("{config:?}");
    for t in [READ_TOKEN, INGEST_TOKEN, ADMIN_TOKEN] {
        assert!(!shown.contains(t), "Debug of the config shows a token");
    }
    // The binary's own log at the most verbose level, through a request with a token.
    let (mut child, log) = support::bin::spawn_logged(&cfg, &["serve"], "trace");
    let base = format!("http://{}", config.http.as_ref().unwrap().listen);
    wait_healthy(&base).await;
    assert_eq!(
        get(&format!("{base}/v1/deltas"), Some(READ_TOKEN))
            .await
            .status(),
        StatusCode::OK
    );
    support::bin::terminate(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("HTTP API listening"), "{text}");
    for t in [READ_TOKEN, INGEST_TOKEN, ADMIN_TOKEN] {
        assert!(!text.contains(t), "the log shows a token");
    }
}

#[tokio::test]
async fn readyz_is_ready_when_the_store_writes_and_the_mailbox_runs() {
    let (cfg, base) = http_config("");
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    wait_healthy(&base).await;
    // The Maildir source reports in as soon as its loop starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let res = get(&format!("{base}/readyz"), None).await;
        let ok = res.status() == StatusCode::OK;
        let body: serde_json::Value = res.json().await.unwrap();
        if ok {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["store", "mailbox local/maildir"], "{body}");
    serving.stop().await;

    // A store that cannot take writes is not ready, and the answer says which check failed.
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    wait_healthy(&base).await;
    // Another process holding the write lock: the store cannot take writes now.
    let lock = support::db::WriteLockHold::take(&cfg.database()).await;
    let res = get(&format!("{base}/readyz"), None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("store: no write lock"),
        "{body}"
    );
    lock.release().await;
    serving.stop().await;
}

#[tokio::test]
async fn metrics_count_messages_deltas_and_readers_in_prometheus_text() {
    let (cfg, base) = http_config("");
    cfg.deliver(
        "1.eml",
        &vendor_mail::acme(910001, "Accepted", "11/23/2026 09:10 AM", "m1@acme"),
    );
    cfg.deliver(
        "2.eml",
        &vendor_mail::acme(910002, "Report Delivered", "11/23/2026 09:12 AM", "m2@acme"),
    );
    cfg.deliver("3.eml", &vendor_mail::unknown_sender(1));
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    let serving = Serving::start(&app);
    wait_healthy(&base).await;
    let res = get(&format!("{base}/metrics"), Some(READ_TOKEN)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.unwrap();
    for line in [
        "driftwatch_messages{mailbox=\"local\",folder=\"maildir\",vendor=\"acme-appraisal\",disposition=\"parsed\"} 2",
        "driftwatch_deltas_total{source=\"email\"} 2",
        "# TYPE driftwatch_open_drifts gauge",
        "driftwatch_mail_lag_seconds_count 3",
        "driftwatch_feed_readers 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with(
            "driftwatch_messages{mailbox=\"local\",folder=\"maildir\",vendor=\"\",disposition="
        )),
        "mail from an unknown sender is counted without a vendor:\n{text}"
    );
    // Every sample line belongs to a declared family.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        let family = name.trim_end_matches("_sum").trim_end_matches("_count");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "undeclared `{l}`"
        );
    }
    serving.stop().await;
}
