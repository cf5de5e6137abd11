//! All SQL lives here. Nothing outside `store` imports sqlx.
//!
//! SQLite in WAL mode with `synchronous = NORMAL`: a committed transaction
//! survives a process crash (the case we must handle: SIGKILL, OOM), and the
//! fsync per commit that `FULL` adds would cap ingest at the disk's flush rate.
//! Write transactions start with `BEGIN IMMEDIATE` so two writers queue on the
//! busy timeout instead of failing with a lock upgrade deadlock.

mod browse;
mod dashboard;
mod feed;
mod health;
mod hooks;
mod ingest;
mod lease;
mod orders;
mod reconcile;
mod reparse;
mod report;
mod scrape;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use browse::{OrderPage, VendorSummary};
pub use dashboard::{
    ActionKind, ActionRow, DashDrift, DriftFilter, KeyFrameRow, NewAction, SessionRow, VendorGlance,
};
pub use feed::{Snapshot, appended};
pub use health::FormatAlert;
pub use hooks::{HookOutcome, NewWebhook, StoredWebhook, WebhookRow};
pub use ingest::{
    ArchivedMessage, BatchOutcome, Checkpoint, Disposition, IngestBatch, MessageCounts, PackedRaw,
    QuarantineRow, StoredMessage,
};
pub use lease::{Fence, Held, LEASE_TTL, LeaseHolder};
pub use orders::DeltaFilter;
pub use reconcile::{
    AsOfOrder, Cutoff, DriftRow, DriftWithView, Evidence, KeyFrameRef, KnownOrder, LastKeyFrame,
    NewDrift, NewKeyFrame, RunCounts, RunRecord, RunRow, RunWritten,
};
pub use reparse::{OrderChange, ReparseScope, Reparsed, RuleHashes};
pub use report::{
    BeginSend, DriftMovement, DriftRow as ReportDriftRow, FormatAlertRow, MailCountRow,
    QuarantinedRow, RunRow as ReportRunRow, SendRow, SendState, StuckOrderRow, VendorMailRow,
};
pub use scrape::{LastRun, MessageCount, Scrape};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "database holds a value it cannot read back ({0}); was it written by a newer driftwatch?"
    )]
    Corrupt(String),
    /// The write's lease expired and was granted to another holder: its
    /// work was read under a lease it no longer has, so it must not commit.
    #[error("lease `{0}` was lost before the write committed; another process took over")]
    LeaseLost(String),
}

impl StoreError {
    /// Errors worth retrying later with the same input: another process holds
    /// the write lock, or the disk is full. Anything else is a bug or a broken
    /// database and retrying won't help.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code().unwrap_or_default();
                // SQLITE_BUSY(5), SQLITE_LOCKED(6), SQLITE_IOERR(10), SQLITE_FULL(13), extended codes keep the low byte.
                matches!(
                    code.parse::<i32>().map(|c| c & 0xff),
                    Ok(5) | Ok(6) | Ok(10) | Ok(13)
                )
            }
            StoreError::Db(sqlx::Error::PoolTimedOut) | StoreError::Db(sqlx::Error::Io(_)) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    /// The database, its `-wal` and `-shm` are 0600 and a directory created
    /// for it 0700: they hold raw vendor mail.
    pub async fn open(path: &Path) -> Result<Store> {
        crate::private_files::prepare_database(path)
            .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Checkpoint the WAL every 64 MB instead of every 4 MB: the raw
            // archive makes ingest write-heavy, and frequent checkpoints were
            // half of the commit time in the ingest benchmark.
            .page_size(16384)
            .pragma("wal_autocheckpoint", "4096")
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            // SQLite rolls a transaction back by itself on some errors
            // (SQLITE_FULL on a full disk, SQLITE_IOERR); sqlx 0.9 still counts
            // it as open, its ROLLBACK then fails, and the connection refuses
            // every later BEGIN ("attempted to call begin_with at non-zero
            // transaction depth"), so ingest could never resume. Retire such a
            // connection instead of pooling it. The ping first lets a queued
            // rollback from a dropped transaction finish.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if !sqlx::Connection::is_in_transaction(conn) {
                        return Ok(true);
                    }
                    sqlx::Connection::ping(conn).await?;
                    Ok(!sqlx::Connection::is_in_transaction(conn))
                })
            })
            .connect_with(opts)
            .await?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for in-flight statements: part of clean shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// The one timestamp format in the database: fixed width, so text order is time order.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.fZ")
        .map(|n| n.and_utc())
        .map_err(|e| StoreError::Corrupt(format!("timestamp `{s}`: {e}")))
}

pub(crate) fn parse_enum<T: FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    T::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}
