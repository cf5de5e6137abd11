//! `kind = "sftp"` against a real OpenSSH server (tests/support/sftp.rs):
//! the newest complete file, files still being written skipped, the host
//! key pinned, key and password logins, a rerun `unchanged`, and a server
//! restart mid-download that fails the run without applying anything.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reconcile_support;
mod support;

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use driftwatch::model::Status;
use driftwatch::reconcile::{FetchError, Outcome, ReconcileError, RunOptions, run_once};
use reconcile_support::{Env, seed_scheduled};
use support::proxy::FaultProxy;
use support::sftp::{self, Sftpd};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
}

fn opts() -> RunOptions {
    RunOptions {
        now: Some(t0() + Duration::days(2)),
        ..Default::default()
    }
}

/// `[[vendor]]` acme with an sftp export; `login` and `extra` are more
/// `[vendor.export]` lines.
fn vendor_toml(server: &Sftpd, port: u16, login: &str, extra: &str) -> String {
    format!(
        r#"[[vendor]]
name = "acme"
policy = "fix"
[vendor.export]
kind = "sftp"
host = "127.0.0.1"
port = {port}
dir = "{dir}"
pattern = "orders-*.csv"
settle_ms = 300
complete = true
{login}
{extra}
[vendor.status_map]
SCHED = "scheduled"
DLVD = "completed"
[vendor.guard]
max_drift_pct = 100
max_row_drop_pct = 100
"#,
        dir = server.exports().display(),
    )
}

fn key_login(server: &Sftpd) -> String {
    format!(
        "user = \"{}\"\nkey_file = \"{}\"\nhost_key = \"{}\"",
        sftp::current_user(),
        server.client_key().display(),
        server.known_hosts_line()
    )
}

/// Orders 1 and 2, scheduled, told by email the day before the exports.
async fn seed(app: &driftwatch::app::App) {
    let refs = ["1", "2"].map(String::from);
    seed_scheduled(&app.store, "acme", "SCHED", refs, &Default::default(), t0()).await;
}

/// A vendor that logs in with the harness's key (through `port`), its app,
/// and orders 1 and 2 seeded.
async fn keyed(server: &Sftpd, port: u16, extra: &str) -> (Env, driftwatch::app::App) {
    let env = Env::new(&vendor_toml(server, port, &key_login(server), extra));
    let app = env.app().await;
    seed(&app).await;
    (env, app)
}

async fn run(app: &driftwatch::app::App) -> driftwatch::reconcile::RunSummary {
    run_once(&app.store, &app.config, "acme", opts())
        .await
        .unwrap()
}

async fn status(app: &driftwatch::app::App, order: &str) -> Option<Status> {
    app.store
        .order("acme", order)
        .await
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test]
async fn sftp_key_login_takes_the_newest_complete_file_and_a_rerun_is_unchanged() {
    let server = Sftpd::start();
    server.drop_file(
        "orders-1.csv",
        b"order_ref,status\n1,SCHED\n2,SCHED\n",
        t0() + Duration::hours(20),
    );
    server.drop_file(
        "orders-2.csv",
        b"order_ref,status\n1,DLVD\n2,SCHED\n",
        t0() + Duration::days(1),
    );
    // Still uploading under a temporary name, and newer: never taken.
    server.drop_file(
        "orders-3.csv.part",
        b"order_ref,status\n1,SCHED\n",
        t0() + Duration::hours(30),
    );
    let (_env, app) = keyed(&server, server.port(), "").await;

    let s = run(&app).await;
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert!(s.source.ends_with("/orders-2.csv"), "{}", s.source);
    assert_eq!(
        s.as_of,
        Some(t0() + Duration::days(1)),
        "as of the file's mtime"
    );
    assert_eq!(status(&app, "1").await, Some(Status::Completed));

    let again = run(&app).await;
    assert_eq!(again.outcome, Outcome::Unchanged, "{:?}", again.reason);
    assert_eq!(again.as_of, Some(t0() + Duration::days(1)));
}

