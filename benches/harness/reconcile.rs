//! Reconcile N orders with 1% drift from a CSV export, beside datacompy
//! (pandas) comparing the same export with the same local rows dumped to CSV.
//!
//! The driftwatch side waits for the reconcile library API
//! (`driftwatch::reconcile::run_once`); it is the one function
//! [`driftwatch_reconcile`] below. Until then the table shows datacompy's
//! figures and says the driftwatch figure is pending.

use std::io::Write;
use std::path::Path;

use crate::Opts;
use crate::measure::{self, median};
use crate::support::bin::Rng;
use crate::table::Table;

const STATUSES: [&str; 5] = [
    "ordered",
    "accepted",
    "scheduled",
    "in_progress",
    "completed",
];

/// A vendor export of `n` orders and the local view of the same orders with
/// `drift_per_mille`/1000 of them drifted (a third each: status mismatch,
/// missing locally, missing at the vendor). Returns (export, local) paths.
pub fn write_csvs(
    dir: &Path,
    n: u64,
    drift_per_mille: u64,
    seed: u64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let export = dir.join(format!("export-{n}.csv"));
    let local = dir.join(format!("local-{n}.csv"));
    let mut e = std::io::BufWriter::new(std::fs::File::create(&export).unwrap());
    let mut l = std::io::BufWriter::new(std::fs::File::create(&local).unwrap());
    writeln!(e, "order_ref,status,updated_at,fee").unwrap();
    writeln!(l, "order_ref,status,updated_at,fee").unwrap();
    let mut rng = Rng::new(seed);
    for i in 0..n {
        let status = STATUSES[(i % 5) as usize];
        let row = format!(
            "A-{:07},{status},2026-11-{:02}T{:02}:{:02}:00Z,{}.00",
            i,
            1 + i % 28,
            i % 24,
            i % 60,
            300 + i % 400
        );
        let drift = rng.range(0, 1000) < drift_per_mille;
        match (drift, rng.range(0, 3)) {
            (false, _) => {
                writeln!(e, "{row}").unwrap();
                writeln!(l, "{row}").unwrap();
            }
            (true, 0) => {
                writeln!(e, "{row}").unwrap();
                let other = STATUSES[((i + 1) % 5) as usize];
                writeln!(l, "{}", row.replacen(status, other, 1)).unwrap();
            }
            (true, 1) => writeln!(e, "{row}").unwrap(),
            (true, _) => writeln!(l, "{row}").unwrap(),
        }
    }
    (export, local)
}

/// driftwatch reconciling `export` against a database holding `local`:
/// (seconds, peak MB). `None` until the reconcile API lands on this branch.
fn driftwatch_reconcile(_export: &Path, _local: &Path) -> Option<(f64, f64)> {
    None
}

pub async fn run(opts: &Opts, table: &mut Table) {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/reconcile_datacompy.py");
    let mut sizes = vec![opts.orders];
    if opts.orders > 100_000 {
        sizes.push(100_000);
    }
    for n in sizes {
        let (export, local) = write_csvs(dir.path(), n, 10, 3);
        let (mut secs, mut mem) = (vec![], vec![]);
        for _ in 0..opts.runs {
            let m = measure::run(
                &opts.python,
                &[
                    script.to_str().unwrap(),
                    export.to_str().unwrap(),
                    local.to_str().unwrap(),
                ],
                &[],
            );
            secs.push(m.secs);
            mem.push(m.peak_mb);
            eprintln!(
                "datacompy {n}: {:.2} s, {:.0} MB: {}",
                m.secs,
                m.peak_mb,
                m.stdout.trim()
            );
        }
        let py = format!(
            "datacompy: {:.2} s, peak {:.0} MB",
            median(&secs),
            median(&mem)
        );
        let (dw, ratio) = match driftwatch_reconcile(&export, &local) {
            Some((s, m)) => (
                format!("{s:.2} s, peak {m:.0} MB"),
                format!("{:.1}x", median(&secs) / s),
            ),
            None => (
                "pending (reconcile API not merged)".to_string(),
                String::new(),
            ),
        };
        table.row(
            &format!("Reconcile {n} orders, 1% drift, CSV"),
            &dw,
            &py,
            &ratio,
            if n >= 1_000_000 {
                "<= 2 s, <= 256 MB, >= 5x"
            } else {
                "cost growth"
            },
        );
    }
    if driftwatch_reconcile(Path::new(""), Path::new("")).is_none() {
        table.note(
            "Reconcile: driftwatch's figures wait for the reconcile library API; datacompy's are measured now."
                .to_string(),
        );
    }
    table.row(
        &format!("Reconcile an unchanged export ({} orders)", opts.orders),
        "pending (reconcile API not merged)",
        "",
        "",
        "<= 100 ms",
    );
}
