//! A vendor changes its email format: mail is quarantined with reasons, the
//! change is flagged, and after the rule file is fixed `reparse` recovers
//! exactly what a correct parser would have produced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use driftwatch::app::App;
use driftwatch::model::DeltaDraft;
use driftwatch::reparse::{ReparseOptions, run as reparse};
use support::app::{TestConfig, copy_shipped_parsers, maildir_config};
use support::db;
use support::vendor_mail;

fn set() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format-change")
}

fn mails(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(set())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "eml")
                && p.file_name().unwrap().to_string_lossy().starts_with(prefix)
        })
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Vendor history before the change: enough format-A mail for a baseline.
fn deliver_history(cfg: &TestConfig) {
    for (i, m) in vendor_mail::acme_batch(24, 0).into_iter().enumerate() {
        cfg.deliver(&format!("h{i:03}"), &m);
    }
}

/// The deltas the view uses for the format-change orders, as drafts.
async fn live_drafts(app: &App) -> BTreeMap<String, Vec<DeltaDraft>> {
    let mut out = BTreeMap::new();
    for o in 48301..=48306 {
        let r = o.to_string();
        let ds = app.store.order_deltas("acme-appraisal", &r).await.unwrap();
        out.insert(r, ds.into_iter().map(|d| d.draft).collect());
    }
    out
}

#[tokio::test]
async fn format_change_is_quarantined_flagged_and_recovered_by_reparse() {
    let parsers = tempfile::tempdir().unwrap();
    copy_shipped_parsers(parsers.path());
    let cfg = maildir_config(parsers.path(), "");
    deliver_history(&cfg);
    for (name, raw) in mails("a-") {
        cfg.deliver(&name, &raw);
    }
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    assert_eq!(app.store.message_counts().await.unwrap().quarantined, 0);

    // Acme switches to layout B: version 1 quarantines every message, with the reason.
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set().join("expected.json")).unwrap())
            .unwrap();
    for (name, raw) in mails("b-") {
        cfg.deliver(&name, &raw);
    }
    let r = app.ingest_once().await.unwrap();
    assert_eq!(
        (r[0].2.archived, r[0].2.quarantined),
        (6, 6),
        "{:?}",
        r[0].2
    );
    let q = app.store.quarantined(10).await.unwrap();
    let v1_reason = expected["v1_on_format_b"]["reason"].as_str().unwrap();
    assert!(
        q.iter().all(|m| m.reason.as_deref() == Some(v1_reason)),
        "{q:#?}"
    );

    // ...and the change is flagged the same day.
    let now = chrono::Utc::now();
    let alerts = app
        .store
        .report_format_alerts(
            now - chrono::Duration::hours(1),
            now + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.vendor == "acme-appraisal" && a.kind == "quarantine_rate"),
        "{alerts:#?}"
    );

    // The rule file is fixed (version 2) and the archive re-run through it.
    std::fs::copy(
        set().join("acme-appraisal.v2.toml"),
        parsers.path().join("acme-appraisal.toml"),
    )
    .unwrap();
    app.reload_parsers().unwrap();
    let registry = app.pipeline.registry();
    let before = live_drafts(&app).await;
    let dry = reparse(
        &app.store,
        &registry,
        &ReparseOptions {
            dry_run: true,
            ..Default::default()
        },
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(dry.changed, 6);
    assert_eq!(dry.orders.len(), 6, "{:#?}", dry.orders);
    assert_eq!(live_drafts(&app).await, before, "a dry run writes nothing");

    let done = reparse(
        &app.store,
        &registry,
        &ReparseOptions::default(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (done.changed, done.per_vendor["acme-appraisal"].newly_parsed),
        (6, 6)
    );
    assert_eq!(app.store.message_counts().await.unwrap().quarantined, 0);

    // The view now holds the ground truth for every order...
    for (order, want) in expected["orders"].as_object().unwrap() {
        let got = app
            .store
            .order("acme-appraisal", order)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.status.map(|s| s.as_str()),
            want["status"].as_str(),
            "order {order}"
        );
        assert_eq!(
            got.vendor_status.as_deref(),
            want["vendor_status"].as_str(),
            "order {order}"
        );
        assert_eq!(
            got.event_time
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            want["event_time"].as_str().unwrap(),
            "order {order}"
        );
        let fields = serde_json::to_value(&got.fields).unwrap();
        assert_eq!(
            fields,
            want.get("fields").cloned().unwrap_or(serde_json::json!({})),
            "order {order}"
        );
    }

    // ...and exactly the deltas a correct parser would have produced from the start.
    let parsers_v2 = tempfile::tempdir().unwrap();
    copy_shipped_parsers(parsers_v2.path());
    std::fs::copy(
        set().join("acme-appraisal.v2.toml"),
        parsers_v2.path().join("acme-appraisal.toml"),
    )
    .unwrap();
    let fresh = maildir_config(parsers_v2.path(), "");
    deliver_history(&fresh);
    for (name, raw) in mails("a-").into_iter().chain(mails("b-")) {
        fresh.deliver(&name, &raw);
    }
    let fresh_app = fresh.app().await;
    fresh_app.ingest_once().await.unwrap();
    assert_eq!(live_drafts(&app).await, live_drafts(&fresh_app).await);

    // Unchanged results were left alone: nothing superseded so far.
    assert_eq!(
        db::count(&cfg.database(), "SELECT count(*) FROM superseded_deltas").await,
        0
    );

    // A parser that misread a status is corrected: the message's old delta is
    // kept in the log, marked superseded, and the view follows the new one.
    let rule = parsers.path().join("acme-appraisal.toml");
    let text = std::fs::read_to_string(&rule).unwrap();
    let fixed = text.replace("version = 2", "version = 3").replace(
        "\"Inspection Complete\" = \"in_progress\"",
        "\"Inspection Complete\" = \"on_hold\"",
    );
    assert_ne!(fixed, text, "the v2 rule file maps Inspection Complete");
    std::fs::write(&rule, fixed).unwrap();
    app.reload_parsers().unwrap();
    let deltas_before = app.store.message_counts().await.unwrap().deltas;
    let registry = app.pipeline.registry();
    let done = reparse(
        &app.store,
        &registry,
        &ReparseOptions::default(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert!(done.changed >= 1, "{done:?}");
    let superseded = db::count(&cfg.database(), "SELECT count(*) FROM superseded_deltas").await;
    assert_eq!(
        superseded as u64, done.changed,
        "one old delta per changed message"
    );
    assert_eq!(
        app.store.message_counts().await.unwrap().deltas,
        deltas_before + done.changed,
        "appended, never deleted"
    );
    let o = app
        .store
        .order("acme-appraisal", "48304")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status, Some(driftwatch::model::Status::OnHold));
    let parser_versions: Vec<Option<i64>> = app
        .store
        .order_deltas("acme-appraisal", "48304")
        .await
        .unwrap()
        .iter()
        .map(|d| d.parser_version)
        .collect();
    assert!(parser_versions.contains(&Some(3)), "{parser_versions:?}");
}
