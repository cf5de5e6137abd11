//! Webhook intake from outside: Standard Webhooks verification, the body
//! limit, a repeated id acknowledged once, unparseable bodies quarantined,
//! and SIGKILL during intake never losing a webhook that got a 2xx.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftwatch::http::hooks::sign;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::app::{Serving, TestConfig};
use support::http::{READ_TOKEN, client, http_config, wait_healthy};

const KEY: &[u8] = b"shipco-test-secret-key-32-bytes!";

const HOOK: &str = r#"
[[http.hook]]
vendor = "shipco"
secret_file = "shipco.whsec"
tolerance_secs = 300
max_body_bytes = 4096
[http.hook.mapping]
order_ref = "/order/id"
status = "/order/state"
event_time = "/occurred_at"
fields = { carrier = "/order/carrier" }
[http.hook.status_map]
"in_transit" = "in_progress"
"delivered" = "completed"
"#;

fn hook_config() -> (TestConfig, String) {
    let (cfg, base) = http_config(HOOK);
    cfg.write_whsec("shipco.whsec", KEY);
    (cfg, base)
}

fn event(order: u64, state: &str) -> Vec<u8> {
    json!({"occurred_at": "2026-11-30T10:00:00Z", "order": {"id": order, "state": state, "carrier": "ACME Freight"}})
        .to_string()
        .into_bytes()
}

