//! All SQL lives here. Nothing outside `store` imports sqlx.
//!
//! One store, two backends behind sqlx's `Any` driver: every statement is
//! written once, in the SQL both SQLite and PostgreSQL accept (`$N`
//! placeholders, `ON CONFLICT`, integers as BIGINT, times as fixed-width
//! UTC text). Where they differ the store asks `self.backend`.
//!
//! SQLite (the default) runs in WAL mode with `synchronous = NORMAL`: a
//! committed transaction survives a process crash (the case we must handle:
//! SIGKILL, OOM), and the fsync per commit that `FULL` adds would cap ingest
//! at the disk's flush rate. Write transactions start with `BEGIN IMMEDIATE`
//! so two writers queue on the busy timeout instead of failing with a lock
//! upgrade deadlock.
//!
//! PostgreSQL gets the same one-writer discipline from a transaction-level
//! advisory lock taken by every write transaction: the delta log's offsets are
//! assigned under it, so they are gap-free and commit in order however many
//! instances write, and every read-then-write in the store keeps the meaning
//! it has on SQLite. Readers never take it.

pub mod private_files;

mod browse;
mod copy;
mod dashboard;
mod feed;
mod health;
mod hooks;
mod ingest;
mod keyframes;
mod lease;
mod orders;
mod outbox;
mod reconcile;
mod reparse;
mod report;
mod scrape;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
pub(crate) use driftwatch_core::{model, view};
use sqlx::AnyConnection;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Transaction};

pub use browse::{OrderPage, VendorSummary};
pub use copy::TableCopy;
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
pub use keyframes::ReportMail;
pub use lease::{Fence, Held, LEASE_TTL, LeaseHolder};
pub use orders::DeltaFilter;
pub use outbox::{Attempt, AttemptOutcome, AttemptRow, Claimed, EventType, OutboundCounts};
pub use reconcile::{
    AsOfOrder, Cutoff, DriftRow, DriftWithView, Evidence, KeyFrameRef, KnownOrder, LastKeyFrame,
    NewDrift, NewKeyFrame, RunCounts, RunRecord, RunRow, RunWritten,
};
pub use reparse::{Classification, OrderChange, ReparseScope, Reparsed, RuleHashes};
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
    /// The direct SQLite read of reconcile's view scan.
    #[error("database error: {0}")]
    Scan(#[from] rusqlite::Error),
}

impl StoreError {
    /// Errors worth retrying later with the same input: another process holds
    /// the write lock, or the disk is full. Anything else is a bug or a broken
    /// database and retrying won't help.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code().unwrap_or_default();
                match code.parse::<i32>() {
                    // SQLite: BUSY(5), LOCKED(6), IOERR(10), FULL(13); extended codes keep the low byte.
                    Ok(c) => matches!(c & 0xff, 5 | 6 | 10 | 13),
                    // PostgreSQL SQLSTATE: serialization failure, deadlock,
                    // disk full / out of memory, lock not available, server
                    // shutting down, connection failures.
                    Err(_) => {
                        matches!(&*code, "40001" | "40P01" | "53100" | "53200" | "55P03")
                            || code.starts_with("57P")
                            || code.starts_with("08")
                    }
                }
            }
            StoreError::Db(sqlx::Error::PoolTimedOut) | StoreError::Db(sqlx::Error::Io(_)) => true,
            StoreError::Scan(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database the store is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the store lives: what `database` in the config resolves to.
#[derive(Clone)]
pub enum Location {
    /// A SQLite file (created on first use).
    Sqlite(PathBuf),
    /// A PostgreSQL database. `url` carries no password; `password` comes
    /// from the environment or a file and never reaches a log.
    Postgres {
        url: String,
        password: Option<String>,
    },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Location {
    /// Reads `database` from the config: a `postgres://` (or
    /// `postgresql://`) URL, or else a SQLite path. A password written into
    /// the URL is refused: it would end up in process listings, shell
    /// history and config backups.
    pub fn parse(text: &str, base: &Path) -> std::result::Result<Location, String> {
        let lower = text.to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            if lower.contains("://") {
                return Err(format!(
                    "`{text}` is not a database driftwatch knows: use a SQLite file path or a postgres:// URL"
                ));
            }
            return Ok(Location::Sqlite(base.join(text)));
        }
        let url = url::Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
        if url.password().is_some() {
            return Err(
                "the URL holds a password; put it in `database_password_file` or `database_password_env` instead"
                    .into(),
            );
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL names no host (postgres://user@host:5432/dbname)".into());
        }
        Ok(Location::Postgres {
            url: text.to_string(),
            password: None,
        })
    }

    /// What logs and messages may show: the path, or the URL (which never
    /// carries the password).
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres { url, .. } => url.clone(),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres { .. } => Backend::Postgres,
        }
    }
}

