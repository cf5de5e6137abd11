//! Reparse after a rule change: quarantined and ignored mail is looked at
//! again, and mail whose rules did not change is skipped without being read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use driftwatch::app::App;
use driftwatch::reparse::{ReparseOptions, ReparseReport, run as reparse};
use support::app::{TestConfig, copy_shipped_parsers, maildir_config};
use support::vendor_mail;

fn acme(order: u32, status: &str) -> Vec<u8> {
    vendor_mail::acme(
        order,
        status,
        "11/23/2026 09:12 AM",
        &format!("reparse-{order}@acme-amc.example"),
    )
}

/// `driftwatch reparse` as the CLI runs it: the app's current rules and their stamps.
async fn reparse_now(app: &App) -> ReparseReport {
    let (registry, rules) = app.pipeline.rules();
    reparse(
        &app.store,
        &registry,
        &ReparseOptions {
            rules: (*rules).clone(),
            ..Default::default()
        },
        &|_, _| {},
    )
    .await
    .unwrap()
}

fn edit(path: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let changed = text.replace(from, to);
    assert_ne!(text, changed, "{from} is in {}", path.display());
    std::fs::write(path, changed).unwrap();
}

async fn status_of(app: &App, order: &str) -> Option<String> {
    app.store
        .order("acme-appraisal", order)
        .await
        .unwrap()
        .and_then(|o| o.status)
        .map(|s| s.to_string())
}

fn deliver_three(cfg: &TestConfig) {
    cfg.deliver("m1", &acme(48401, "Accepted"));
    cfg.deliver("m2", &acme(48402, "Inspection Scheduled"));
    cfg.deliver("m3", &acme(48403, "Report Delivered"));
}

#[tokio::test]
async fn quarantined_mail_is_parsed_by_reparse_once_its_rule_is_fixed() {
    let parsers = tempfile::tempdir().unwrap();
    copy_shipped_parsers(parsers.path());
    let rule = parsers.path().join("acme-appraisal.toml");
    // The rule file lacks a status word the vendor uses: that mail is quarantined.
    edit(&rule, "\"Accepted\" = \"accepted\"\n", "");
    let cfg = maildir_config(parsers.path(), "");
    deliver_three(&cfg);
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    let counts = app.store.message_counts().await.unwrap();
    assert_eq!((counts.parsed, counts.quarantined), (2, 1));
    assert_eq!(status_of(&app, "48401").await, None);

    edit(
        &rule,
        "[status_map]\n",
        "[status_map]\n\"Accepted\" = \"accepted\"\n",
    );
    app.reload_parsers().unwrap();
    let done = reparse_now(&app).await;
    assert_eq!(done.changed, 1, "{done:?}");
    assert_eq!(done.per_vendor["acme-appraisal"].newly_parsed, 1);
    let counts = app.store.message_counts().await.unwrap();
    assert_eq!((counts.parsed, counts.quarantined), (3, 0));
    assert_eq!(status_of(&app, "48401").await.as_deref(), Some("accepted"));
}

#[tokio::test]
async fn ignored_mail_is_parsed_by_reparse_once_the_ignore_rule_is_dropped() {
    let parsers = tempfile::tempdir().unwrap();
    copy_shipped_parsers(parsers.path());
    let cfg = maildir_config(
        parsers.path(),
        "[ingest]\nignore_senders = [\"status@acme-amc.example\"]\n",
    );
    deliver_three(&cfg);
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    assert_eq!(app.store.message_counts().await.unwrap().ignored, 3);
    drop(app);

    // The rule that ignored the sender is removed from the config.
    edit(
        &cfg.path,
        "ignore_senders = [\"status@acme-amc.example\"]\n",
        "",
    );
    let app = cfg.app().await;
    let done = reparse_now(&app).await;
    assert_eq!(done.changed, 3, "{done:?}");
    assert_eq!(done.per_vendor["acme-appraisal"].newly_parsed, 3);
    let counts = app.store.message_counts().await.unwrap();
    assert_eq!((counts.parsed, counts.ignored), (3, 0));
    assert_eq!(status_of(&app, "48403").await.as_deref(), Some("completed"));
}

