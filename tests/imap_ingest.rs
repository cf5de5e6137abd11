//! Ingest from a real Dovecot: nothing lost, nothing doubled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use driftwatch::model::Status;
use support::app::{Serving, imap_config};
use support::dovecot::Dovecot;
use support::{bin, db, vendor_mail};

/// Waits (bounded) until the pipeline has committed at least `n` fetched messages.
async fn wait_fetched(
    rx: &mut tokio::sync::watch::Receiver<u64>,
    n: u64,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let reached = tokio::time::timeout(limit, rx.wait_for(|&f| f >= n))
        .await
        .is_ok();
    assert!(
        reached,
        "only {} of {n} messages ingested after {limit:?}",
        *rx.borrow()
    );
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_appended_message_is_archived_once_and_accounted_for() {
    let dovecot = Dovecot::start();
    let mut mail = vendor_mail::acme_batch(40, 0);
    mail.push(vendor_mail::unknown_sender(1));
    mail.push(vendor_mail::unknown_sender(2));
    mail.push(vendor_mail::malformed(1));
    mail.push(vendor_mail::malformed(2));
    dovecot.append("INBOX", &mail).await;

    let cfg = imap_config(&dovecot, "[ingest]\nbatch_max_messages = 7\n", "");
    let app = cfg.app().await;
    let results = app.ingest_once().await.expect("ingest");
    assert_eq!(results.len(), 1);
    let o = &results[0].2;
    assert_eq!(
        (o.fetched(), o.archived, o.parsed, o.quarantined, o.deltas),
        (44, 44, 40, 4, 40),
        "{o:?}"
    );

    let counts = app.store.message_counts().await.unwrap();
    assert_eq!(
        (counts.messages, counts.locations, counts.deltas),
        (44, 44, 40)
    );
    // 40 emails = 10 orders x 4 statuses; each ends at "Report Delivered".
    let orders = app.store.orders(Some("acme-appraisal")).await.unwrap();
    assert_eq!(orders.len(), 10);
    assert!(
        orders
            .iter()
            .all(|o| o.status == Some(Status::Completed) && o.delta_count == 4),
        "{orders:#?}"
    );

    // The archive gives back each message as fetched (IMAP serves CRLF;
    // the appended mail may have had LF), though it stores it compressed.
    let lf = |b: &[u8]| String::from_utf8_lossy(b).replace("\r\n", "\n");
    let sent: std::collections::HashSet<String> = mail.iter().map(|m| lf(m)).collect();
    for id in 1..=44 {
        let m = app.store.message(id).await.unwrap().expect("archived");
        assert!(
            sent.contains(&lf(&m.raw)),
            "message #{id} differs from what was sent"
        );
    }
    let (stored, size) = (
        db::count(&cfg.database(), "SELECT sum(length(raw)) FROM messages").await,
        db::count(&cfg.database(), "SELECT sum(size) FROM messages").await,
    );
    assert!(
        stored < size,
        "archive kept compressed: {stored} of {size} bytes"
    );

    // Quarantine reasons say why, per message.
    let q = app.store.quarantined(10).await.unwrap();
    assert_eq!(
        q.iter()
            .filter(|m| m.reason.as_deref().unwrap_or("").contains("unknown sender"))
            .count(),
        2,
        "{q:#?}"
    );

    // A second pass fetches nothing and changes nothing.
    let before = db::dump(&cfg.database()).await;
    let again = app.ingest_once().await.unwrap();
    assert_eq!(again[0].2.fetched(), 0);
    assert_eq!(db::dump(&cfg.database()).await, before);

    // Mail is never marked \Seen.
    let flags = dovecot.flags("INBOX").await;
    assert_eq!(flags.len(), 44);
    assert!(
        flags.iter().all(|(_, f)| !f.iter().any(|x| x == "\\Seen")),
        "{flags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_port_works_and_plain_login_is_never_attempted_without_tls() {
    let dovecot = Dovecot::start();
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(4, 0))
        .await;
    let cfg = imap_config(
        &dovecot,
        "",
        &format!("port = {}\ntls = \"starttls\"\n", dovecot.imap_port()),
    );
    let app = cfg.app().await;
    let r = app.ingest_once().await.expect("ingest over STARTTLS");
    assert_eq!(r[0].2.parsed, 4);

    // Implicit TLS against the plain port fails with a clear TLS error, not a hang.
    let cfg = imap_config(
        &dovecot,
        "",
        &format!("port = {}\nconnect_timeout_secs = 5\n", dovecot.imap_port()),
    );
    let err = cfg.app().await.ingest_once().await.unwrap_err();
    assert!(format!("{err:#}").contains("TLS"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_and_wrong_password_give_clear_errors() {
    let dovecot = Dovecot::start();
    // Trusting some other CA: the server's certificate must be refused.
    let other_ca = tempfile::NamedTempFile::new().unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["other.example".to_string()]).unwrap();
    std::fs::write(other_ca.path(), other.cert.pem()).unwrap();
    let cfg = imap_config(
        &dovecot,
        "",
        &format!("ca_file = \"{}\"\n", other_ca.path().display()),
    );
    let err = cfg.app().await.ingest_once().await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("TLS") && msg.to_lowercase().contains("certificate"),
        "{msg}"
    );

    let cfg = imap_config(&dovecot, "", "");
    std::fs::write(cfg.dir.path().join("imap-password"), "wrong-password\n").unwrap();
    let err = cfg.app().await.ingest_once().await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("login as alice@localhost rejected"), "{msg}");
    assert!(
        !msg.contains("wrong-password"),
        "the password must never appear in errors: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ingests_new_mail_within_two_seconds() {
    let dovecot = Dovecot::start();
    dovecot
        .append(
            "INBOX",
            &[vendor_mail::acme(
                1,
                "Accepted",
                "11/23/2026 09:00 AM",
                "idle-0@x",
            )],
        )
        .await;
    let cfg = imap_config(&dovecot, "", "poll_interval_secs = 3600\n");
    let app = cfg.app().await;
    let mut rx = app.pipeline.subscribe();
    let serving = Serving::start(&app);
    wait_fetched(&mut rx, 1, Duration::from_secs(20)).await;

    for i in 1..=3u32 {
        // Give the poller a moment to be back in IDLE after the last batch;
        // polling every hour, only IDLE can deliver within two seconds.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        dovecot
            .append(
                "INBOX",
                &[vendor_mail::acme(
                    1,
                    "Inspection Scheduled",
                    &format!("11/23/2026 10:0{i} AM"),
                    &format!("idle-{i}@x"),
                )],
            )
            .await;
        wait_fetched(&mut rx, 1 + u64::from(i), Duration::from_secs(10)).await;
        let took = sent.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "message {i} took {took:?} to be ingested"
        );
        eprintln!("IDLE latency for message {i}: {took:?}");
    }
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_reconnects_after_server_restart_and_doubles_nothing() {
    let mut dovecot = Dovecot::start();
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(8, 0))
        .await;
    let cfg = imap_config(&dovecot, "", "poll_interval_secs = 1\n");
    let app = cfg.app().await;
    let mut rx = app.pipeline.subscribe();
    let db_path = cfg.database();
    let serving = Serving::start(&app);
    wait_fetched(&mut rx, 8, Duration::from_secs(20)).await;

    dovecot.stop();
    // Let the poller notice and start backing off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    dovecot.restart();
    // Mail that arrives while driftwatch is still disconnected.
    let later: Vec<Vec<u8>> = (0..5u32)
        .map(|i| {
            vendor_mail::acme(
                900 + i,
                "Accepted",
                "11/24/2026 08:00 AM",
                &format!("after-restart-{i}@x"),
            )
        })
        .collect();
    dovecot.append("INBOX", &later).await;
    wait_fetched(&mut rx, 13, Duration::from_secs(30)).await;

    serving.stop().await;
    assert_eq!(
        db::count(&db_path, "SELECT count(*) FROM messages").await,
        13
    );
    assert_eq!(
        db::count(&db_path, "SELECT count(*) FROM message_locations").await,
        13
    );
    assert_eq!(db::count(&db_path, "SELECT count(*) FROM deltas").await, 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_change_resyncs_without_duplicate_deltas() {
    let dovecot = Dovecot::start();
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(12, 0))
        .await;
    dovecot
        .append("Vendors", &vendor_mail::acme_batch(8, 0)[..4])
        .await;
    let cfg = imap_config(&dovecot, "", "folders = [\"INBOX\", \"Vendors\"]\n");
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    let deltas_before = app.store.message_counts().await.unwrap().deltas;
    let orders_before = app.store.orders(None).await.unwrap();
    // INBOX's 12 + 4 in Vendors that are the same messages as INBOX's first 4.
    assert_eq!(deltas_before, 12);

    // Two ways UIDVALIDITY changes in the wild: the server resets it, or the
    // folder is deleted and recreated with the same messages.
    let old = dovecot.uid_validity("INBOX").await;
    dovecot.set_uid_validity("INBOX", old + 1000);
    dovecot.recreate_folder("Vendors").await;

    let r = app.ingest_once().await.unwrap();
    let inbox = &r[0].2;
    assert_eq!(
        (
            inbox.fetched(),
            inbox.archived,
            inbox.duplicates,
            inbox.deltas
        ),
        (12, 0, 12, 0),
        "{inbox:?}"
    );
    let vendors = &r[1].2;
    assert_eq!(
        (vendors.fetched(), vendors.archived, vendors.deltas),
        (4, 0, 0),
        "{vendors:?}"
    );
    let counts = app.store.message_counts().await.unwrap();
    assert_eq!((counts.messages, counts.deltas), (12, 12));
    // Every fetch location is recorded: 12 + 4 before, 12 + 4 after.
    assert_eq!(counts.locations, 32);
    assert_eq!(app.store.orders(None).await.unwrap(), orders_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_processing_move_and_flag() {
    let dovecot = Dovecot::start();
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(6, 0))
        .await;
    dovecot
        .append("Other", &vendor_mail::acme_batch(3, 0))
        .await;
    let cfg = imap_config(
        &dovecot,
        "",
        "after_processing = \"move\"\nmove_to = \"Processed\"\n",
    );
    cfg.app().await.ingest_once().await.unwrap();
    assert_eq!(dovecot.count("INBOX").await, 0);
    assert_eq!(dovecot.count("Processed").await, 6);

    let cfg = imap_config(
        &dovecot,
        "",
        "folders = [\"Other\"]\nafter_processing = \"flag\"\nflag = \"$Ingested\"\n",
    );
    cfg.app().await.ingest_once().await.unwrap();
    let flags = dovecot.flags("Other").await;
    assert!(
        flags
            .iter()
            .all(|(_, f)| f.iter().any(|x| x == "$Ingested") && !f.iter().any(|x| x == "\\Seen")),
        "{flags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_archived_as_skipped_with_its_header_only() {
    let dovecot = Dovecot::start();
    let big = vendor_mail::acme_padded(777, "Accepted", "11/23/2026 09:00 AM", "big@x", 200_000);
    dovecot
        .append(
            "INBOX",
            &[
                big,
                vendor_mail::acme(778, "Accepted", "11/23/2026 09:00 AM", "small@x"),
            ],
        )
        .await;
    let cfg = imap_config(&dovecot, "[ingest]\nmax_message_bytes = 100000\n", "");
    let app = cfg.app().await;
    let r = app.ingest_once().await.unwrap();
    assert_eq!((r[0].2.skipped, r[0].2.parsed), (1, 1), "{:?}", r[0].2);
    let (size, stored, reason): (i64, i64, String) = {
        let pool = db::open(&cfg.database()).await;
        sqlx::query_as(
            "SELECT size, length(raw), reason FROM messages WHERE disposition = 'skipped'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert!(
        size > 200_000 && stored < 2_000,
        "size {size}, stored {stored}"
    );
    assert!(reason.contains("over the configured limit"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_the_poller_falls_back_to_polling() {
    let dovecot = Dovecot::start();
    let cfg = imap_config(&dovecot, "", "idle = false\npoll_interval_secs = 1\n");
    let app = cfg.app().await;
    let mut rx = app.pipeline.subscribe();
    let serving = Serving::start(&app);
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(3, 0))
        .await;
    let took = wait_fetched(&mut rx, 3, Duration::from_secs(15)).await;
    assert!(
        took < Duration::from_secs(5),
        "polling every second took {took:?}"
    );
    serving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_login_with_a_token_from_a_command() {
    let dovecot = Dovecot::start();
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(2, 0))
        .await;
    // Dovecot checks an XOAUTH2 token against its passdb like a password; a
    // real provider's token would come from a refresh command the same way.
    let cfg = imap_config(
        &dovecot,
        "",
        &format!(
            "oauth2_token_command = \"printf '%s' {}\"\n",
            dovecot.password()
        ),
    );
    let r = cfg.app().await.ingest_once().await.expect("XOAUTH2 login");
    assert_eq!(r[0].2.parsed, 2);

    let cfg = imap_config(
        &dovecot,
        "",
        "oauth2_token_command = \"echo expired-token\"\n",
    );
    let err = cfg.app().await.ingest_once().await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("login as alice@localhost rejected"), "{msg}");
    assert!(
        !msg.contains("expired-token"),
        "tokens never appear in errors: {msg}"
    );
}

/// `cfg` without its `ca_file` line: trust only what the test adds.
fn without_ca_file(cfg: &support::app::TestConfig) {
    let text: String = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg.path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_ca_true_certificate_is_usable_when_pinned_or_given_as_ca_file() {
    use sha2::{Digest, Sha256};
    let mut dovecot = Dovecot::start();
    // Appended first: the harness's own client trusts only its CA.
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(2, 0))
        .await;
    let der = dovecot.use_self_signed_ca_certificate();
    let digest = Sha256::digest(&der);
    let hex_colons = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(digest)
    };

    // ca_file holding exactly that certificate (webpki alone: CaUsedAsEndEntity).
    let cfg = imap_config(&dovecot, "", "");
    let r = cfg
        .app()
        .await
        .ingest_once()
        .await
        .expect("ca_file = the cert");
    assert_eq!(r[0].2.parsed, 2);

    // A pin, in either form, with no CA file at all.
    for pin in [&hex_colons, &b64] {
        let cfg = imap_config(&dovecot, "", &format!("tls_pin_sha256 = \"{pin}\"\n"));
        without_ca_file(&cfg);
        cfg.app().await.ingest_once().await.expect("pinned");
    }

    // A wrong pin is refused in words, naming what the server presented.
    let cfg = imap_config(
        &dovecot,
        "",
        &format!("tls_pin_sha256 = \"{}\"\n", "ab".repeat(32)),
    );
    let err = format!("{:#}", cfg.app().await.ingest_once().await.unwrap_err());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        err.contains("does not match tls_pin_sha256") && err.contains(&hex),
        "{err}"
    );
    assert!(!err.contains("OtherError"), "{err}");

    // Without either, the public roots do not trust it.
    let cfg = imap_config(&dovecot, "", "");
    without_ca_file(&cfg);
    let err = format!("{:#}", cfg.app().await.ingest_once().await.unwrap_err());
    assert!(err.contains("TLS with 127.0.0.1 failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_is_logged_as_recovered_at_once_and_a_dropped_connection_reads_plainly() {
    let mut dovecot = Dovecot::start();
    let cfg = imap_config(&dovecot, "", "");
    let (mut child, log) = bin::spawn_logged(&cfg, &["serve"], "info");
    bin::wait_log(&log, "connected to IMAP server", Duration::from_secs(20)).await;
    // Let it settle into IDLE, then take the server away for ~3 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    dovecot.stop();
    bin::wait_log(&log, "mail source failed", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    dovecot.restart();
    let back = Instant::now();
    let text = bin::wait_log(&log, "mail source recovered", Duration::from_secs(30)).await;
    let took = back.elapsed();
    bin::terminate(&mut child);
    // After 3 s down the next try is at most 4 s away (0.5, 1, 2, 4 ...),
    // and "recovered" is said at login, not after a 5-minute IDLE cycle.
    assert!(
        took < Duration::from_secs(6),
        "recovered {took:?} after the restart:\n{text}"
    );
    assert!(text.contains("disconnected: "), "{text}");
    for jargon in ["close_notify", "rustls", "docs.rs"] {
        assert!(!text.contains(jargon), "{jargon}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_is_reported_once_even_on_an_empty_folder() {
    let dovecot = Dovecot::start();
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(2, 0))
        .await;
    let cfg = imap_config(&dovecot, "", "idle = false\npoll_interval_secs = 1\n");
    bin::run_to_completion(&cfg);
    dovecot.doveadm(&["expunge", "-u", dovecot.user(), "mailbox", "INBOX", "all"]);
    dovecot.set_uid_validity("INBOX", 4242);
    let (mut child, log) = bin::spawn_logged(&cfg, &["serve"], "info");
    bin::wait_log(&log, "UIDVALIDITY changed", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(3500)).await; // three more polls
    bin::terminate(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("UIDVALIDITY changed").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_names_the_servers_reason_for_refusing_the_folder() {
    let dovecot = Dovecot::start();
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(2, 0))
        .await;
    let cfg = imap_config(
        &dovecot,
        "",
        "after_processing = \"move\"\nmove_to = \"Done/Archive\"\n",
    );
    let out = bin::driftwatch(&cfg, &["ingest", "--once"])
        .env("DRIFTWATCH_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // Dovecot's words for the refused CREATE, at connect and on the failed move.
    let reason = "Name must not have '/' characters";
    let refused = text
        .lines()
        .find(|l| l.contains("refused to create the move_to folder"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(refused.contains(reason), "{text}");
    let failed = text
        .lines()
        .find(|l| l.contains("after-processing action failed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(failed.contains(reason), "{text}");
    assert_eq!(
        dovecot.count("INBOX").await,
        2,
        "messages stay where they are"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_reusing_a_message_id_and_body_under_another_subject_is_not_a_duplicate() {
    // Some vendor systems reuse one Message-ID and a template body, and put
    // the status in the subject, which patterns read: dropping the second
    // as a duplicate would lose its status. The same mail delivered twice
    // (another Received line) is still one message.
    let mail = |received: &str, subject: &str| {
        format!(
            "Received: from {received}\r\nFrom: Notices <notices@vendor.example>\r\nTo: orders@lender.example\r\n\
             Subject: {subject}\r\nMessage-ID: <reused@vendor.example>\r\nDate: Tue, 24 Nov 2026 16:00:00 +0000\r\n\r\n\
             Your order status has changed; see the subject.\r\n"
        )
        .into_bytes()
    };
    let dovecot = Dovecot::start();
    dovecot
        .append(
            "INBOX",
            &[
                mail("mx1", "Order 90001 - Accepted"),
                mail("mx1", "Order 90001 -\r\n Report Delivered"),
                mail("mx2", "Order 90001 - Accepted"),
            ],
        )
        .await;
    let cfg = imap_config(&dovecot, "", "");
    let app = cfg.app().await;
    let o = &app.ingest_once().await.expect("ingest")[0].2;
    assert_eq!((o.fetched(), o.archived, o.duplicates), (3, 2, 1), "{o:?}");
    let mut subjects = Vec::new();
    for id in 1..=2 {
        let m = app.store.message(id).await.unwrap().expect("archived");
        subjects.push(m.subject.unwrap_or_default());
    }
    assert_eq!(
        subjects,
        ["Order 90001 - Accepted", "Order 90001 - Report Delivered"]
    );

    // Fetched again after a UIDVALIDITY change, all three are duplicates
    // of what is archived: nothing is new.
    let old = dovecot.uid_validity("INBOX").await;
    dovecot.set_uid_validity("INBOX", old + 1000);
    let again = &app.ingest_once().await.unwrap()[0].2;
    assert_eq!(
        (again.fetched(), again.archived, again.duplicates),
        (3, 0, 3),
        "{again:?}"
    );
    assert_eq!(app.store.message_counts().await.unwrap().messages, 2);
}
