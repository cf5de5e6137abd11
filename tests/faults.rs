//! Process and disk faults during ingest: SIGKILL at random points, a full
//! disk under the database, another process holding the write lock. After
//! each, driftwatch ends in the same database as an uninterrupted run:
//! nothing lost, nothing doubled, and its log says what happened.
//!
//! Kill points are random but reproducible: the seed is printed, and
//! `DRIFTWATCH_FAULT_SEED=<seed> cargo test --test faults` replays it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::app::{TestConfig, imap_config};
use support::bin::{
    COMMITTED, Rng, assert_same_dump, committed, driftwatch, kill, progress, run_to_completion,
    spawn_logged, terminate, wait_committed, wait_log, wait_progress,
};
use support::dovecot::Dovecot;
use support::{db, vendor_mail};

/// Mixed mail: parsed, quarantined (unknown sender) and malformed, interleaved
/// so every batch holds each kind.
fn mixed_mail(acme: u32, pad: usize) -> Vec<Vec<u8>> {
    let mut mail = vendor_mail::acme_batch(acme, pad);
    mail.extend((0..acme / 20).map(vendor_mail::unknown_sender));
    mail.extend((0..acme / 20).map(vendor_mail::malformed));
    let n = mail.len();
    (0..n).map(|i| mail[(i * 37) % n].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_24_random_points_during_ingest_then_restart_equals_an_uninterrupted_run() {
    let (mut rng, seed) = Rng::from_env();
    eprintln!("fault seed {seed} (replay with DRIFTWATCH_FAULT_SEED={seed})");
    let dovecot = Dovecot::start();
    let mail = mixed_mail(600, 1500);
    let n = mail.len() as i64;
    dovecot.append("INBOX", &mail).await;
    let settings = "[ingest]\nbatch_max_messages = 30\n";
    let reference = imap_config(&dovecot, settings, "");
    run_to_completion(&reference);
    let expected = db::dump(&reference.database()).await;

    // 4 databases, each killed 6 times in a row at random moments, then run
    // to completion: 24 kill points, some stacked on an unfinished recovery.
    let mut landed = Vec::new();
    for chain in 0..4 {
        let cfg = imap_config(&dovecot, settings, "");
        // Up to ~4 batches more per run before the kill.
        let points = kill_chain(&mut rng, &cfg, &["ingest", "--once"], COMMITTED, 120, 6).await;
        landed.extend(points.into_iter().map(|p| format!("chain {chain}: {p}")));
        run_to_completion(&cfg);
        assert_same_dump(
            &db::dump(&cfg.database()).await,
            &expected,
            &format!("seed {seed}, chain {chain}"),
        );
    }
    eprintln!(
        "kill points (messages committed when killed, of {n}):\n  {}",
        landed.join("\n  ")
    );
    let mid: usize = landed
        .iter()
        .filter(|l| {
            let at: i64 = l.rsplit(' ').next().unwrap().parse().unwrap();
            at > 0 && at < n
        })
        .count();
    assert!(
        mid >= 12,
        "too few kills landed mid-ingest (seed {seed}): {landed:#?}"
    );
}

/// Runs `driftwatch ARGS` `kills` times on `cfg`'s database, SIGKILLing each
/// run once the count `progress_sql` has grown by a random 0..`step`, plus a
/// random 0-20 ms, so kills land anywhere: start-up, mid-fetch, mid-commit.
/// Returns where each kill landed ("target T +Nms -> reached"). A
/// SIGKILL-during-X test (e.g. a reconcile fix) is this plus its own
/// uninterrupted reference run and dump comparison.
async fn kill_chain(
    rng: &mut Rng,
    cfg: &TestConfig,
    args: &[&str],
    progress_sql: &str,
    step: u64,
    kills: usize,
) -> Vec<String> {
    let db_path = cfg.database();
    let mut landed = Vec::new();
    for _ in 0..kills {
        let before = progress(&db_path, progress_sql).await;
        let target = before + rng.range(0, step) as i64;
        let extra = Duration::from_micros(rng.range(0, 20_000));
        let mut child = driftwatch(cfg, args).stderr(Stdio::null()).spawn().unwrap();
        wait_progress(
            &db_path,
            progress_sql,
            target,
            &mut child,
            Duration::from_secs(60),
        )
        .await;
        tokio::time::sleep(extra).await;
        kill(&mut child);
        let at = progress(&db_path, progress_sql).await;
        landed.push(format!("target {target} +{}ms -> {at}", extra.as_millis()));
    }
    landed
}

/// A small tmpfs mounted for one test, unmounted on drop (also on panic).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at `dir`; `Err` says why it could not (not
    /// root, no CAP_SYS_ADMIN in this container, no mount(8)).
    fn mount(dir: &Path, bytes: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (needs root with CAP_SYS_ADMIN): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_gives_a_clear_error_and_serve_resumes_once_space_is_back() {
    let dovecot = Dovecot::start();
    let mail = mixed_mail(1200, 6000);
    let n = mail.len() as i64;
    dovecot.append("INBOX", &mail).await;
    let settings = "[ingest]\nbatch_max_messages = 25\n";
    let cfg = imap_config(&dovecot, settings, "");
    let data = cfg.dir.path().join("data");
    let fs = match Tmpfs::mount(&data, 128 << 20) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED full-disk test: {why}");
            return;
        }
    };
    // Leave ~3 MB: enough to create the database and run every migration
    // (their WAL alone is over 1 MB), far from enough for the ~8 MB of mail.
    let filler = data.join("filler");
    let free = fs.free_bytes();
    std::fs::write(&filler, vec![0u8; (free - (3 << 20)) as usize]).unwrap();

    let (mut child, log_path) = spawn_logged(&cfg, &["serve"], "info");
    let log = wait_log(
        &log_path,
        "database or disk is full",
        Duration::from_secs(30),
    )
    .await;
    assert!(log.contains("mail source failed; will reconnect"), "{log}");
    let stuck = committed(&cfg.database()).await;
    assert!(stuck < n, "everything fit; the disk was not full");
    assert!(
        child.try_wait().unwrap().is_none(),
        "serve keeps running on a full disk"
    );

    std::fs::remove_file(&filler).unwrap();
    let done = wait_committed(&cfg.database(), n, &mut child, Duration::from_secs(60)).await;
    let status = terminate(&mut child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(done, n, "did not resume after space came back:\n{log}");
    assert!(status.success(), "{status}\n{log}");

    let reference = imap_config(&dovecot, settings, "");
    run_to_completion(&reference);
    assert_same_dump(
        &db::dump(&cfg.database()).await,
        &db::dump(&reference.database()).await,
        "after a full disk",
    );
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_makes_ingest_once_fail_clearly_and_a_rerun_completes() {
    let dovecot = Dovecot::start();
    let mail = mixed_mail(300, 6000);
    dovecot.append("INBOX", &mail).await;
    let settings = "[ingest]\nbatch_max_messages = 25\n";
    let cfg = imap_config(&dovecot, settings, "");
    let data = cfg.dir.path().join("data");
    let fs = match Tmpfs::mount(&data, 16 << 20) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED full-disk test: {why}");
            return;
        }
    };
    let filler = data.join("filler");
    let free = fs.free_bytes();
    std::fs::write(&filler, vec![0u8; (free - (1 << 20)) as usize]).unwrap();

    let out = driftwatch(&cfg, &["ingest", "--once"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ingest on a full disk must fail");
    assert!(
        stderr.contains("database or disk is full"),
        "the error says the disk is full: {stderr}"
    );
    let partial = committed(&cfg.database()).await;
    assert!(partial < mail.len() as i64);

    std::fs::remove_file(&filler).unwrap();
    run_to_completion(&cfg);
    let reference = imap_config(&dovecot, settings, "");
    run_to_completion(&reference);
    assert_same_dump(
        &db::dump(&cfg.database()).await,
        &db::dump(&reference.database()).await,
        "ingest --once after a full disk",
    );
    drop(fs);
}

/// Holds the store's write lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the
/// advisory write lock) from this process, which is not driftwatch, for `hold`.
async fn hold_write_lock(db: &db::Db, hold: Duration) -> tokio::task::JoinHandle<()> {
    let lock = db::WriteLockHold::take(db).await;
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        lock.release().await;
    })
}

/// How each backend words "another writer held the lock too long".
fn says_locked(text: &str) -> bool {
    text.contains("database is locked") || text.contains("lock timeout")
}

fn migrate(cfg: &TestConfig) {
    let ok = driftwatch(cfg, &["migrate"]).status().unwrap().success();
    assert!(ok, "driftwatch migrate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_foreign_write_lock_makes_ingest_wait_not_fail() {
    let dovecot = Dovecot::start();
    dovecot.append("INBOX", &mixed_mail(100, 2000)).await;
    let cfg = imap_config(&dovecot, "", "");
    migrate(&cfg);
    let release = hold_write_lock(&cfg.database(), Duration::from_secs(3)).await;
    let started = Instant::now();
    run_to_completion(&cfg);
    let waited = started.elapsed();
    release.await.unwrap();
    assert!(
        waited >= Duration::from_secs(2),
        "ingest committed while another process held the write lock ({waited:?})"
    );
    let reference = imap_config(&dovecot, "", "");
    run_to_completion(&reference);
    assert_same_dump(
        &db::dump(&cfg.database()).await,
        &db::dump(&reference.database()).await,
        "after waiting for a write lock",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_foreign_write_lock_fails_ingest_clearly_and_serve_resumes() {
    let dovecot = Dovecot::start();
    let mail = mixed_mail(100, 2000);
    let n = mail.len() as i64;
    dovecot.append("INBOX", &mail).await;
    let cfg = imap_config(&dovecot, "", "");
    migrate(&cfg);

    // ingest --once: longer than the 10 s busy timeout -> a clear error, nothing half-done.
    let release = hold_write_lock(&cfg.database(), Duration::from_secs(12)).await;
    let out = driftwatch(&cfg, &["ingest", "--once"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(says_locked(&stderr), "{stderr}");
    assert_eq!(committed(&cfg.database()).await, 0);
    release.await.unwrap();

    // serve: the same lock makes the source back off and retry, then finish.
    let release = hold_write_lock(&cfg.database(), Duration::from_secs(12)).await;
    let (mut child, log_path) = spawn_logged(&cfg, &["serve"], "info");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !says_locked(&std::fs::read_to_string(&log_path).unwrap_or_default()) {
        assert!(Instant::now() < deadline, "serve never reported the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    release.await.unwrap();
    let done = wait_committed(&cfg.database(), n, &mut child, Duration::from_secs(30)).await;
    let status = terminate(&mut child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(done, n, "{log}");
    assert!(status.success(), "{status}\n{log}");
    let reference = imap_config(&dovecot, "", "");
    run_to_completion(&reference);
    assert_same_dump(
        &db::dump(&cfg.database()).await,
        &db::dump(&reference.database()).await,
        "after a long foreign write lock",
    );
}
