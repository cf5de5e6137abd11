//! Mail sources and the loop that keeps them going.
//!
//! A source fetches what is new since its checkpoint and hands it to the
//! [`Pipeline`] a batch at a time; the checkpoint commits with the batch. The
//! loop here owns what every source shares: waiting, reconnecting with the
//! shared [`Backoff`], and stopping only between batches on shutdown.

mod imap;
mod maildir;
mod pipeline;
mod tls;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use imap::ImapSource;
pub use maildir::MaildirSource;
pub use pipeline::{Pipeline, Prepared, classify, dedupe_key, prepare};
pub use tls::{Pin, parse_pin};

use crate::backoff::Backoff;
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
    /// The server (or the network) closed the connection: a plain
    /// disconnect, retried like any other, reported without TLS jargon.
    #[error("disconnected: {0}")]
    Disconnected(&'static str),
    #[error("IMAP: {0}")]
    Imap(async_imap::error::Error),
    #[error("IMAP server does not support what driftwatch needs: {0}")]
    Unsupported(String),
    #[error("{what} timed out after {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A parser task on the blocking pool panicked or was cancelled: a bug
    /// in driftwatch (parsing never panics on input by design), not the
    /// database's fault. The batch is not committed and is fetched again.
    #[error("a parser task failed: {0}")]
    Parser(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// Whether waiting and reconnecting can fix this without a person: the
    /// network, a busy or full database, a server that dropped us. A rejected
    /// login, a missing secret, a TLS certificate that fails verification or
    /// a server lacking a capability stays broken until someone acts, and
    /// retrying it at the fast cadence can lock the account.
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Connect { .. }
            | IngestError::Disconnected(_)
            | IngestError::Timeout { .. }
            | IngestError::Imap(_)
            | IngestError::Parser(_) => true,
            IngestError::Secret(e) => {
                matches!(e, SecretError::Command(_) | SecretError::CommandTimeout(_))
            }
            IngestError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ),
            IngestError::Store(e) => e.is_transient(),
            IngestError::Tls { .. } | IngestError::Auth { .. } | IngestError::Unsupported(_) => {
                false
            }
        }
    }
}

impl From<async_imap::error::Error> for IngestError {
    fn from(e: async_imap::error::Error) -> IngestError {
        use async_imap::error::Error as E;
        match e {
            E::ConnectionLost => IngestError::Disconnected("the server closed the connection"),
            E::Io(io) => match disconnect_reason(&io) {
                Some(reason) => IngestError::Disconnected(reason),
                None => IngestError::Imap(E::Io(io)),
            },
            other => IngestError::Imap(other),
        }
    }
}

/// The plain words for an IO error that only means "the connection is gone".
/// A server that closes without TLS `close_notify` (rustls' "peer closed
/// connection without sending TLS close_notify", with a manual link) is one.
fn disconnect_reason(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::UnexpectedEof => Some("the server closed the connection"),
        K::ConnectionReset => Some("the connection was reset"),
        K::ConnectionAborted => Some("the connection was aborted"),
        K::BrokenPipe => Some("the connection was closed while sending"),
        _ => None,
    }
}

/// A place mail comes from. Implemented for IMAP folders and Maildirs.
pub trait MailSource: Send {
    /// `mailbox/folder`, as used in logs, checkpoints and locations.
    fn source(&self) -> &str;
    fn folder(&self) -> &str;
    /// Opens the connection and logs in, unless one is open. Separate from
    /// `sync` so the loop knows a reconnect worked as soon as it did.
    fn connect(&mut self) -> impl Future<Output = Result<(), IngestError>> + Send {
        async { Ok(()) }
    }
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
    /// Whether another process (a second `serve` on the same database) may
    /// sync this folder too, so each sync must hold the folder's lease. True
    /// for every real mailbox; a source private to one process may say no.
    fn shared(&self) -> bool {
        true
    }
}

/// First reconnect delay; doubles per failure up to `max_backoff`.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// The step of a source's cycle that failed last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failing {
    /// Connecting or logging in: the server or network is down.
    Connect,
    /// Something after login (SELECT, FETCH, IDLE, a commit).
    Session,
}

