//! Mail sources and the loop that keeps them going.
//!
//! A source fetches what is new since its checkpoint and hands it to the
//! [`Pipeline`] a batch at a time; the checkpoint commits with the batch. The
//! loop here owns what every source shares: waiting, reconnecting with capped
//! exponential backoff and jitter, and stopping only between batches on shutdown.

mod imap;
mod maildir;
mod pipeline;
mod tls;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use imap::ImapSource;
pub use maildir::MaildirSource;
pub use pipeline::{Pipeline, Prepared, dedupe_key, prepare};

use crate::config::SecretError;
use crate::store::{BatchOutcome, StoreError};
use crate::telemetry::SourceState;

/// What went wrong talking to a mailbox. All of these are retried by
/// [`run_source`]; the variants tell the operator where to look.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("login as {user} rejected: {detail}")]
    Auth { user: String, detail: String },
    #[error("credentials unavailable: {0}")]
    Secret(#[from] SecretError),
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("IMAP server does not support what driftwatch needs: {0}")]
    Unsupported(String),
    #[error("{what} timed out after {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A place mail comes from. Implemented for IMAP folders and Maildirs.
pub trait MailSource: Send {
    /// `mailbox/folder`, as used in logs, checkpoints and locations.
    fn source(&self) -> &str;
    fn folder(&self) -> &str;
    /// Fetches and commits everything new, a batch at a time; stops early,
    /// between batches, when `shutdown` fires.
    fn sync(
        &mut self,
        pipeline: &Pipeline,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<BatchOutcome, IngestError>> + Send;
    /// Returns when new mail may have arrived, or on shutdown.
    fn wait(
        &mut self,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<(), IngestError>> + Send;
    /// Drops any connection after an error, so the next sync starts clean.
    fn reset(&mut self) -> impl Future<Output = ()> + Send;
}

/// Capped exponential backoff with jitter, so many driftwatch instances
/// behind one mail server don't reconnect in lockstep.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        // Up to +25% jitter from the clock's low bits: no RNG needed for this.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// Runs a source until shutdown: sync, wait, repeat; on error, log once,
/// back off, reconnect.
pub async fn run_source<S: MailSource>(
    mut src: S,
    pipeline: &Pipeline,
    shutdown: CancellationToken,
    max_backoff: Duration,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), max_backoff);
    let mut failing = false;
    let (mailbox, folder) = (src.source().to_string(), src.folder().to_string());
    let state = |s| crate::telemetry::source_state(&mailbox, &folder, s);
    while !shutdown.is_cancelled() {
        state(SourceState::Syncing);
        let step = async {
            // One syncer per folder across processes; if another holds it, it does the work.
            if let Some(held) =
                lease_folder(pipeline, src.source(), src.folder(), Duration::ZERO).await?
            {
                let synced = src.sync(pipeline, &shutdown).await;
                held.release().await?;
                synced?;
            }
            state(SourceState::Waiting);
            src.wait(&shutdown).await
        };
        match step.await {
            Ok(()) => {
                if failing {
                    info!(
                        source = src.source(),
                        folder = src.folder(),
                        "mail source recovered"
                    );
                    failing = false;
                }
                backoff.reset();
            }
            Err(e) => {
                failing = true;
                src.reset().await;
                let delay = backoff.next_delay();
                state(SourceState::Backoff {
                    retry_at: std::time::Instant::now() + delay,
                });
                warn!(
                    source = src.source(), folder = src.folder(), error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "mail source failed; will reconnect"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
    src.reset().await;
    info!(
        source = src.source(),
        folder = src.folder(),
        "mail source stopped"
    );
}

/// Takes the lease on one mailbox folder (`ingest:<mailbox>/<folder>`) for
/// a sync, waiting up to `wait`; `None` while another process (a second
/// `serve` on the same data dir) syncs it. See [`crate::store::Held`].
pub async fn lease_folder(
    pipeline: &Pipeline,
    source: &str,
    folder: &str,
    wait: Duration,
) -> Result<Option<crate::store::Held>, StoreError> {
    let name = format!("ingest:{source}/{folder}");
    Ok(match pipeline.store().hold_lease(&name, wait).await? {
        Ok(held) => Some(held),
        Err(busy) => {
            info!(source, holder = %busy.holder, "another process is syncing this folder; skipping");
            None
        }
    })
}

/// Awaits `fut` for at most `limit`, naming the operation on timeout: a
/// stalled server must not hang a source forever.
pub(crate) async fn timed<T, E>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, IngestError>
where
    IngestError: From<E>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(IngestError::from),
        Err(_) => Err(IngestError::Timeout {
            what: what.to_string(),
            secs: limit.as_secs(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_to_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let d: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        let bases = [1000, 2000, 4000, 8000, 8000, 8000];
        for (got, base) in d.iter().zip(bases) {
            assert!(*got >= base && *got <= base + base / 4, "{d:?}");
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(1300));
    }
}
