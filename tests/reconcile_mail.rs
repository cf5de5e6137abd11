//! `kind = "mail"`: the vendor's emailed full-state report, delivered into a
//! real Dovecot, becomes a key frame through `serve` (no schedule: the
//! arrival starts the run); a second, older report arriving late never
//! replaces it; a newer one does.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reconcile_support;
mod support;

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use driftwatch::model::Status;
use driftwatch::reconcile::{Outcome, RunOptions, run_once};
use reconcile_support::seed_scheduled;
use support::app::{Serving, imap_config};
use support::dovecot::Dovecot;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap()
}

const VENDOR: &str = r#"[ingest]
ignore_senders = ["reports@acme-amc.example"]

[[vendor]]
name = "acme-appraisal"
policy = "fix"
keyframe_overdue_after = "26h"
[vendor.export]
kind = "mail"
from = ["reports@acme-amc.example"]
subject = "Acme open orders report*"
attachment = "open-orders-*.csv"
complete = true
[vendor.mapping]
key = "Order No"
status = "Status"
[vendor.status_map]
SCHED = "scheduled"
DLVD = "completed"
[vendor.guard]
max_drift_pct = 100
max_row_drop_pct = 100
"#;

/// The vendor's daily report: a CSV of its open and finished orders.
fn report(id: &str, date: &str, rows: &str) -> Vec<u8> {
    format!(
        "From: Acme Reports <reports@acme-amc.example>\r\n\
         To: alice@localhost\r\n\
         Subject: Acme open orders report {id}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@acme-amc.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Your open orders are attached.\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/csv; name=\"open-orders-{id}.csv\"\r\n\
         Content-Disposition: attachment; filename=\"open-orders-{id}.csv\"\r\n\
         \r\n\
         Order No,Status\r\n{rows}\
         --b1--\r\n"
    )
    .into_bytes()
}

async fn seed(app: &driftwatch::app::App) {
    let refs = ["1", "2"].map(String::from);
    seed_scheduled(
        &app.store,
        "acme-appraisal",
        "Inspection Scheduled",
        refs,
        &Default::default(),
        t0(),
    )
    .await;
}

async fn status(app: &driftwatch::app::App, order: &str) -> Option<Status> {
    app.store
        .order("acme-appraisal", order)
        .await
        .unwrap()
        .unwrap()
        .status
}

