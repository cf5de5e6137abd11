//! Shared pieces of the reconcile tests: a config with one `[[vendor]]`, and a
//! small deterministic RNG for the drift simulator.
#![allow(dead_code)] // not every test binary uses every helper
#![allow(clippy::expect_used, clippy::unwrap_used)] // test code

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use driftwatch::app::App;
use driftwatch::config::Config;
use driftwatch::model::{DeltaDraft, DeltaSource, Fields, Status, TimeSource};
use driftwatch::reconcile::VendorSettings;
use driftwatch::store::Store;

use crate::support::db::Db;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: Db,
}

impl Env {
    /// A config whose only vendor is the `[[vendor]]` table `vendor_toml`.
    pub fn new(vendor_toml: &str) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let parsers = Path::new(env!("CARGO_MANIFEST_DIR")).join("parsers");
        let db = Db::for_data_dir(&dir.path().join("data"));
        let text = format!(
            "data_dir = \"data\"\n{}parsers_dir = \"{}\"\n\n{vendor_toml}\n",
            db.config_line(),
            parsers.display()
        );
        let config = dir.path().join("driftwatch.toml");
        std::fs::write(&config, text).expect("write config");
        Env { dir, config, db }
    }

    pub async fn app(&self) -> App {
        App::build(Config::load(&self.config).expect("config loads"))
            .await
            .expect("app builds")
    }

    pub fn vendor(&self, app: &App, name: &str) -> VendorSettings {
        app.config
            .vendors
            .iter()
            .find(|v| v.name == name)
            .expect("vendor configured")
            .clone()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn database(&self) -> Db {
        self.db.clone()
    }
}

/// splitmix64: deterministic, good enough to drive a simulation.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Orders the vendor told by email are `scheduled` (its word `word`), each
/// with `fields`, at `at`; recorded a minute later.
pub async fn seed_scheduled(
    store: &Store,
    vendor: &str,
    word: &str,
    refs: impl IntoIterator<Item = String>,
    fields: &Fields,
    at: DateTime<Utc>,
) {
    let items: Vec<_> = refs
        .into_iter()
        .map(|order_ref| {
            let draft = DeltaDraft {
                vendor: vendor.into(),
                order_ref,
                status: Some(Status::Scheduled),
                vendor_status: Some(word.into()),
                fields: fields.clone(),
                event_time: at,
                time_source: TimeSource::Vendor,
            };
            (draft, at + Duration::minutes(1))
        })
        .collect();
    store
        .append_deltas_at(DeltaSource::Email, &items)
        .await
        .expect("seed deltas append");
}

/// Sets a file's modification time: an export's `as_of` by default.
pub fn set_mtime(path: &Path, t: chrono::DateTime<chrono::Utc>) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open export")
        .set_modified(t.into())
        .expect("set mtime");
}
