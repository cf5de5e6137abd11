//! The test's database, on the backend the suite runs against, read
//! independently of the store code.
//!
//! `DRIFTWATCH_TEST_BACKEND=postgres` (set by `scripts/test.sh` for its
//! PostgreSQL round, with `DRIFTWATCH_TEST_POSTGRES` naming a private server)
//! gives every test config its own fresh PostgreSQL database; otherwise each
//! test has a SQLite file in its temp dir. A PostgreSQL run without a server
//! fails; it never falls back to SQLite.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

/// Where one test's driftwatch database is.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

/// True when this test run is the PostgreSQL round.
pub fn on_postgres() -> bool {
    match std::env::var("DRIFTWATCH_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("DRIFTWATCH_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

/// The base URL of the test PostgreSQL server (no database path).
pub fn postgres_server() -> String {
    std::env::var("DRIFTWATCH_TEST_POSTGRES").expect(
        "DRIFTWATCH_TEST_BACKEND=postgres needs DRIFTWATCH_TEST_POSTGRES=postgres://user@host:port (scripts/test.sh starts one)",
    )
}

fn fresh_postgres_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "dw_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

fn pg_url(name: &str) -> String {
    format!("{}/{name}?sslmode=disable", postgres_server())
}

/// Runs one statement on the test server's `postgres` database.
fn psql(sql: &str) {
    psql_on(&postgres_server(), sql);
}

/// Runs one statement on `server`'s `postgres` database.
pub fn psql_on(server: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .arg(format!("{server}/postgres?sslmode=disable"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql (PostgreSQL client)");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new, empty PostgreSQL database on the test server: its URL.
pub fn fresh_postgres_database() -> String {
    let name = fresh_postgres_name();
    psql(&format!("CREATE DATABASE {name}"));
    pg_url(&name)
}

impl Db {
    /// The database for a test whose data dir is `data_dir`: a SQLite file
    /// there, or a fresh PostgreSQL database in the PostgreSQL round.
    pub fn for_data_dir(data_dir: &Path) -> Db {
        if on_postgres() {
            Db::Postgres(fresh_postgres_database())
        } else {
            Db::Sqlite(data_dir.join("driftwatch.db"))
        }
    }

    /// [`Db::for_data_dir`], unless the config text already names its
    /// `database` (a test sharing another test config's database).
    pub fn for_config(data_dir: &Path, config_text: &str) -> Db {
        let named = config_text.lines().find_map(|l| {
            let v = l
                .trim()
                .strip_prefix("database")?
                .trim_start()
                .strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_string())
        });
        match named {
            Some(v) if v.starts_with("postgres") => Db::Postgres(v),
            Some(v) => Db::Sqlite(data_dir.join(v)),
            None => Db::for_data_dir(data_dir),
        }
    }

    /// The config line that points driftwatch at this database (none for
    /// the default SQLite file in the data dir).
    pub fn config_line(&self) -> String {
        match self {
            Db::Sqlite(_) => String::new(),
            Db::Postgres(url) => format!("database = \"{url}\"\n"),
        }
    }

    /// What `database = "…"` says for this database.
    pub fn config_value(&self) -> String {
        match self {
            Db::Sqlite(p) => p.display().to_string(),
            Db::Postgres(url) => url.clone(),
        }
    }

    /// The SQLite file; panics in the PostgreSQL round (for tests of
    /// SQLite's own behaviour).
    pub fn sqlite_path(&self) -> &Path {
        match self {
            Db::Sqlite(p) => p,
            Db::Postgres(url) => panic!("this test needs a SQLite file, not {url}"),
        }
    }

    pub fn location(&self) -> driftwatch::store::Location {
        match self {
            Db::Sqlite(p) => driftwatch::store::Location::Sqlite(p.clone()),
            Db::Postgres(url) => driftwatch::store::Location::Postgres {
                url: url.clone(),
                password: None,
            },
        }
    }

    /// Read-only on SQLite: a test that reads cannot change what it checks.
    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(p) => format!("sqlite://{}?mode=ro", p.display()),
            Db::Postgres(url) => url.clone(),
        }
    }

    pub fn writable_url(&self) -> String {
        match self {
            Db::Sqlite(p) => format!("sqlite://{}", p.display()),
            Db::Postgres(url) => url.clone(),
        }
    }

    /// A copy of this database as it is now (no process may be using it).
    pub fn save_copy(&self, name: &str) -> Db {
        match self {
            Db::Sqlite(p) => {
                let copy = p.with_file_name(format!("{name}.db"));
                std::fs::copy(p, &copy).expect("copy SQLite database");
                Db::Sqlite(copy)
            }
            Db::Postgres(_) => {
                let copy = fresh_postgres_name();
                psql(&format!(
                    "CREATE DATABASE {copy} TEMPLATE {}",
                    self.pg_name()
                ));
                Db::Postgres(pg_url(&copy))
            }
        }
    }

    /// Puts this database back to `saved` (from [`Db::save_copy`]).
    pub fn restore(&self, saved: &Db) {
        match (self, saved) {
            (Db::Sqlite(p), Db::Sqlite(base)) => {
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
                }
                std::fs::copy(base, p).expect("restore SQLite database");
            }
            (Db::Postgres(_), Db::Postgres(_)) => {
                psql(&format!("DROP DATABASE {} WITH (FORCE)", self.pg_name()));
                psql(&format!(
                    "CREATE DATABASE {} TEMPLATE {}",
                    self.pg_name(),
                    saved.pg_name()
                ));
            }
            _ => panic!("restore across backends"),
        }
    }

    fn pg_name(&self) -> String {
        match self {
            Db::Postgres(url) => url
                .rsplit('/')
                .next()
                .and_then(|t| t.split('?').next())
                .expect("database name in URL")
                .to_string(),
            Db::Sqlite(_) => unreachable!("SQLite has no database name"),
        }
    }

    /// True once the database exists (SQLite: its file).
    pub fn exists(&self) -> bool {
        match self {
            Db::Sqlite(p) => p.exists(),
            Db::Postgres(_) => true,
        }
    }
}

pub async fn open(db: &Db) -> AnyPool {
    connect(&db.url()).await
}

/// For a test that damages or rewinds stored rows on purpose, as an older
/// driftwatch or a broken disk would have left them.
pub async fn open_writable(db: &Db) -> AnyPool {
    connect(&db.writable_url()).await
}

async fn connect(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("open test database")
}

pub async fn count(db: &Db, sql: &str) -> i64 {
    let pool = open(db).await;
    // As BIGINT: PostgreSQL's sum() of integers is NUMERIC.
    let n: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(({sql}) AS BIGINT)"
    )))
    .fetch_one(&pool)
    .await
    .expect("count query");
    pool.close().await;
    n.unwrap_or(0)
}

