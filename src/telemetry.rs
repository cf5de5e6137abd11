//! Process-wide counters and states that exist only in memory: the one place
//! they are kept, so `/metrics` and `/readyz` read the same values the code
//! that changes them wrote. Everything that the database already records
//! (messages, deltas, drifts, runs, webhooks) is read from there at scrape
//! time instead, so it survives restarts and covers other processes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Instant;

/// What a mail source loop is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Connecting or fetching.
    Syncing,
    /// Caught up, waiting for new mail (IMAP IDLE or a poll interval).
    Waiting,
    /// Failed; the next attempt is due at `retry_at`.
    Backoff { retry_at: Instant },
}

/// One mail source (mailbox + folder) as the loop last reported it.
#[derive(Debug, Clone, Copy)]
pub struct SourceStatus {
    pub state: SourceState,
    /// Reconnects after a failure since the process started.
    pub reconnects: u64,
}

#[derive(Default)]
struct Registry {
    sources: Mutex<BTreeMap<(String, String), SourceStatus>>,
    feed_readers: AtomicI64,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

fn sources() -> MutexGuard<'static, BTreeMap<(String, String), SourceStatus>> {
    // A poisoned lock only means a panic elsewhere mid-update of plain data.
    REGISTRY
        .sources
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records what the source loop for `mailbox`/`folder` is doing; a move into
/// `Backoff` counts one reconnect.
pub fn source_state(mailbox: &str, folder: &str, state: SourceState) {
    let mut map = sources();
    let entry = map
        .entry((mailbox.to_string(), folder.to_string()))
        .or_insert(SourceStatus {
            state,
            reconnects: 0,
        });
    if matches!(state, SourceState::Backoff { .. }) {
        entry.reconnects += 1;
    }
    entry.state = state;
}

/// Every source seen so far, keyed by (mailbox, folder).
pub fn source_statuses() -> BTreeMap<(String, String), SourceStatus> {
    sources().clone()
}

/// Held by each connected feed reader (long poll or SSE); the gauge counts them.
pub struct FeedReader(());

impl FeedReader {
    pub fn enter() -> FeedReader {
        REGISTRY.feed_readers.fetch_add(1, Ordering::Relaxed);
        FeedReader(())
    }
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        REGISTRY.feed_readers.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn feed_readers() -> i64 {
    REGISTRY.feed_readers.load(Ordering::Relaxed)
}