#[tokio::test]
async fn a_file_still_being_written_is_skipped_until_it_settles_or_its_marker_appears() {
    let server = Sftpd::start();
    server.drop_file(
        "orders-1.csv",
        b"order_ref,status\n1,SCHED\n2,SCHED\n",
        t0() + Duration::hours(20),
    );
    let growing = server.drop_file(
        "orders-2.csv",
        b"order_ref,status\n",
        t0() + Duration::days(1),
    );
    let (_env, app) = keyed(&server, server.port(), "").await;
    let grown = growing.clone();

    // An upload in progress under the final name: it grows between the two listings.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&growing)
            .unwrap();
        for i in 0..40 {
            writeln!(f, "{},SCHED", 100 + i).unwrap();
            f.flush().unwrap();
            std::thread::sleep(StdDuration::from_millis(50));
        }
    });
    let s = run(&app).await;
    writer.join().unwrap();
    // The upload finished as of the export's day, not today: a key frame
    // dated after the run's `now` is refused.
    reconcile_support::set_mtime(&grown, t0() + Duration::days(1));
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert!(
        s.source.ends_with("/orders-1.csv"),
        "the growing file is skipped: {}",
        s.source
    );

    // With a ready marker configured, a settled file waits for its marker.
    let (_env, app) = keyed(&server, server.port(), "ready_marker = \"{name}.done\"").await;
    server.drop_file("orders-1.csv.done", b"", t0() + Duration::hours(20));
    let s = run(&app).await;
    assert!(
        s.source.ends_with("/orders-1.csv"),
        "no marker for orders-2 yet: {}",
        s.source
    );
    server.drop_file("orders-2.csv.done", b"", t0() + Duration::days(1));
    let s = run(&app).await;
    assert!(s.source.ends_with("/orders-2.csv"), "{}", s.source);
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_with_a_clear_error_and_nothing_is_read() {
    let server = Sftpd::start();
    server.drop_file(
        "orders-1.csv",
        b"order_ref,status\n1,DLVD\n2,SCHED\n",
        t0() + Duration::days(1),
    );
    // Another server's key, pinned by known_hosts line and by fingerprint.
    let other = Sftpd::start();
    for pin in [
        format!("host_key = \"{}\"", other.known_hosts_line()),
        format!("host_key_sha256 = \"{}\"", other.host_key_sha256()),
    ] {
        let login = format!(
            "user = \"{}\"\nkey_file = \"{}\"\n{pin}",
            sftp::current_user(),
            server.client_key().display()
        );
        let env = Env::new(&vendor_toml(&server, server.port(), &login, ""));
        let app = env.app().await;
        seed(&app).await;
        let e = run_once(&app.store, &app.config, "acme", opts())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                ReconcileError::Fetch(FetchError::Sftp(
                    driftwatch::reconcile::sftp::SftpError::HostKey { .. }
                ))
            ),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("host key") && text.contains(&server.host_key_sha256()),
            "{text}"
        );
        assert_eq!(
            status(&app, "1").await,
            Some(Status::Scheduled),
            "nothing applied"
        );
        let runs = app.store.reconcile_runs("acme", 5).await.unwrap();
        assert_eq!(
            runs[0].outcome, "failed",
            "the refusal is recorded for the report"
        );
    }
}

