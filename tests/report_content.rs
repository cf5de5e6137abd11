//! What the daily report says, from a database holding a known day, and the
//! report from the command line, the demo and `serve` (no mail server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use driftwatch::report::config::ReportSettings;
use driftwatch::report::model::AlertKind;
use driftwatch::store::Store;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

const BIN: &str = env!("CARGO_BIN_EXE_driftwatch");

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `2026-11-24T08:00:00Z` in the store's fixed-width format.
fn t(s: &str) -> String {
    utc(s).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

async fn exec(db: &Path, statements: &[String]) {
    let mut c = SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.clone()))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    c.close().await.unwrap();
}

fn q(s: Option<&str>) -> String {
    s.map_or("NULL".to_string(), |s| {
        format!("'{}'", s.replace('\'', "''"))
    })
}

/// One busy day at four vendors, 2026-11-24 in Chicago (06:00Z to 06:00Z next
/// day), as ingest, reconcile and parser health would have recorded it.
async fn busy_day(db: &Path) {
    let mut sql = vec![
        format!("INSERT INTO reconcile_runs (id, vendor, started_at, finished_at, policy, dry_run, outcome, reason, orders_remote, orders_local, status_mismatch)
                 VALUES (1, 'acme-appraisal', '{a}', '{a}', 'flag', 0, 'ok', NULL, 41, 40, 1)", a = t("2026-11-24T08:00:00Z")),
        format!("INSERT INTO reconcile_runs (id, vendor, started_at, finished_at, policy, dry_run, outcome, reason, orders_remote, orders_local)
                 VALUES (2, 'keystone-title', '{a}', '{a}', 'fix', 0, 'refused', 'row count fell from 412 to 12 (-97%) against the last key frame', 12, 412)", a = t("2026-11-24T09:00:00Z")),
        format!("INSERT INTO reconcile_runs (id, vendor, started_at, finished_at, policy, dry_run, outcome, reason)
                 VALUES (3, 'flood-cert-co', '{a}', '{a}', 'flag', 0, 'failed', 'HTTP 503 from the export URL', )", a = t("2026-11-24T10:00:00Z")).replace(", )", ")"),
        // A run the day before, which must not count.
        format!("INSERT INTO reconcile_runs (id, vendor, started_at, policy, dry_run, outcome, reason)
                 VALUES (4, 'keystone-title', '{a}', 'fix', 0, 'refused', 'old')", a = t("2026-11-23T09:00:00Z")),
        format!("INSERT INTO format_alerts (vendor, detected_at, kind, field, baseline, current, detail)
                 VALUES ('acme-appraisal', '{a}', 'quarantine_rate', NULL, 0.02, 0.35, '35% of the latest messages from acme-appraisal were quarantined, against 2% before: has the vendor changed its email format?')", a = t("2026-11-24T11:00:00Z")),
    ];
    // (vendor, order, kind, field, ours, theirs, cause, opened, closed, reason)
    type D<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );
    let drifts: [D; 10] = [
        (
            "acme-appraisal",
            "48213",
            "status_mismatch",
            None,
            Some("\"scheduled\""),
            Some("\"completed\""),
            "missed_email",
            "2026-11-24T08:00:00Z",
            None,
            None,
        ),
        (
            "acme-appraisal",
            "48219",
            "missing_local",
            None,
            None,
            Some("\"accepted\""),
            "missed_email",
            "2026-11-20T08:00:00Z",
            None,
            None,
        ),
        (
            "acme-appraisal",
            "48215",
            "field_mismatch",
            Some("fee"),
            Some("495.0"),
            Some("525.0"),
            "parse_error",
            "2026-11-22T08:00:00Z",
            None,
            None,
        ),
        (
            "keystone-title",
            "T-7790",
            "missing_remote",
            None,
            Some("\"in_progress\""),
            None,
            "unexplained",
            "2026-11-18T08:00:00Z",
            None,
            None,
        ),
        (
            "keystone-title",
            "T-7781",
            "field_mismatch",
            Some("property"),
            Some("\"88 Harbor View Rd\""),
            Some("\"<script>alert('x')</script> 88 Harbour View Road\""),
            "late_email",
            "2026-11-24T12:00:00Z",
            None,
            None,
        ),
        (
            "flood-cert-co",
            "F-1001",
            "status_mismatch",
            None,
            Some("\"on_hold\""),
            Some("\"cancelled\""),
            "vendor_regression",
            "2026-11-19T08:00:00Z",
            None,
            None,
        ),
        (
            "acme-appraisal",
            "48100",
            "status_mismatch",
            None,
            Some("\"accepted\""),
            Some("\"completed\""),
            "late_email",
            "2026-11-21T08:00:00Z",
            Some("2026-11-24T08:00:00Z"),
            Some("fixed"),
        ),
        (
            "acme-appraisal",
            "48101",
            "field_mismatch",
            Some("fee"),
            Some("1"),
            Some("2"),
            "late_email",
            "2026-11-23T08:00:00Z",
            Some("2026-11-24T15:00:00Z"),
            Some("agreed_by_delta"),
        ),
        (
            "acme-appraisal",
            "48050",
            "status_mismatch",
            None,
            Some("\"accepted\""),
            Some("\"completed\""),
            "missed_email",
            "2026-11-19T08:00:00Z",
            Some("2026-11-21T08:00:00Z"),
            Some("agreed_by_key_frame"),
        ),
        // Closed after the day: still open as of the report.
        (
            "keystone-title",
            "T-7001",
            "status_mismatch",
            None,
            Some("\"ordered\""),
            Some("\"accepted\""),
            "late_email",
            "2026-11-23T20:00:00Z",
            Some("2026-11-25T09:00:00Z"),
            Some("agreed_by_delta"),
        ),
    ];
    for (v, o, k, f, ours, theirs, cause, opened, closed, reason) in drifts {
        sql.push(format!(
            "INSERT INTO drifts (vendor, order_ref, kind, field, local_value, remote_value, cause, first_run, last_run, opened_at, closed_at, closed_reason)
             VALUES ('{v}', '{o}', '{k}', {}, {}, {}, '{cause}', 1, 1, '{}', {}, {})",
            q(f), q(ours), q(theirs), t(opened), q(closed.map(t).as_deref()), q(reason)
        ));
    }
    // (vendor, disposition, sender, subject, reason, archived_at)
    type M<'a> = (
        Option<&'a str>,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
    );
    let mail: [M; 9] = [
        (
            Some("acme-appraisal"),
            "parsed",
            "status@acme-amc.example",
            "Order 48213 - Accepted",
            None,
            "2026-11-24T07:00:00Z",
        ),
        (
            Some("acme-appraisal"),
            "parsed",
            "status@acme-amc.example",
            "Order 48214 - Accepted",
            None,
            "2026-11-24T08:00:00Z",
        ),
        (
            Some("acme-appraisal"),
            "parsed",
            "status@acme-amc.example",
            "Order 48215 - Scheduled",
            None,
            "2026-11-24T09:00:00Z",
        ),
        (
            Some("acme-appraisal"),
            "quarantined",
            "status@acme-amc.example",
            // A right-to-left override would show the rest of the line reversed.
            "Order 48216\u{202e} - <script>alert(1)</script>",
            Some(
                "rules:acme-appraisal: vendor status `<script>alert(1)</script>` is not in the status map",
            ),
            "2026-11-24T10:00:00Z",
        ),
        (
            Some("keystone-title"),
            "parsed",
            "updates@keystonetitle.example",
            "T-7781 search complete",
            None,
            "2026-11-24T11:00:00Z",
        ),
        (
            None,
            "quarantined",
            "\"<img src=x onerror=alert(2)>\" <x@evil.example>",
            "<img src=x onerror=alert(2)>",
            Some("unknown sender x@evil.example"),
            "2026-11-24T12:00:00Z",
        ),
        (
            None,
            "ignored",
            "ops@lender.example",
            "fwd: order",
            None,
            "2026-11-24T13:00:00Z",
        ),
        (
            Some("flood-cert-co"),
            "parsed",
            "noreply@floodcert.example",
            "F-1001 on hold",
            None,
            "2026-11-21T13:00:00Z",
        ),
        // The next day: not in the report.
        (
            Some("acme-appraisal"),
            "quarantined",
            "status@acme-amc.example",
            "late",
            Some("r"),
            "2026-11-25T07:00:00Z",
        ),
    ];
    for (i, (v, disp, sender, subject, reason, at)) in mail.into_iter().enumerate() {
        sql.push(format!(
            "INSERT INTO messages (dedupe_key, size, raw, raw_complete, sender, subject, archived_at, disposition, reason, vendor)
             VALUES (x'{i:02x}', 1, x'00', 1, {}, {}, '{}', '{disp}', {}, {})",
            q(Some(sender)), q(Some(subject)), t(at), q(reason), q(v)
        ));
    }
    // (vendor, order, status, last delta)
    let orders = [
        (
            "acme-appraisal",
            "48213",
            "accepted",
            "2026-11-24T07:00:00Z",
        ),
        (
            "acme-appraisal",
            "47001",
            "scheduled",
            "2026-11-15T07:00:00Z",
        ),
        (
            "acme-appraisal",
            "47002",
            "completed",
            "2026-11-01T07:00:00Z",
        ),
        (
            "keystone-title",
            "T-7700",
            "in_progress",
            "2026-11-17T07:00:00Z",
        ),
        ("flood-cert-co", "F-1001", "on_hold", "2026-11-21T13:00:00Z"),
        ("quiet-vendor", "Q-1", "ordered", "2026-11-21T13:00:00Z"),
    ];
    for (v, o, status, at) in orders {
        sql.push(format!(
            "INSERT INTO orders (vendor, order_ref, status, vendor_status, fields, event_time, last_offset, updated_at, delta_count)
             VALUES ('{v}', '{o}', '{status}', 'Vendor says {status}', '{{}}', '{at}', 0, '{at}', 1)",
            at = t(at)
        ));
        sql.push(format!(
            "INSERT INTO deltas (vendor, order_ref, source, status, fields, event_time, time_source, recorded_at)
             VALUES ('{v}', '{o}', 'email', '{status}', '{{}}', '{at}', 'vendor', '{at}')",
            at = t(at)
        ));
    }
    exec(db, &sql).await;
}

fn settings() -> ReportSettings {
    ReportSettings {
        timezone: chrono_tz::America::Chicago,
        ..ReportSettings::default()
    }
}

async fn busy_report() -> (tempfile::TempDir, driftwatch::report::Report) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dw.db");
    let store = Store::open(&db).await.unwrap();
    busy_day(&db).await;
    let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let r = driftwatch::report::build(&store, day, &settings(), utc("2026-11-25T13:30:00Z"))
        .await
        .unwrap();
    (dir, r)
}

