//! The daily drift report: built from the store, rendered as text, HTML and
//! JSON, sent once per day and recipient over SMTP.
//!
//! (Skeleton: filled in by the report issue.)

pub mod cli;
pub mod config;

use tokio_util::sync::CancellationToken;

use crate::app::App;

/// Sends each day's report at the configured time until `shutdown`.
pub async fn run_scheduler(app: App, shutdown: CancellationToken) {
    let _ = &app;
    shutdown.cancelled().await;
}
