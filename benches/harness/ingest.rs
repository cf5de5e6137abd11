//! Ingest from a real Dovecot: driftwatch end to end, beside a bare IMAP
//! fetch of the same messages (the limit) and a Python imaplib + email +
//! sqlite3 script doing the same extraction (what a user would write).
//! Also the backlog: peak memory while ingesting a large mailbox.

use std::path::Path;
use std::time::Instant;

use futures_util::TryStreamExt;

use crate::mail::Mix;
use crate::measure::{self, median};
use crate::support::app::{TestConfig, imap_config};
use crate::support::db;
use crate::support::dovecot::Dovecot;
use crate::table::Table;
use crate::{Opts, mail};

/// Messages per FETCH in the bare client and the Python script: driftwatch's
/// default `batch_max_messages`.
const BATCH: usize = 200;

pub async fn run(opts: &Opts, table: &mut Table) {
    for mix in [Mix::DeltaHeavy, Mix::Light] {
        run_mix(opts, table, mix).await;
    }
}

/// End to end on one mix: driftwatch, the bare fetch and the Python script,
/// interleaved in each run so all three see the same machine state.
async fn run_mix(opts: &Opts, table: &mut Table, mix: Mix) {
    let dovecot = Dovecot::start();
    let n = opts.messages;
    let messages = mix.messages(n, 6);
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let t = Instant::now();
    let uids = dovecot.append("INBOX", &messages).await;
    drop(messages);
    eprintln!(
        "{}: appended {n} messages ({:.0} MB) in {:.1} s",
        mix.label(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let (mut bare, mut dw, mut dw_mem, mut py, mut py_mem) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut deltas = 0;
    for run in 0..opts.runs {
        // Alternate the order so a noisy neighbour does not always hit the same one.
        let order: [u8; 3] = if run % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            match which {
                0 => bare.push(bare_fetch(&dovecot, &uids).await),
                1 => {
                    let cfg = imap_config(&dovecot, "", "");
                    let (s, m) = driftwatch_once(&cfg, u64::from(n)).await;
                    deltas = count(&cfg, "SELECT count(*) FROM deltas").await;
                    dw.push(s);
                    dw_mem.push(m);
                }
                // Python has its own SQLite file: it runs in the SQLite round only.
                _ if crate::support::db::on_postgres() || !python_available(opts) => {}
                _ => {
                    let (s, m) = python_once(opts, &dovecot, u64::from(n));
                    py.push(s);
                    py_mem.push(m);
                }
            }
        }
        eprintln!(
            "run {run}: bare {:.2} s, driftwatch {:.2} s, python {:.2} s",
            bare[run],
            dw[run],
            py.get(run).copied().unwrap_or(f64::NAN)
        );
    }
    let rate = |secs: f64| f64::from(n) / secs;
    let (b, d, p) = (rate(median(&bare)), rate(median(&dw)), rate(median(&py)));
    let per_delta = deltas as f64 / median(&dw);
    // Ratios are taken within each run (same machine state), then the median.
    let per_run = |other: &[f64]| -> f64 {
        median(
            &other
                .iter()
                .zip(&dw)
                .map(|(o, d)| o / d)
                .collect::<Vec<_>>(),
        )
    };
    let (vs_bare, vs_python) = (per_run(&bare), per_run(&py));
    let target = match mix {
        Mix::Light => ">= 60%",
        Mix::DeltaHeavy => ">= 50%",
    };
    let backend = if crate::support::db::on_postgres() {
        ", into PostgreSQL"
    } else {
        ""
    };
    table.row(
        &format!(
            "Ingest {n} msgs, {}, {:.0} MB, {deltas} deltas, from Dovecot, end to end{backend}",
            mix.label(),
            bytes as f64 / 1e6
        ),
        &format!(
            "{d:.0} msg/s ({per_delta:.0} deltas/s), peak {:.0} MB",
            median(&dw_mem)
        ),
        &format!("bare IMAP fetch, batches of {BATCH}: {b:.0} msg/s"),
        &format!("{:.0}% of bare fetch", 100.0 * vs_bare),
        target,
    );
    if py.is_empty() {
        return;
    }
    table.row(
        "  same, vs what a user would write",
        &format!("{d:.0} msg/s"),
        &format!(
            "Python imaplib+email+sqlite3: {p:.0} msg/s, peak {:.0} MB",
            median(&py_mem)
        ),
        &format!("{vs_python:.1}x"),
        ">= 10x",
    );
}

fn python_available(opts: &Opts) -> bool {
    std::process::Command::new(&opts.python)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A client that only fetches the messages in batches and throws them away.
/// Returns seconds.
async fn bare_fetch(dovecot: &Dovecot, uids: &[u32]) -> f64 {
    let start = Instant::now();
    let mut session = dovecot.connect_tls().await;
    session.select("INBOX").await.unwrap();
    let mut got = 0usize;
    for chunk in uids.chunks(BATCH) {
        let set = format!("{}:{}", chunk[0], chunk[chunk.len() - 1]);
        let mut stream = session.uid_fetch(&set, "(UID BODY.PEEK[])").await.unwrap();
        while let Some(f) = stream.try_next().await.unwrap() {
            got += usize::from(f.body().is_some());
        }
    }
    let _ = session.logout().await;
    assert_eq!(got, uids.len(), "bare fetch got every message");
    start.elapsed().as_secs_f64()
}

/// `driftwatch ingest --once` (release binary) into a fresh database.
/// Returns (seconds, peak MB).
pub async fn driftwatch_once(cfg: &TestConfig, expect: u64) -> (f64, f64) {
    // DRIFTWATCH_BENCH_WRAP="perf record -g -o /tmp/perf.data --" profiles
    // driftwatch inside the benchmark (the figures then include the profiler).
    let wrap = std::env::var("DRIFTWATCH_BENCH_WRAP").unwrap_or_default();
    let mut argv: Vec<&str> = wrap.split_whitespace().collect();
    argv.extend([
        env!("CARGO_BIN_EXE_driftwatch"),
        "--config",
        path(&cfg.path),
        "ingest",
        "--once",
    ]);
    let m = measure::run(argv[0], &argv[1..], &[("DRIFTWATCH_LOG", "warn")]);
    let got = count(cfg, "SELECT count(*) FROM messages").await;
    assert_eq!(got, expect, "driftwatch archived every message");
    (m.secs, m.peak_mb)
}

pub async fn count(cfg: &TestConfig, sql: &str) -> u64 {
    db::count(&cfg.database(), sql).await as u64
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// bench/python/ingest.py into a fresh SQLite file. Returns (seconds, peak MB).
fn python_once(opts: &Opts, dovecot: &Dovecot, expect: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, dovecot.password()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/ingest.py");
    let port = dovecot.imaps_port().to_string();
    let ca = dovecot.ca_file();
    let dbf = dir.path().join("py.db");
    let m = measure::run(
        &opts.python,
        &[
            path(&script),
            "--port",
            &port,
            "--ca-file",
            path(&ca),
            "--user",
            dovecot.user(),
            "--password-file",
            path(&pw),
            "--db",
            path(&dbf),
            "--batch",
            &BATCH.to_string(),
        ],
        &[],
    );
    let out: serde_json::Value = serde_json::from_str(m.stdout.trim()).unwrap();
    assert_eq!(
        out["messages"].as_u64(),
        Some(expect),
        "python fetched every message"
    );
    (m.secs, m.peak_mb)
}

/// Peak memory while ingesting a large mailbox (the backlog after an outage
/// or on first start).
pub async fn backlog(opts: &Opts, table: &mut Table) {
    let dovecot = Dovecot::start();
    let n = opts.backlog;
    let t = Instant::now();
    // Generated and appended in slices so the harness itself stays small;
    // the delta-heavy mix, each slice with its own seed (distinct Message-IDs).
    let mut bytes = 0usize;
    let mut start = 0u32;
    while start < n {
        let end = (start + 5_000).min(n);
        let slice = mail::heavy_mix(end - start, 1000 + u64::from(start));
        bytes += slice.iter().map(Vec::len).sum::<usize>();
        dovecot.append("Backlog", &slice).await;
        start = end;
    }
    eprintln!(
        "backlog: appended {n} messages ({:.0} MB) in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let cfg = imap_config(&dovecot, "", "folders = [\"Backlog\"]\n");
    let (secs, peak) = driftwatch_once(&cfg, u64::from(n)).await;
    table.row(
        &format!(
            "Backlog: ingest a {n}-message mailbox, delta-heavy mix ({:.1} GB)",
            bytes as f64 / 1e9
        ),
        &format!("peak {peak:.0} MB, {:.0} msg/s", f64::from(n) / secs),
        "",
        "",
        "<= 100 MB",
    );
}
