//! The daily report by email, end to end through a real Postfix delivering
//! into a real Dovecot: the test reads the report back over IMAP.
//!
//! Time is chosen, not waited for: `run_once(app, now)` is called with a `now`
//! the day after the data, so the report due is the day the data was written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use driftwatch::app::App;
use driftwatch::report::{DeliveryResult, run_once};
use futures_util::TryStreamExt;
use mail_parser::MimeHeaders;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use support::dovecot::Dovecot;
use support::postfix::{Postfix, SECOND_USER};
use support::vendor_mail;
use tokio_util::sync::CancellationToken;

const MAIL_WAIT: Duration = Duration::from_secs(20);

struct Env {
    dovecot: Dovecot,
    postfix: Postfix,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    /// Dovecot + Postfix, and a driftwatch config whose report goes over
    /// STARTTLS with AUTH to alice@localhost and lead@localhost.
    fn start(tls: &str) -> Env {
        let dovecot = Dovecot::start();
        let postfix = Postfix::start(&dovecot);
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let pw = dir.path().join("smtp-password");
        std::fs::write(&pw, format!("{}\n", dovecot.password())).unwrap();
        let port = if tls == "implicit" {
            postfix.smtps_port()
        } else {
            postfix.submission_port()
        };
        let text = format!(
            "data_dir = \"data\"\nparsers_dir = \"{parsers}\"\n\n\
             [[mailbox]]\nname = \"inbox\"\nkind = \"maildir\"\npath = \"Maildir\"\n\n\
             [report]\nrecipients = [\"{user}\", \"{second}\"]\n\
             from = \"driftwatch <driftwatch@localhost>\"\nsend_at = \"07:00\"\ntimezone = \"UTC\"\n\
             retry_initial_secs = 1\nretry_max_secs = 2\n\n\
             [report.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n\
             ca_file = \"{ca}\"\nusername = \"{user}\"\npassword_file = \"{pw}\"\ntimeout_secs = 10\n",
            parsers = support::app::parsers_dir().display(),
            user = dovecot.user(),
            second = SECOND_USER,
            ca = dovecot.ca_file().display(),
            pw = pw.display(),
        );
        let config = dir.path().join("driftwatch.toml");
        std::fs::write(&config, text).unwrap();
        Env {
            dovecot,
            postfix,
            dir,
            config,
        }
    }

    async fn app(&self) -> App {
        App::build(driftwatch::config::Config::load(&self.config).unwrap())
            .await
            .unwrap()
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("data/driftwatch.db")
    }

    fn drop_mail(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.dir.path().join("Maildir/new").join(name), bytes).unwrap();
    }

    /// Every message in alice's INBOX, raw, once at least `n` have arrived.
    async fn wait_for_mail(&self, n: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + MAIL_WAIT;
        loop {
            let got = self.inbox().await;
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} report emails arrived within {MAIL_WAIT:?}\n--- postfix log ---\n{}",
                got.len(),
                self.postfix.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn inbox(&self) -> Vec<Vec<u8>> {
        let mut s = self.dovecot.connect_tls().await;
        let mb = s.examine("INBOX").await.unwrap();
        let mut out = Vec::new();
        if mb.exists > 0 {
            let fetches: Vec<_> = s
                .uid_fetch("1:*", "(UID BODY.PEEK[])")
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let mut fetches: Vec<_> = fetches.iter().collect();
            fetches.sort_by_key(|f| f.uid);
            out = fetches
                .iter()
                .map(|f| f.body().unwrap_or_default().to_vec())
                .collect();
        }
        let _ = s.logout().await;
        out
    }

    /// Deliveries Postfix has made into Dovecot so far: the count that a
    /// second, duplicate send would raise even before IMAP shows it.
    fn lmtp_deliveries(&self) -> usize {
        self.postfix
            .log()
            .lines()
            .filter(|l| l.contains("postfix/lmtp") && l.contains("status=sent"))
            .count()
    }
}

