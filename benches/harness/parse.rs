//! Parse: match + extract on one core, per shipped vendor shape, through the
//! same `prepare` the pipeline runs (identity hashes, MIME parse, classify,
//! extract).

use std::time::Instant;

use driftwatch::ingest::prepare;
use driftwatch::model::{MessageBody, RawMessage};

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
    for shape in [Shape::Acme, Shape::Keystone, Shape::Unknown] {
        let mut rng = Rng::new(11);
        let raws: Vec<Vec<u8>> = (0..per_run)
            .map(|i| mail::message(shape, i, rng.range(2 * 1024, 30 * 1024 + 1) as usize))
            .collect();
        let bytes: usize = raws.iter().map(Vec::len).sum();
        // Warm-up run, then the measured ones.
        let mut rates = Vec::new();
        for run in 0..=opts.runs.max(5) {
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
                deltas += std::hint::black_box(prepare(&registry, m)).deltas.len();
            }
            let secs = start.elapsed().as_secs_f64();
            let expected = if shape == Shape::Unknown {
                0
            } else {
                per_run as usize
            };
            assert_eq!(
                deltas, expected,
                "{shape:?}: every message parsed as expected"
            );
            if run > 0 {
                rates.push(f64::from(per_run) / secs);
            }
        }
        let rate = median(&rates);
        table.row(
            &format!("Parse (match + extract, 1 core): {}", shape.label()),
            &format!(
                "{rate:.0} msg/s ({:.0} MB/s)",
                rate * bytes as f64 / f64::from(per_run) / 1e6
            ),
            "",
            "",
            "",
        );
    }
}
