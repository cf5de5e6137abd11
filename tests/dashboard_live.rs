//! Live updates in a real browser: a mail delivered to the Dovecot (SMTP to
//! the test Postfix, LMTP into Dovecot) shows up on an open dashboard page
//! within 2 s, without a reload, through `serve`'s IMAP IDLE, the feed's
//! head watcher and the page's `/live` stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dashboard_support;
mod support;

use std::time::{Duration, Instant};

use dashboard_support::{Browser, READ_TOKEN, Serve, acme_mail, add_http};
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;
use support::app::imap_config;
use support::dovecot::Dovecot;
use support::postfix::Postfix;

/// The page's live stream is connected.
const LIVE: &str = "document.getElementById('live-status').textContent.startsWith('live')";

/// What the issue promises.
const LIMIT: Duration = Duration::from_secs(2);

async fn deliver(postfix: &Postfix, to: &str, raw: &[u8]) -> Instant {
    let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(postfix.submission_port())
        .build();
    let envelope = Envelope::new(
        Some("status@acme-amc.example".parse().unwrap()),
        vec![to.parse().unwrap()],
    )
    .unwrap();
    smtp.send_raw(&envelope, raw)
        .await
        .expect("postfix accepts the mail");
    Instant::now()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivered_mail_shows_on_an_open_page_within_two_seconds() {
    let dovecot = Dovecot::start();
    let postfix = Postfix::start(&dovecot);
    let cfg = imap_config(&dovecot, "", "");
    let base = add_http(&cfg);
    let _serve = Serve::start(&cfg, &base).await;

    let mut b = Browser::launch();
    b.sign_in(&base, READ_TOKEN);
    b.goto(&format!("{base}/"));
    b.wait_for(LIVE, Duration::from_secs(10));
    // Warm-up: the first mail also waits for serve's first IMAP login.
    deliver(
        &postfix,
        dovecot.user(),
        &acme_mail("live-0", "48300", "Accepted", "Sam Lee"),
    )
    .await;
    b.wait_for(
        "document.querySelector(\"[data-vendor='acme-appraisal']\") !== null",
        Duration::from_secs(30),
    );

    let mut took = Vec::new();
    for i in 1..=3 {
        // A stranger's mail: quarantined, which appends no delta (the page
        // learns of it from /live's fingerprint, not the feed's head).
        let subject = format!("Live check {i}");
        b.goto(&format!("{base}/quarantine"));
        b.wait_for(LIVE, Duration::from_secs(10));
        b.eval("window.__dw_kept = 1");
        let start = deliver(
            &postfix,
            dovecot.user(),
            format!(
                "From: x@stranger.example\r\nTo: {}\r\nSubject: {subject}\r\n\
                 Message-ID: <live-q{i}@stranger.example>\r\n\r\nhi\r\n",
                dovecot.user()
            )
            .as_bytes(),
        )
        .await;
        b.wait_for(
            &format!(
                "document.getElementById('main').innerText.includes({}) && window.__dw_kept === 1",
                json!(subject)
            ),
            LIMIT + Duration::from_secs(10),
        );
        took.push(start.elapsed());
        // ...and a vendor's status mail: a delta, shown on the open vendors page.
        b.goto(&format!("{base}/"));
        b.wait_for(LIVE, Duration::from_secs(10));
        b.eval("window.__dw_kept = 1");
        let before = b.eval("document.querySelector(\"[data-vendor='acme-appraisal'] [data-field=last-mail] time\").getAttribute('datetime')");
        let start = deliver(
            &postfix,
            dovecot.user(),
            &acme_mail(
                &format!("live-{i}"),
                &format!("4830{i}"),
                "Accepted",
                "Sam Lee",
            ),
        )
        .await;
        b.wait_for(
            &format!(
                "document.querySelector(\"[data-vendor='acme-appraisal'] [data-field=last-mail] time\").getAttribute('datetime') !== {before} && window.__dw_kept === 1"
            ),
            LIMIT + Duration::from_secs(10),
        );
        took.push(start.elapsed());
    }
    eprintln!("delivery to visible on the open page: {took:?}");
    assert!(
        took.iter().all(|t| *t < LIMIT),
        "a delivered mail took {took:?} to show; the promise is {LIMIT:?}"
    );
}

/// A reconcile run by another process (the CLI, on the same database) opens
/// a drift; the open drifts page shows it within 2 s without a reload.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_drift_shows_on_an_open_drifts_page_within_two_seconds() {
    let (cfg, base) = dashboard_support::seeded();
    let _serve = Serve::start(&cfg, &base).await;
    let mut b = Browser::launch();
    b.sign_in(&base, READ_TOKEN);
    b.goto(&format!("{base}/drifts"));
    b.wait_for(LIVE, Duration::from_secs(10));
    b.eval("window.__dw_kept = 1");
    assert_eq!(
        b.eval("document.querySelector('a[href=\"/orders/acme-appraisal/48299\"]') === null"),
        json!(true)
    );
    // The demo's export plus an order we never heard of: a missing_local drift.
    let exports = cfg.dir.path().join("exports");
    let shipped = std::fs::read_dir(&exports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "csv"))
        .unwrap();
    let mut csv = std::fs::read_to_string(&shipped).unwrap();
    csv.push_str("48299,RCVD,380.00,,\n");
    let export = cfg.dir.path().join("later.csv");
    std::fs::write(&export, csv).unwrap();
    let start = Instant::now();
    let out = support::bin::driftwatch(
        &cfg,
        &[
            "reconcile",
            "--vendor",
            "acme-appraisal",
            "--file",
            export.to_str().unwrap(),
        ],
    )
    .stderr(std::process::Stdio::piped())
    .output()
    .unwrap();
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "reconcile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = Instant::now();
    b.wait_for(
        "document.querySelector('a[href=\"/orders/acme-appraisal/48299\"]') !== null && window.__dw_kept === 1",
        LIMIT + Duration::from_secs(10),
    );
    // From before the reconcile started: an upper bound on commit-to-page.
    let took = start.elapsed();
    eprintln!(
        "reconcile process ran {:?}; its drift was on the open page {took:?} after it started",
        committed - start
    );
    assert!(took < LIMIT, "the new drift took {took:?} to show");
}