#[tokio::test]
async fn a_busy_day_reads_worst_first_with_the_right_figures() {
    let (_dir, r) = busy_report().await;
    assert!(r.complete);
    let h = &r.headline;
    assert_eq!(
        (h.open_drifts, h.new_drifts, h.closed_drifts),
        (7, 2, 2),
        "{h:?}"
    );
    assert_eq!(
        (
            h.refused_runs,
            h.failed_runs,
            h.format_warnings,
            h.quarantined
        ),
        (1, 1, 1, 2)
    );
    // Stuck: open, no delta for 5 days before the end of the day (06:00Z on the 25th).
    assert_eq!(h.stuck_orders, 2);
    let stuck: Vec<_> = r.stuck.items.iter().map(|s| s.order_ref.as_str()).collect();
    assert_eq!(stuck, ["47001", "T-7700"], "longest silent first");
    // Silent: open orders, no mail for 48 h (flood: 3.7 days; quiet-vendor: never).
    assert_eq!(h.silent_vendors, 2);

    // The refused key frame is the first thing, then the failed run, format, silence.
    let kinds: Vec<_> = r
        .alerts
        .iter()
        .map(|a| (a.kind, a.vendor.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (AlertKind::RefusedKeyFrame, "keystone-title"),
            (AlertKind::FailedRun, "flood-cert-co"),
            (AlertKind::FormatChange, "acme-appraisal"),
            (AlertKind::SilentVendor, "flood-cert-co"),
            (AlertKind::SilentVendor, "quiet-vendor"),
        ]
    );
    assert!(
        r.alerts[0]
            .message
            .contains("row count fell from 412 to 12")
    );
    assert!(
        r.alerts[2]
            .message
            .starts_with("35% of the latest messages"),
        "{}",
        r.alerts[2].message
    );

    // Drifts worst first: wrong statuses, then orders we lack, then orders the
    // vendor lacks, then field differences; oldest first within a kind.
    let order: Vec<_> = r
        .drifts
        .items
        .iter()
        .map(|d| d.order_ref.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "F-1001", "T-7001", "48213", "48219", "T-7790", "48215", "T-7781"
        ]
    );
    let d = &r.drifts.items[2];
    assert_eq!(
        (d.ours.as_deref(), d.theirs.as_deref(), d.new),
        (Some("scheduled"), Some("completed"), true)
    );
    assert_eq!(
        r.drifts.items[3].ours, None,
        "missing_local: we have no such order"
    );

    // Per vendor, most troubled first; mail counts only for the day.
    let names: Vec<_> = r.vendors.iter().map(|v| v.vendor.as_str()).collect();
    assert_eq!(names[..2], ["flood-cert-co", "keystone-title"]);
    let acme = r
        .vendors
        .iter()
        .find(|v| v.vendor == "acme-appraisal")
        .unwrap();
    assert_eq!(
        (acme.mail.received, acme.mail.parsed, acme.mail.quarantined),
        (4, 3, 1)
    );
    assert_eq!(
        (
            acme.open_drifts,
            acme.new_drifts,
            acme.closed_drifts,
            acme.fixed_drifts
        ),
        (3, 1, 2, 1)
    );
    assert_eq!(acme.open_by_kind.get("field_mismatch"), Some(&1));
    assert_eq!(r.totals.open_by_cause.get("missed_email"), Some(&2));
    assert_eq!(r.totals.mail.received, 7);

    // The 7-day trend: open drifts at the end of each day, 18th to 24th.
    let trend: Vec<_> = r
        .trend
        .iter()
        .map(|p| (p.date.to_string(), p.open))
        .collect();
    assert_eq!(trend.first().unwrap().0, "2026-11-18");
    assert_eq!(
        trend.iter().map(|p| p.1).collect::<Vec<_>>(),
        [1, 3, 4, 4, 5, 7, 7]
    );
}

