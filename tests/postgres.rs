//! PostgreSQL as the store: TLS with a verified server and a password from a
//! file, several `serve` instances sharing the work under kills, and
//! `migrate-store` from SQLite. Each test runs its own private PostgreSQL
//! (scripts/postgres.sh, from Debian's packages), in every round of
//! `scripts/test.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use driftwatch::store::{DeltaFilter, Store};
use support::app::{TestConfig, imap_config, maildir_config, parsers_dir};
use support::bin::{Rng, committed, driftwatch, kill, run_to_completion, terminate};
use support::db::{self, Db, PgServer};
use support::dovecot::Dovecot;
use support::vendor_mail;

fn config_with(dir: &std::path::Path, body: &str) -> TestConfig {
    let path = dir.join("driftwatch.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"data\"\nparsers_dir = \"{}\"\n{body}",
            parsers_dir().display()
        ),
    )
    .unwrap();
    TestConfig {
        dir: tempfile::tempdir_in(dir).unwrap(),
        path,
        db: Db::Sqlite(dir.join("unused.db")),
    }
}

fn output(cfg: &TestConfig, args: &[&str]) -> (bool, String) {
    let out = driftwatch(cfg, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn postgres_over_tls_is_verified_and_takes_its_password_from_a_file() {
    let pg = PgServer::start();
    pg.database("tls");
    let root = tempfile::tempdir().unwrap();
    let url = format!(
        "{}/tls?sslmode=verify-full&sslrootcert={}",
        pg.server,
        pg.ca_file().display()
    );
    let pw = root.path().join("db-password");
    std::fs::copy(pg.password_file(), &pw).unwrap();
    let good = config_with(
        root.path(),
        &format!(
            "database = \"{url}\"\ndatabase_password_file = \"{}\"\n",
            pw.display()
        ),
    );
    let (ok, said) = output(&good, &["migrate"]);
    assert!(ok, "{said}");
    assert!(said.contains("is up to date"), "{said}");

    // Over TLS the server asks for the password (plain loopback is trusted),
    // so a wrong one failing proves the connection was TLS.
    let wrong = root.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password-4711\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let bad = config_with(
        root.path(),
        &format!(
            "database = \"{url}\"\ndatabase_password_file = \"{}\"\n",
            wrong.display()
        ),
    );
    let (ok, said) = output(&bad, &["migrate"]);
    assert!(!ok, "a wrong password was accepted: {said}");
    assert!(said.contains("password authentication failed"), "{said}");
    assert!(
        !said.contains("not-the-password-4711"),
        "the password was printed: {said}"
    );

    // A server whose certificate is not from the configured CA is refused.
    let other_ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other = root.path().join("other-ca.pem");
    std::fs::write(&other, other_ca.cert.pem()).unwrap();
    let untrusted = config_with(
        root.path(),
        &format!(
            "database = \"{}/tls?sslmode=verify-full&sslrootcert={}\"\ndatabase_password_file = \"{}\"\n",
            pg.server,
            other.display(),
            pw.display()
        ),
    );
    let (ok, said) = output(&untrusted, &["migrate"]);
    assert!(!ok, "an unverified server was accepted: {said}");
    assert!(said.to_lowercase().contains("certificate"), "{said}");

    // A password written into the URL is refused with the key to use instead.
    let inline = config_with(
        root.path(),
        "database = \"postgres://dw:secret@127.0.0.1/tls\"\n",
    );
    let (ok, said) = output(&inline, &["check-config"]);
    assert!(!ok);
    assert!(said.contains("database_password_file"), "{said}");
    assert!(!said.contains("secret@"), "{said}");
}

fn spawn_serve(cfg: &TestConfig) -> Child {
    driftwatch(cfg, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Three `serve` instances on one PostgreSQL database and one IMAP folder,
/// killed (SIGKILL) and restarted at random: the folder is worked by one of
/// them at a time, and the database ends exactly as one uninterrupted
/// instance leaves it, with the delta log's offsets gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_killed_at_random_equal_one_uninterrupted_instance() {
    let (mut rng, seed) = Rng::from_env();
    eprintln!("DRIFTWATCH_FAULT_SEED={seed}");
    let pg = PgServer::start();
    let dovecot = Dovecot::start();
    // Enough mail that at least three kills land while it is ingested, with
    // group commit (up to 4 batches per transaction) making ingest faster.
    let mut mail = vendor_mail::acme_batch(1600, 1500);
    mail.extend((0..40).map(vendor_mail::unknown_sender));
    let n = mail.len() as i64;
    dovecot.append("INBOX", &mail).await;
    let settings = "[ingest]\nbatch_max_messages = 20\n";

    let reference_url = pg.database("reference");
    let reference = imap_config(
        &dovecot,
        &format!("database = \"{reference_url}\"\n{settings}"),
        "",
    );
    run_to_completion(&reference);
    let expected = db::dump(&reference.database()).await;

    let url = pg.database("shared");
    let cfgs: Vec<TestConfig> = (0..3)
        .map(|_| imap_config(&dovecot, &format!("database = \"{url}\"\n{settings}"), ""))
        .collect();
    let shared = cfgs[0].database();
    let mut children: Vec<Child> = cfgs.iter().map(spawn_serve).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut kills = 0;
    while committed(&shared).await < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.range(50, 400))).await;
        let i = rng.range(0, 3) as usize;
        kill(&mut children[i]);
        kills += 1;
        children[i] = spawn_serve(&cfgs[i]);
    }
    while committed(&shared).await < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &mut children {
        terminate(c);
    }
    assert_eq!(
        committed(&shared).await,
        n,
        "not every message was committed"
    );
    assert!(
        kills >= 3,
        "only {kills} kills landed before the folder was done"
    );
    support::bin::assert_same_dump(
        &db::dump(&shared).await,
        &expected,
        "three instances with kills",
    );
    let gaps = db::count(
        &shared,
        r#"SELECT coalesce(max("offset"), 0) - count(*) FROM deltas"#,
    )
    .await;
    assert_eq!(gaps, 0, "the delta log has gaps");
    eprintln!("{kills} kills");
}

