//! Broken exports must never change the view: truncated, empty, header-only,
//! wrong-column and duplicate-key exports each trip the guard or fail with a
//! clear error, and fix nothing. Also: missing_remote waits for N key frames,
//! an unchanged export is recognised, a dry run writes nothing, drifts close
//! when a later key frame or delta agrees, and the CLI prints a summary.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reconcile_support;
mod support;

use std::path::Path;

use chrono::{Duration, TimeZone, Utc};
use driftwatch::model::{DeltaDraft, DeltaSource, Status, TimeSource};
use driftwatch::reconcile::{
    KeyFrameError, Outcome, ReconcileError, RunOptions, RunSummary, VendorSettings, run_vendor,
};
use driftwatch::store::Store;
use reconcile_support::{Env, seed_scheduled};

const ORDERS: usize = 100;

fn vendor_toml(policy: &str) -> String {
    format!(
        r#"[[vendor]]
name = "acme"
policy = "{policy}"
missing_remote_after = 2
[vendor.export]
kind = "file"
path = "export.csv"
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
"#
    )
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
}

/// 100 scheduled orders, told by email a day before the exports.
async fn seed(store: &Store) {
    let fields = [("fee".to_string(), serde_json::json!(500.0))].into();
    let refs = (0..ORDERS).map(|i| format!("{}", 1000 + i));
    seed_scheduled(store, "acme", "Inspection Scheduled", refs, &fields, t0()).await;
}

/// The export of the seeded orders, with `changed` of them delivered.
fn csv(rows: usize, changed: usize) -> String {
    // With a UTF-8 byte-order mark, as spreadsheet tools write it.
    let mut s = String::from("\u{feff}Order No,Status,Fee\n");
    for i in 0..rows {
        let status = if i < changed {
            "Report Delivered"
        } else {
            "Inspection Scheduled"
        };
        s.push_str(&format!("{},{status},$500.00\n", 1000 + i));
    }
    s
}

struct Fixture {
    env: Env,
    app: driftwatch::app::App,
    vendor: VendorSettings,
}

impl Fixture {
    async fn new(policy: &str) -> Fixture {
        let env = Env::new(&vendor_toml(policy));
        let app = env.app().await;
        seed(&app.store).await;
        let vendor = env.vendor(&app, "acme");
        Fixture { env, app, vendor }
    }

    async fn run(&self, export: &str, opts: RunOptions) -> Result<RunSummary, ReconcileError> {
        // Written the moment the run starts: a file's as_of is its mtime.
        let now = opts.now.unwrap_or(t0() + Duration::days(1));
        let path = self.env.path("export.csv");
        std::fs::write(&path, export).unwrap();
        reconcile_support::set_mtime(&path, now);
        let opts = RunOptions {
            now: Some(now),
            ..opts
        };
        run_vendor(&self.app.store, &self.vendor, &self.env.path("work"), opts).await
    }

    /// A run at `now` (the export written then), with default options.
    async fn run_at(&self, export: &str, now: chrono::DateTime<Utc>) -> RunSummary {
        let opts = RunOptions {
            now: Some(now),
            ..Default::default()
        };
        self.run(export, opts).await.unwrap()
    }

    async fn state(&self) -> (Vec<String>, i64) {
        let dump = support::db::dump(&self.env.database()).await;
        let drifts = support::db::count(&self.env.database(), "SELECT count(*) FROM drifts").await;
        (dump, drifts)
    }

    async fn last_run(&self) -> (String, Option<String>) {
        let r = self.app.store.reconcile_runs("acme", 1).await.unwrap();
        (r[0].outcome.clone(), r[0].reason.clone())
    }
}

