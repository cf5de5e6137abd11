//! Running the real `driftwatch` binary from a test: spawn, watch progress
//! from outside through the database, SIGKILL/SIGTERM, run to completion.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::app::TestConfig;
use super::db::Db;

/// `driftwatch --config <cfg> ARGS` with quiet logs and no stdin/stdout.
pub fn driftwatch(cfg: &TestConfig, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
    c.arg("--config")
        .arg(&cfg.path)
        .args(args)
        .env("DRIFTWATCH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

/// Runs `ingest --once` and asserts it succeeds, showing its stderr if not.
pub fn run_to_completion(cfg: &TestConfig) {
    let out = driftwatch(cfg, &["ingest", "--once"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Spawns `driftwatch ARGS` with its log (stderr, at `level`) going to a file
/// in the config's temp dir, so a test can read what it said. Returns the
/// child and the log path.
pub fn spawn_logged(cfg: &TestConfig, args: &[&str], level: &str) -> (Child, PathBuf) {
    let log = cfg
        .dir
        .path()
        .join(format!("driftwatch-{}.log", args.join("-")));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = driftwatch(cfg, args)
        .env("DRIFTWATCH_LOG", level)
        .stderr(file)
        .spawn()
        .unwrap();
    (child, log)
}

/// Message locations committed so far, read from outside the process (0
/// before the database exists or while it cannot be opened).
pub async fn committed(db_path: &Db) -> i64 {
    progress(db_path, COMMITTED).await
}

/// The progress measure of an ingest: fetch locations committed.
pub const COMMITTED: &str = "SELECT count(*) FROM message_locations";

/// A count (`sql`) read from outside the process; 0 before the database
/// exists, while it cannot be opened, or before the table exists.
pub async fn progress(db_path: &Db, sql: &str) -> i64 {
    if !db_path.exists() {
        return 0;
    }
    sqlx::any::install_default_drivers();
    let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&db_path.url()).await
    else {
        return 0;
    };
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
}

/// Polls (every 5 ms, bounded) until `committed >= n`, or the child exits.
/// Returns the count reached.
pub async fn wait_committed(db_path: &Db, n: i64, child: &mut Child, limit: Duration) -> i64 {
    wait_progress(db_path, COMMITTED, n, child, limit).await
}

/// Polls (every 5 ms, bounded) until the count `sql` reaches `n`, or the
/// child exits. Returns the count reached.
pub async fn wait_progress(
    db_path: &Db,
    sql: &str,
    n: i64,
    child: &mut Child,
    limit: Duration,
) -> i64 {
    let deadline = Instant::now() + limit;
    loop {
        let done = progress(db_path, sql).await;
        if done >= n || Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls (bounded) until the file at `log` contains `needle`; panics with the
/// log on timeout.
pub async fn wait_log(log: &Path, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?} within {limit:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGKILL: no destructor, no rollback handler, no flush runs.
pub fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// SIGTERM (a clean stop) and the exit status.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap()
}

/// Panics with the first differing rows when two dumps differ.
pub fn assert_same_dump(got: &[String], expected: &[String], what: &str) {
    if got != expected {
        let diff: Vec<_> = got
            .iter()
            .zip(expected)
            .filter(|(a, b)| a != b)
            .take(3)
            .collect();
        panic!(
            "{what}: the database differs from the uninterrupted run ({} vs {} rows); first differences: {diff:#?}",
            got.len(),
            expected.len()
        );
    }
}

/// A tiny seeded PRNG (splitmix64) so fault points are random yet
/// reproducible from the printed seed, without a new dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seed from `DRIFTWATCH_FAULT_SEED` when set, else from the clock.
    pub fn from_env() -> (Rng, u64) {
        let seed = std::env::var("DRIFTWATCH_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        (Rng(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
}