/// The PostgreSQL advisory lock every write transaction holds (an arbitrary
/// constant: "dw" in ASCII). It is the PostgreSQL twin of SQLite's one writer.
const WRITE_LOCK: i64 = 0x6477;

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite file (absolute), for reads that open it directly.
    sqlite_path: Option<std::path::PathBuf>,
}

impl Store {
    /// Opens (creating if needed) a SQLite database and applies pending
    /// migrations. The database, its `-wal` and `-shm` are 0600 and a
    /// directory created for it 0700: they hold raw vendor mail.
    pub async fn open(path: &Path) -> Result<Store> {
        Store::connect(&Location::Sqlite(path.to_path_buf())).await
    }

    /// Opens the store wherever it lives and applies pending migrations
    /// (several instances starting at once on one PostgreSQL serialise on
    /// the migrator's own lock).
    pub async fn connect(location: &Location) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let store = match location {
            Location::Sqlite(path) => Store::connect_sqlite(path).await?,
            Location::Postgres { url, password } => Store::connect_postgres(url, password).await?,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn connect_sqlite(path: &Path) -> Result<Store> {
        crate::private_files::prepare_database(path)
            .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        // The Any driver takes SQLite options only from a URL, so what the
        // URL cannot say is set per connection. `page_size` first: it only
        // applies to a new, empty database and cannot change once in WAL.
        let absolute = std::path::absolute(path).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        let url = url::Url::from_file_path(&absolute).map_err(|()| {
            StoreError::Db(sqlx::Error::Configuration(
                format!(
                    "database path {} cannot be written as a URL",
                    path.display()
                )
                .into(),
            ))
        })?;
        let url = format!("sqlite://{}?mode=rwc", url.path());
        let pool = pool_options(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Checkpoint the WAL every 64 MB instead of every 4 MB:
                    // the raw archive makes ingest write-heavy, and frequent
                    // checkpoints were half of the commit time in the ingest
                    // benchmark.
                    for pragma in [
                        "PRAGMA page_size = 16384",
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA wal_autocheckpoint = 4096",
                    ] {
                        sqlx::raw_sql(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Store {
            pool,
            backend: Backend::Sqlite,
            sqlite_path: Some(absolute),
        })
    }

    async fn connect_postgres(url: &str, password: &Option<String>) -> Result<Store> {
        let mut url = url::Url::parse(url)
            .map_err(|e| StoreError::Db(sqlx::Error::Configuration(e.to_string().into())))?;
        if let Some(pw) = password {
            url.set_password(Some(pw)).map_err(|()| {
                StoreError::Db(sqlx::Error::Configuration(
                    "this database URL cannot carry a password".into(),
                ))
            })?;
        }
        tls_by_default(&mut url);
        let pool = pool_options(8)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // SQLite's busy timeout, for the advisory write lock: a
                    // writer stuck behind another for this long fails (and
                    // retries) instead of hanging.
                    sqlx::raw_sql("SET lock_timeout = '10s'")
                        .execute(&mut *conn)
                        .await?;
                    // An instance that hangs (a paused VM, a partition)
                    // inside a write transaction would hold the write lock
                    // for every instance; the server ends such a session.
                    sqlx::raw_sql("SET idle_in_transaction_session_timeout = '60s'")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(url.as_str())
            .await?;
        Ok(Store {
            pool,
            backend: Backend::Postgres,
            sqlite_path: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("../../migrations/sqlite")
                    .run(&self.pool)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("../../migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    /// Closes the pool, waiting for in-flight statements: part of clean shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A transaction that may write: the one writer at a time.
    async fn write_tx(&self) -> Result<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// A transaction whose reads all see one commit: SQLite's read
    /// transactions do; PostgreSQL's default (read committed) does not.
    async fn read_tx(&self) -> Result<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin().await?),
            Backend::Postgres => Ok(self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?),
        }
    }
}

/// Whether a URL's host text names this machine: `localhost` or a
/// loopback IP (`[::1]` with or without brackets).
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// TLS on by default: a server off this host is verified (chain and name)
/// unless the URL says otherwise; loopback may stay plain.
fn tls_by_default(url: &mut url::Url) {
    if url.query_pairs().any(|(k, _)| k == "sslmode") {
        return;
    }
    // `postgres:` is not a scheme the URL standard knows, so its host is
    // opaque text: an IP address is parsed here, not by `url`.
    if !is_loopback_host(url.host_str().unwrap_or_default()) {
        url.query_pairs_mut().append_pair("sslmode", "verify-full");
    }
}

fn pool_options(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        // SQLite rolls a transaction back by itself on some errors
        // (SQLITE_FULL on a full disk, SQLITE_IOERR); sqlx 0.9 still counts
        // it as open, its ROLLBACK then fails, and the connection refuses
        // every later BEGIN ("attempted to call begin_with at non-zero
        // transaction depth"), so ingest could never resume. Retire such a
        // connection instead of pooling it. The ping first lets a queued
        // rollback from a dropped transaction finish.
        .after_release(|conn: &mut AnyConnection, _| {
            Box::pin(async move {
                if !sqlx::Connection::is_in_transaction(conn) {
                    return Ok(true);
                }
                sqlx::Connection::ping(conn).await?;
                Ok(!sqlx::Connection::is_in_transaction(conn))
            })
        })
}

/// A statement built at run time (multi-row inserts, `IN` lists), ready for
/// `backend`. SQLite finds a named parameter such as `$7` by a linear scan,
/// so binding a statement with thousands of them takes quadratic time: it
/// was over half of a delta-heavy ingest commit. Run-time statements number
/// their placeholders `$1..$n` in order, each once; on SQLite they become
/// anonymous `?`, bound by position. Any other text is left as it is.
pub(crate) fn bulk_for(backend: Backend, sql: String) -> sqlx::AssertSqlSafe<String> {
    if backend == Backend::Postgres {
        return sqlx::AssertSqlSafe(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut expected = 1usize;
    let mut rest = sql.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if rest[at + 1..at + 1 + digits].parse::<usize>() != Ok(expected) {
            return sqlx::AssertSqlSafe(sql);
        }
        expected += 1;
        out.push('?');
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    sqlx::AssertSqlSafe(out)
}

/// [`bulk_for`] the backend of `conn`.
pub(crate) fn bulk(conn: &AnyConnection, sql: String) -> sqlx::AssertSqlSafe<String> {
    let backend = if conn.backend_name() == "PostgreSQL" {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    bulk_for(backend, sql)
}

/// `($start, …), (…)`: `rows` row tuples of `cols` numbered placeholders,
/// for multi-row statements (both backends read `$N`).
pub(crate) fn row_placeholders(start: usize, cols: usize, rows: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        out.push_str(&list_placeholders(start + r * cols, cols));
        out.push(')');
    }
    out
}

/// `$start, $start+1, …`: `n` numbered placeholders for an `IN (…)` list.
pub(crate) fn list_placeholders(start: usize, n: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(n * 5);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "${}", start + i);
    }
    out
}

/// The one timestamp format in the database: fixed width, so text order is time order.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// [`ts`]'s own form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, without chrono's format
/// interpreter: every row read back has one or two, and a million of them
/// per reconcile run added up. `None` for anything else, which
/// [`parse_ts`] then reads the slow way.
pub(crate) fn fast_ts(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() != 27 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' || b[26] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_micro_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
        num(20..26)?,
    )?;
    Some(date.and_time(time).and_utc())
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    if let Some(t) = fast_ts(s.as_bytes()) {
        return Ok(t);
    }
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

#[cfg(test)]
mod bulk_tests {
    use super::{Backend, bulk_for, tls_by_default};

    #[test]
    fn a_remote_postgres_is_verified_unless_the_url_says_otherwise() {
        let shaped = |u: &str| {
            let mut url = url::Url::parse(u).unwrap();
            tls_by_default(&mut url);
            url.to_string()
        };
        assert_eq!(
            shaped("postgres://dw@db.example/d"),
            "postgres://dw@db.example/d?sslmode=verify-full"
        );
        assert_eq!(
            shaped("postgres://dw@127.0.0.1:5432/d"),
            "postgres://dw@127.0.0.1:5432/d"
        );
        assert_eq!(
            shaped("postgres://dw@db.example/d?sslmode=require"),
            "postgres://dw@db.example/d?sslmode=require"
        );
    }

    #[test]
    fn sqlite_gets_anonymous_placeholders_only_for_sequential_numbering() {
        let got = bulk_for(
            Backend::Sqlite,
            "SELECT x FROM t WHERE a = $1 AND b IN ($2, $3)".into(),
        );
        assert_eq!(got.0, "SELECT x FROM t WHERE a = ? AND b IN (?, ?)");
        // A reused or out-of-order number must keep its name.
        let reused = "SELECT x FROM t WHERE ($1 IS NULL OR a = $1)";
        assert_eq!(bulk_for(Backend::Sqlite, reused.into()).0, reused);
        let pg = "INSERT INTO t VALUES ($1, $2)";
        assert_eq!(bulk_for(Backend::Postgres, pg.into()).0, pg);
    }
}
