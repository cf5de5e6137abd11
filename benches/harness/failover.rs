//! Lease failover: how long mail waits when the instance syncing a folder
//! dies or hangs, with a second `serve` on the same database ready to take
//! over. The time runs from the signal to the first batch the survivor
//! commits.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Opts;
use crate::measure::median;
use crate::support::app::{TestConfig, imap_config};
use crate::support::bin::{committed, driftwatch, kill, terminate};
use crate::support::db;
use crate::support::dovecot::Dovecot;
use crate::support::vendor_mail;
use crate::table::Table;

const MESSAGES: u32 = 4_000;

fn serve(cfg: &TestConfig) -> Child {
    driftwatch(cfg, &["serve"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// One failover: A syncs a backlog; B waits; A gets `signal` mid-sync.
/// Returns seconds until B committed, or `None` if A finished first.
async fn once(dovecot: &Dovecot, signal: &str) -> Option<f64> {
    let settings = "[ingest]\nbatch_max_messages = 50\n";
    let a = imap_config(dovecot, settings, "");
    let shared = format!("database = \"{}\"\n{settings}", a.database().config_value());
    let b = imap_config(dovecot, &shared, "");
    let db = a.database();
    let mut first = serve(&a);
    while committed(&db).await < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut second = serve(&b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = committed(&db).await;
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(first.id().to_string())
        .status()
        .unwrap();
    let t0 = Instant::now();
    let before = before.max(committed(&db).await);
    let done = loop {
        let now = committed(&db).await;
        if now >= i64::from(MESSAGES) && before >= i64::from(MESSAGES) {
            break None;
        }
        if now > before {
            break Some(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > Duration::from_secs(180) {
            panic!("no instance committed within 180 s of {signal} to the syncing one");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    kill(&mut first);
    terminate(&mut second);
    done
}

pub async fn run(opts: &Opts, table: &mut Table) {
    let dovecot = Dovecot::start();
    dovecot
        .append("INBOX", &vendor_mail::acme_batch(MESSAGES, 3000))
        .await;
    let pg = db::on_postgres();
    let backend = if pg { "PostgreSQL" } else { "SQLite" };
    let mut cases = vec![(
        "KILL",
        "dies (SIGKILL; same host: seen dead at once)",
        "≤ 3 s",
    )];
    if pg {
        // SQLite's write lock has no server to break it: a hung process
        // holding it stops every writer until someone kills it.
        cases.push((
            "STOP",
            "hangs (SIGSTOP; as a host that stopped answering)",
            "≤ 60 s (lease 30 s; a hung write transaction is ended at 60 s)",
        ));
    }
    for (signal, what, target) in cases {
        let runs = if signal == "STOP" { 1 } else { opts.runs };
        let mut secs = Vec::new();
        for _ in 0..runs {
            if let Some(s) = once(&dovecot, signal).await {
                eprintln!("failover after {signal} ({backend}): {s:.2} s");
                secs.push(s);
            }
        }
        if secs.is_empty() {
            table.note(format!(
                "Failover after {signal} ({backend}): the first instance finished before the signal; no figure."
            ));
            continue;
        }
        table.row(
            &format!(
                "Failover, {backend}: the instance syncing a {MESSAGES}-message folder {what}; until a second `serve` commits"
            ),
            &format!("{:.1} s", median(&secs)),
            "",
            "",
            target,
        );
    }
}
