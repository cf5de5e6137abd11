//! Parse on one core, per shipped vendor shape, in two rows each:
//!
//! - **Parse (match + extract, 1 core)**, the headline and what issue 16's
//!   targets mean: the MIME parse and `Registry::classify` (sender,
//!   recognition, ignore rules, extraction), nothing else.
//! - **Prepare (parse + dedupe hash + zstd pack, 1 core)**: the pipeline's
//!   whole per-message `prepare`, so the identity hash and the archive's
//!   compression, which every ingested message also pays, stay in the table.
//!
//! Both rows time the same messages in the same runs, alternating, so load
//! from other processes falls on both alike.

use std::time::Instant;

use driftwatch::ingest::prepare;
use driftwatch::model::{MessageBody, RawMessage};
use driftwatch::parse::{Mail, Outcome, Registry};

use crate::Opts;
use crate::mail::{self, Shape};
use crate::measure::median;
use crate::support::app::parsers_dir;
use crate::support::bin::Rng;
use crate::table::Table;

pub async fn run(opts: &Opts, table: &mut Table) {
    let per_run = opts.parse_messages;
    let registry = driftwatch::parse::load_dir(
        &parsers_dir(),
        driftwatch::parse::RegistryOptions::default(),
    )
    .expect("shipped parsers load");
    let mut prepare_rows = Vec::new();
    for shape in [Shape::Acme, Shape::Keystone, Shape::Unknown] {
        let mut rng = Rng::new(11);
        let raws: Vec<Vec<u8>> = (0..per_run)
            .map(|i| mail::message(shape, i, rng.range(2 * 1024, 30 * 1024 + 1) as usize))
            .collect();
        let bytes: usize = raws.iter().map(Vec::len).sum();
        let expected = if shape == Shape::Unknown {
            0
        } else {
            per_run as usize
        };
        // Warm-up run, then the measured ones.
        let (mut parse_rates, mut prepare_rates) = (Vec::new(), Vec::new());
        for run in 0..=opts.runs.max(5) {
            let (deltas, secs) = time_parse(&registry, &raws);
            assert_eq!(deltas, expected, "{shape:?}: every message parsed");
            let parse_rate = f64::from(per_run) / secs;
            let (deltas, secs) = time_prepare(&registry, &raws);
            assert_eq!(deltas, expected, "{shape:?}: every message prepared");
            if run > 0 {
                parse_rates.push(parse_rate);
                prepare_rates.push(f64::from(per_run) / secs);
            }
        }
        let per_msg = bytes as f64 / f64::from(per_run) / 1e6;
        let (target, label) = match shape {
            Shape::Acme => ("≥ 50,000 msg/s (issue 16)", shape.label()),
            Shape::Keystone => ("≥ 25,000 msg/s (issue 16)", shape.label()),
            Shape::Unknown => ("", shape.label()),
        };
        let rate = median(&parse_rates);
        table.row(
            &format!("Parse (match + extract, 1 core): {label}"),
            &format!("{rate:.0} msg/s ({:.0} MB/s)", rate * per_msg),
            "",
            "",
            target,
        );
        let rate = median(&prepare_rates);
        prepare_rows.push((
            format!("Prepare (parse + dedupe hash + zstd pack, 1 core): {label}"),
            format!("{rate:.0} msg/s ({:.0} MB/s)", rate * per_msg),
        ));
    }
    corpus_row(opts, table);
    // The parse rows first (the targets), then the whole `prepare` per shape.
    for (name, figure) in prepare_rows {
        table.row(&name, &figure, "", "", "");
    }
}

/// Mail nobody here wrote: every message with an HTML part in the public
/// corpora beside the repository (`../shared/corpus`) and in `fixtures/`
/// and `demo/`, MIME-parsed and its HTML laid out as text (no rule file
/// claims these senders, so classifying would stop at the sender).
fn corpus_row(opts: &Opts, table: &mut Table) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("../shared/corpus");
    let label = "Parse (MIME + HTML to text, 1 core): real mail with HTML in ../shared/corpus, fixtures/, demo/";
    if !corpus.is_dir() {
        table.row(
            label,
            &format!("not measured: {} is absent", corpus.display()),
            "",
            "",
            "",
        );
        return;
    }
    fn walk(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Ok(b) = std::fs::read(&p)
                && b.windows(9).any(|w| w.eq_ignore_ascii_case(b"text/html"))
            {
                out.push(b);
            }
        }
    }
    let mut raws = Vec::new();
    for dir in [corpus, root.join("fixtures"), root.join("demo")] {
        walk(&dir, &mut raws);
    }
    let bytes: usize = raws.iter().map(Vec::len).sum();
    // Passes enough to take about as long as a shape's run.
    let passes = (opts.parse_messages as usize * 16 * 1024 / bytes.max(1)).max(1);
    let mut rates = Vec::new();
    for run in 0..=opts.runs.max(5) {
        let start = Instant::now();
        let mut chars = 0usize;
        for _ in 0..passes {
            for raw in &raws {
                if let Some(mail) = Mail::parse(std::hint::black_box(raw), None) {
                    chars += std::hint::black_box(mail.html_text()).len();
                }
            }
        }
        assert!(chars > 0, "the corpus mail has HTML text");
        let secs = start.elapsed().as_secs_f64();
        if run > 0 {
            rates.push((passes * raws.len()) as f64 / secs);
        }
    }
    let rate = median(&rates);
    let per_msg = bytes as f64 / raws.len() as f64 / 1e6;
    table.row(
        &format!("{label} ({} mails, {} KB)", raws.len(), bytes / 1024),
        &format!("{rate:.0} msg/s ({:.0} MB/s)", rate * per_msg),
        "",
        "",
        "",
    );
}

/// MIME parse and classify each message; the deltas found and the seconds.
fn time_parse(registry: &Registry, raws: &[Vec<u8>]) -> (usize, f64) {
    let start = Instant::now();
    let mut deltas = 0usize;
    for raw in raws {
        if let Some(mail) = Mail::parse(std::hint::black_box(raw), None)
            && let Outcome::Parsed { deltas: d, .. } = registry.classify(&mail)
        {
            deltas += std::hint::black_box(d).len();
        }
    }
    (deltas, start.elapsed().as_secs_f64())
}

/// The pipeline's whole `prepare` for each message; the deltas and the
/// seconds. The messages are copied (as fetched) before the clock starts.
fn time_prepare(registry: &Registry, raws: &[Vec<u8>]) -> (usize, f64) {
    let batch: Vec<RawMessage> = raws
        .iter()
        .enumerate()
        .map(|(i, r)| RawMessage {
            location: format!("1/{i}"),
            uid: i as u32,
            body: MessageBody::Full(r.clone()),
            internal_date: None,
        })
        .collect();
    let start = Instant::now();
    let mut deltas = 0usize;
    for m in batch {
        deltas += std::hint::black_box(prepare(registry, m)).deltas.len();
    }
    (deltas, start.elapsed().as_secs_f64())
}
