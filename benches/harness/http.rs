//! HTTP: signed, durable webhook intake against `serve` (the real binary on
//! SQLite) beside a no-op endpoint (`/healthz`) in the same run, and SSE
//! fan-out latency from commit to 100 readers beside one reader.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch::http::hooks::sign;
use futures_util::StreamExt;

use crate::Opts;
use crate::support::http::{READ_TOKEN, SseReader, client, http_config, wait_healthy};
use crate::table::Table;

const KEY: &[u8] = b"bench-webhook-secret-32-bytes!!!";
/// Requests in flight at once.
const CONCURRENCY: usize = 64;

fn pct(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

/// Sends `n` requests built by `req`, `CONCURRENCY` at a time: (req/s, p99 ms).
async fn load(n: usize, req: impl Fn(usize) -> reqwest::RequestBuilder) -> (f64, f64) {
    let start = Instant::now();
    let mut lat: Vec<f64> = futures_util::stream::iter(0..n)
        .map(|i| {
            let r = req(i);
            async move {
                let t = Instant::now();
                let res = r.send().await.unwrap();
                assert!(res.status().is_success(), "{}", res.status());
                t.elapsed().as_secs_f64() * 1000.0
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let rps = n as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (rps, pct(&lat, 0.99))
}

/// Opens `readers` SSE streams at the log end, commits `events` webhooks one
/// by one, and returns the p99 from each acknowledged commit to each reader.
async fn fan_out(base: &str, readers: usize, events: usize, first_id: usize) -> f64 {
    let c = client();
    let acked: Arc<Mutex<std::collections::HashMap<i64, Instant>>> = Arc::default();
    let got: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let end: serde_json::Value = c
        .get(format!("{base}/v1/deltas?limit=1"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = end["log_end"].as_i64().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let res = c
            .get(format!("{base}/v1/deltas/stream?after={after}"))
            .bearer_auth(READ_TOKEN)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap();
        let got = got.clone();
        tasks.push(tokio::spawn(async move {
            let mut sse = SseReader::new(res);
            let mut n = 0;
            while n < events {
                let Some(ev) = sse.next().await else { return };
                if let Some(id) = ev.id {
                    got.lock()
                        .unwrap()
                        .push((id.parse().unwrap(), Instant::now()));
                    n += 1;
                }
            }
        }));
    }
    for i in first_id..first_id + events {
        let (id, now) = (format!("fan-{i}"), chrono::Utc::now().timestamp());
        let body = format!("{{\"order\":{{\"id\":{i},\"state\":\"in_transit\"}}}}");
        let sig = sign(KEY, &id, now, body.as_bytes());
        let res: serde_json::Value = c
            .post(format!("{base}/v1/hooks/bench"))
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let offset = res["offsets"][0].as_i64().unwrap();
        acked.lock().unwrap().insert(offset, Instant::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap();
    let mut lat: Vec<f64> = got
        .lock()
        .unwrap()
        .iter()
        .map(|(o, at)| at.saturating_duration_since(acked[o]).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    pct(&lat, 0.99)
}

pub async fn run(opts: &Opts, table: &mut Table) {
    // Rate limits far above what one machine sends: the rows measure the write path.
    let hook = "hook_rate_per_sec = 1000000\nhook_burst = 1000000\n\
                token_rate_per_sec = 1000000\ntoken_burst = 1000000\n\
                \n[[http.hook]]\nvendor = \"bench\"\nsecret_file = \"bench.whsec\"\n\
                [http.hook.mapping]\norder_ref = \"/order/id\"\nstatus = \"/order/state\"\n\
                [http.hook.status_map]\n\"in_transit\" = \"in_progress\"\n";
    let (cfg, base) = http_config(hook);
    cfg.write_whsec("bench.whsec", KEY);
    let (mut child, _) = crate::support::bin::spawn_logged(&cfg, &["serve"], "warn");
    wait_healthy(&base).await;
    let n = opts.messages as usize;
    let c = client();

    let (mut base_rps, mut base_p99, mut rps, mut p99) = (vec![], vec![], vec![], vec![]);
    for run in 0..opts.runs {
        let (r, p) = load(n, |_| c.get(format!("{base}/healthz"))).await;
        base_rps.push(r);
        base_p99.push(p);
        let (r, p) = load(n, |i| {
            let (id, now) = (format!("b{run}-{i}"), chrono::Utc::now().timestamp());
            let body = format!("{{\"order\":{{\"id\":{i},\"state\":\"in_transit\"}}}}");
            let sig = sign(KEY, &id, now, body.as_bytes());
            c.post(format!("{base}/v1/hooks/bench"))
                .header("webhook-id", id)
                .header("webhook-timestamp", now.to_string())
                .header("webhook-signature", sig)
                .body(body)
        })
        .await;
        rps.push(r);
        p99.push(p);
    }
    let m = crate::measure::median;
    table.row(
        &format!("webhook intake, signed + committed to SQLite ({n} req, {CONCURRENCY} in flight)"),
        &format!("{:.0} req/s, p99 {:.1} ms", m(&rps), m(&p99)),
        &format!(
            "GET /healthz (no-op): {:.0} req/s, p99 {:.1} ms",
            m(&base_rps),
            m(&base_p99)
        ),
        &format!("{:.2}x", m(&rps) / m(&base_rps)),
        "≥ 5,000 req/s",
    );

    let events = if n < 1000 { 10 } else { 100 };
    let one = fan_out(&base, 1, events, 1 << 40).await;
    let hundred = fan_out(&base, 100, events, 1 << 41).await;
    table.row(
        &format!("SSE fan-out, commit → client p99 ({events} commits)"),
        &format!("100 readers: {hundred:.1} ms"),
        &format!("1 reader: {one:.1} ms"),
        &format!("{:.1}x", hundred / one.max(0.001)),
        "≤ 50 ms",
    );
    crate::support::bin::terminate(&mut child);
}