/// Waits until `n` messages are archived.
async fn archived(app: &driftwatch::app::App, n: u64) {
    let deadline = Instant::now() + StdDuration::from_secs(30);
    while app.store.message_counts().await.unwrap().messages < n {
        assert!(
            Instant::now() < deadline,
            "mail {n} was not archived within 30 s"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

/// Waits until the vendor has `n` reconcile runs; returns them, newest first.
async fn runs(app: &driftwatch::app::App, n: usize) -> Vec<driftwatch::store::RunRow> {
    let deadline = Instant::now() + StdDuration::from_secs(30);
    loop {
        let runs = app
            .store
            .reconcile_runs("acme-appraisal", 10)
            .await
            .unwrap();
        if runs.len() >= n {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "run {n} did not happen within 30 s"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_report_mail_becomes_a_key_frame_through_serve_and_a_late_older_one_never_replaces_it() {
    let dovecot = Dovecot::start();
    let cfg = imap_config(&dovecot, VENDOR, "");
    let app = cfg.app().await;
    seed(&app).await;
    let serving = Serving::start(&app);

    dovecot
        .append(
            "INBOX",
            &[report(
                "2026-12-01",
                "Tue, 01 Dec 2026 18:00:00 +0000",
                "1,DLVD\r\n2,SCHED\r\n",
            )],
        )
        .await;
    let r = runs(&app, 1).await;
    assert_eq!(r[0].outcome, "ok", "{:?}", r[0].reason);
    assert!(
        r[0].source
            .as_deref()
            .unwrap_or("")
            .contains("open-orders-2026-12-01.csv"),
        "{:?}",
        r[0].source
    );
    assert_eq!(
        status(&app, "1").await,
        Some(Status::Completed),
        "fixed from the report"
    );
    let counts = app.store.message_counts().await.unwrap();
    assert_eq!(
        (counts.ignored, counts.parsed),
        (1, 0),
        "the report gave no email deltas of its own"
    );

    // Yesterday's report, delivered late, says order 1 was still scheduled.
    dovecot
        .append(
            "INBOX",
            &[report(
                "2026-11-30",
                "Mon, 30 Nov 2026 18:00:00 +0000",
                "1,SCHED\r\n2,SCHED\r\n",
            )],
        )
        .await;
    archived(&app, 2).await;
    // A status mail after it wakes the trigger again: still nothing to run.
    dovecot
        .append(
            "INBOX",
            &[report(
                "2026-11-29",
                "Sun, 29 Nov 2026 18:00:00 +0000",
                "1,SCHED\r\n",
            )],
        )
        .await;
    archived(&app, 3).await;
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    let r = app
        .store
        .reconcile_runs("acme-appraisal", 10)
        .await
        .unwrap();
    assert_eq!(r.len(), 1, "late older reports start no run: {r:?}");
    assert_eq!(status(&app, "1").await, Some(Status::Completed));
    // By hand too: the newest report is the one already taken.
    let s = run_once(
        &app.store,
        &app.config,
        "acme-appraisal",
        RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, Outcome::Unchanged, "{:?}", s.reason);
    assert_eq!(
        s.as_of,
        Some(Utc.with_ymd_and_hms(2026, 12, 1, 18, 0, 0).unwrap())
    );

    // Today's report: a new key frame, as of its Date, an hour ago by the
    // real clock. A report counts key frames fetched by its own time, so
    // the overdue checks below must come after this fetch: fixed dates
    // here made the test fail once the real clock passed them.
    let todays = Utc::now() - Duration::hours(1);
    let todays = Utc.timestamp_opt(todays.timestamp(), 0).single().unwrap();
    let date = todays.format("%a, %d %b %Y %H:%M:%S +0000").to_string();
    dovecot
        .append("INBOX", &[report("today", &date, "1,DLVD\r\n2,DLVD\r\n")])
        .await;
    let r = runs(&app, 3).await;
    assert_eq!(r[0].outcome, "ok", "{:?}", r[0].reason);
    assert_eq!(status(&app, "2").await, Some(Status::Completed));

    // Within keyframe_overdue_after of that report: nothing to say; past it: overdue.
    let settings = app.config.report_settings();
    for (now, overdue) in [
        (todays + Duration::hours(25), false),
        (todays + Duration::hours(31), true),
    ] {
        let report = driftwatch::report::build(&app.store, now.date_naive(), &settings, now)
            .await
            .unwrap();
        let alert = report
            .alerts
            .iter()
            .find(|a| a.kind == driftwatch::report::model::AlertKind::KeyFrameOverdue);
        assert_eq!(alert.is_some(), overdue, "{:?}", report.alerts);
        if let Some(a) = alert {
            assert!(
                a.message.contains("no key frame for 31 hours"),
                "{}",
                a.message
            );
        }
    }
    serving.stop().await;
}

#[tokio::test]
async fn a_report_from_a_sender_not_configured_is_never_a_key_frame() {
    let dovecot = Dovecot::start();
    let cfg = imap_config(&dovecot, VENDOR, "");
    let app = cfg.app().await;
    seed(&app).await;
    let forged = String::from_utf8(report(
        "2026-12-01",
        "Tue, 01 Dec 2026 18:00:00 +0000",
        "1,DLVD\r\n",
    ))
    .unwrap()
    .replace(
        "reports@acme-amc.example",
        "reports@acme-amc.example.evil.test",
    )
    .into_bytes();
    dovecot.append("INBOX", &[forged]).await;
    app.ingest_once().await.unwrap();
    let e = run_once(
        &app.store,
        &app.config,
        "acme-appraisal",
        RunOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no report mail from reports@acme-amc.example"),
        "{e}"
    );
    assert_eq!(status(&app, "1").await, Some(Status::Scheduled));
    // The daily report says so under "Needs a human": today the failed run,
    // and a day later (26 h after we first heard of the vendor) no key frame.
    let render = |now: DateTime<Utc>| {
        let (store, settings) = (app.store.clone(), app.config.report_settings());
        async move {
            let report = driftwatch::report::build(&store, now.date_naive(), &settings, now)
                .await
                .unwrap();
            driftwatch::report::text::render_text(&report)
        }
    };
    let today = render(Utc::now()).await;
    assert!(today.contains("RECONCILE FAILED"), "{today}");
    assert!(
        !today.contains("KEY FRAME OVERDUE"),
        "not yet overdue: {today}"
    );
    let later = render(Utc::now() + Duration::hours(27)).await;
    assert!(
        later.contains("KEY FRAME OVERDUE") && later.contains("no key frame received yet"),
        "{later}"
    );
}
