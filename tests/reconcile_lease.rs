//! One writer at a time: reconcile runs of one vendor, in one process or
//! several, give the result of running them one after the other. No run
//! acts on a drift another run is still recording, no fix or drift row is
//! doubled, and no run fails on the drifts' uniqueness constraint.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reconcile_support;
mod support;

use std::process::Stdio;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use driftwatch::reconcile::{Outcome, ReconcileError, RunOptions, lease_name, run_vendor};
use driftwatch::store::Store;
use reconcile_support::{Env, seed_scheduled};

const ORDERS: usize = 60;

fn vendor_toml() -> String {
    r#"[[vendor]]
name = "acme"
policy = "fix"
missing_remote_after = 2
[vendor.export]
kind = "file"
path = "export.csv"
as_of = "modified"
complete = true
[vendor.mapping]
key = "Order No"
status = "Status"
[vendor.status_map]
"Inspection Scheduled" = "scheduled"
"Report Delivered" = "completed"
[vendor.guard]
max_drift_pct = 50
"#
    .to_string()
}

async fn seed(store: &Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
    let refs = (0..ORDERS).map(|i| format!("{}", 1000 + i));
    seed_scheduled(
        store,
        "acme",
        "Inspection Scheduled",
        refs,
        &Default::default(),
        t0,
    )
    .await;
}

/// Every order but the last; the first two delivered.
fn export() -> String {
    let mut s = String::from("Order No,Status\n");
    for i in 0..ORDERS - 1 {
        let st = if i < 2 {
            "Report Delivered"
        } else {
            "Inspection Scheduled"
        };
        s.push_str(&format!("{},{st}\n", 1000 + i));
    }
    s
}

async fn fixture() -> (Env, driftwatch::app::App) {
    let env = Env::new(&vendor_toml());
    let app = env.app().await;
    seed(&app.store).await;
    let path = env.path("export.csv");
    std::fs::write(&path, export()).unwrap();
    // The key frame's as_of is the file's mtime: the same in every fixture.
    let mtime = Utc.with_ymd_and_hms(2026, 5, 2, 6, 0, 0).unwrap();
    reconcile_support::set_mtime(&path, mtime);
    (env, app)
}

fn waiting() -> RunOptions {
    RunOptions {
        lease_wait: Duration::from_secs(60),
        ..Default::default()
    }
}

async fn outcome_of(env: &Env) -> (Vec<String>, Vec<i64>) {
    let db = env.database();
    let mut counts = vec![];
    for sql in [
        "SELECT count(*) FROM deltas WHERE source = 'reconcile'",
        "SELECT count(*) FROM drifts",
        "SELECT count(*) FROM drifts WHERE closed_at IS NULL",
        "SELECT count(*) FROM reconcile_runs WHERE outcome = 'ok'",
        "SELECT count(*) FROM orders WHERE status = 'cancelled'",
    ] {
        counts.push(support::db::count(&db, sql).await);
    }
    (support::db::dump(&db).await, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_of_one_export_equal_running_them_in_turn() {
    // The reference: the same two runs one after the other.
    let (env, app) = fixture().await;
    let v = env.vendor(&app, "acme");
    let work = env.path("work");
    let a = run_vendor(&app.store, &v, &work, waiting()).await.unwrap();
    let b = run_vendor(&app.store, &v, &work, waiting()).await.unwrap();
    assert_eq!((a.outcome, b.outcome), (Outcome::Ok, Outcome::Unchanged));
    let (expected_dump, expected) = outcome_of(&env).await;
    // Two delivered orders fixed once each; the missing one flagged, not cancelled.
    assert_eq!(expected, vec![2, 3, 1, 1, 0]);

    for attempt in 0..5 {
        let (env, app) = fixture().await;
        let v = env.vendor(&app, "acme");
        let work = env.path("work");
        let (x, y) = tokio::join!(
            run_vendor(&app.store, &v, &work, waiting()),
            run_vendor(&app.store, &v, &work, waiting()),
        );
        let mut outcomes = vec![x.unwrap().outcome, y.unwrap().outcome];
        outcomes.sort_by_key(|o| o.as_str());
        assert_eq!(outcomes, [Outcome::Ok, Outcome::Unchanged], "try {attempt}");
        let (dump, got) = outcome_of(&env).await;
        assert_eq!(
            got, expected,
            "try {attempt}: counts differ from in-turn runs"
        );
        support::bin::assert_same_dump(&dump, &expected_dump, "concurrent runs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_finds_the_vendor_busy_refuses_and_writes_nothing() {
    let (env, app) = fixture().await;
    let v = env.vendor(&app, "acme");
    let held = app
        .store
        .hold_lease(&lease_name("acme"), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let r = run_vendor(&app.store, &v, &env.path("work"), RunOptions::default()).await;
    assert!(matches!(r, Err(ReconcileError::Busy { .. })), "{r:?}");
    assert_eq!(outcome_of(&env).await.1, vec![0, 0, 0, 0, 0]);
    // A dry run writes nothing and needs no lease.
    let dry = RunOptions {
        dry_run: true,
        ..Default::default()
    };
    assert_eq!(
        run_vendor(&app.store, &v, &env.path("work"), dry)
            .await
            .unwrap()
            .fixes,
        2
    );
    held.release().await.unwrap();
    run_vendor(&app.store, &v, &env.path("work"), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome_of(&env).await.1[0], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_by_hand_while_serve_holds_the_lease_exits_75_or_waits() {
    let (env, app) = fixture().await;
    let cfg = support::app::TestConfig {
        dir: tempfile::tempdir_in(env.dir.path()).unwrap(),
        path: env.config.clone(),
        db: env.database(),
    };
    let held = app
        .store
        .hold_lease(&lease_name("acme"), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let out = support::bin::driftwatch(&cfg, &["reconcile", "--vendor", "acme"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains("another reconcile of vendor `acme` is running"),
        "{err}"
    );
    assert_eq!(outcome_of(&env).await.1[3], 0);

    // With --wait it runs once the holder lets go.
    let child = support::bin::driftwatch(&cfg, &["reconcile", "--vendor", "acme", "--wait", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    held.release().await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(outcome_of(&env).await.1[3], 1);
}