#[tokio::test]
async fn broken_exports_fix_nothing() {
    let f = Fixture::new("fix").await;
    // A good key frame first: 2 orders delivered, fixed.
    let good = f.run(&csv(ORDERS, 2), RunOptions::default()).await.unwrap();
    assert_eq!(good.outcome, Outcome::Ok);
    assert_eq!((good.counts.status_mismatch, good.fixed), (2, 2));
    let before = f.state().await;

    // Each broken export, with 5 more orders "delivered" in it that must not be applied.
    let full = csv(ORDERS, 7);
    let truncated_mid_row = &full[..full.len() - 20];
    let truncated_rows = csv(60, 7);
    let header_only = "Order No,Status,Fee\n".to_string();
    let wrong_column = full.replace("Order No,Status,Fee", "Order,State,Fee");
    let duplicate = format!("{full}1003,Report Delivered,$500.00\n");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated mid-row",
            truncated_mid_row.to_string(),
            "truncated or malformed",
        ),
        (
            "truncated at a row boundary",
            truncated_rows,
            "row count fell 40.0%",
        ),
        ("empty", String::new(), "0 order row"),
        ("header only", header_only, "0 order row"),
        (
            "wrong column",
            wrong_column,
            "column `Order No` is not in the export",
        ),
        ("duplicate key", duplicate, "`1003`"),
    ];
    for (name, export, needle) in cases {
        let r = f.run(&export, RunOptions::default()).await;
        let message = match &r {
            Ok(s) => {
                assert_eq!(s.outcome, Outcome::Refused, "{name}");
                assert_eq!(s.fixed, 0, "{name}");
                s.reason.clone().unwrap_or_default()
            }
            Err(e) => {
                assert!(matches!(e, ReconcileError::KeyFrame(_)), "{name}: {e}");
                e.to_string()
            }
        };
        assert!(message.contains(needle), "{name}: {message}");
        // Nothing changed but the run record, which says why.
        assert_eq!(f.state().await, before, "{name} changed the database");
        let (outcome, reason) = f.last_run().await;
        assert!(
            outcome == "refused" || outcome == "failed",
            "{name}: {outcome}"
        );
        assert!(reason.unwrap_or_default().contains(needle), "{name}");
    }
    let dup = f
        .run(
            &format!("{full}1003,x,1\n1004,x,1\n"),
            RunOptions::default(),
        )
        .await;
    assert!(matches!(
        dup,
        Err(ReconcileError::KeyFrame(KeyFrameError::DuplicateKeys {
            count: 2,
            ..
        }))
    ));
}