/// Every row of every driftwatch table, as text, leaving out only the columns
/// that record *when* we did something (those differ between any two runs).
/// Two databases with equal dumps hold the same archive, log, view and checkpoints.
pub async fn dump(db: &Db) -> Vec<String> {
    const TABLES: [(&str, &str); 6] = [
        ("messages", "id"),
        ("message_locations", "source, folder, location"),
        ("checkpoints", "source, folder"),
        ("deltas", "\"offset\""),
        ("superseded_deltas", "\"offset\""),
        ("orders", "vendor, order_ref"),
    ];
    const WALL_CLOCK: [&str; 5] = [
        "archived_at",
        "fetched_at",
        "recorded_at",
        "updated_at",
        "superseded_at",
    ];
    let pool = open(db).await;
    let mut out = Vec::new();
    for (table, order) in TABLES {
        let (columns_sql, quote): (String, fn(&str) -> String) = match db {
            Db::Sqlite(_) => (
                format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
                |c| format!("quote(\"{c}\")"),
            ),
            Db::Postgres(_) => (
                format!(
                    "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
                     WHERE table_name = '{table}' ORDER BY ordinal_position"
                ),
                |c| format!("quote_nullable(\"{c}\")"),
            ),
        };
        let cols: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(columns_sql))
            .fetch_all(&pool)
            .await
            .expect("table columns")
            .iter()
            .map(|r| r.get::<String, _>(0))
            .filter(|c| !WALL_CLOCK.contains(&c.as_str()))
            .collect();
        let select = cols
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {select} FROM {table} ORDER BY {order}"
        )))
        .fetch_all(&pool)
        .await
        .expect("dump table");
        out.extend(rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    pool.close().await;
    out
}

/// Another process's hold on the store's write lock (SQLite: an open
/// `BEGIN IMMEDIATE`; PostgreSQL: the store's advisory write lock), until
/// [`WriteLockHold::release`].
pub struct WriteLockHold(sqlx::AnyConnection);

impl WriteLockHold {
    pub async fn take(db: &Db) -> WriteLockHold {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&db.writable_url())
            .await
            .expect("connect");
        let sql = match db {
            Db::Sqlite(_) => "BEGIN IMMEDIATE",
            // The key the store's write transactions take (0x6477).
            Db::Postgres(_) => "SELECT 1 FROM pg_advisory_lock(25719)",
        };
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        WriteLockHold(conn)
    }

    pub async fn release(self) {
        use sqlx::Connection;
        self.0.close().await.expect("release the write lock");
    }
}

/// A private PostgreSQL server for one test (scripts/postgres.sh), stopped
/// when dropped. For tests of PostgreSQL itself (TLS, several instances,
/// migrate-store), which run in every round.
pub struct PgServer {
    pub dir: tempfile::TempDir,
    /// `postgres://dw@127.0.0.1:PORT` (no database).
    pub server: String,
}

impl PgServer {
    pub fn start() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("driftwatch-pg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        // The server runs as user postgres (initdb refuses root): it must reach its directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh");
        for _ in 0..5 {
            let port = super::free_port();
            let out = std::process::Command::new("bash")
                .arg(&script)
                .arg("start")
                .arg(dir.path().join("pg"))
                .arg(port.to_string())
                .output()
                .expect("run scripts/postgres.sh");
            if out.status.success() {
                let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let server = url.trim_end_matches("/postgres").to_string();
                return PgServer { dir, server };
            }
            eprintln!(
                "postgres.sh start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        panic!(
            "could not start a private PostgreSQL (scripts/postgres.sh; scripts/install-test-deps.sh installs it)"
        );
    }

    /// A new empty database on this server: its URL (plain, trusted loopback).
    pub fn database(&self, name: &str) -> String {
        psql_on(&self.server, &format!("CREATE DATABASE {name}"));
        format!("{}/{name}?sslmode=disable", self.server)
    }

    /// User `dw`'s password (needed over TLS).
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("pg/password")
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("pg/ca.pem")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .status();
    }
}
