//! Reconcile N orders with 1% drift from a CSV export, beside datacompy
//! (pandas) comparing the same export with the same local rows dumped to CSV.
//!
//! Both sides are whole processes timed from outside, with their peak RSS:
//! `driftwatch reconcile` as a user types it (opening the database, the run,
//! the commit) and `python3 reconcile_datacompy.py` (importing pandas,
//! reading both CSVs, comparing). Both compare the same three columns:
//! status, updated_at and fee.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use driftwatch::model::{DeltaDraft, DeltaSource, Status, TimeSource};
use driftwatch::store::Store;

use crate::Opts;
use crate::measure::{self, Measured, median};
use crate::support::bin::Rng;
use crate::support::db::{self, Db};
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
pub fn write_csvs(dir: &Path, n: u64, drift_per_mille: u64, seed: u64) -> (PathBuf, PathBuf) {
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
    e.flush().unwrap();
    l.flush().unwrap();
    (export, local)
}

/// The database a user would have: every local row told by one email delta,
/// long before the export.
async fn build_db(db: &Db, local: &Path) {
    let store = Store::connect(&db.location()).await.unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut rdr = csv::Reader::from_path(local).unwrap();
    let mut batch = Vec::with_capacity(50_000);
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let fee: f64 = rec[3].parse().unwrap();
        batch.push((
            DeltaDraft {
                vendor: "bench".into(),
                order_ref: rec[0].to_string(),
                status: Some(rec[1].parse::<Status>().unwrap()),
                vendor_status: None,
                fields: [
                    ("updated_at".to_string(), serde_json::json!(&rec[2])),
                    ("fee".to_string(), serde_json::json!(fee)),
                ]
                .into(),
                event_time: t0,
                time_source: TimeSource::Vendor,
            },
            t0,
        ));
        if batch.len() == 50_000 {
            store
                .append_deltas_at(DeltaSource::Email, &batch)
                .await
                .unwrap();
            batch.clear();
        }
    }
    store
        .append_deltas_at(DeltaSource::Email, &batch)
        .await
        .unwrap();
    store.close().await;
}

fn write_config(dir: &Path, db: &Db) -> PathBuf {
    let parsers = Path::new(env!("CARGO_MANIFEST_DIR")).join("parsers");
    let path = dir.join("driftwatch.toml");
    std::fs::write(
        &path,
        format!(
            r#"data_dir = "{dir}"
database = "{db}"
parsers_dir = "{parsers}"

[[vendor]]
name = "bench"
policy = "fix"
# The export is given with --file; it lists every order.
[vendor.export]
kind = "file"
path = "export.csv"
complete = true
[vendor.mapping]
key = "order_ref"
status = "status"
[vendor.mapping.fields.updated_at]
column = "updated_at"
type = "datetime"
[vendor.mapping.fields.fee]
column = "fee"
type = "money"
tolerance = 0.01
[vendor.status_map]
ordered = "ordered"
accepted = "accepted"
scheduled = "scheduled"
in_progress = "in_progress"
completed = "completed"
[vendor.guard]
max_drift_pct = 50
max_fixes = 10000000
"#,
            dir = dir.display(),
            db = db.config_value(),
            parsers = parsers.display()
        ),
    )
    .unwrap();
    path
}

fn reconcile(cfg: &Path, export: &Path, extra: &[&str]) -> Measured {
    let mut args = vec![
        "--config",
        cfg.to_str().unwrap(),
        "reconcile",
        "--vendor",
        "bench",
        "--file",
        export.to_str().unwrap(),
    ];
    args.extend(extra);
    measure::run(
        env!("CARGO_BIN_EXE_driftwatch"),
        &args,
        &[("DRIFTWATCH_LOG", "warn")],
    )
}

/// Median seconds and MB of a series, as the table shows it.
fn figure(ms: &[Measured]) -> (f64, f64) {
    let secs: Vec<f64> = ms.iter().map(|m| m.secs).collect();
    let mb: Vec<f64> = ms.iter().map(|m| m.peak_mb).collect();
    (median(&secs), median(&mb))
}