#[tokio::test]
async fn guard_caps_drift_share_and_fixes() {
    let f = Fixture::new("fix").await;
    f.run(&csv(ORDERS, 0), RunOptions::default()).await.unwrap();
    let before = f.state().await;
    // 30% of orders drifted: over the default 10% limit.
    let s = f
        .run(&csv(ORDERS, 30), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    assert!(
        s.reason.as_deref().unwrap().contains("30 of 100 orders"),
        "{:?}",
        s.reason
    );
    assert_eq!(s.fixes, 30, "the summary says what would have been fixed");
    assert_eq!(f.state().await, before);

    let mut capped = f.vendor.clone();
    capped.guard.max_fixes = 3;
    std::fs::write(f.env.path("export.csv"), csv(ORDERS, 5)).unwrap();
    let s = run_vendor(
        &f.app.store,
        &capped,
        &f.env.path("work"),
        RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    assert!(
        s.reason
            .as_deref()
            .unwrap()
            .contains("exceed the per-run cap of 3")
    );
    assert_eq!(f.state().await, before);
}

#[tokio::test]
async fn missing_remote_is_fixed_only_after_n_key_frames_and_unchanged_is_cheap() {
    let f = Fixture::new("fix").await;
    let without_last = csv(ORDERS - 1, 0);
    let s = f.run(&without_last, RunOptions::default()).await.unwrap();
    assert_eq!((s.counts.missing_remote, s.fixes), (1, 0));
    let gone = "1099";
    assert_eq!(
        f.app
            .store
            .order("acme", gone)
            .await
            .unwrap()
            .unwrap()
            .status,
        Some(Status::Scheduled)
    );
    // The same bytes again: recognised, not diffed, no new key frame.
    let s = f.run(&without_last, RunOptions::default()).await.unwrap();
    assert_eq!(s.outcome, Outcome::Unchanged);
    assert_eq!(
        support::db::count(&f.env.database(), "SELECT count(*) FROM key_frames").await,
        1
    );
    // A second, different key frame without it: now acted on.
    let mut second = without_last.clone();
    second.push('\n');
    let s = f.run_at(&second, t0() + Duration::days(2)).await;
    assert_eq!((s.counts.missing_remote, s.fixes, s.fixed), (1, 1, 1));
    let o = f.app.store.order("acme", gone).await.unwrap().unwrap();
    assert_eq!(o.status, Some(Status::Cancelled));
    assert_eq!(
        o.vendor_status.as_deref(),
        Some("absent from vendor export")
    );
}

/// The README's upgrade note: key frames stored before stop 28 carry a
/// SHA-256 content hash, now BLAKE3. The same export after the upgrade must
/// not match the old hash by accident, nor act differently for being diffed:
/// it is diffed once more, finds what the first run left (nothing, after
/// fixes), writes no fix, and from then on is `unchanged`.
#[tokio::test]
async fn a_key_frame_hashed_before_the_blake3_upgrade_is_diffed_once_more_to_the_same_view() {
    use sha2::Digest;
    let f = Fixture::new("fix").await;
    let export = csv(ORDERS, 2);
    let first = f.run(&export, RunOptions::default()).await.unwrap();
    assert_eq!((first.outcome, first.fixed), (Outcome::Ok, 2));
    // What the older driftwatch stored for these bytes.
    let pool = support::db::open_writable(&f.env.database()).await;
    sqlx::query("UPDATE key_frames SET content_hash = $1")
        .bind(sha2::Sha256::digest(export.as_bytes()).to_vec())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let orders = f.app.store.orders(Some("acme")).await.unwrap();

    let again = f.run_at(&export, t0() + Duration::days(2)).await;
    assert_eq!(again.outcome, Outcome::Ok, "an old hash is not this hash");
    assert_eq!(
        (again.counts.status_mismatch, again.fixes, again.fixed),
        (0, 0, 0)
    );
    assert_eq!(f.app.store.orders(Some("acme")).await.unwrap(), orders);
    assert!(
        f.app
            .store
            .drifts(Some("acme"), true)
            .await
            .unwrap()
            .is_empty()
    );

    let third = f.run_at(&export, t0() + Duration::days(3)).await;
    assert_eq!(third.outcome, Outcome::Unchanged);
}

#[tokio::test]
async fn dry_run_writes_nothing_and_flag_closes_when_agreed() {
    let f = Fixture::new("flag").await;
    let before = f.state().await;
    let s = f
        .run(
            &csv(ORDERS, 2),
            RunOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (s.outcome, s.counts.status_mismatch, s.run_id),
        (Outcome::Ok, 2, None)
    );
    assert_eq!(f.state().await, before);
    assert_eq!(
        support::db::count(&f.env.database(), "SELECT count(*) FROM reconcile_runs").await,
        0
    );

    // Flag: recorded, view untouched.
    let s = f.run(&csv(ORDERS, 3), RunOptions::default()).await.unwrap();
    assert_eq!((s.counts.status_mismatch, s.fixed), (3, 0));
    assert_eq!(
        f.app.store.drifts(Some("acme"), true).await.unwrap().len(),
        3
    );
    assert_eq!(
        f.state().await.0,
        before.0,
        "flag never touches the log or view"
    );

    // The delivery email for 1000 arrives: an unchanged key frame closes its drift.
    f.app
        .store
        .append_deltas_at(
            DeltaSource::Email,
            &[(
                DeltaDraft {
                    vendor: "acme".into(),
                    order_ref: "1000".into(),
                    status: Some(Status::Completed),
                    vendor_status: Some("Report Delivered".into()),
                    fields: Default::default(),
                    event_time: t0() + Duration::hours(5),
                    time_source: TimeSource::Vendor,
                },
                t0() + Duration::days(1) + Duration::hours(3),
            )],
        )
        .await
        .unwrap();
    let s = f
        .run_at(
            &csv(ORDERS, 3),
            t0() + Duration::days(1) + Duration::hours(4),
        )
        .await;
    assert_eq!((s.outcome, s.closed), (Outcome::Unchanged, 1));
    let open = f.app.store.drifts(Some("acme"), true).await.unwrap();
    assert_eq!(open.len(), 2);
    // A later key frame where the vendor agrees with us closes the rest.
    let s = f.run_at(&csv(ORDERS, 1), t0() + Duration::days(2)).await;
    assert_eq!((s.outcome, s.drifts(), s.closed), (Outcome::Ok, 0, 2));
    let all = f.app.store.drifts(Some("acme"), false).await.unwrap();
    let reasons: Vec<_> = all
        .iter()
        .map(|d| d.closed_reason.clone().unwrap())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| *r == "agreed_by_key_frame")
            .count(),
        2,
        "{reasons:?}"
    );
    assert!(reasons.contains(&"agreed_by_delta".to_string()));
}