#[tokio::test]
async fn password_login_works_and_a_wrong_password_is_refused() {
    let server = Sftpd::start();
    server.drop_file(
        "orders-1.csv",
        b"order_ref,status\n1,DLVD\n2,SCHED\n",
        t0() + Duration::days(1),
    );
    for (pw, ok) in [
        (sftp::PASSWORD_USER_PASSWORD, true),
        ("not-the-password", false),
    ] {
        let env = Env::new(&vendor_toml(
            &server,
            server.port(),
            &format!(
                "user = \"{}\"\npassword_file = \"sftp-password\"\nhost_key_sha256 = \"{}\"",
                sftp::PASSWORD_USER,
                server.host_key_sha256()
            ),
            "",
        ));
        std::fs::write(env.path("sftp-password"), format!("{pw}\n")).unwrap();
        let app = env.app().await;
        seed(&app).await;
        let r = run_once(&app.store, &app.config, "acme", opts()).await;
        if ok {
            let s = r.unwrap();
            assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
            assert_eq!(status(&app, "1").await, Some(Status::Completed));
        } else {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("login as `dwsftp`") && e.contains("password"),
                "{e}"
            );
            assert!(!e.contains(pw), "the password is never in an error: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_download_fails_the_run_cleanly_and_the_next_run_succeeds() {
    let mut server = Sftpd::start();
    // Five orders with large unmapped notes: ~20 MB, so the download takes a while.
    let note = "x".repeat(4 << 20);
    let mut csv = String::from("order_ref,status,notes\n1,DLVD,a\n2,SCHED,b\n");
    for i in 0..5 {
        csv.push_str(&format!("{},SCHED,{note}\n", 100 + i));
    }
    server.drop_file("orders-1.csv", csv.as_bytes(), t0() + Duration::days(1));
    let proxy = FaultProxy::start(server.port()).await;
    let (env, app) = keyed(
        &server,
        proxy.port(),
        "max_field_bytes = 8388608\nmax_row_bytes = 8388608\ntimeout_secs = 5",
    )
    .await;

    let (store, config) = (app.store.clone(), app.config.clone());
    let first = tokio::spawn(async move { run_once(&store, &config, "acme", opts()).await });
    // A slow link (~3 MB/s). Once a megabyte has come down, the server
    // restarts and the connection drops mid-download: OpenSSH keeps
    // established sessions across its own restart, so the proxy cuts ours,
    // as a host or network restart does.
    proxy.slow_down(StdDuration::from_millis(20));
    let deadline = std::time::Instant::now() + StdDuration::from_secs(60);
    while proxy.bytes_down() < 1 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "download never started"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    tokio::task::block_in_place(|| server.restart());
    proxy.cut_all(support::proxy::Kill::Reset);
    proxy.slow_down(StdDuration::ZERO);
    let e = first.await.unwrap().unwrap_err();
    assert!(matches!(e, ReconcileError::Fetch(_)), "{e}");
    assert_eq!(
        status(&app, "1").await,
        Some(Status::Scheduled),
        "no partial frame applied"
    );
    let runs = app.store.reconcile_runs("acme", 5).await.unwrap();
    assert_eq!(runs[0].outcome, "failed");
    assert!(
        std::fs::read_dir(env.path("data").join("exports")).map_or(true, |d| d.count() == 0),
        "the partial download is deleted"
    );

    let s = run(&app).await;
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert_eq!(status(&app, "1").await, Some(Status::Completed));
}

#[tokio::test]
async fn after_a_trusted_run_the_file_is_moved_and_the_next_run_is_unchanged() {
    let server = Sftpd::start();
    std::fs::create_dir(server.exports().join("done")).unwrap();
    server.drop_file(
        "orders-1.csv",
        b"order_ref,status\n1,DLVD\n2,SCHED\n",
        t0() + Duration::days(1),
    );
    let (_env, app) = keyed(
        &server,
        server.port(),
        "after = \"move\"\nmove_to = \"done\"",
    )
    .await;
    let s = run(&app).await;
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert!(server.exports().join("done/orders-1.csv").exists());
    assert!(!server.exports().join("orders-1.csv").exists());
    let s = run(&app).await;
    assert_eq!(s.outcome, Outcome::Unchanged, "no new file: {:?}", s.reason);
}

#[test]
fn driftwatch_reconcile_vendor_reads_an_sftp_export_from_the_command_line() {
    let server = Sftpd::start();
    server.drop_file(
        "orders-1.csv",
        b"order_ref,status\n1,DLVD\n2,SCHED\n",
        t0() + Duration::days(1),
    );
    let env = Env::new(&vendor_toml(
        &server,
        server.port(),
        &key_login(&server),
        "",
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .arg("-c")
        .arg(&env.config)
        .args(["reconcile", "--vendor", "acme", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("orders-1.csv") && text.contains("missing_local"),
        "{text}"
    );
}