fn fmt_time(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// The line of driftwatch's own summary that names what it found, so a wrong
/// run (refused, or nothing drifted) shows in the log, not only in the timing.
fn summary_line(m: &Measured) -> String {
    m.stdout
        .lines()
        .filter(|l| l.starts_with("reconcile") || l.contains("drift"))
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ")
}

pub async fn run(opts: &Opts, table: &mut Table) {
    // DRIFTWATCH_BENCH_DIR keeps the generated data (and reuses it), for
    // profiling one side by hand: `perf record target/release/driftwatch
    // --config DIR/1000000/driftwatch.toml reconcile --vendor bench --file ...`.
    let tmp = tempfile::tempdir().unwrap();
    let root = std::env::var_os("DRIFTWATCH_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/reconcile_datacompy.py");
    // The Python side has no database: it runs in the SQLite round only.
    let python_ok = !db::on_postgres()
        && std::process::Command::new(&opts.python)
            .args(["-c", "import pandas, datacompy"])
            .status()
            .is_ok_and(|s| s.success());
    if !python_ok && !db::on_postgres() {
        table.note(format!(
            "Reconcile: `{} -c 'import pandas, datacompy'` failed, so datacompy was not run (./scripts/bench.sh installs it).",
            opts.python
        ));
    }
    let mut sizes = vec![opts.orders];
    if opts.orders > 100_000 {
        sizes.push(100_000);
    }
    for n in sizes {
        let sub = root.join(n.to_string());
        std::fs::create_dir_all(&sub).unwrap();
        let (export, local) = write_csvs(&sub, n, 10, 3);
        // SQLite: a base file kept in DRIFTWATCH_BENCH_DIR between runs;
        // PostgreSQL (the second round of ./scripts/bench.sh): a template
        // database built once per run.
        let base = if db::on_postgres() {
            let base = Db::Postgres(db::fresh_postgres_database());
            eprintln!("building a PostgreSQL database of {n} orders…");
            build_db(&base, &local).await;
            base
        } else {
            let base = sub.join("base.db");
            if !base.exists() {
                eprintln!("building a database of {n} orders…");
                let building = sub.join("building.db");
                build_db(&Db::Sqlite(building.clone()), &local).await;
                std::fs::rename(&building, &base).unwrap();
            }
            Db::Sqlite(base)
        };
        let db = base.save_copy("run");
        let cfg = write_config(&sub, &db);
        let backend = if db::on_postgres() {
            ", PostgreSQL"
        } else {
            ""
        };

        let (mut py, mut dry, mut fix, mut unchanged, mut ratios) =
            (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..opts.runs {
            db.restore(&base);
            let d = reconcile(&cfg, &export, &["--dry-run"]);
            eprintln!(
                "driftwatch --dry-run {n}: {:.2} s, {:.0} MB: {}",
                d.secs,
                d.peak_mb,
                summary_line(&d)
            );
            let f = reconcile(&cfg, &export, &[]);
            eprintln!(
                "driftwatch fix {n}: {:.2} s, {:.0} MB: {}",
                f.secs,
                f.peak_mb,
                summary_line(&f)
            );
            assert!(
                f.stdout.contains(": ok"),
                "the fix run did not end ok:\n{}",
                f.stdout
            );
            let u = reconcile(&cfg, &export, &[]);
            assert!(
                u.stdout.contains("unchanged"),
                "the second run on the same export was not `unchanged`:\n{}",
                u.stdout
            );
            eprintln!(
                "driftwatch unchanged {n}: {:.3} s, {:.0} MB",
                u.secs, u.peak_mb
            );
            if python_ok {
                let p = measure::run(
                    &opts.python,
                    &[
                        script.to_str().unwrap(),
                        export.to_str().unwrap(),
                        local.to_str().unwrap(),
                    ],
                    &[],
                );
                eprintln!(
                    "datacompy {n}: {:.2} s, {:.0} MB: {}",
                    p.secs,
                    p.peak_mb,
                    p.stdout.trim()
                );
                ratios.push((p.secs / d.secs, p.secs / f.secs));
                py.push(p);
            }
            dry.push(d);
            fix.push(f);
            unchanged.push(u);
        }
        let (ds, dm) = figure(&dry);
        let (fs, fm) = figure(&fix);
        let (us, um) = figure(&unchanged);
        let (cmp, r_dry, r_fix) = if py.is_empty() {
            ("not run".to_string(), String::new(), String::new())
        } else {
            let (ps, pm) = figure(&py);
            let rd: Vec<f64> = ratios.iter().map(|r| r.0).collect();
            let rf: Vec<f64> = ratios.iter().map(|r| r.1).collect();
            (
                format!("datacompy (pandas), compare only: {ps:.2} s, peak {pm:.0} MB"),
                format!("**{:.1}×**", median(&rd)),
                format!("**{:.1}×**", median(&rf)),
            )
        };
        let big = n >= 1_000_000;
        table.row(
            &format!(
                "Reconcile {n} orders, 1% drift, CSV: compare only (`reconcile --dry-run`){backend}"
            ),
            &format!("{}, peak {dm:.0} MB", fmt_time(ds)),
            &cmp,
            &r_dry,
            if big {
                "≤ 0.6 s, ≤ 128 MB, ≥ 5×"
            } else {
                "(cost growth)"
            },
        );
        table.row(
            &format!(
                "Reconcile {n} orders, 1% drift, CSV: compare and fix (drifts, fixes, view committed){backend}"
            ),
            &format!("{}, peak {fm:.0} MB", fmt_time(fs)),
            if py.is_empty() { "" } else { "same datacompy run" },
            &r_fix,
            if big { "≤ 1.2 s, ≤ 128 MB" } else { "(cost growth)" },
        );
        table.row(
            &format!("Reconcile an unchanged export ({n} orders){backend}"),
            &format!("{}, peak {um:.0} MB", fmt_time(us)),
            "",
            "",
            if big { "≤ 100 ms" } else { "" },
        );
    }
}