async fn open(db: &Db) -> Store {
    Store::connect(&db.location()).await.unwrap()
}

/// What a reader of the store sees: the view, the whole log, the counts.
async fn contents(
    store: &Store,
) -> (
    Vec<driftwatch::model::OrderState>,
    Vec<driftwatch::model::Delta>,
    driftwatch::store::MessageCounts,
) {
    (
        store.orders(None).await.unwrap(),
        store
            .deltas_after(0, 1_000_000, &DeltaFilter::default())
            .await
            .unwrap(),
        store.message_counts().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_copies_sqlite_into_postgres_verifies_and_resumes_after_a_kill() {
    let pg = PgServer::start();
    // The source is SQLite in every round (named explicitly, so the
    // PostgreSQL round's test database does not replace it).
    let cfg = maildir_config(&parsers_dir(), "database = \"source.db\"\n");
    for (i, m) in vendor_mail::acme_batch(1500, 4000).into_iter().enumerate() {
        cfg.deliver(&format!("{i:05}.eml"), &m);
    }
    for i in 0..20 {
        cfg.deliver(&format!("u{i}.eml"), &vendor_mail::unknown_sender(i));
    }
    run_to_completion(&cfg);
    let sqlite = cfg.database().sqlite_path().to_path_buf();
    let source = open(&Db::Sqlite(sqlite.clone())).await;
    let want = contents(&source).await;
    assert!(want.1.len() >= 1500);

    // Killed part-way, then run again: it resumes and verifies.
    let url = pg.database("copy");
    let from = format!("sqlite:{}", sqlite.display());
    let args = ["migrate-store", "--from", &from, "--to", &url];
    let mut child = driftwatch(&cfg, &args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    kill(&mut child);
    let (ok, said) = output(&cfg, &args);
    assert!(ok, "{said}");
    assert!(said.contains("verified"), "{said}");
    let target = open(&Db::Postgres(url.clone())).await;
    assert_eq!(contents(&target).await, want);

    // Run again: nothing to copy, still verified.
    let (ok, said) = output(&cfg, &args);
    assert!(ok, "{said}");

    // The copy is a working store: new writes continue the log.
    assert_eq!(
        target.log_end().await.unwrap(),
        source.log_end().await.unwrap()
    );

    // A target holding other data is refused, not trusted.
    let other = maildir_config(&parsers_dir(), "database = \"other.db\"\n");
    other.deliver(
        "1.eml",
        &vendor_mail::acme(1, "Accepted", "11/23/2026 09:10 AM", "x@acme"),
    );
    run_to_completion(&other);
    let other_from = format!("sqlite:{}", other.database().sqlite_path().display());
    let (ok, said) = output(
        &cfg,
        &["migrate-store", "--from", &other_from, "--to", &url],
    );
    assert!(!ok, "copied into a store holding other data: {said}");
    assert!(said.contains("differs"), "{said}");
}