async fn post(
    base: &str,
    id: &str,
    ts: i64,
    body: Vec<u8>,
    signature: Option<String>,
) -> reqwest::Response {
    let sig = signature.unwrap_or_else(|| sign(KEY, id, ts, &body));
    client()
        .post(format!("{base}/v1/hooks/shipco"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn kind(res: reqwest::Response) -> String {
    let body: Value = res.json().await.unwrap();
    body["type"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn webhook_is_verified_parsed_into_deltas_and_a_repeat_is_not_applied_again() {
    let (cfg, base) = hook_config();
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    wait_healthy(&base).await;
    let now = chrono::Utc::now().timestamp();

    let res = post(&base, "msg_1", now, event(42, "delivered"), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "applied");
    assert_eq!(body["offsets"], json!([1]));
    let order = app.store.order("shipco", "42").await.unwrap().unwrap();
    assert_eq!(order.status, Some(driftwatch::model::Status::Completed));
    assert_eq!(order.fields["carrier"], "ACME Freight");

    // The vendor retries the same delivery: acknowledged, not applied again.
    let res = post(&base, "msg_1", now, event(42, "delivered"), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(app.store.log_end().await.unwrap(), 1);

    // A body the mapping cannot read is stored, quarantined with the reason, and acknowledged.
    let res = post(&base, "msg_2", now, event(43, "lost_at_sea"), None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let hooks = app.store.webhooks(10).await.unwrap();
    assert_eq!(hooks[0].disposition, "quarantined");
    assert!(
        hooks[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("status `lost_at_sea` is not in status_map"),
        "{hooks:?}"
    );

    // Refusals, each with its status and problem type, and nothing stored.
    let res = post(
        &base,
        "msg_3",
        now,
        event(44, "delivered"),
        Some("v1,AAAA".into()),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(kind(res).await, "urn:driftwatch:problem:bad-signature");
    let tampered = sign(KEY, "msg_3", now, &event(44, "in_transit"));
    let res = post(&base, "msg_3", now, event(44, "delivered"), Some(tampered)).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a signature over another body"
    );
    let old = now - 3600;
    let res = post(&base, "msg_old", old, event(45, "delivered"), None).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a correctly signed replay outside the window"
    );
    assert_eq!(kind(res).await, "urn:driftwatch:problem:stale-timestamp");
    let mut big = event(46, "delivered");
    big.resize(5000, b' ');
    let res = post(&base, "msg_big", now, big, None).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(kind(res).await, "urn:driftwatch:problem:body-too-large");
    let res = client()
        .post(format!("{base}/v1/hooks/nobody"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.store.webhooks(10).await.unwrap().len(),
        2,
        "refused requests store nothing"
    );

    // The webhook delta is in the feed with its source.
    let page: Value = client()
        .get(format!("{base}/v1/deltas"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["deltas"][0]["source"], "webhook");
    assert_eq!(page["deltas"][0]["time_source"], "vendor");
    serving.stop().await;

    // The mapping learns the new word; `hooks replay` applies the quarantined webhook.
    let q = hooks[0].id.to_string();
    let run = |args: &[&str]| {
        let out = support::bin::driftwatch(&cfg, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = run(&["hooks", "replay", &q]);
    assert!(!ok && said.contains("still does not parse"), "{said}");
    let text = std::fs::read_to_string(&cfg.path).unwrap().replace(
        "\"delivered\" = \"completed\"",
        "\"delivered\" = \"completed\"\n\"lost_at_sea\" = \"on_hold\"",
    );
    std::fs::write(&cfg.path, text).unwrap();
    let (ok, said) = run(&["hooks", "replay", &q]);
    assert!(ok, "{said}");
    let store = driftwatch::store::Store::connect(&cfg.database().location())
        .await
        .unwrap();
    let order = store.order("shipco", "43").await.unwrap().unwrap();
    assert_eq!(order.status, Some(driftwatch::model::Status::OnHold));
    let (ok, said) = run(&["hooks", "replay", &q]);
    assert!(
        !ok && said.contains("applied already"),
        "a replay never applies twice: {said}"
    );
    let (ok, said) = run(&["hooks", "list"]);
    assert!(
        ok && said.contains("msg_2") && said.contains("parsed"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_intake_never_loses_a_webhook_that_got_a_2xx() {
    let (mut rng, seed) = support::bin::Rng::from_env();
    eprintln!("DRIFTWATCH_FAULT_SEED={seed}");
    let (cfg, base) = hook_config();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut next = 0u64;
    for round in 0..4 {
        let (mut child, _) = support::bin::spawn_logged(&cfg, &["serve"], "warn");
        wait_healthy(&base).await;
        // Four concurrent senders until the kill.
        let mut senders = Vec::new();
        for lane in 0..4u64 {
            let (base, acked) = (base.clone(), acked.clone());
            let start = next + lane * 1_000_000;
            senders.push(tokio::spawn(async move {
                let c = client();
                for i in start.. {
                    let id = format!("kill-{i}");
                    let now = chrono::Utc::now().timestamp();
                    let body = event(i, "in_transit");
                    let sig = sign(KEY, &id, now, &body);
                    let res = c
                        .post(format!("{base}/v1/hooks/shipco"))
                        .header("webhook-id", &id)
                        .header("webhook-timestamp", now.to_string())
                        .header("webhook-signature", sig)
                        .body(body)
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                        Ok(r) => panic!("{id}: {}", r.status()),
                        Err(_) => return, // the server died mid-request
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.range(100, 800))).await;
        support::bin::kill(&mut child);
        for s in senders {
            s.await.unwrap();
        }
        next += 10_000_000 * (round + 1);
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too few requests acknowledged to prove anything: {}",
        acked.len()
    );
    let pool = support::db::open(&cfg.database()).await;
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT w.webhook_id, (SELECT count(*) FROM webhook_deltas x JOIN deltas d ON d.offset = x.offset WHERE x.webhook = w.id)
         FROM webhooks w",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stored: std::collections::HashMap<String, i64> = stored.into_iter().collect();
    for id in &acked {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "{id} got a 2xx but is not stored with its delta (seed {seed})"
        );
    }
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE vendor = 'shipco'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        orders as usize,
        stored.len(),
        "every stored webhook's order is in the view"
    );
}

/// Concurrent requests are committed together (group commit); a vendor
/// retrying one id while it is in flight still gets it applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_of_one_id_apply_it_once_and_every_other_id_once() {
    let (cfg, base) = hook_config();
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    wait_healthy(&base).await;
    let now = chrono::Utc::now().timestamp();
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let base = base.clone();
        let id = if i % 2 == 0 {
            "msg_same".to_string()
        } else {
            format!("msg_{i}")
        };
        tasks.push(tokio::spawn(async move {
            let res = post(&base, &id, now, event(1000 + i, "in_transit"), None).await;
            assert_eq!(res.status(), StatusCode::OK);
            (id, res.json::<Value>().await.unwrap())
        }));
    }
    let mut applied: std::collections::BTreeMap<String, usize> = Default::default();
    let mut duplicates = 0;
    for t in tasks {
        let (id, body) = t.await.unwrap();
        match body["status"].as_str().unwrap() {
            "applied" => *applied.entry(id).or_default() += 1,
            "duplicate" => duplicates += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!(applied.len(), 21, "{applied:?}");
    assert!(applied.values().all(|&n| n == 1));
    assert_eq!(duplicates, 19);
    assert_eq!(app.store.log_end().await.unwrap(), 21);
    serving.stop().await;
}
