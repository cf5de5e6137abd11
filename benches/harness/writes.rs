//! The store's side alone, on the delta-heavy mix with the database on disk
//! (the temp dir under /tmp, not tmpfs): the write path (archive, locations,
//! deltas, view, checkpoint: `Store::commit_batches`, grouped as on a backlog) in deltas/s with parsing
//! done beforehand, and `driftwatch reparse` of the archive when nothing
//! changed and after a rule change that touches few orders.

use std::time::Instant;

use driftwatch::ingest::prepare;
use driftwatch::model::{MessageBody, RawMessage};
use driftwatch::parse::RegistryOptions;
use driftwatch::store::{Checkpoint, Disposition, IngestBatch, Store};

use crate::Opts;
use crate::ingest::{count, driftwatch_once, path};
use crate::mail::{self, PINNACLE_RARE_STATUS};
use crate::measure::{self, median};
use crate::support::app::{copy_shipped_parsers, imap_config, parsers_dir};
use crate::support::dovecot::Dovecot;
use crate::table::Table;

/// Messages per batch: driftwatch's default `batch_max_messages`.
const BATCH: usize = 200;
/// Batches per transaction when a backlog queues up, as the IMAP committer
/// groups them (`GROUP_BATCHES` in src/ingest/imap.rs).
const GROUP: usize = 2;

pub async fn write_path(opts: &Opts, table: &mut Table) {
    let n = opts.messages;
    let registry = driftwatch::parse::load_dir(&parsers_dir(), RegistryOptions::default())
        .expect("shipped parsers load");
    let raws = mail::heavy_mix(n, 6);
    let (mut rates, mut single) = (Vec::new(), Vec::new());
    let mut deltas = 0usize;
    for run in 0..opts.runs {
        let batches: Vec<IngestBatch> = raws
            .chunks(BATCH)
            .enumerate()
            .map(|(b, chunk)| IngestBatch {
                source: "bench".into(),
                folder: "INBOX".into(),
                checkpoint: Some(Checkpoint {
                    uidvalidity: 1,
                    last_uid: ((b + 1) * BATCH) as u32,
                }),
                messages: chunk
                    .iter()
                    .enumerate()
                    .map(|(i, raw)| {
                        let uid = (b * BATCH + i + 1) as u32;
                        let m = prepare(
                            &registry,
                            RawMessage {
                                location: format!("1/{uid}"),
                                uid,
                                body: MessageBody::Full(raw.clone()),
                                internal_date: None,
                            },
                        );
                        assert_eq!(
                            m.disposition,
                            Disposition::Parsed,
                            "every benchmark mail parses: {:?}",
                            m.reason
                        );
                        m
                    })
                    .collect(),
            })
            .collect();
        deltas = batches
            .iter()
            .flat_map(|b| &b.messages)
            .map(|m| m.deltas.len())
            .sum();
        // Alternating, so both see the same machine: one batch per
        // transaction (a mailbox that keeps up), then grouped (a backlog).
        for (group, rates) in [(1, &mut single), (GROUP, &mut rates)] {
            let secs = commit_all(&batches, group).await;
            eprintln!(
                "write path run {run}, {group} batch(es)/transaction: {deltas} deltas in {secs:.2} s"
            );
            rates.push(deltas as f64 / secs);
        }
    }
    table.row(
        &format!(
            "Write path only: {n} msgs, {deltas} deltas (delta-heavy), archive+deltas+view, on disk"
        ),
        &format!("{:.0} deltas/s", median(&rates)),
        &format!(
            "{:.0} deltas/s one transaction per 200-msg batch; grouped: {GROUP} batches per transaction, as the IMAP committer on a backlog",
            median(&single)
        ),
        &format!("{:.2}x", median(&rates) / median(&single)),
        ">= 100,000 deltas/s",
    );
}

/// Seconds to commit the batches into a new database on disk, `group`
/// batches per transaction.
async fn commit_all(batches: &[IngestBatch], group: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("w.db")).await.unwrap();
    let rules = driftwatch::store::RuleHashes::default();
    let start = Instant::now();
    for chunk in batches.chunks(group) {
        let chunk: Vec<_> = chunk.iter().map(|b| (b, &rules)).collect();
        store.commit_batches(&chunk).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    store.close().await;
    secs
}

/// `driftwatch reparse` over the archive of an ingested delta-heavy mailbox:
/// once with the rules unchanged, once after remapping one rare status word
/// (a rule change that touches few orders).
pub async fn reparse(opts: &Opts, table: &mut Table) {
    let n = opts.messages;
    let dovecot = Dovecot::start();
    dovecot.append("INBOX", &mail::heavy_mix(n, 6)).await;
    let cfg = imap_config(&dovecot, "", "");
    driftwatch_once(&cfg, u64::from(n)).await;
    let deltas = count(&cfg, "SELECT count(*) FROM deltas").await;

    let run = |label: &str| {
        let m = measure::run(
            env!("CARGO_BIN_EXE_driftwatch"),
            &["--config", path(&cfg.path), "reparse"],
            &[("DRIFTWATCH_LOG", "warn")],
        );
        let summary: Vec<&str> = m.stdout.lines().filter(|l| !l.starts_with("  ")).collect();
        eprintln!(
            "reparse ({label}): {:.2} s: {}",
            m.secs,
            summary.join(" / ")
        );
        (m.secs, m.peak_mb, m.stdout)
    };
    let (same, same_mb, out) = run("nothing changed");
    assert!(
        out.contains("; 0 changed"),
        "unchanged rules change nothing: {out}"
    );

    // The rule change: Pinnacle's rare "Pending Consumer Verification" now
    // means in_progress (was on_hold), with the version bumped.
    let rules = cfg.dir.path().join("parsers");
    copy_shipped_parsers(&rules);
    let file = rules.join("pinnacle-credit.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let changed = text.replace("version = 1", "version = 2").replace(
        &format!("\"{PINNACLE_RARE_STATUS}\" = \"on_hold\""),
        &format!("\"{PINNACLE_RARE_STATUS}\" = \"in_progress\""),
    );
    assert_ne!(text, changed, "the rule change applies");
    std::fs::write(&file, changed).unwrap();
    let config = std::fs::read_to_string(&cfg.path).unwrap().replace(
        &format!("parsers_dir = \"{}\"", parsers_dir().display()),
        &format!("parsers_dir = \"{}\"", rules.display()),
    );
    std::fs::write(&cfg.path, config).unwrap();
    let (small, small_mb, out) = run("one status remapped");
    let orders = out
        .lines()
        .find_map(|l| l.strip_prefix("orders whose view changed: "))
        .unwrap_or("?")
        .to_string();

    let rate = |s: f64| f64::from(n) / s;
    table.row(
        &format!("Reparse {n} archived msgs ({deltas} deltas), rules unchanged"),
        &format!("{:.0} msg/s, peak {same_mb:.0} MB", rate(same)),
        "",
        "",
        ">= 20,000 msg/s",
    );
    table.row(
        &format!("Reparse {n} archived msgs, one rare status remapped ({orders} orders change)"),
        &format!("{:.0} msg/s, peak {small_mb:.0} MB", rate(small)),
        "",
        "",
        ">= 20,000 msg/s",
    );
}
