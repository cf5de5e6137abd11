//! Reconcile: pull a vendor's full state (a key frame), diff it against the
//! order view as of the key frame's `as_of`, record drifts, and fix them when
//! the vendor's policy says so and the guard trusts the key frame.
//!
//! - [`source`]: export sources (file / newest in a drop folder, HTTP, paginated API) and row readers.
//! - [`sftp`]: the newest complete file on an SFTP server (host key pinned).
//! - [`mail_source`]: the vendor's emailed full-state report, from the raw archive.
//! - [`whole`]: the structure check on an export's bytes (cut files, size limits).
//! - [`mapping`]: export row → [`mapping::RemoteOrder`]; field normalisation and tolerance.
//! - [`run`]: the diff, attribution and the one write per run.
//! - [`attribute`], [`guard`]: pure rules.
//! - [`cli`]: `driftwatch reconcile` and `driftwatch drifts`.
//!
//! Never: write anything before the guard has looked at the whole key frame;
//! treat a delta recorded after `as_of` (beyond the grace window) as known.

pub mod cli;
pub mod config;
pub mod mail_source;
pub mod run;
pub mod sftp;
pub mod source;

pub use driftwatch_core::reconcile::{attribute, drift, guard, mapping, whole};

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::store::{Fence, RunCounts, Store, StoreError};
pub use config::{Policy, VendorSettings};
pub use drift::{Cause, Drift, DriftKind, Outcome};
pub use source::{FetchError, KeyFrameError};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no vendor `{0}` in the config ([[vendor]] name)")]
    UnknownVendor(String),
    #[error("vendor `{0}` has no [vendor.export]; give a file with --file")]
    NoExport(String),
    /// Worth retrying at the next scheduled run. The reason is in the
    /// message and so not also the `source`: the CLI prints the chain
    /// (`{e:#}`), which said every reason twice.
    #[error("fetching the export failed: {0}")]
    Fetch(FetchError),
    /// The export is unusable as a key frame; retrying the same export won't help.
    #[error("the export is not a usable key frame: {0}")]
    KeyFrame(KeyFrameError),
    /// Another run of this vendor holds its lease (a `serve` schedule, or
    /// another hand-started run): nothing was read or written.
    #[error(
        "another reconcile of vendor `{vendor}` is running ({holder}, lease until {until}); nothing done. Try again when it finishes, or pass --wait SECONDS"
    )]
    Busy {
        vendor: String,
        holder: String,
        until: DateTime<Utc>,
    },
    /// A blocking task (streaming the export's rows) panicked or was
    /// cancelled: a bug, or the runtime shutting down; not the export's fault.
    #[error("the export reading task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FetchError> for ReconcileError {
    fn from(e: FetchError) -> ReconcileError {
        ReconcileError::Fetch(e)
    }
}

impl From<KeyFrameError> for ReconcileError {
    fn from(e: KeyFrameError) -> ReconcileError {
        ReconcileError::KeyFrame(e)
    }
}

/// How to run one reconcile.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Reconcile from this file instead of the configured export.
    pub file: Option<PathBuf>,
    /// Compute and report, write nothing (no run row, no drifts, no fixes).
    pub dry_run: bool,
    /// The clock for run and fix timestamps; `None` is the wall clock. A
    /// simulator replaying days of a vendor passes its own time.
    pub now: Option<DateTime<Utc>>,
    /// How long to wait for the vendor's lease when another run holds it;
    /// zero (the default, and the schedule's) gives up at once with
    /// [`ReconcileError::Busy`].
    pub lease_wait: Duration,
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub vendor: String,
    pub policy: Policy,
    pub dry_run: bool,
    /// The run row, when one was written.
    pub run_id: Option<i64>,
    pub source: String,
    pub as_of: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    /// Why the guard refused.
    pub reason: Option<String>,
    pub counts: RunCounts,
    pub by_cause: run::CauseCounts,
    /// Rows whose status word is not in the status map (their status is not compared).
    pub unmapped_status: u64,
    /// Drifted orders the vendor emailed about after the key frame's as_of:
    /// the key frame is stale for them and fixed nothing there.
    pub stale_orders: u64,
    /// Fix deltas this run applies (or, dry or refused, would apply).
    pub fixes: i64,
    /// Drifts closed as fixed.
    pub fixed: i64,
    /// Drifts closed because the key frame or a later delta agreed.
    pub closed: i64,
    /// The first drifts found, for display.
    pub sample: Vec<Drift>,
    pub elapsed: Duration,
}

impl RunSummary {
    fn new(v: &VendorSettings, opts: &RunOptions, source: &str) -> RunSummary {
        RunSummary {
            vendor: v.name.clone(),
            policy: v.policy,
            dry_run: opts.dry_run,
            run_id: None,
            source: source.to_string(),
            as_of: None,
            outcome: Outcome::Ok,
            reason: None,
            counts: RunCounts::default(),
            by_cause: Default::default(),
            unmapped_status: 0,
            stale_orders: 0,
            fixes: 0,
            fixed: 0,
            closed: 0,
            sample: vec![],
            elapsed: Duration::ZERO,
        }
    }

    pub fn drifts(&self) -> i64 {
        let c = &self.counts;
        c.missing_local + c.missing_remote + c.status_mismatch + c.field_mismatch
    }

    /// Share of key-frame changes the email channel had already told us.
    pub fn reliability(&self) -> Option<f64> {
        let c = &self.counts;
        (c.key_frame_changes > 0).then(|| c.email_told as f64 / c.key_frame_changes as f64)
    }
}

