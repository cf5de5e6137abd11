//! Outbound alerts from `serve` to a real local receiver: every event of a
//! reconcile run and an ingest batch reaches a receiver that was down and
//! came back (across a restart of `serve`), once per webhook-id, signed;
//! and the rate limits answer 429 with Retry-After.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reconcile_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use chrono::{TimeZone, Utc};
use driftwatch::http::signature::{decode_secret, signature_matches};
use driftwatch::model::{DeltaDraft, DeltaSource, Status, TimeSource};
use driftwatch::reconcile::{RunOptions, run_vendor};
use driftwatch::store::{ArchivedMessage, Disposition, IngestBatch, PackedRaw};
use serde_json::Value;
use support::app::{Serving, TestConfig};
use support::db::count;
use support::http::{READ_TOKEN, client, http_config};

const SECRET: &[u8] = b"alerts-test-secret-32-bytes-long";

/// What the receiver saw: each request's webhook-id, whether its
/// signature verified, and its body.
#[derive(Default)]
struct Received {
    requests: Vec<(String, bool, Value)>,
}

/// The subscriber's side: a real HTTP server on `port` that checks the
/// Standard Webhooks signature of everything posted to `/alerts`.
async fn receiver(port: u16, seen: Arc<Mutex<Received>>) -> tokio::task::JoinHandle<()> {
    let key = SECRET.to_vec();
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (seen, key) = (seen.clone(), key.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let id = h("webhook-id");
                let ts: i64 = h("webhook-timestamp").parse().unwrap_or(0);
                let ok = signature_matches(&key, &id, ts, &body, &h("webhook-signature"));
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().requests.push((id, ok, json));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the receiver's port");
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

const VENDOR: &str = r#"
[[vendor]]
name = "acme"
policy = "flag"
[vendor.export]
kind = "file"
path = "export.csv"
as_of = "modified"
[vendor.mapping]
key = "Order No"
status = "Status"
[vendor.status_map]
"Open" = "scheduled"
"Done" = "completed"
[vendor.guard]
max_drift_pct = 100
max_row_drop_pct = 100
"#;

fn alerts_config(receiver_port: u16) -> TestConfig {
    let sub = format!(
        "\n[[http.subscription]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{receiver_port}/alerts\"\n\
         events = [\"drift.opened\", \"drift.closed\", \"keyframe.refused\", \"reconcile.failed\", \
         \"format.changed\", \"vendor.silent\", \"mail.quarantined\"]\n\
         secret_file = \"alerts.whsec\"\nretry_initial_ms = 50\nretry_max_secs = 1\ntimeout_secs = 2\n\
         max_attempts = 1000\n"
    );
    let (cfg, _) = http_config(&sub);
    cfg.write_whsec("alerts.whsec", SECRET);
    let mut text = std::fs::read_to_string(&cfg.path).unwrap();
    text.push_str(VENDOR);
    std::fs::write(&cfg.path, text).unwrap();
    cfg
}

async fn wait_for(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reconcile(cfg: &TestConfig, app: &driftwatch::app::App, csv: &str) {
    let path = cfg.dir.path().join("export.csv");
    std::fs::write(&path, csv).unwrap();
    reconcile_support::set_mtime(&path, Utc::now() - chrono::Duration::seconds(5));
    let v = app
        .config
        .vendors
        .iter()
        .find(|v| v.name == "acme")
        .unwrap()
        .clone();
    let opts = RunOptions {
        now: Some(Utc::now()),
        ..Default::default()
    };
    let _ = run_vendor(&app.store, &v, &cfg.dir.path().join("work"), opts).await;
}

fn quarantined_mail(n: u8) -> ArchivedMessage {
    let raw = format!("Subject: layout {n}\r\n\r\nnothing a parser reads\r\n").into_bytes();
    ArchivedMessage {
        location: format!("q{n}"),
        dedupe_key: [n; 32],
        message_id: None,
        size: raw.len() as u64,
        raw: PackedRaw::pack(raw),
        raw_complete: true,
        sender: Some("ops@acme.example".into()),
        subject: Some(format!("layout {n}")),
        date_header: None,
        internal_date: None,
        disposition: Disposition::Quarantined,
        reason: Some("no rule matched the body".into()),
        vendor: Some("acme".into()),
        parser: None,
        parser_version: None,
        deltas: vec![],
    }
}

#[tokio::test]
async fn alert_receiver_down_then_back_gets_every_event_once_per_id_signed() {
    let port = support::free_port();
    let cfg = alerts_config(port);
    let app = cfg.app().await;
    let db = cfg.database();
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
    let told: Vec<_> = (1..=3)
        .map(|i| {
            (
                DeltaDraft {
                    vendor: "acme".into(),
                    order_ref: i.to_string(),
                    status: Some(Status::Scheduled),
                    vendor_status: Some("Open".into()),
                    fields: Default::default(),
                    event_time: t0,
                    time_source: TimeSource::Vendor,
                },
                t0,
            )
        })
        .collect();
    app.store
        .append_deltas_at(DeltaSource::Email, &told)
        .await
        .unwrap();

    // The receiver is down: nothing listens on its port.
    let serving = Serving::start(&app);
    wait_for(
        "the subscription's cursor",
        Duration::from_secs(10),
        async || count(&db, "SELECT count(*) FROM outbox_cursors").await == 1,
    )
    .await;
    // Order 2 done at the vendor, 4 unknown to us: two drifts opened.
    reconcile(
        &cfg,
        &app,
        "Order No,Status\n1,Open\n2,Done\n3,Open\n4,Open\n",
    )
    .await;
    app.store
        .commit_batch(&IngestBatch {
            source: "local".into(),
            folder: "INBOX".into(),
            checkpoint: None,
            messages: vec![quarantined_mail(1), quarantined_mail(2)],
        })
        .await
        .unwrap();
    // The vendor agrees with us again: both drifts closed.
    reconcile(&cfg, &app, "Order No,Status\n1,Open\n2,Open\n3,Open\n").await;
    // An empty export: the guard refuses it.
    reconcile(&cfg, &app, "").await;
    let events = count(&db, "SELECT count(*) FROM outbox_events").await;
    // 2 opened + 2 closed + 2 quarantined + 1 refused key frame + acme silent (open orders, no mail).
    assert_eq!(events, 8);
    wait_for(
        "a failed attempt per event",
        Duration::from_secs(20),
        async || {
            count(
                &db,
                "SELECT count(DISTINCT event) FROM outbox_attempts WHERE outcome = 'retry'",
            )
            .await
                == events
        },
    )
    .await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM outbox_deliveries WHERE state = 'delivered'"
        )
        .await,
        0
    );
    serving.stop().await;

    // The receiver comes back, and so does `serve` (a restart: state is in the database).
    let seen = Arc::new(Mutex::new(Received::default()));
    let rx = receiver(port, seen.clone()).await;
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    wait_for("every delivery", Duration::from_secs(30), async || {
        count(
            &db,
            "SELECT count(*) FROM outbox_deliveries WHERE state = 'delivered'",
        )
        .await
            == events
    })
    .await;
    serving.stop().await;
    rx.abort();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, ok, body) in &seen.requests {
        assert!(ok, "signature of {id} does not verify");
        assert!(
            body["type"].is_string() && body["data"].is_object(),
            "{body}"
        );
        *per_id.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(
        per_id.len() as i64,
        events,
        "every event arrives: {per_id:?}"
    );
    assert!(
        per_id.values().all(|&n| n == 1),
        "no id sent twice after the receiver came back: {per_id:?}"
    );
    let types: BTreeSet<&str> = seen
        .requests
        .iter()
        .filter_map(|(_, _, b)| b["type"].as_str())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from([
            "drift.closed",
            "drift.opened",
            "keyframe.refused",
            "mail.quarantined",
            "vendor.silent"
        ])
    );
    // `hooks deliveries` tells the story: refused connections, then 204s.
    let app = cfg.app().await;
    let attempts = app.store.outbox_attempts(Some("ops"), 1000).await.unwrap();
    assert!(
        attempts
            .iter()
            .any(|a| a.outcome == "retry" && a.error.is_some())
    );
    assert_eq!(
        attempts
            .iter()
            .filter(|a| a.outcome == "delivered" && a.status_code == Some(204))
            .count() as i64,
        events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_send_each_alert_once() {
    let port = support::free_port();
    let cfg = alerts_config(port);
    let seen = Arc::new(Mutex::new(Received::default()));
    let rx = receiver(port, seen.clone()).await;
    let (a, b) = (cfg.app().await, cfg.app().await);
    let subs = a.config.http.as_ref().unwrap().subscriptions.clone();
    let one = driftwatch::http::outbound::Outbound::build(a.store.clone(), &subs, 48)
        .await
        .unwrap();
    let two = driftwatch::http::outbound::Outbound::build(b.store.clone(), &subs, 48)
        .await
        .unwrap();
    // The first pass starts the subscription's cursor; then 40 vendors fall silent.
    one.run_once(Utc::now()).await.unwrap();
    for i in 0..40 {
        a.store
            .record_silence(&format!("vendor-{i}"), None, 48, Utc::now())
            .await
            .unwrap();
    }
    let db = cfg.database();
    let drive = async |o: &driftwatch::http::outbound::Outbound| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(
            &db,
            "SELECT count(*) FROM outbox_deliveries WHERE state = 'delivered'",
        )
        .await
            < 40
        {
            assert!(Instant::now() < deadline, "deliveries did not finish");
            o.run_once(Utc::now()).await.unwrap();
        }
    };
    tokio::join!(drive(&one), drive(&two));
    rx.abort();
    let seen = seen.lock().unwrap();
    let ids: BTreeSet<&str> = seen.requests.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 40);
    assert_eq!(
        seen.requests.len(),
        40,
        "an alert was sent by both instances"
    );
}