/// Runs a source until shutdown: connect, sync, wait, repeat; on error, log
/// once, back off, reconnect.
///
/// The backoff restarts small as soon as the step that failed works again:
/// after connect failures, at the next successful connect and login (logged
/// as "recovered" there, not a whole IDLE cycle later); after a failure past
/// login, at the next successful sync. So a second outage starts again at
/// the first delay, while a server that accepts the login and then fails
/// every SELECT is still retried slower and slower, not every half second.
pub async fn run_source<S: MailSource>(
    mut src: S,
    pipeline: &Pipeline,
    shutdown: CancellationToken,
    max_backoff: Duration,
) {
    let mut backoff = Backoff::new(FIRST_RETRY, max_backoff);
    let mut failing: Option<Failing> = None;
    let (mailbox, folder) = (src.source().to_string(), src.folder().to_string());
    let state = |s| crate::telemetry::source_state(&mailbox, &folder, s);
    while !shutdown.is_cancelled() {
        state(SourceState::Syncing);
        let step = match src.connect().await {
            Err(e) => Err((Failing::Connect, e)),
            Ok(()) => {
                if failing == Some(Failing::Connect) {
                    recovered(&src, backoff.failures());
                    failing = None;
                    backoff.reset();
                }
                // One syncer per folder across processes. If another holds
                // the lease, this one does not go back to waiting for mail:
                // the holder may die mid-sync with mail half-fetched, so it
                // asks again soon (and at the latest when the lease expires)
                // until it has synced itself.
                let synced = async {
                    if !src.shared() {
                        src.sync(pipeline, &shutdown).await?;
                        return Ok::<_, IngestError>(None);
                    }
                    match try_lease_folder(pipeline, src.source(), src.folder()).await? {
                        Ok(held) => {
                            let synced = src.sync(pipeline, &shutdown).await;
                            held.release().await?;
                            synced?;
                            Ok(None)
                        }
                        Err(retry_in) => Ok(Some(retry_in)),
                    }
                }
                .await;
                match synced {
                    Err(e) => Err((Failing::Session, e)),
                    Ok(Some(retry_in)) => {
                        state(SourceState::Waiting);
                        tokio::select! {
                            _ = tokio::time::sleep(retry_in) => {}
                            _ = shutdown.cancelled() => {}
                        }
                        Ok(())
                    }
                    Ok(None) => {
                        if failing.take().is_some() {
                            recovered(&src, backoff.failures());
                        }
                        backoff.reset();
                        state(SourceState::Waiting);
                        src.wait(&shutdown).await.map_err(|e| (Failing::Session, e))
                    }
                }
            }
        };
        if let Err((what, e)) = step {
            failing = Some(what);
            src.reset().await;
            // What retrying cannot fix waits the longest interval: a person
            // has to act, and a rejected login retried fast can lock the account.
            let delay = if e.is_transient() {
                backoff.next_delay()
            } else {
                backoff.longest_delay()
            };
            state(SourceState::Backoff {
                retry_at: std::time::Instant::now() + delay,
            });
            if e.is_transient() {
                warn!(
                    source = src.source(), folder = src.folder(), error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "mail source failed; will reconnect"
                );
            } else {
                error!(
                    source = src.source(), folder = src.folder(), error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "mail source failed in a way retrying will not fix; needs attention (retrying at the longest interval)"
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => {}
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
/// The lease one mailbox folder's syncer holds.
fn folder_lease(source: &str, folder: &str) -> String {
    format!("ingest:{source}/{folder}")
}

pub async fn lease_folder(
    pipeline: &Pipeline,
    source: &str,
    folder: &str,
    wait: Duration,
) -> Result<Option<crate::store::Held>, StoreError> {
    Ok(
        match pipeline
            .store()
            .hold_lease(&folder_lease(source, folder), wait)
            .await?
        {
            Ok(held) => Some(held),
            Err(busy) => {
                info!(source, holder = %busy.holder, "another process is syncing this folder; skipping");
                None
            }
        },
    )
}

/// How often an instance that found a folder's lease taken asks again:
/// another instance that died mid-sync on this host is seen at once, one on
/// another host when its lease expires (`LEASE_TTL`).
const LEASE_RETRY: Duration = Duration::from_secs(2);

/// [`lease_folder`] without waiting: the lease, or how long to wait before
/// asking again (until the holder's expiry, at most [`LEASE_RETRY`]).
async fn try_lease_folder(
    pipeline: &Pipeline,
    source: &str,
    folder: &str,
) -> Result<Result<crate::store::Held, Duration>, StoreError> {
    let name = folder_lease(source, folder);
    Ok(
        match pipeline.store().hold_lease(&name, Duration::ZERO).await? {
            Ok(held) => Ok(held),
            Err(busy) => {
                debug!(source, folder, holder = %busy.holder, "another process is syncing this folder");
                let until_expiry = (busy.expires_at - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                Err(until_expiry.min(LEASE_RETRY) + Duration::from_millis(50))
            }
        },
    )
}

fn recovered<S: MailSource>(src: &S, failures: u32) {
    info!(
        source = src.source(),
        folder = src.folder(),
        failures,
        "mail source recovered"
    );
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
    //! The reconnect schedule of [`run_source`], in virtual time: a source
    //! whose connects fail or succeed by script, timed with a paused clock.
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    #[derive(Clone, Copy)]
    enum Step {
        ConnectFails,
        /// Connect works, sync works, then the wait (IDLE) fails after this long.
        UpThenDropAfter(Duration),
        /// Connect works, sync fails (e.g. SELECT of a missing folder).
        SyncFails,
        /// The server rejects the login.
        LoginRejected,
    }

    struct Scripted {
        script: VecDeque<Step>,
        current: Option<Step>,
        attempts: Arc<Mutex<Vec<Instant>>>,
        done: CancellationToken,
    }

    impl MailSource for Scripted {
        fn source(&self) -> &str {
            "scripted"
        }
        fn folder(&self) -> &str {
            "INBOX"
        }
        async fn connect(&mut self) -> Result<(), IngestError> {
            self.attempts.lock().unwrap().push(Instant::now());
            let Some(step) = self.script.pop_front() else {
                self.done.cancel();
                return Err(IngestError::Disconnected("script over"));
            };
            self.current = Some(step);
            match step {
                Step::ConnectFails => Err(IngestError::Disconnected("refused")),
                Step::LoginRejected => Err(IngestError::Auth {
                    user: "alice".into(),
                    detail: "AUTHENTICATIONFAILED".into(),
                }),
                _ => Ok(()),
            }
        }
        async fn sync(
            &mut self,
            _: &Pipeline,
            _: &CancellationToken,
        ) -> Result<BatchOutcome, IngestError> {
            match self.current {
                Some(Step::SyncFails) => Err(IngestError::Unsupported("no such folder".into())),
                _ => Ok(BatchOutcome::default()),
            }
        }
        async fn wait(&mut self, _: &CancellationToken) -> Result<(), IngestError> {
            if let Some(Step::UpThenDropAfter(d)) = self.current {
                tokio::time::sleep(d).await;
            }
            Err(IngestError::Disconnected(
                "the server closed the connection",
            ))
        }
        async fn reset(&mut self) {}
        /// Private to the test; and a lease is a database round trip, which
        /// a paused clock would race (it jumps to the pool's timeout).
        fn shared(&self) -> bool {
            false
        }
    }

    /// Gaps between successive connect attempts of `script`, run in virtual time.
    /// A gap that follows a connection that synced is a little longer than
    /// the delay: while the runtime waits on the store's thread, the paused
    /// clock jumps ahead to the next timer (seen: 2 ms on a loaded machine).
    const IO_SLACK_MS: u128 = 50;

    async fn gaps(script: Vec<Step>, cap: Duration) -> Vec<Duration> {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("t.db"))
            .await
            .unwrap();
        let registry =
            crate::parse::Registry::new(vec![], crate::parse::RegistryOptions::default());
        let pipeline = Pipeline::new(store, registry, Default::default(), Default::default());
        tokio::time::pause();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let done = CancellationToken::new();
        let src = Scripted {
            script: script.into(),
            current: None,
            attempts: attempts.clone(),
            done: done.clone(),
        };
        run_source(src, &pipeline, done, cap).await;
        let at = attempts.lock().unwrap().clone();
        at.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[tokio::test]
    async fn backoff_restarts_small_at_reconnect_not_after_a_full_cycle() {
        use Step::*;
        let idle = Duration::from_secs(300);
        let mut script = vec![ConnectFails; 9]; // outage 1: long enough to reach the cap
        script.push(UpThenDropAfter(idle)); // back, syncs, IDLE drops: outage 2
        script.extend([ConnectFails; 3]);
        script.push(UpThenDropAfter(idle));
        let g = gaps(script, Duration::from_secs(60)).await;
        let ms: Vec<u128> = g.iter().map(|d| d.as_millis()).collect();
        // Outage 1 grows 0.5, 1, 2, ... and stops at the cap, jitter
        // (up to a quarter off) included.
        for (i, got) in ms[..9].iter().enumerate() {
            let base = (500u128 << i).min(60_000);
            assert!(*got <= base + 1 && *got >= base * 3 / 4, "{ms:?}");
        }
        // Outage 2 starts again at the first delay: the IDLE cycle (300 s)
        // plus 0.5 s, then 1 s, 2 s, 4 s; not 19 s, 37 s, 72 s.
        assert!((300_375..=300_500 + IO_SLACK_MS).contains(&ms[9]), "{ms:?}");
        for (got, base) in ms[10..13].iter().zip([1000, 2000, 4000]) {
            assert!(*got <= base + 1 && *got >= base * 3 / 4, "{ms:?}");
        }
    }

    #[tokio::test]
    async fn a_server_failing_after_login_is_retried_slower_and_slower() {
        let g = gaps(vec![Step::SyncFails; 10], Duration::from_secs(60)).await;
        let ms: Vec<u128> = g.iter().map(|d| d.as_millis()).collect();
        // Connecting works each time, but that is no recovery: no hot loop.
        assert!(ms[6] >= 24_000 && ms[8] <= 60_000, "{ms:?}");
    }

    #[tokio::test]
    async fn a_rejected_login_is_retried_only_at_the_longest_interval() {
        let cap = Duration::from_secs(60);
        let mut script = vec![Step::LoginRejected; 3];
        // Fixed (a person edited the password): back to the fast cadence.
        script.push(Step::UpThenDropAfter(Duration::ZERO));
        script.extend([Step::ConnectFails; 2]);
        let g = gaps(script, cap).await;
        let ms: Vec<u128> = g.iter().map(|d| d.as_millis()).collect();
        // Never the 0.5 s, 1 s, 2 s a network error gets: the server would
        // see a burst of failed logins, and may lock the account.
        for got in &ms[..3] {
            assert!((45_000..=60_000).contains(got), "{ms:?}");
        }
        assert!(ms[3] <= 500 + IO_SLACK_MS && ms[4] <= 1000, "{ms:?}");
    }

    #[test]
    fn only_what_waiting_can_fix_is_transient() {
        let io = |kind| IngestError::Io {
            path: "m".into(),
            source: std::io::Error::from(kind),
        };
        assert!(IngestError::Disconnected("x").is_transient());
        assert!(io(std::io::ErrorKind::Interrupted).is_transient());
        assert!(!io(std::io::ErrorKind::PermissionDenied).is_transient());
        assert!(!IngestError::Unsupported("IDLE".into()).is_transient());
        assert!(!IngestError::Secret(SecretError::EnvMissing("PW".into())).is_transient());
        assert!(
            IngestError::Secret(SecretError::CommandTimeout(Duration::from_secs(30)))
                .is_transient()
        );
    }
}
