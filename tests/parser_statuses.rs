//! A configurable status set: a deployment declares `shipped`, `delivered`
//! (`[[status]]`), and mail, exports, reconcile and the report all read them;
//! a word nobody declared is still refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod reconcile_support;
mod support;

use chrono::{Duration, Utc};
use driftwatch::model::Status;
use driftwatch::reconcile::{DriftKind, Outcome, RunOptions, run_vendor};
use driftwatch::report::config::ReportSettings;
use support::app::maildir_config;

const STATUSES: &str = r#"
[[status]]
name = "shipped"
after = "in_progress"

[[status]]
name = "delivered"
after = "shipped"
terminal = true
"#;

const SHIPCO: &str = r#"vendor = "shipco"
version = 1
[match]
senders = ["status@shipco.example"]
[[extract]]
in = "text"
pattern = '(?m)^Order: (?P<order_ref>\S+)\r?$'
[[extract]]
in = "text"
pattern = '(?m)^Status: (?P<status>[^\r\n]+)'
[status_map]
"In Progress" = "in_progress"
"Shipped" = "shipped"
"Out for delivery" = "shipped"
"Delivered" = "delivered"
"#;

fn mail(order: &str, status: &str) -> Vec<u8> {
    format!(
        "From: Shipco <status@shipco.example>\r\nTo: orders@lender.example\r\n\
         Subject: Order {order} update\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{order}-{status}@shipco.example>\r\n\r\n\
         Order: {order}\r\nStatus: {status}\r\n"
    )
    .into_bytes()
}

fn parsers_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[tokio::test]
async fn a_declared_status_is_read_from_mail_and_export_compared_by_reconcile_and_reported() {
    let parsers = parsers_with(&[("shipco.toml", SHIPCO)]);
    let vendor = r#"
[[vendor]]
name = "shipco"
policy = "flag"
[vendor.export]
kind = "file"
path = "export.csv"
[vendor.mapping]
key = "Order"
status = "Status"
[vendor.status_map]
"Delivered" = "delivered"
[vendor.guard]
max_drift_pct = 100
max_row_drop_pct = 100
"#;
    let cfg = maildir_config(parsers.path(), &format!("{STATUSES}\n{vendor}"));
    let app = cfg.app().await;
    cfg.deliver("1", &mail("S1", "Shipped"));
    cfg.deliver("2", &mail("S2", "Out for delivery"));
    cfg.deliver("3", &mail("S3", "Delivered"));
    app.ingest_once().await.unwrap();

    // From mail: the vendor's words land on the declared statuses.
    for (order, want) in [("S1", "shipped"), ("S2", "shipped"), ("S3", "delivered")] {
        let o = app.store.order("shipco", order).await.unwrap().unwrap();
        assert_eq!(o.status.map(Status::as_str), Some(want), "order {order}");
    }

    // From an export: the canonical word itself and a mapped vendor word.
    let export = cfg.dir.path().join("export.csv");
    std::fs::write(
        &export,
        "Order,Status\nS1,shipped\nS2,Delivered\nS3,delivered\n",
    )
    .unwrap();
    reconcile_support::set_mtime(&export, Utc::now());
    let v = app
        .config
        .vendors
        .iter()
        .find(|v| v.name == "shipco")
        .unwrap()
        .clone();
    let run = run_vendor(
        &app.store,
        &v,
        &cfg.dir.path().join("work"),
        RunOptions {
            now: Some(Utc::now() + Duration::minutes(1)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(run.outcome, Outcome::Ok, "{:?}", run.reason);
    assert_eq!(run.unmapped_status, 0, "every export status was understood");
    let drifts: Vec<_> = run
        .sample
        .iter()
        .map(|d| {
            (
                d.order_ref.as_str(),
                d.kind,
                d.local_value.clone(),
                d.remote_value.clone(),
            )
        })
        .collect();
    assert_eq!(
        drifts,
        vec![(
            "S2",
            DriftKind::StatusMismatch,
            Some(serde_json::json!("shipped")),
            Some(serde_json::json!("delivered"))
        )],
        "only S2 differs, and it is compared in the declared words"
    );

    // The report shows the drift in those words, and a `terminal` status
    // (delivered) is not an open order waiting on the vendor.
    let settings = ReportSettings {
        stuck_after_days: 0,
        ..ReportSettings::default()
    };
    let now = Utc::now() + Duration::hours(1);
    let report = driftwatch::report::build(&app.store, now.date_naive(), &settings, now)
        .await
        .unwrap();
    let text = driftwatch::report::render_text(&report);
    assert!(
        text.contains("we think: \"shipped\"") || text.contains("we think: shipped"),
        "{text}"
    );
    assert!(text.contains("delivered"), "{text}");
    let stuck: Vec<_> = report
        .stuck
        .items
        .iter()
        .map(|s| (s.order_ref.as_str(), s.status.as_deref()))
        .collect();
    assert!(stuck.contains(&("S1", Some("shipped"))), "{stuck:?}");
    assert!(
        !stuck.iter().any(|(o, _)| *o == "S3"),
        "delivered is terminal, so S3 is not stuck: {stuck:?}"
    );
}

#[test]
fn a_rule_file_naming_an_undeclared_status_does_not_load() {
    let parsers = parsers_with(&[(
        "shipco.toml",
        &SHIPCO.replace(
            "\"Delivered\" = \"delivered\"",
            "\"Beamed\" = \"teleported\"",
        ),
    )]);
    let errors = driftwatch::parse::load_dir(parsers.path(), Default::default())
        .err()
        .expect("refused");
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|e| e.contains("teleported")),
        "the error names the word: {text:?}"
    );
}

#[tokio::test]
async fn a_vendor_word_outside_the_status_map_is_still_quarantined() {
    let parsers = parsers_with(&[("shipco.toml", SHIPCO)]);
    let cfg = maildir_config(parsers.path(), STATUSES);
    let app = cfg.app().await;
    cfg.deliver("1", &mail("S9", "Lost in transit"));
    app.ingest_once().await.unwrap();
    assert!(app.store.order("shipco", "S9").await.unwrap().is_none());
    let pool = support::db::open(&cfg.database()).await;
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM messages WHERE disposition = 'quarantined'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(reason.contains("Lost in transit"), "{reason}");
}

#[test]
fn a_status_declaration_that_contradicts_another_is_a_config_error() {
    let cfg = maildir_config(
        &support::app::parsers_dir(),
        "[[status]]\nname = \"parked\"\nafter = \"on_hold\"\n",
    );
    let err = driftwatch::config::Config::load(&cfg.path).unwrap_err();
    assert!(err.to_string().contains("side state"), "{err}");
    let cfg = maildir_config(
        &support::app::parsers_dir(),
        "[[status]]\nname = \"completed\"\nterminal = false\n",
    );
    let err = driftwatch::config::Config::load(&cfg.path).unwrap_err();
    assert!(err.to_string().contains("already declared"), "{err}");
}