async fn write_sql(db: &Path, statements: &[String]) {
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

fn at(day: NaiveDate, h: u32) -> String {
    Utc.from_utc_datetime(&day.and_hms_opt(h, 0, 0).unwrap())
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn next_morning(day: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.succ_opt().unwrap().and_hms_opt(h, m, 0).unwrap())
}

/// Drifts and reconcile runs as the reconcile module would have written them
/// during `day`, with vendor-controlled values that carry HTML.
async fn insert_reconcile_results(db: &Path, day: NaiveDate) {
    let old = day
        .pred_opt()
        .unwrap()
        .pred_opt()
        .unwrap()
        .pred_opt()
        .unwrap();
    write_sql(db, &[
        "INSERT INTO reconcile_runs (id, vendor, started_at, finished_at, policy, dry_run, outcome, orders_remote, orders_local, status_mismatch, field_mismatch)
         VALUES (1, 'acme-appraisal', '".to_string() + &at(day, 2) + "', '" + &at(day, 2) + "', 'flag', 0, 'ok', 3, 3, 1, 1)",
        format!("INSERT INTO reconcile_runs (id, vendor, started_at, finished_at, policy, dry_run, outcome, reason, orders_remote, orders_local)
         VALUES (2, 'keystone-title', '{s}', '{s}', 'fix', 0, 'refused', 'row count fell from 120 to 3 (-97%)', 3, 120)", s = at(day, 3)),
        format!("INSERT INTO drifts (vendor, order_ref, kind, field, local_value, remote_value, cause, first_run, last_run, opened_at)
         VALUES ('acme-appraisal', '48213', 'status_mismatch', NULL, '\"accepted\"', '\"completed\"', 'missed_email', 1, 1, '{}')", at(day, 2)),
        format!("INSERT INTO drifts (vendor, order_ref, kind, field, local_value, remote_value, cause, first_run, last_run, opened_at)
         VALUES ('acme-appraisal', '48215', 'field_mismatch', 'appraiser', '\"Dana\"', '\"<img src=x onerror=alert(3)>\"', 'parse_error', 1, 1, '{}')", at(old, 9)),
        format!("INSERT INTO drifts (vendor, order_ref, kind, field, local_value, remote_value, cause, first_run, last_run, opened_at, closed_at, closed_reason)
         VALUES ('acme-appraisal', '48100', 'status_mismatch', NULL, '\"scheduled\"', '\"completed\"', 'late_email', 1, 1, '{}', '{}', 'agreed_by_delta')", at(old, 9), at(day, 5)),
    ])
    .await;
}

fn parsed(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(raw)
        .expect("report email parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_arrives_by_email_with_text_and_safe_html_parts() {
    let env = Env::start("starttls");
    // Real vendor mail through the real pipeline: one good status email, and
    // two whose vendor-written status carries HTML (they are quarantined: the
    // status is not in Acme's map).
    env.drop_mail(
        "1-ok",
        &vendor_mail::acme(
            48213,
            "Accepted",
            "11/23/2026 09:00 AM",
            "ok-1@acme-amc.example",
        ),
    );
    env.drop_mail(
        "2-script",
        &vendor_mail::acme(
            48300,
            "<script>alert(1)</script>",
            "11/23/2026 09:00 AM",
            "xss-1@acme-amc.example",
        ),
    );
    env.drop_mail(
        "3-img",
        &vendor_mail::acme(
            48301,
            "<img src=x onerror=alert(2)>",
            "11/23/2026 09:00 AM",
            "xss-2@acme-amc.example",
        ),
    );
    let app = env.app().await;
    app.ingest_once().await.unwrap();
    let day = Utc::now().date_naive();
    insert_reconcile_results(&env.db(), day).await;

    let out = run_once(
        &app.store,
        app.config.report.as_ref(),
        next_morning(day, 7, 0),
    )
    .await
    .unwrap();
    assert_eq!(out.latest_due, Some(day));
    assert_eq!(out.sent(), 2, "{out:?}");

    let mails = env.wait_for_mail(2).await;
    assert_eq!(mails.len(), 2);
    let mut to: Vec<String> = Vec::new();
    for raw in &mails {
        let m = parsed(raw);
        to.push(
            m.to()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .unwrap()
                .to_string(),
        );
        let subject = m.subject().unwrap();
        assert_eq!(
            subject,
            format!(
                "driftwatch {day}: 2 open drifts (+1 new, -1 closed), 1 refused key frame, 2 quarantined"
            ),
            "the subject carries the headline numbers"
        );
        assert_eq!(
            m.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-generated")
        );
        let ct = m.header_raw("Content-Type").unwrap();
        assert!(ct.trim_start().starts_with("multipart/alternative"), "{ct}");
        let types: Vec<String> = m
            .parts
            .iter()
            .filter_map(|p| p.content_type())
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            .collect();
        assert!(types.contains(&"text/plain".to_string()), "{types:?}");
        assert!(types.contains(&"text/html".to_string()), "{types:?}");
        assert!(
            m.message_id()
                .unwrap()
                .starts_with(&format!("driftwatch-report.{day}.")),
            "{:?}",
            m.message_id()
        );

        let text = m.body_text(0).unwrap();
        // The refused key frame stands out at the top, with its reason.
        let needs = text.find("NEEDS A HUMAN").unwrap();
        let refused = text.find("REFUSED KEY FRAME").unwrap();
        assert!(refused > needs && refused < text.find("BY VENDOR").unwrap());
        assert!(
            text.contains("row count fell from 120 to 3 (-97%)"),
            "{text}"
        );
        // Each drift names the order, what we think, what the vendor says, since when;
        // the status mismatch (worse) comes before the field mismatch.
        let s = text
            .find("acme-appraisal 48213  status_mismatch  [new]")
            .unwrap();
        let f = text
            .find("acme-appraisal 48215  field_mismatch appraiser")
            .unwrap();
        assert!(s < f, "{text}");
        assert!(
            text.contains("we think: accepted   vendor says: completed"),
            "{text}"
        );
        assert!(
            text.contains(&format!("since {day} 02:00 (22 h)")),
            "{text}"
        );
        // Mail ingested/parsed/quarantined per vendor.
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("acme-appraisal") && l.contains("3/1/2")),
            "{text}"
        );
        assert!(text.contains("QUARANTINED MAIL (2)"), "{text}");

        let html = m.body_html(0).unwrap();
        assert!(html.contains("REFUSED KEY FRAME"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;img src=x onerror=alert(2)&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;img src=x onerror=alert(3)&gt;"),
            "{html}"
        );
        let lower = html.to_ascii_lowercase();
        for bad in [
            "<script",
            "<img",
            "onerror=alert(2)>",
            "src=\"http",
            "<link",
            "@import",
            "url(",
        ] {
            assert!(!lower.contains(bad), "HTML part contains {bad}");
        }
        // One <style> block: the phone layout's media query, nothing remote.
        assert_eq!(lower.matches("<style").count(), 1);
    }
    to.sort();
    assert_eq!(to, ["alice@localhost", "lead@localhost"]);

    // Recorded: one sent row per recipient, first attempt.
    let sends = app.store.report_sends(day).await.unwrap();
    assert_eq!(sends.len(), 2);
    assert!(sends.iter().all(|s| s.attempts == 1 && s.sent_at.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_around_send_time_send_each_report_once() {
    let env = Env::start("implicit");
    let day = Utc::now().date_naive();
    // First start, just before send time: yesterday's report is not due yet,
    // the day before's is (a first start sends the latest due report).
    let app = env.app().await;
    let before = run_once(
        &app.store,
        app.config.report.as_ref(),
        next_morning(day, 6, 59),
    )
    .await
    .unwrap();
    assert_eq!(before.latest_due, day.pred_opt());
    assert_eq!(before.sent(), 2);
    // At send time: today's report goes out.
    let first = run_once(
        &app.store,
        app.config.report.as_ref(),
        next_morning(day, 7, 0),
    )
    .await
    .unwrap();
    assert_eq!((first.latest_due, first.sent()), (Some(day), 2));
    drop(app);

    // Restart (new process state, same database) a second and an hour later.
    for (h, m) in [(7, 0), (7, 1), (8, 0)] {
        let app = env.app().await;
        let again = run_once(
            &app.store,
            app.config.report.as_ref(),
            next_morning(day, h, m),
        )
        .await
        .unwrap();
        assert_eq!(again.sent() + again.failed(), 0, "{again:?}");
    }

    // `serve`'s scheduler on the real clock: whatever is due now was either
    // already sent above or is sent now, once. A pre-cancelled token makes it
    // run exactly one round and return.
    let app = env.app().await;
    let token = CancellationToken::new();
    token.cancel();
    driftwatch::report::run_scheduler(app.store.clone(), app.config.report.clone(), token.clone())
        .await;
    let after_one = app
        .store
        .report_sends(day.pred_opt().unwrap().pred_opt().unwrap())
        .await
        .unwrap();
    driftwatch::report::run_scheduler(app.store.clone(), app.config.report.clone(), token).await;
    let after_two = app
        .store
        .report_sends(day.pred_opt().unwrap().pred_opt().unwrap())
        .await
        .unwrap();
    assert_eq!(
        after_one.iter().map(|s| s.attempts).collect::<Vec<_>>(),
        after_two.iter().map(|s| s.attempts).collect::<Vec<_>>(),
        "a restarted scheduler sent again"
    );
    let expected = after_two.len();
    assert!(after_two.iter().all(|s| s.attempts == 1), "{after_two:?}");

    let mails = env.wait_for_mail(expected).await;
    assert_eq!(mails.len(), expected, "one email per (day, recipient)");
    assert_eq!(env.lmtp_deliveries(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_at_send_time_the_report_arrives_once_after_it_returns() {
    let mut env = Env::start("starttls");
    let day = Utc::now().date_naive();
    let app = env.app().await;

    // run_once with the server down: failed, recorded with the error, nothing lost.
    env.postfix.stop();
    let out = run_once(
        &app.store,
        app.config.report.as_ref(),
        next_morning(day, 7, 0),
    )
    .await
    .unwrap();
    assert_eq!(out.failed(), 2, "{out:?}");
    let sends = app.store.report_sends(day).await.unwrap();
    assert!(sends.iter().all(|s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("127.0.0.1"))
    }));
    // A restart while still down: tried again, still failed, nothing sent.
    let app = env.app().await;
    let out = run_once(
        &app.store,
        app.config.report.as_ref(),
        next_morning(day, 7, 5),
    )
    .await
    .unwrap();
    assert_eq!(out.failed(), 2);
    for d in &out.deliveries {
        assert!(
            matches!(d.result, DeliveryResult::Failed { attempt: 2, .. }),
            "{d:?}"
        );
    }

    // `serve`'s scheduler retries with backoff (1 s, 2 s here); bring the
    // server back while it is retrying.
    let token = CancellationToken::new();
    let sched = tokio::spawn(driftwatch::report::run_scheduler(
        app.store.clone(),
        app.config.report.clone(),
        token.clone(),
    ));
    env.postfix.restart();
    // The day's report (and whatever is due on the real clock) arrives once.
    let deadline = Instant::now() + MAIL_WAIT;
    loop {
        let sends = app.store.report_sends(day).await.unwrap();
        if sends
            .iter()
            .filter(|s| s.report_date == day)
            .all(|s| s.sent_at.is_some())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not resent after SMTP came back: {sends:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    token.cancel();
    sched.await.unwrap();
    let sends = app
        .store
        .report_sends(day.pred_opt().unwrap().pred_opt().unwrap())
        .await
        .unwrap();
    let mails = env.wait_for_mail(sends.len()).await;
    assert_eq!(mails.len(), sends.len(), "{sends:?}");
    let for_day = mails
        .iter()
        .filter(|raw| {
            parsed(raw)
                .subject()
                .unwrap()
                .starts_with(&format!("driftwatch {day}:"))
        })
        .count();
    assert_eq!(
        for_day, 2,
        "the failed day's report arrived once per recipient"
    );
    assert_eq!(env.lmtp_deliveries(), sends.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_outside_the_trusted_roots_is_refused() {
    let env = Env::start("starttls");
    // Without ca_file the public roots are trusted, and the test CA is not one.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, text).unwrap();
    let app = env.app().await;
    let day = Utc::now().date_naive();
    let out = run_once(
        &app.store,
        app.config.report.as_ref(),
        next_morning(day, 7, 0),
    )
    .await
    .unwrap();
    assert_eq!(out.failed(), 2, "{out:?}");
    let DeliveryResult::Failed { error, .. } = &out.deliveries[0].result else {
        unreachable!()
    };
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(env.inbox().await.is_empty());
}
