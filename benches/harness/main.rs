//! The benchmark harness: driftwatch beside the physical limit and beside
//! what a user would otherwise write, measured in the same run.
//!
//! `./scripts/bench.sh` runs it (`cargo bench --bench harness`) and prints a
//! table. Absolute times on a shared machine are noisy, so every figure is a
//! median over several runs and the comparisons are ratios measured in one run.
//!
//! Each section is one function that appends rows to the [`table::Table`];
//! adding a benchmark is adding one such function to [`SECTIONS`].
//!
//! Environment: `DRIFTWATCH_BENCH_MESSAGES` (20000), `DRIFTWATCH_BENCH_BACKLOG`
//! (100000), `DRIFTWATCH_BENCH_RUNS` (3), `DRIFTWATCH_BENCH_ORDERS` (1000000),
//! `DRIFTWATCH_BENCH_ONLY` (comma list of section names), `DRIFTWATCH_BENCH_DIR`
//! (keep and reuse the reconcile data there), `PYTHON` (python3). With
//! `DRIFTWATCH_TEST_BACKEND=postgres` and `DRIFTWATCH_TEST_POSTGRES` (what
//! ./scripts/bench.sh sets for its second round) the store is PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/support/mod.rs"]
mod support;

mod failover;
mod http;
mod ingest;
mod mail;
mod measure;
mod parse;
mod reconcile;
mod table;
mod writes;

use std::future::Future;
use std::pin::Pin;

use table::Table;

/// What the run measures; from the environment.
pub struct Opts {
    pub messages: u32,
    pub backlog: u32,
    pub runs: usize,
    pub orders: u64,
    pub python: String,
    /// Messages per shape and run in the parse benchmark.
    pub parse_messages: u32,
    only: Option<Vec<String>>,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Opts {
    /// `cargo test --all-targets` (CI) runs this binary without `--bench`:
    /// then a smoke run with tiny sizes checks the harness still works,
    /// without the Python dependencies and in seconds.
    fn smoke() -> Opts {
        Opts {
            messages: 200,
            backlog: 0,
            runs: 1,
            orders: 2_000,
            python: std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()),
            parse_messages: 100,
            only: Some(vec![
                "ingest".into(),
                "writepath".into(),
                "reparse".into(),
                "parse".into(),
                "reconcile".into(),
                "http".into(),
            ]),
        }
    }

    fn from_env() -> Opts {
        Opts {
            parse_messages: 4_000,
            messages: env_or("DRIFTWATCH_BENCH_MESSAGES", 20_000),
            backlog: env_or("DRIFTWATCH_BENCH_BACKLOG", 100_000),
            runs: env_or("DRIFTWATCH_BENCH_RUNS", 3).max(1),
            orders: env_or("DRIFTWATCH_BENCH_ORDERS", 1_000_000),
            python: std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()),
            only: std::env::var("DRIFTWATCH_BENCH_ONLY")
                .ok()
                .map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == section))
    }
}

type Section = for<'a> fn(&'a Opts, &'a mut Table) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Every benchmark, in table order.
const SECTIONS: [(&str, Section); 8] = [
    ("ingest", |o, t| Box::pin(ingest::run(o, t))),
    ("writepath", |o, t| Box::pin(writes::write_path(o, t))),
    ("reparse", |o, t| Box::pin(writes::reparse(o, t))),
    ("parse", |o, t| Box::pin(parse::run(o, t))),
    ("reconcile", |o, t| Box::pin(reconcile::run(o, t))),
    ("backlog", |o, t| Box::pin(ingest::backlog(o, t))),
    ("http", |o, t| Box::pin(http::run(o, t))),
    ("failover", |o, t| Box::pin(failover::run(o, t))),
];

fn main() {
    let real = std::env::args().any(|a| a == "--bench");
    let opts = if real {
        Opts::from_env()
    } else {
        eprintln!("smoke run (no --bench): tiny sizes; ./scripts/bench.sh gives the real table");
        Opts::smoke()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut table = Table::default();
    for (name, section) in SECTIONS {
        if opts.wants(name) {
            eprintln!("== {name}");
            runtime.block_on(section(&opts, &mut table));
        }
    }
    let text = table.render(&opts);
    println!("{text}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-table.md");
    if real && std::fs::write(&out, &text).is_ok() {
        eprintln!("table written to {}", out.display());
    }
}
