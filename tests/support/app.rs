//! Building a driftwatch config and app for a test: its own temp dir and database.

use std::path::{Path, PathBuf};

use driftwatch::app::App;
use driftwatch::config::Config;

use super::db::Db;
use super::dovecot::Dovecot;

pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub db: Db,
}

impl TestConfig {
    pub fn load(&self) -> Config {
        Config::load(&self.path).expect("test config loads")
    }

    pub async fn app(&self) -> App {
        App::build(self.load()).await.expect("app builds")
    }

    /// The test's database (see [`Db`]: SQLite here, or PostgreSQL in that round).
    pub fn database(&self) -> Db {
        self.db.clone()
    }
}

/// The `database` line for a generated config: none when the test's own
/// config text already names one.
fn db_line(db: &Db, top_extra: &str) -> String {
    if top_extra
        .lines()
        .any(|l| l.trim_start().starts_with("database"))
    {
        String::new()
    } else {
        db.config_line()
    }
}

pub fn parsers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("parsers")
}

/// A shipped fixture's bytes (`fixtures/VENDOR/NAME.eml`).
#[allow(dead_code)] // not every test binary reads fixtures
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(path),
    )
    .expect("fixture exists")
}

/// A config with one IMAP mailbox on the test Dovecot over implicit TLS,
/// trusting the harness CA. `mailbox_extra` lines go into the [[mailbox]] table,
/// `top_extra` lines before it.
pub fn imap_config(dovecot: &Dovecot, top_extra: &str, mailbox_extra: &str) -> TestConfig {
    let dir = tempfile::tempdir().expect("temp dir");
    let pw = dir.path().join("imap-password");
    std::fs::write(&pw, format!("{}\n", dovecot.password())).expect("write password file");
    let has = |k: &str| mailbox_extra.lines().any(|l| l.trim_start().starts_with(k));
    let mut mailbox = String::new();
    if !has("port") {
        mailbox.push_str(&format!("port = {}\n", dovecot.imaps_port()));
    }
    if !has("tls") {
        mailbox.push_str("tls = \"implicit\"\n");
    }
    if !has("ca_file") {
        mailbox.push_str(&format!("ca_file = \"{}\"\n", dovecot.ca_file().display()));
    }
    if !has("password") && !has("oauth2") {
        mailbox.push_str(&format!("password_file = \"{}\"\n", pw.display()));
    }
    let db = Db::for_config(&dir.path().join("data"), top_extra);
    let text = format!(
        "data_dir = \"data\"\n{}parsers_dir = \"{parsers}\"\n{top_extra}\n\
         [[mailbox]]\nname = \"vendors\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
         username = \"{user}\"\n{mailbox}{mailbox_extra}\n",
        db_line(&db, top_extra),
        parsers = parsers_dir().display(),
        user = dovecot.user(),
    );
    let path = dir.path().join("driftwatch.toml");
    std::fs::write(&path, text).expect("write config");
    TestConfig { dir, path, db }
}

/// A config with one Maildir mailbox (empty `Maildir/{new,cur,tmp}` in the
/// temp dir) and the given parsers directory.
pub fn maildir_config(parsers: &Path, top_extra: &str) -> TestConfig {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(dir.path().join("Maildir").join(sub)).expect("maildir");
    }
    let db = Db::for_config(&dir.path().join("data"), top_extra);
    let text = format!(
        "data_dir = \"data\"\n{}parsers_dir = \"{}\"\n{top_extra}\n\
         [[mailbox]]\nname = \"local\"\nkind = \"maildir\"\npath = \"Maildir\"\npoll_interval_secs = 1\n",
        db_line(&db, top_extra),
        parsers.display()
    );
    let path = dir.path().join("driftwatch.toml");
    std::fs::write(&path, text).expect("write config");
    TestConfig { dir, path, db }
}

impl TestConfig {
    /// Delivers a message into the Maildir the way an MTA does (tmp, then rename into new).
    pub fn deliver(&self, name: &str, raw: &[u8]) {
        let md = self.dir.path().join("Maildir");
        let tmp = md.join("tmp").join(name);
        std::fs::write(&tmp, raw).expect("write tmp");
        std::fs::rename(&tmp, md.join("new").join(name)).expect("rename into new");
    }
}

/// Copies the shipped parsers into `dst`, for a test that edits them.
pub fn copy_shipped_parsers(dst: &Path) {
    std::fs::create_dir_all(dst).expect("parsers dir");
    for e in std::fs::read_dir(parsers_dir()).expect("read parsers") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, dst.join(p.file_name().expect("name"))).expect("copy parser");
    }
}

/// `App::serve` running in a task, for tests that need the service alive.
pub struct Serving {
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Serving {
    pub fn start(app: &App) -> Serving {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (app, token) = (app.clone(), shutdown.clone());
        let task = tokio::spawn(async move { app.serve(token).await });
        Serving { shutdown, task }
    }

    /// Signals shutdown and asserts the service stops cleanly within 10 s.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), self.task)
            .await
            .expect("serve stops within 10 s of shutdown")
            .expect("serve task did not panic")
            .expect("serve returns Ok");
    }
}
