//! Network faults between driftwatch and its IMAP server: a proxy in the
//! middle cuts connections mid-FETCH and mid-IDLE, resets them, and stalls
//! them. After each, `serve` reconnects by itself, loses and doubles nothing,
//! ends in the same database as an uninterrupted run, and its log says what
//! happened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::app::{TestConfig, imap_config};
use support::bin::{assert_same_dump, spawn_logged, terminate, wait_committed};
use support::dovecot::Dovecot;
use support::proxy::{FaultProxy, Kill};
use support::{db, vendor_mail};

const RECONNECT: &str = "mail source failed; will reconnect";

/// The database an uninterrupted `ingest --once` straight to Dovecot gives.
async fn reference(dovecot: &Dovecot, settings: &str) -> Vec<String> {
    let cfg = imap_config(dovecot, settings, "");
    cfg.app()
        .await
        .ingest_once()
        .await
        .expect("reference ingest");
    db::dump(&cfg.database()).await
}

/// A config whose mailbox goes through the proxy.
fn via_proxy(dovecot: &Dovecot, proxy: &FaultProxy, settings: &str, extra: &str) -> TestConfig {
    imap_config(
        dovecot,
        settings,
        &format!("port = {}\n{extra}", proxy.port()),
    )
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_and_resets_mid_fetch_lose_and_double_nothing() {
    let dovecot = Dovecot::start();
    let n = 240;
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(n, 8000))
        .await;
    let settings = "[ingest]\nbatch_max_messages = 50\n";
    let proxy = FaultProxy::start(dovecot.imaps_port()).await;
    // Each cut lands inside a FETCH literal: a batch of 50 is ~430 KB.
    proxy.arm_cuts(&[
        (150_000, Kill::Close),
        (400_000, Kill::Reset),
        (90_000, Kill::Close),
        (700_000, Kill::Reset),
    ]);
    let cfg = via_proxy(&dovecot, &proxy, settings, "op_timeout_secs = 10\n");
    let (mut child, log) = spawn_logged(&cfg, &["serve"], "info");
    let done = wait_committed(
        &cfg.database(),
        n as i64,
        &mut child,
        Duration::from_secs(45),
    )
    .await;
    let status = terminate(&mut child);
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(done, n as i64, "not everything arrived; log:\n{log}");
    assert!(
        status.success(),
        "serve exits 0 on SIGTERM: {status}\n{log}"
    );
    assert_eq!(proxy.fired(), 4, "every armed cut fired");
    assert!(proxy.accepted() >= 5, "reconnected after each cut");
    assert!(
        count(&log, RECONNECT) >= 4,
        "the log names each failure:\n{log}"
    );
    assert_same_dump(
        &db::dump(&cfg.database()).await,
        &reference(&dovecot, settings).await,
        "after 4 cuts mid-FETCH",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_or_reset_during_idle_reconnects_and_fetches_new_mail() {
    let dovecot = Dovecot::start();
    let mail = vendor_mail::acme_batch(60, 3000);
    dovecot.append("INBOX", &mail[..20]).await;
    let proxy = FaultProxy::start(dovecot.imaps_port()).await;
    let cfg = via_proxy(&dovecot, &proxy, "", "op_timeout_secs = 10\n");
    let (mut child, log_path) = spawn_logged(&cfg, &["serve"], "info");
    let db_path = cfg.database();
    let limit = Duration::from_secs(30);
    assert_eq!(wait_committed(&db_path, 20, &mut child, limit).await, 20);

    for (round, how) in [Kill::Close, Kill::Reset].into_iter().enumerate() {
        // Synced and silent: the client sits in IDLE.
        proxy
            .wait_quiet(Duration::from_millis(400), Duration::from_secs(20))
            .await;
        let before = proxy.accepted();
        proxy.cut_all(how);
        let upto = 20 + 20 * (round + 1);
        dovecot.append("INBOX", &mail[upto - 20..upto]).await;
        let got = wait_committed(&db_path, upto as i64, &mut child, limit).await;
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(
            got, upto as i64,
            "mail sent after a {how:?} during IDLE never arrived; log:\n{log}"
        );
        assert!(proxy.accepted() > before, "it reconnected");
    }
    let status = terminate(&mut child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(count(&log, RECONNECT) >= 2, "{log}");
    assert_same_dump(
        &db::dump(&db_path).await,
        &reference(&dovecot, "").await,
        "after cuts during IDLE",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connection_times_out_and_reconnects() {
    let dovecot = Dovecot::start();
    let n = 200;
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(n, 8000))
        .await;
    let settings = "[ingest]\nbatch_max_messages = 20\n";
    let proxy = FaultProxy::start(dovecot.imaps_port()).await;
    let cfg = via_proxy(&dovecot, &proxy, settings, "op_timeout_secs = 2\n");
    let (mut child, log_path) = spawn_logged(&cfg, &["serve"], "info");
    let db_path = cfg.database();
    let got = wait_committed(&db_path, 40, &mut child, Duration::from_secs(30)).await;
    assert!(got >= 40, "ingest never started");
    // The server stops answering (a half-open connection); without a
    // timeout the source would hang here forever.
    proxy.stall_all(Duration::from_secs(3600));
    let done = wait_committed(&db_path, n as i64, &mut child, Duration::from_secs(40)).await;
    let status = terminate(&mut child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(done, n as i64, "{log}");
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("timed out after 2 s") && log.contains(RECONNECT),
        "the log says the server stalled:\n{log}"
    );
    assert!(proxy.accepted() >= 2);
    assert_same_dump(
        &db::dump(&db_path).await,
        &reference(&dovecot, settings).await,
        "after a stall",
    );
}