#[tokio::test]
async fn subscription_urls_are_https_unless_the_receiver_is_on_this_machine() {
    let (cfg, _) = http_config(
        "\n[[http.subscription]]\nname = \"ops\"\nurl = \"http://alerts.example/in\"\n\
         events = [\"drift.opened\"]\nsecret_env = \"X\"\n",
    );
    let e = driftwatch::config::Config::load(&cfg.path).unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");
    let text = std::fs::read_to_string(&cfg.path).unwrap().replace(
        "secret_env = \"X\"",
        "secret_env = \"X\"\nallow_http = true",
    );
    std::fs::write(&cfg.path, text).unwrap();
    driftwatch::config::Config::load(&cfg.path).expect("allowed when said so");
    assert!(decode_secret("not-a-secret").is_err());
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let (cfg, base) = http_config("token_rate_per_sec = 0.5\ntoken_burst = 2\n");
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    support::http::wait_healthy(&base).await;
    let c = client();
    let get = |token: &'static str| {
        c.get(format!("{base}/v1/vendors"))
            .bearer_auth(token)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(get(READ_TOKEN).await.unwrap().status(), 200);
    }
    let res = get(READ_TOKEN).await.unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "urn:driftwatch:problem:rate-limited");
    // Another token has its own allowance.
    assert_eq!(get(support::http::ADMIN_TOKEN).await.unwrap().status(), 200);
    serving.stop().await;
}