#[tokio::test]
async fn vendor_text_is_escaped_in_html_and_cleaned_in_text() {
    let (_dir, r) = busy_report().await;
    let html = driftwatch::report::render_html(&r);
    let lower = html.to_ascii_lowercase();
    for bad in [
        "<script",
        "<img",
        "javascript:",
        "src=\"http",
        "<link",
        "<iframe",
        "@import",
        "url(",
    ] {
        assert!(!lower.contains(bad), "HTML contains {bad}");
    }
    // One <style> block: the phone layout's media query, nothing remote.
    assert_eq!(lower.matches("<style").count(), 1);
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; 88 Harbour View Road"));
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));

    let text = driftwatch::report::render_text(&r);
    assert!(
        text.contains("<script>alert(1)</script>"),
        "text shows vendor text as is"
    );
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
    for out in [&html, &text] {
        assert!(
            !out.contains('\u{202e}'),
            "a bidi override reaches the reader"
        );
        assert!(
            out.contains("48216\u{fffd}"),
            "the override is shown as U+FFFD"
        );
    }
    // The refused key frame is at the top of the text too.
    assert!(text.find("REFUSED KEY FRAME").unwrap() < text.find("BY VENDOR").unwrap());

    // The sample the screenshot script renders (scripts/screenshot-report.sh).
    let sample = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-sample.html");
    std::fs::write(&sample, &html).unwrap();
    std::fs::write(sample.with_extension("txt"), &text).unwrap();
}

