//! Measures reconcile at scale: 1,000,000 orders, 1% drift, from a CSV export;
//! then the same export again (unchanged).
//!
//! ```sh
//! cargo run --release --example reconcile_1m -- /tmp/dw-1m [ORDERS]
//! ```
//!
//! The first run builds DIR/base.db (the orders, told by email) and
//! DIR/export.csv once. Each measurement runs in a child process on a fresh
//! copy of the database, so the peak RSS it reports (VmHWM) is the
//! reconcile's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use driftwatch::model::{DeltaDraft, DeltaSource, Status, TimeSource};
use driftwatch::reconcile::config::{Case, FieldKind, FieldMapping};
use driftwatch::reconcile::{Policy, RunOptions, VendorSettings, run_file};
use driftwatch::store::Store;

const STATUSES: [Status; 4] = [
    Status::Accepted,
    Status::Scheduled,
    Status::InProgress,
    Status::Completed,
];

fn vendor() -> VendorSettings {
    let mut v = VendorSettings::minimal("bench");
    v.policy = Policy::Fix;
    v.guard.max_fixes = 20_000;
    v.mapping.fields = vec![FieldMapping {
        name: "fee".into(),
        column: "fee".into(),
        kind: FieldKind::Money,
        case: Case::Preserve,
        format: None,
        tolerance: 0.01,
        relative_tolerance: 0.0,
        tolerance_secs: 0,
    }];
    v
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

async fn setup(dir: &Path, n: usize) {
    let db = dir.join("base.db");
    if db.exists() {
        return;
    }
    eprintln!("building {n} orders in {} (once)…", db.display());
    let store = Store::open(&dir.join("building.db")).await.unwrap();
    let mut csv = String::with_capacity(n * 40);
    csv.push_str("order_ref,status,fee\n");
    let mut batch = Vec::with_capacity(50_000);
    for i in 0..n {
        let status = STATUSES[i % 4];
        let fee = 300.0 + (i % 500) as f64;
        batch.push((
            DeltaDraft {
                vendor: "bench".into(),
                order_ref: format!("ORD{i:08}"),
                status: Some(status),
                vendor_status: None,
                fields: [("fee".to_string(), serde_json::json!(fee))].into(),
                event_time: t0(),
                time_source: TimeSource::Vendor,
            },
            t0(),
        ));
        // 1% drift: of every 500 orders, 4 differ (status, fee, both, or
        // absent from the export) and 1 more is new in the export.
        let (status, fee, present) = match i % 500 {
            0 => (STATUSES[(i / 4 + 1) % 4], fee, true),
            100 => (status, fee + 25.0, true),
            200 => (status, fee, false),
            300 => (STATUSES[(i + 1) % 4], fee + 1.0, true),
            _ => (status, fee, true),
        };
        if present {
            csv.push_str(&format!("ORD{i:08},{},{fee:.2}\n", status.as_str()));
        }
        if batch.len() == 50_000 {
            store
                .append_deltas_at(DeltaSource::Email, &batch)
                .await
                .unwrap();
            batch.clear();
        }
    }
    store
        .append_deltas_at(DeltaSource::Email, &batch)
        .await
        .unwrap();
    // Orders only the vendor has (the missing_local share).
    for j in 0..n / 500 {
        csv.push_str(&format!("NEW{j:08},accepted,100.00\n"));
    }
    store.close().await;
    std::fs::write(dir.join("export.csv"), csv).unwrap();
    std::fs::rename(dir.join("building.db"), &db).unwrap();
    let _ = std::fs::remove_file(dir.join("building.db-wal"));
    let _ = std::fs::remove_file(dir.join("building.db-shm"));
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Child: one reconcile on `db` (for "unchanged", the db the drift run left).
async fn measure(db: &Path, export: &Path, twice: bool) {
    let store = Store::open(db).await.unwrap();
    let v = vendor();
    let opts = RunOptions {
        now: Some(t0() + Duration::days(1)),
        ..Default::default()
    };
    let hwm_before = peak_rss_mb();
    let start = Instant::now();
    let s = run_file(&store, &v, export, &opts).await.unwrap();
    let wall = start.elapsed();
    println!(
        "{:<10} wall {:>8.3} s  peak RSS {:>7.1} MB (before the run: {:.1} MB)  outcome {}  drifts {}  fixes {}",
        if twice { "unchanged" } else { "1% drift" },
        wall.as_secs_f64(),
        peak_rss_mb(),
        hwm_before,
        s.outcome.as_str(),
        s.drifts(),
        s.fixes
    );
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("DRIFTWATCH_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let twice = args[4] == "unchanged"; // the drift run left its key frame in the same db
        measure(Path::new(&args[2]), Path::new(&args[3]), twice).await;
        return;
    }
    let dir = PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "/tmp/dw-1m".into()));
    let n: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    std::fs::create_dir_all(&dir).unwrap();
    setup(&dir, n).await;
    for mode in ["drift", "unchanged"] {
        let db = dir.join("run.db");
        if mode == "drift" {
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
            }
            std::fs::copy(dir.join("base.db"), &db).unwrap();
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--child",
                db.to_str().unwrap(),
                dir.join("export.csv").to_str().unwrap(),
                mode,
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
}
