//! The delta feed from outside: long poll, SSE with resume, snapshot and
//! 410, with a real client against `serve` (in-process and the real binary).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use driftwatch::model::{DeltaDraft, DeltaSource, TimeSource};
use reqwest::StatusCode;
use serde_json::Value;
use support::app::{Serving, maildir_config, parsers_dir};
use support::http::{READ_TOKEN, SseReader, client, http_config, wait_healthy};
use support::vendor_mail;

fn acme_mail(n: u32) -> Vec<u8> {
    vendor_mail::acme(
        700_000 + n,
        "Accepted",
        "11/23/2026 09:10 AM",
        &format!("feed-{n}@acme"),
    )
}

/// Waits until the server counts `n` parked feed readers, so a test knows its
/// long poll is waiting before it commits.
async fn wait_readers(base: &str, n: i64) {
    let want = format!("driftwatch_feed_readers {n}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = client()
            .get(format!("{base}/metrics"))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.lines().any(|l| l == want) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw `{want}`");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn long_poll(base: &str, after: i64) -> tokio::task::JoinHandle<(Value, Instant)> {
    let url = format!("{base}/v1/deltas?after={after}&wait=20");
    tokio::spawn(async move {
        let res = client()
            .get(url)
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        (body, Instant::now())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_within_a_second_of_a_commit_in_this_or_another_process() {
    let (cfg, base) = http_config("");
    let app = cfg.app().await;
    let serving = Serving::start(&app);
    wait_healthy(&base).await;

    // A commit in the serving process.
    let poll = long_poll(&base, 0);
    wait_readers(&base, 1).await;
    let draft = DeltaDraft {
        vendor: "manual-vendor".into(),
        order_ref: "A-1".into(),
        status: Some(driftwatch::model::Status::Accepted),
        vendor_status: None,
        fields: Default::default(),
        event_time: Utc::now(),
        time_source: TimeSource::Received,
    };
    let offsets = app
        .store
        .append_deltas_at(DeltaSource::Manual, &[(draft, Utc::now())])
        .await
        .unwrap();
    let committed = Instant::now();
    let (body, answered) = poll.await.unwrap();
    let waited = answered.saturating_duration_since(committed);
    assert!(
        waited < Duration::from_secs(1),
        "woke {waited:?} after the commit"
    );
    assert_eq!(body["deltas"][0]["offset"], offsets[0]);
    assert_eq!(body["next"], offsets[0]);

    // A commit by another process on the same database (`ingest --once`).
    let other = maildir_config(
        &parsers_dir(),
        &format!("database = \"{}\"", cfg.database().config_value()),
    );
    other.deliver("1.eml", &acme_mail(1));
    let poll = long_poll(&base, offsets[0]);
    wait_readers(&base, 1).await;
    support::bin::run_to_completion(&other);
    let committed = Instant::now();
    let (body, answered) = poll.await.unwrap();
    let waited = answered.saturating_duration_since(committed);
    assert!(
        waited < Duration::from_secs(1),
        "woke {waited:?} after the other process committed"
    );
    assert_eq!(body["deltas"][0]["order_ref"], "700001", "{body}");
    assert_eq!(body["deltas"][0]["source"], "email");
    serving.stop().await;
}

#[tokio::test]
async fn offset_past_the_log_end_gets_410_pointing_at_the_snapshot() {
    let (cfg, base) = http_config("sse_heartbeat_secs = 1\n");
    for n in 1..=3 {
        cfg.deliver(&format!("{n}.eml"), &acme_mail(n));
    }
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    let serving = Serving::start(&app);
    wait_healthy(&base).await;
    let c = client();

    for req in [
        c.get(format!("{base}/v1/deltas?after=999")),
        c.get(format!("{base}/v1/deltas/stream"))
            .header("last-event-id", "999"),
    ] {
        let res = req.bearer_auth(READ_TOKEN).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::GONE);
        assert_eq!(res.headers()["link"], "</v1/snapshot>; rel=\"snapshot\"");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["type"], "urn:driftwatch:problem:offset-gone");
        assert_eq!(body["snapshot"], "/v1/snapshot");
        assert_eq!(body["log_end"], 3);
    }

    // The snapshot is the whole view with the offset it is consistent at.
    let res = c
        .get(format!("{base}/v1/snapshot"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["driftwatch-offset"], "3");
    let snap: Value = res.json().await.unwrap();
    assert_eq!(snap["offset"], 3);
    let view = serde_json::to_value(app.store.orders(None).await.unwrap()).unwrap();
    assert_eq!(snap["orders"], view);

    // At the end of the log: an empty page at once with wait=0, and an SSE
    // stream that sends heartbeats while idle.
    let page: Value = c
        .get(format!("{base}/v1/deltas?after=3"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page,
        serde_json::json!({"deltas": [], "next": 3, "log_end": 3})
    );
    let res = c
        .get(format!("{base}/v1/deltas/stream?after=3"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut sse = SseReader::new(res);
    let ev = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .unwrap()
        .unwrap();
    assert!(ev.comment && ev.data == "heartbeat", "{ev:?}");
    drop(sse);
    serving.stop().await;
}

/// Reads the SSE feed from `base`, reconnecting with Last-Event-ID whenever
/// the stream ends (the server died or restarted), and sends each delta's
/// (event id, offset in its data) to `out`.
async fn follow(base: String, out: tokio::sync::mpsc::UnboundedSender<(i64, i64)>) {
    let mut last: Option<i64> = None;
    loop {
        let mut req = client()
            .get(format!("{base}/v1/deltas/stream"))
            .bearer_auth(READ_TOKEN)
            .timeout(Duration::from_secs(3600));
        if let Some(id) = last {
            req = req.header("last-event-id", id.to_string());
        }
        let res = match req.send().await {
            Ok(r) if r.status() == StatusCode::OK => r,
            // The server is down or starting: try again shortly.
            _ => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let mut sse = SseReader::new(res);
        while let Some(ev) = sse.next().await {
            if ev.comment {
                continue;
            }
            assert_eq!(ev.event.as_deref(), Some("delta"));
            let id: i64 = ev.id.as_deref().unwrap().parse().unwrap();
            let data: Value = serde_json::from_str(&ev.data).unwrap();
            if out.send((id, data["offset"].as_i64().unwrap())).is_err() {
                return;
            }
            last = Some(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_reader_that_resumes_across_restarts_sees_every_delta_once_in_order() {
    let (cfg, base) = http_config("");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(follow(base.clone(), tx));
    let mut seen: Vec<(i64, i64)> = Vec::new();
    let mut n = 0;
    let mut receive = async |seen: &mut Vec<(i64, i64)>, want: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(e)) => seen.push(e),
                _ => panic!("reader got {} of {want} deltas: {seen:?}", seen.len()),
            }
        }
    };

    // Round 1 while serving; then SIGKILL mid-stream.
    let (mut child, _) = support::bin::spawn_logged(&cfg, &["serve"], "warn");
    wait_healthy(&base).await;
    for _ in 0..5 {
        n += 1;
        cfg.deliver(&format!("{n}.eml"), &acme_mail(n));
    }
    receive(&mut seen, 5).await;
    support::bin::kill(&mut child);

    // Round 2 arrives while the server is down; the restarted server serves it from the reader's offset.
    for _ in 0..5 {
        n += 1;
        cfg.deliver(&format!("{n}.eml"), &acme_mail(n));
    }
    let (mut child, _) = support::bin::spawn_logged(&cfg, &["serve"], "warn");
    receive(&mut seen, 10).await;

    // Round 3, then a clean stop (SIGTERM) and round 4 after a restart.
    for _ in 0..5 {
        n += 1;
        cfg.deliver(&format!("{n}.eml"), &acme_mail(n));
    }
    receive(&mut seen, 15).await;
    support::bin::terminate(&mut child);
    let (mut child, _) = support::bin::spawn_logged(&cfg, &["serve"], "warn");
    for _ in 0..5 {
        n += 1;
        cfg.deliver(&format!("{n}.eml"), &acme_mail(n));
    }
    receive(&mut seen, 20).await;

    // Nothing more arrives: no duplicate is on its way.
    wait_healthy(&base).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), rx.recv())
            .await
            .is_err(),
        "a delta arrived twice"
    );
    support::bin::terminate(&mut child);
    reader.abort();

    let db: Vec<i64> = {
        let pool = support::db::open(&cfg.database()).await;
        sqlx::query_scalar(r#"SELECT "offset" FROM deltas ORDER BY "offset""#)
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    assert_eq!(db.len(), 20);
    let ids: Vec<i64> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, db, "every delta exactly once, in offset order");
    assert!(
        seen.iter().all(|(id, offset)| id == offset),
        "event id is the offset"
    );
}