#[tokio::test]
async fn cli_reconcile_prints_a_summary_and_drifts_lists_them() {
    let f = Fixture::new("fix").await;
    let export = f.env.path("other.csv");
    std::fs::write(&export, csv(ORDERS, 2)).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .arg("-c")
            .arg(&f.env.config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let file = export.to_str().unwrap();
    let (code, out) = run(&["reconcile", "--vendor", "acme", "--file", file, "--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("dry run: nothing written"), "{out}");
    assert!(
        out.contains("status_mismatch         2  missed_email 2"),
        "{out}"
    );
    assert!(out.contains("would append 2 reconcile delta(s)"), "{out}");
    let (code, out) = run(&["reconcile", "--vendor", "acme", "--file", file]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("appended 2 reconcile delta(s), 2 drift(s) closed as fixed"),
        "{out}"
    );
    let (_, out) = run(&["drifts", "--vendor", "acme"]);
    assert!(
        out.contains("status_mismatch") && out.contains("fixed"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    let (code, _) = run(&["reconcile", "--vendor", "nobody"]);
    assert_eq!(code, Some(1));
    let _ = Path::new(file);
}

#[tokio::test]
async fn json_export_file_with_as_of_field() {
    let env = Env::new(
        r#"[[vendor]]
name = "acme"
policy = "fix"
[vendor.export]
kind = "file"
path = "export.json"
format = "json"
as_of = "field:/exported_at"
[vendor.mapping]
key = "id"
status = "/state/code"
[vendor.guard]
max_drift_pct = 100
"#,
    );
    let app = env.app().await;
    seed(&app.store).await;
    let items: Vec<_> = (0..ORDERS)
        .map(|i| serde_json::json!({"id": 1000 + i, "state": {"code": if i == 5 { "completed" } else { "scheduled" }}}))
        .collect();
    let doc = serde_json::json!({"exported_at": "2026-05-01T20:00:00Z", "items": items});
    std::fs::write(env.path("export.json"), doc.to_string()).unwrap();
    let s = driftwatch::reconcile::run_once(&app.store, &app.config, "acme", RunOptions::default())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert_eq!(
        s.as_of,
        Some(Utc.with_ymd_and_hms(2026, 5, 1, 20, 0, 0).unwrap())
    );
    assert_eq!(
        (s.counts.orders_remote, s.counts.status_mismatch, s.fixed),
        (100, 1, 1)
    );
    let o = app.store.order("acme", "1005").await.unwrap().unwrap();
    assert_eq!(o.status, Some(Status::Completed));
    assert_eq!(
        o.event_time,
        Utc.with_ymd_and_hms(2026, 5, 1, 20, 0, 0).unwrap()
    );
}
