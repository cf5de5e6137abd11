//! SIGKILL at any point of an ingest, then a restart, ends in the same
//! database as a run that was never interrupted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::app::imap_config;
use support::bin::{committed, driftwatch, kill, run_to_completion, terminate};
use support::dovecot::Dovecot;
use support::{db, vendor_mail};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_then_restart_equals_an_uninterrupted_run() {
    let dovecot = Dovecot::start();
    let mut mail = vendor_mail::acme_batch(1000, 1500);
    mail.extend((0..50).map(vendor_mail::unknown_sender));
    mail.extend((0..50).map(vendor_mail::malformed));
    // Interleave so every batch mixes parsed and quarantined messages.
    let n = mail.len();
    let mut mixed = Vec::with_capacity(n);
    for i in 0..n {
        mixed.push(mail[(i * 37) % n].clone());
    }
    dovecot.append("INBOX", &mixed).await;

    let settings = "[ingest]\nbatch_max_messages = 40\n";
    let reference = imap_config(&dovecot, settings, "");
    run_to_completion(&reference);
    let expected = db::dump(&reference.database()).await;
    assert_eq!(
        db::count(&reference.database(), "SELECT count(*) FROM messages").await,
        n as i64
    );

    // Kill points, by messages committed before the kill; the kill lands
    // wherever the process is in the batch after that.
    let points = [0, 1, 40, 150, 333, 500, 777, 950, 1080];
    let mut landed = Vec::new();
    for &point in &points {
        let cfg = imap_config(&dovecot, settings, "");
        let mut child = driftwatch(&cfg, &["ingest", "--once"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = committed(&cfg.database()).await;
            if done >= point || Instant::now() > deadline {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        kill(&mut child);
        landed.push(committed(&cfg.database()).await);
        run_to_completion(&cfg);
        let got = db::dump(&cfg.database()).await;
        if got != expected {
            let diff: Vec<_> = got
                .iter()
                .zip(&expected)
                .filter(|(a, b)| a != b)
                .take(3)
                .collect();
            panic!(
                "after SIGKILL at {point} the database differs ({} vs {} rows); first differences: {diff:#?}",
                got.len(),
                expected.len()
            );
        }
    }
    eprintln!("killed with these many messages committed: {landed:?} of {n}");
    // The kills really did interrupt runs at different stages.
    assert!(
        landed.iter().filter(|&&c| c > 0 && c < n as i64).count() >= 5,
        "{landed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_serve_then_restart_loses_and_doubles_nothing() {
    let dovecot = Dovecot::start();
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(400, 3000))
        .await;
    let cfg = imap_config(
        &dovecot,
        "[ingest]\nbatch_max_messages = 25\n",
        "poll_interval_secs = 1\n",
    );
    let mut child = driftwatch(&cfg, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while committed(&cfg.database()).await < 100 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    kill(&mut child);
    // More mail arrives while driftwatch is down.
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(440, 3000)[400..])
        .await;
    let mut child = driftwatch(&cfg, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&cfg.database()).await < 440 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGTERM: a clean stop.
    let status = terminate(&mut child);
    assert!(status.success(), "serve exits 0 on SIGTERM, got {status}");
    let db_path = cfg.database();
    assert_eq!(
        db::count(&db_path, "SELECT count(*) FROM messages").await,
        440
    );
    assert_eq!(
        db::count(&db_path, "SELECT count(*) FROM message_locations").await,
        440
    );
    assert_eq!(
        db::count(&db_path, "SELECT count(*) FROM deltas").await,
        440
    );
    assert_eq!(
        db::count(&db_path, "SELECT count(DISTINCT message) FROM deltas").await,
        440
    );
}