#[tokio::test]
async fn reparse_reads_only_mail_whose_rules_changed() {
    let parsers = tempfile::tempdir().unwrap();
    copy_shipped_parsers(parsers.path());
    let cfg = maildir_config(parsers.path(), "");
    deliver_three(&cfg);
    cfg.deliver("k1", &support::vendor_mail::unknown_sender(1));
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();

    // Rules unchanged: nothing is read again.
    let same = reparse_now(&app).await;
    assert_eq!((same.in_scope, same.examined, same.changed), (4, 0, 0));

    // Another vendor's rule changes: Acme's mail is still skipped, the
    // quarantined message (which any rule file might now claim) is read again.
    edit(
        &parsers.path().join("keystone-title.toml"),
        "\"Cancelled\" = \"cancelled\"",
        "\"Cancelled\" = \"cancelled\"\n\"Void\" = \"cancelled\"",
    );
    app.reload_parsers().unwrap();
    let other = reparse_now(&app).await;
    assert_eq!((other.examined, other.changed), (1, 0), "{other:?}");

    // Acme's rule changes: its three messages are read again (and the
    // quarantined one, as after any change), and the change applied.
    edit(
        &parsers.path().join("acme-appraisal.toml"),
        "\"Report Delivered\" = \"completed\"",
        "\"Report Delivered\" = \"on_hold\"",
    );
    app.reload_parsers().unwrap();
    let acme = reparse_now(&app).await;
    assert_eq!((acme.examined, acme.changed), (4, 1), "{acme:?}");
    assert_eq!(status_of(&app, "48403").await.as_deref(), Some("on_hold"));

    // And once applied, the next reparse has nothing to read.
    let again = reparse_now(&app).await;
    assert_eq!((again.examined, again.changed), (0, 0));
}

/// A rule change that reads one row of a CSV digest differently replaces
/// that order's delta only: the other rows' deltas stay in the log as they
/// were (same offsets, nothing re-emitted to the feed), and only that
/// order's view moves.
#[tokio::test]
async fn a_digest_with_one_row_read_differently_replaces_only_that_rows_delta() {
    let parsers = tempfile::tempdir().unwrap();
    copy_shipped_parsers(parsers.path());
    let cfg = maildir_config(parsers.path(), "");
    let digest = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/pinnacle-credit/01-daily-2026-11-24.eml"),
    )
    .unwrap();
    cfg.deliver("d1", &digest);
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    let orders: Vec<String> = (231..=238).map(|n| format!("PC-100{n}")).collect();
    let mut before = Vec::new();
    for o in &orders {
        before.push(
            app.store
                .order("pinnacle-credit", o)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let deltas_before = app.store.message_counts().await.unwrap().deltas;
    assert_eq!(
        before[4].status.map(|s| s.to_string()).as_deref(),
        Some("on_hold")
    );

    let rule = parsers.path().join("pinnacle-credit.toml");
    edit(&rule, "version = 1", "version = 2");
    edit(
        &rule,
        "\"Pending Consumer Verification\" = \"on_hold\"",
        "\"Pending Consumer Verification\" = \"in_progress\"",
    );
    app.reload_parsers().unwrap();
    let done = reparse_now(&app).await;
    assert_eq!((done.examined, done.changed), (1, 1), "{done:?}");
    assert_eq!(done.orders.len(), 1, "one order's view changes: {done:?}");
    assert_eq!(done.orders[0].order_ref, "PC-100235");

    let db = cfg.database();
    assert_eq!(
        support::db::count(&db, "SELECT count(*) FROM superseded_deltas").await,
        1,
        "only the re-read row's old delta is superseded"
    );
    assert_eq!(
        app.store.message_counts().await.unwrap().deltas,
        deltas_before + 1,
        "one delta appended, for that row"
    );
    for (o, was) in orders.iter().zip(&before) {
        let now = app
            .store
            .order("pinnacle-credit", o)
            .await
            .unwrap()
            .unwrap();
        if o == "PC-100235" {
            assert_eq!(
                now.status.map(|s| s.to_string()).as_deref(),
                Some("in_progress")
            );
            assert!(
                now.last_offset > was.last_offset,
                "{o} follows the new delta"
            );
        } else {
            assert_eq!(&now, was, "{o} is untouched");
        }
    }

    // Applied: the next reparse has nothing to read or change.
    let again = reparse_now(&app).await;
    assert_eq!((again.examined, again.changed), (0, 0), "{again:?}");
}