#[tokio::test]
async fn a_vendor_over_its_intake_rate_gets_429_and_the_webhook_is_not_stored() {
    let hook = "hook_rate_per_sec = 0.5\nhook_burst = 1\n\
                [[http.hook]]\nvendor = \"shipco\"\nsecret_file = \"shipco.whsec\"\n\
                [http.hook.mapping]\norder_ref = \"/id\"\n";
    let (cfg, base) = http_config(hook);
    cfg.write_whsec("shipco.whsec", SECRET);
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    support::http::wait_healthy(&base).await;
    let post = |id: &str| {
        let now = Utc::now().timestamp();
        let body = br#"{"id":"A-1"}"#.to_vec();
        client()
            .post(format!("{base}/v1/hooks/shipco"))
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header(
                "webhook-signature",
                driftwatch::http::signature::sign(SECRET, id, now, &body),
            )
            .body(body)
            .send()
    };
    assert_eq!(post("w1").await.unwrap().status(), 200);
    let res = post("w2").await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // An unsigned request does not use up the vendor's allowance: refused as unverified.
    let forged = client()
        .post(format!("{base}/v1/hooks/shipco"))
        .header("webhook-id", "w3")
        .header("webhook-timestamp", Utc::now().timestamp().to_string())
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(
        count(&cfg.database(), "SELECT count(*) FROM webhooks").await,
        1
    );
    serving.stop().await;
}
