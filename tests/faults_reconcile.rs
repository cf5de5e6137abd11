//! SIGKILL at random points during a reconcile that fixes thousands of
//! orders, then a rerun, ends in the same database as an uninterrupted run:
//! a fix is applied whole or not at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use driftwatch::model::{DeltaDraft, DeltaSource, Status, TimeSource};
use driftwatch::store::Store;
use support::app::TestConfig;
use support::bin::{Rng, assert_same_dump, driftwatch, kill};
use support::db;

const ORDERS: usize = 8_000;
const KILLS: usize = 24;

fn config(dir: &Path) -> TestConfig {
    let parsers = Path::new(env!("CARGO_MANIFEST_DIR")).join("parsers");
    let text = format!(
        r#"data_dir = "data"
parsers_dir = "{}"

[[vendor]]
name = "acme"
policy = "fix"
[vendor.export]
kind = "file"
path = "export.csv"
as_of = "modified"
complete = true
[vendor.mapping]
key = "Order No"
status = "Status"
[vendor.mapping.fields.fee]
column = "Fee"
type = "money"
tolerance = 0.01
[vendor.status_map]
"Inspection Scheduled" = "scheduled"
"Report Delivered" = "completed"
[vendor.guard]
max_drift_pct = 50
max_fixes = 100000
"#,
        parsers.display()
    );
    let db = db::Db::for_data_dir(&dir.join("data"));
    let text = format!("{}{text}", db.config_line());
    let path = dir.join("driftwatch.toml");
    std::fs::write(&path, text).unwrap();
    TestConfig {
        dir: tempfile::tempdir_in(dir).unwrap(),
        path,
        db,
    }
}

/// 8,000 scheduled orders told by email; the export moves 14% of them on
/// and changes the fee of 5%: about 1,500 fixes in one run.
async fn seed(db_path: &db::Db, export: &Path) {
    let store = Store::connect(&db_path.location()).await.unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
    let items: Vec<_> = (0..ORDERS)
        .map(|i| {
            (
                DeltaDraft {
                    vendor: "acme".into(),
                    order_ref: format!("{}", 100_000 + i),
                    status: Some(Status::Scheduled),
                    vendor_status: Some("Inspection Scheduled".into()),
                    fields: [("fee".to_string(), serde_json::json!(500.0))].into(),
                    event_time: t0,
                    time_source: TimeSource::Vendor,
                },
                t0,
            )
        })
        .collect();
    store
        .append_deltas_at(DeltaSource::Email, &items)
        .await
        .unwrap();
    store.close().await;
    let mut csv = String::from("Order No,Status,Fee\n");
    for i in 0..ORDERS {
        let status = if i % 7 == 0 {
            "Report Delivered"
        } else {
            "Inspection Scheduled"
        };
        let fee = if i % 20 == 3 { 525.0 } else { 500.0 };
        csv.push_str(&format!("{},{status},{fee:.2}\n", 100_000 + i));
    }
    std::fs::write(export, csv).unwrap();
}

async fn reconcile_tables(db_path: &db::Db) -> Vec<i64> {
    let mut v = Vec::new();
    for sql in [
        "SELECT count(*) FROM reconcile_runs WHERE outcome = 'ok'",
        "SELECT count(*) FROM reconcile_runs",
        "SELECT count(*) FROM key_frames",
        "SELECT count(*) FROM drifts",
        "SELECT count(*) FROM drifts WHERE closed_reason = 'fixed'",
    ] {
        v.push(db::count(db_path, sql).await);
    }
    v
}

fn reconcile_to_completion(cfg: &TestConfig) {
    let out = driftwatch(cfg, &["reconcile", "--vendor", "acme"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reconcile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_reconcile_fix_then_rerun_equals_an_uninterrupted_run() {
    let (mut rng, seed_value) = Rng::from_env();
    eprintln!("DRIFTWATCH_FAULT_SEED={seed_value}");
    let root = tempfile::tempdir().unwrap();
    let cfg = config(root.path());
    let db_path = cfg.database();
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    seed(&db_path, &root.path().join("export.csv")).await;
    let base = db_path.save_copy("base");

    let started = Instant::now();
    reconcile_to_completion(&cfg);
    let full = started.elapsed();
    let expected = db::dump(&db_path).await;
    let expected_runs = reconcile_tables(&db_path).await;
    let fixes = db::count(
        &db_path,
        "SELECT count(*) FROM deltas WHERE source = 'reconcile'",
    )
    .await;
    assert!(fixes > 1_000, "the reference run fixed only {fixes} orders");
    assert_eq!(expected_runs[0], 1);

    let mut before_commit = 0;
    let mut after_commit = 0;
    for _ in 0..KILLS {
        db_path.restore(&base);
        let mut child = driftwatch(&cfg, &["reconcile", "--vendor", "acme"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait = Duration::from_micros(rng.range(0, full.as_micros() as u64 + 1));
        tokio::time::sleep(wait).await;
        kill(&mut child);
        // Applied whole or not at all: never part of the fixes.
        let landed = db::count(
            &db_path,
            "SELECT count(*) FROM deltas WHERE source = 'reconcile'",
        )
        .await;
        assert!(
            landed == 0 || landed == fixes,
            "a killed run left {landed} of {fixes} fixes"
        );
        if landed == 0 {
            before_commit += 1;
            reconcile_to_completion(&cfg);
        } else {
            after_commit += 1;
        }
        assert_same_dump(
            &db::dump(&db_path).await,
            &expected,
            "after SIGKILL during reconcile",
        );
        assert_eq!(reconcile_tables(&db_path).await, expected_runs);
    }
    eprintln!(
        "{KILLS} kills over a {full:?} run: {before_commit} before the commit, {after_commit} after"
    );
}

/// Two `driftwatch reconcile` processes on one data dir and one export at
/// once (a second `serve`, or a hand run during the schedule): the same
/// database as one run after the other. No doubled fixes or drift rows, no
/// UNIQUE failure, and the order missing from the export is not cancelled
/// after that single export (`missing_remote_after = 2`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_reconciling_one_export_at_once_equal_one_after_the_other() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(root.path());
    let db_path = cfg.database();
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    let export = root.path().join("export.csv");
    seed(&db_path, &export).await;
    // Drop the last order from the export: it is `missing_remote` once.
    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&export, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let base = db_path.save_copy("base");

    reconcile_to_completion(&cfg);
    reconcile_to_completion(&cfg);
    let expected = db::dump(&db_path).await;
    let expected_runs = reconcile_tables(&db_path).await;
    let cancelled = "SELECT count(*) FROM orders WHERE status = 'cancelled'";
    assert_eq!(db::count(&db_path, cancelled).await, 0);

    for attempt in 0..3 {
        db_path.restore(&base);
        let spawn = || {
            driftwatch(&cfg, &["reconcile", "--vendor", "acme", "--wait", "120"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "try {attempt}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(db::count(&db_path, cancelled).await, 0, "try {attempt}");
        assert_same_dump(&db::dump(&db_path).await, &expected, "concurrent reconcile");
        assert_eq!(
            reconcile_tables(&db_path).await,
            expected_runs,
            "try {attempt}"
        );
    }
}
