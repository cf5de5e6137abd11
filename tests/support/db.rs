//! Reading a driftwatch database from a test, independently of the store code.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

pub async fn open(db: &Path) -> SqlitePool {
    let opts = SqliteConnectOptions::new().filename(db).read_only(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .expect("open test database")
}

pub async fn count(db: &Path, sql: &str) -> i64 {
    let pool = open(db).await;
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&pool)
        .await
        .expect("count query");
    pool.close().await;
    n
}

/// Every row of every driftwatch table, as text, leaving out only the columns
/// that record *when* we did something (those differ between any two runs).
/// Two databases with equal dumps hold the same archive, log, view and checkpoints.
pub async fn dump(db: &Path) -> Vec<String> {
    const TABLES: [(&str, &str); 6] = [
        ("messages", "id"),
        ("message_locations", "source, folder, location"),
        ("checkpoints", "source, folder"),
        ("deltas", "offset"),
        ("superseded_deltas", "offset"),
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
        let cols: Vec<String> =
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA table_info({table})")))
                .fetch_all(&pool)
                .await
                .expect("table_info")
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .filter(|c| !WALL_CLOCK.contains(&c.as_str()))
                .collect();
        let select = cols
            .iter()
            .map(|c| format!("quote({c})"))
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
