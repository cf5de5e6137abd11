//! The daily drift report: built from the store, rendered as text, HTML and
//! JSON, delivered once per day and channel (SMTP recipient or output dir).
//!
//! - [`build`] reads the store into a plain [`Report`] (no rendering, no IO
//!   besides the read queries).
//! - [`render_text`] / [`render_html`] are pure; the HTML escapes every string
//!   that came from outside and carries no scripts or remote resources.
//! - [`send`] delivers one rendering (lettre SMTP, or files); it never decides when.
//! - [`schedule::run_once`] decides *what* is due at a given `now` and records
//!   each delivery before and after; [`run_scheduler`] only decides *when* to
//!   call it. Tests call `run_once` with a chosen `now`.

pub mod build;
pub mod cli;
pub mod config;
pub mod schedule;
pub mod send;

pub use driftwatch_core::report::{html, model, text};

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use build::build;
pub use html::render_html;
pub use model::Report;
pub use schedule::{Delivery, DeliveryResult, SendOutcome, run_once};
pub use text::render_text;

use crate::store::Store;
use config::ReportSettings;

/// The longest the scheduler sleeps between checks: a wall-clock jump
/// (suspend, NTP step) then delays a report by at most this much.
const MAX_NAP: Duration = Duration::from_secs(600);

/// Delivers each day's report at the configured time until `shutdown`.
///
/// On start it delivers whatever is due and unsent (a day missed while the
/// service was down). After a failed delivery it retries with the shared
/// [`crate::backoff::Backoff`] (`retry_initial_secs` doubling to `retry_max_secs`).
/// Shutdown is only observed between rounds, never inside a delivery, so a
/// send is not cut between "SMTP accepted" and "recorded as sent".
///
/// Takes the store and the `[report]` settings, not the `App` that spawns it.
pub async fn run_scheduler(
    store: Store,
    settings: Option<ReportSettings>,
    shutdown: CancellationToken,
) {
    let Some(settings) = settings else {
        shutdown.cancelled().await;
        return;
    };
    info!(
        send_at = %settings.send_at,
        timezone = %settings.timezone,
        channels = schedule::channels(&settings).len(),
        "report scheduler started"
    );
    let mut backoff = crate::backoff::Backoff::new(settings.retry_initial, settings.retry_max);
    loop {
        let now = Utc::now();
        let failed = match run_once(&store, Some(&settings), now).await {
            Ok(outcome) => outcome.failed() > 0,
            Err(e) => {
                error!(error = %e, "daily report: cannot read or record sends; will retry");
                true
            }
        };
        let nap = if failed {
            backoff.next_delay()
        } else {
            backoff.reset();
            let until = schedule::next_send_after(&settings, now) - now;
            until.to_std().unwrap_or(Duration::ZERO).min(MAX_NAP)
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(nap) => {}
        }
    }
    info!("report scheduler stopped");
}