#[tokio::test]
async fn json_round_trips_the_figures() {
    let (_dir, r) = busy_report().await;
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["date"], "2026-11-24");
    assert_eq!(v["timezone"], "America/Chicago");
    assert_eq!(v["headline"]["open_drifts"], 7);
    assert_eq!(v["alerts"][0]["kind"], "refused_key_frame");
    assert_eq!(v["drifts"]["total"], 7);
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("DRIFTWATCH_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_prints_the_report_and_writes_it_without_a_mail_server() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let (ok, out, err) = run(&["demo", "--dir", demo.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("== report: today so far"), "{out}");
    assert!(out.contains("QUARANTINED MAIL (3)"), "{out}");
    let today = Utc::now().date_naive();
    let html = demo.join(format!("reports/report-{today}.html"));
    assert!(
        std::fs::read_to_string(&html)
            .unwrap()
            .contains("Quarantined mail (3)"),
        "{}",
        html.display()
    );

    let config = demo.join("driftwatch.toml");
    let c = config.to_str().unwrap();
    let (ok, out, err) = run(&["-c", c, "report", "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["headline"]["quarantined"], 3);
    assert_eq!(v["date"], today.to_string());
    let (ok, out, _) = run(&[
        "-c",
        c,
        "report",
        "--date",
        "2020-01-01",
        "--format",
        "text",
    ]);
    assert!(ok);
    assert!(out.contains("Nothing. No open drifts"), "{out}");

    // --send-due writes the due report files once.
    let (ok, out, err) = run(&["-c", c, "report", "--send-due"]);
    assert!(ok, "{err}");
    assert!(out.contains(": sent (attempt 1)"), "{out}");
    let (ok, out, _) = run(&["-c", c, "report", "--send-due"]);
    assert!(ok);
    assert!(out.starts_with("nothing due"), "{out}");
    // The same config by a relative path (from its parent directory): the
    // ledger keys the output dir by its canonical path, so still nothing due.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .current_dir(dir.path())
        .args([
            "-c",
            "./demo/../demo/driftwatch.toml",
            "report",
            "--send-due",
        ])
        .env_remove("DRIFTWATCH_DATA_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("nothing due"), "{text}");
    let (ok, out, _) = run(&["-c", c, "report", "--history", "--json"]);
    assert!(ok);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "one delivery recorded: {out}");
    assert_eq!(rows[0]["state"], "sent");
    assert_eq!(rows[0]["attempts"], 1);
}

#[test]
fn serve_writes_the_missed_report_on_start_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = driftwatch::demo::materialize(dir.path()).unwrap();
    let reports = dir.path().join("reports");
    let mut child = Command::new(BIN)
        .args(["-c", config.to_str().unwrap(), "serve"])
        .env("DRIFTWATCH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The demo sends at 07:00 UTC: the latest due day is never today.
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = loop {
        let files: Vec<String> = std::fs::read_dir(&reports)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("report-") && n.ends_with(".json"))
                    .collect()
            })
            .unwrap_or_default();
        if !files.is_empty() {
            break files;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve wrote no report within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(written.len(), 1, "{written:?}");
    let today = Utc::now().date_naive().to_string();
    assert!(!written[0].contains(&today), "{written:?}");

    let stop = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(15),
            "serve ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_send_cut_off_by_a_crash_is_taken_over_after_its_lease_and_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nparsers_dir = \"{}\"\n\n[report]\noutput_dir = \"reports\"\nsend_at = \"07:00\"\ntimezone = \"UTC\"\n",
            support::app::parsers_dir().display()
        ),
    )
    .unwrap();
    let app = driftwatch::app::App::build(driftwatch::config::Config::load(&config).unwrap())
        .await
        .unwrap();
    let settings = app.config.report.clone().unwrap();
    let channel = driftwatch::report::schedule::channels(&settings).remove(0);
    let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let crash_at = utc("2026-11-25T07:00:00Z");

    // A process recorded "pending" and died before recording "sent".
    let mid = driftwatch::report::send::message_id(day, &channel, "driftwatch@localhost");
    let lease = chrono::Duration::minutes(driftwatch::report::schedule::PENDING_LEASE_MINUTES);
    let begun = app
        .store
        .begin_send(day, &channel, &mid, crash_at, lease)
        .await
        .unwrap();
    assert_eq!(begun, driftwatch::store::BeginSend::Go { attempt: 1 });

    use driftwatch::report::{DeliveryResult, run_once};
    let results = |o: driftwatch::report::SendOutcome| -> Vec<DeliveryResult> {
        o.deliveries.into_iter().map(|d| d.result).collect()
    };
    // Within the lease it may still be sending: left alone.
    let out = run_once(
        &app.store,
        app.config.report.as_ref(),
        crash_at + chrono::Duration::minutes(1),
    )
    .await
    .unwrap();
    assert_eq!(results(out), [DeliveryResult::InFlight]);
    let file = dir.path().join("reports/report-2026-11-24.txt");
    assert!(!file.exists());
    // After it: "maybe sent" is sent again, with the same Message-ID.
    let out = run_once(
        &app.store,
        app.config.report.as_ref(),
        crash_at + chrono::Duration::minutes(11),
    )
    .await
    .unwrap();
    assert_eq!(results(out), [DeliveryResult::Sent { attempt: 2 }]);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("Tue 24 Nov 2026")
    );
    let out = run_once(
        &app.store,
        app.config.report.as_ref(),
        crash_at + chrono::Duration::minutes(12),
    )
    .await
    .unwrap();
    assert!(results(out).is_empty(), "already sent: nothing to do");
    let sends = app.store.report_sends(day).await.unwrap();
    assert_eq!(sends.len(), 1);
    assert_eq!(
        (sends[0].attempts, sends[0].message_id.as_str()),
        (2, mid.as_str())
    );
}

