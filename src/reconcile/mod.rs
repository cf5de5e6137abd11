//! Reconcile: pull a vendor's full state (a key frame), diff it against the
//! order view as of the key frame's `as_of`, record drifts, and fix them when
//! the vendor's policy says so and the guard trusts the key frame.
//!
//! (Skeleton: filled in by the reconcile issue.)

pub mod cli;
pub mod config;

use tokio_util::sync::CancellationToken;

use crate::app::App;

/// Runs each vendor's reconcile on its schedule until `shutdown`.
pub async fn run_scheduler(app: App, shutdown: CancellationToken) {
    let _ = &app;
    shutdown.cancelled().await;
}