/// Runs one reconcile of `vendor` now: the configured export, or `opts.file`.
pub async fn run_once(
    store: &Store,
    config: &Config,
    vendor: &str,
    opts: RunOptions,
) -> Result<RunSummary, ReconcileError> {
    let v = config
        .vendors
        .iter()
        .find(|v| v.name == vendor)
        .ok_or_else(|| ReconcileError::UnknownVendor(vendor.to_string()))?;
    run_vendor(store, v, &work_dir(config), opts).await
}

/// Where HTTP exports are downloaded to while being read.
pub fn work_dir(config: &Config) -> PathBuf {
    config.data_dir.join("exports")
}

/// The lease name that serialises reconcile runs of one vendor.
pub fn lease_name(vendor: &str) -> String {
    format!("reconcile:{vendor}")
}

/// [`run_once`] without an `App`: a store and one vendor's settings.
///
/// A run that writes holds the vendor's lease from before it reads anything
/// (the last key frame, open drifts, the view) until its one write commits,
/// and that write checks the lease's fencing token: two runs, in one
/// process or two, give the result of running them one after the other.
/// A dry run writes nothing and takes no lease.
pub async fn run_vendor(
    store: &Store,
    v: &VendorSettings,
    work_dir: &std::path::Path,
    opts: RunOptions,
) -> Result<RunSummary, ReconcileError> {
    let held = if opts.dry_run {
        None
    } else {
        match store
            .hold_lease(&lease_name(&v.name), opts.lease_wait)
            .await?
        {
            Ok(h) => Some(h),
            Err(busy) => {
                return Err(ReconcileError::Busy {
                    vendor: v.name.clone(),
                    holder: busy.holder,
                    until: busy.expires_at,
                });
            }
        }
    };
    let fence = held.as_ref().map(|h| h.fence().clone());
    let result = run_leased(store, v, work_dir, &opts, fence).await;
    if let Some(h) = held
        && let Err(e) = h.release().await
    {
        // It expires by itself within the TTL.
        warn!(vendor = %v.name, error = %e, "could not release the reconcile lease");
    }
    result
}

async fn run_leased(
    store: &Store,
    v: &VendorSettings,
    work_dir: &std::path::Path,
    opts: &RunOptions,
    fence: Option<Fence>,
) -> Result<RunSummary, ReconcileError> {
    if let Some(f) = &opts.file {
        let started_at = opts.now.unwrap_or_else(Utc::now);
        let (f, v2) = (f.clone(), v.clone());
        let export = source::blocking_read(&f.clone(), move || source::from_file(&f, &v2)).await;
        return run::finish(store, v, export.map(Some), opts, started_at, fence).await;
    }
    let started_at = opts.now.unwrap_or_else(Utc::now);
    let prev = store.last_key_frame(&v.name).await?;
    // Conditional requests only against a key frame a run trusted.
    let previous = prev
        .filter(|p| matches!(p.outcome, Some(Outcome::Ok) | Some(Outcome::Unchanged)))
        .map(|p| source::Previous {
            etag: p.etag,
            last_modified: p.last_modified,
            as_of: Some(p.as_of),
        })
        .unwrap_or_default();
    let export = source::fetch(store, v, &previous, work_dir).await;
    let summary = run::finish(store, v, export, opts, started_at, fence).await?;
    if let Some(config::ExportSettings::Sftp(s)) = &v.export
        && summary.outcome == Outcome::Ok
        && !opts.dry_run
    {
        sftp::after_trusted(s, &v.name, &summary.source).await;
    }
    Ok(summary)
}

/// The next scheduled run strictly after `now`: a run that took past its next
/// tick skips it rather than running twice in a row.
pub fn next_run(cron: &croner::Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&now, false).ok()
}

/// Runs each vendor's reconcile on its schedule until `shutdown`. A run in
/// progress finishes (its write is one transaction); a missed tick is skipped,
/// not replayed.
///
/// Takes the store and the vendors' settings, not the `App` that spawns it.
pub async fn run_scheduler(
    store: Store,
    vendors: Vec<VendorSettings>,
    work_dir: PathBuf,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for v in vendors {
        let Some(cron) = v.schedule.clone() else {
            continue;
        };
        if v.export.is_none() {
            continue;
        }
        let (store, work_dir, shutdown) = (store.clone(), work_dir.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                let now = Utc::now();
                let Some(next) = next_run(&cron, now) else {
                    error!(vendor = %v.name, "schedule has no next run; reconcile stops");
                    return;
                };
                let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                match run_vendor(&store, &v, &work_dir, RunOptions::default()).await {
                    // Another process (a second `serve`, a hand-started run) is on it.
                    Err(ReconcileError::Busy { holder, .. }) => info!(vendor = %v.name, holder, "scheduled reconcile skipped: another run holds the vendor's lease"),
                    Ok(s) => info!(vendor = %v.name, outcome = s.outcome.as_str(), drifts = s.drifts(), fixed = s.fixed, "scheduled reconcile done"),
                    Err(e) => error!(vendor = %v.name, error = %e, "scheduled reconcile failed"),
                }
            }
        });
    }
    shutdown.cancelled().await;
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_run_follows_the_cron_and_skips_a_missed_tick() {
        let cron: croner::Cron = "0 6 * * *".parse().unwrap();
        let at = |d, h, m| Utc.with_ymd_and_hms(2026, 5, d, h, m, 0).unwrap();
        assert_eq!(next_run(&cron, at(1, 5, 59)), Some(at(1, 6, 0)));
        // Exactly on the tick (a run that just started): the next day.
        assert_eq!(next_run(&cron, at(1, 6, 0)), Some(at(2, 6, 0)));
        // A run that overran to the afternoon waits for tomorrow.
        assert_eq!(next_run(&cron, at(1, 14, 0)), Some(at(2, 6, 0)));
    }
}