#[tokio::test]
async fn long_lists_are_cut_but_every_figure_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dw.db");
    let store = Store::open(&db).await.unwrap();
    busy_day(&db).await;
    let s = ReportSettings {
        max_listed: 1,
        ..settings()
    };
    let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let r = driftwatch::report::build(&store, day, &s, utc("2026-11-25T13:30:00Z"))
        .await
        .unwrap();
    assert_eq!((r.drifts.items.len(), r.drifts.total), (1, 7));
    assert_eq!(
        r.drifts.items[0].order_ref, "F-1001",
        "the worst one is kept"
    );
    assert_eq!((r.stuck.items.len(), r.stuck.total), (1, 2));
    let stuck: Vec<_> = r
        .vendors
        .iter()
        .map(|v| (v.vendor.as_str(), v.stuck_orders))
        .collect();
    assert!(
        stuck.contains(&("acme-appraisal", 1)) && stuck.contains(&("keystone-title", 1)),
        "{stuck:?}"
    );
    assert_eq!(r.headline.open_drifts, 7);
    let text = driftwatch::report::render_text(&r);
    assert!(
        text.contains("... and 6 more drifts (`driftwatch drifts`)"),
        "{text}"
    );
    assert!(driftwatch::report::render_html(&r).contains("&hellip; and 6 more drifts"));
}
