//! Safe by default on a real host: private files, and no secret in any log
//! line at any level. Runs the real binary against the real Dovecot (and
//! Postfix) harness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::app::{imap_config, maildir_config, parsers_dir};
use support::dovecot::Dovecot;
use support::postfix::Postfix;
use support::vendor_mail;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The real binary under `umask 022`, the common default that makes files 0644.
fn driftwatch_umask_022(args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_driftwatch"))
        .args(args)
        .env("DRIFTWATCH_LOG", "warn")
        .stdin(Stdio::null());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_driftwatch_creates_is_private_under_umask_022() {
    let cfg = maildir_config(&parsers_dir(), "");
    cfg.deliver(
        "1",
        &vendor_mail::acme(501, "Accepted", "11/23/2026 09:00 AM", "a@x"),
    );
    let config = cfg.path.to_str().unwrap();
    let db = cfg.database().sqlite_path().to_path_buf();
    let data = db.parent().unwrap().to_path_buf();

    // While serving, the database's -wal and -shm exist: all 0600, dir 0700.
    let mut child = driftwatch_umask_022(&["--config", config, "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wal = data.join("driftwatch.db-wal");
    let shm = data.join("driftwatch.db-shm");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(wal.exists() && shm.exists()) {
        assert!(Instant::now() < deadline, "no -wal/-shm appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let modes = [mode(&data), mode(&db), mode(&wal), mode(&shm)];
    support::bin::terminate(&mut child);
    assert_eq!(
        modes,
        [0o700, 0o600, 0o600, 0o600],
        "data dir, db, -wal, -shm"
    );

    // A report written to a file.
    let out = cfg.dir.path().join("report.html");
    let st = driftwatch_umask_022(&["--config", config, "report", "--format", "html", "-o"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(mode(&out), 0o600, "report file");

    // A database left 0644 by an older version is tightened, and the log says so.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = driftwatch_umask_022(&["--config", config, "ingest", "--once"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success());
    assert_eq!(mode(&db), 0o600);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(log.contains("tightened file permissions"), "{log}");

    // The demo: its directory, config, database and report.
    let demo = tempfile::tempdir().unwrap();
    let dir = demo.path().join("d");
    let st = driftwatch_umask_022(&["demo", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(mode(&dir), 0o700, "demo dir");
    assert_eq!(mode(&dir.join("driftwatch.toml")), 0o600, "demo config");
    let db = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .flat_map(|p| {
            if p.is_dir() {
                std::fs::read_dir(p)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect()
            } else {
                vec![p]
            }
        })
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .expect("the demo database");
    assert_eq!(mode(&db), 0o600, "demo database {}", db.display());
    for report in std::fs::read_dir(dir.join("reports")).unwrap() {
        let p = report.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    // Every folder the demo writes, nested ones included (fixtures/<vendor>/).
    let mut dirs = vec![dir.clone()];
    while let Some(d) = dirs.pop() {
        assert_eq!(mode(&d), 0o700, "demo folder {}", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "demo file {}", p.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_others_can_read_is_warned_about_by_path() {
    let dovecot = Dovecot::start();
    let cfg = imap_config(&dovecot, "", "");
    let pw = cfg.dir.path().join("imap-password");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = support::bin::driftwatch(&cfg, &["check-config"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("secret file is readable by group or others")
            && log.contains(pw.to_str().unwrap()),
        "{log}"
    );

    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = support::bin::driftwatch(&cfg, &["check-config"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("readable by group or others"), "{log}");
}

const CANARY_PASSWORD: &str = "Canary-pw-7d3f9a";
const CANARY_TOKEN: &str = "Canary-tok-0b51e2";
const CANARY_SMTP: &str = "Canary-smtp-c4a8";

/// Every form a secret could take on the wire: as it is, and inside the
/// base64 of AUTH PLAIN and XOAUTH2.
fn forms(user: &str, secret: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        secret.to_string(),
        b64(format!("\0{user}\0{secret}")),
        b64(format!("{user}\0{user}\0{secret}")),
        b64(format!("user={user}\x01auth=Bearer {secret}\x01\x01")),
    ]
}

fn assert_absent(log: &str, user: &str, secret: &str) {
    for f in forms(user, secret) {
        assert!(!log.contains(&f), "the log holds a secret ({f}):\n{log}");
    }
}

/// `ingest --once` at `DRIFTWATCH_LOG=trace`, returning its stderr.
fn ingest_at_trace(cfg: &support::app::TestConfig) -> String {
    let out = support::bin::driftwatch(cfg, &["ingest", "--once"])
        .env("DRIFTWATCH_LOG", "trace,async_imap=trace,lettre=trace")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    // The level really was trace: our own and the libraries' trace lines are there.
    assert!(log.contains("TRACE"), "{log}");
    assert!(log.contains("connected to IMAP server"), "{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_the_log_at_trace_level() {
    let dovecot = Dovecot::start();
    let user = "canary@localhost";
    dovecot.add_user(user, CANARY_PASSWORD);
    dovecot.add_user("token@localhost", CANARY_TOKEN);
    dovecot.add_user("smtp@localhost", CANARY_SMTP);

    // Password login (LOGIN), the password from a file.
    let cfg = imap_config(&dovecot, "", "");
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace(dovecot.user(), user);
    std::fs::write(&cfg.path, text).unwrap();
    std::fs::write(cfg.dir.path().join("imap-password"), CANARY_PASSWORD).unwrap();
    let log = ingest_at_trace(&cfg);
    assert_absent(&log, user, CANARY_PASSWORD);
    // The same in JSON lines.
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    std::fs::write(&cfg.path, format!("{text}\n[log]\nformat = \"json\"\n")).unwrap();
    let log = ingest_at_trace(&cfg);
    assert!(log.contains("\"level\":\"TRACE\""), "{log}");
    assert_absent(&log, user, CANARY_PASSWORD);

    // XOAUTH2 with a token from a command (Dovecot checks it like a password).
    let cfg = imap_config(
        &dovecot,
        "",
        &format!("oauth2_token_command = \"printf '%s' {CANARY_TOKEN}\"\n"),
    );
    let text = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .replace(dovecot.user(), "token@localhost");
    std::fs::write(&cfg.path, text).unwrap();
    let log = ingest_at_trace(&cfg);
    assert_absent(&log, "token@localhost", CANARY_TOKEN);

    // SMTP AUTH for the report, through the real Postfix.
    let postfix = Postfix::start(&dovecot);
    let dir = tempfile::tempdir().unwrap();
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(dir.path().join("Maildir").join(sub)).unwrap();
    }
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, CANARY_SMTP).unwrap();
    let config = dir.path().join("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nparsers_dir = \"{parsers}\"\n\n\
             [[mailbox]]\nname = \"inbox\"\nkind = \"maildir\"\npath = \"Maildir\"\n\n\
             [report]\nrecipients = [\"{rcpt}\"]\n\
             from = \"driftwatch <driftwatch@localhost>\"\nsend_at = \"00:00\"\ntimezone = \"UTC\"\n\n\
             [report.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\n\
             ca_file = \"{ca}\"\nusername = \"smtp@localhost\"\npassword_file = \"{pw}\"\ntimeout_secs = 10\n",
            parsers = parsers_dir().display(),
            rcpt = dovecot.user(),
            port = postfix.submission_port(),
            ca = dovecot.ca_file().display(),
            pw = pw.display(),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .arg("--config")
        .arg(&config)
        .args(["report", "--send-due"])
        .env("DRIFTWATCH_LOG", "trace,lettre=trace")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}\n{log}\n{}", postfix.log());
    assert!(log.contains("TRACE"), "{log}");
    assert_absent(&log, "smtp@localhost", CANARY_SMTP);
    assert_absent(&said, "smtp@localhost", CANARY_SMTP);
}
