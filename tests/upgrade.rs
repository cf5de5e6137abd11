//! A database written before raw mail was compressed (schema up to 0004)
//! upgrades in place at the next start: its archived mail reads back byte for
//! byte, and quarantine export and reparse see the same bytes as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::ConnectOptions;
use sqlx::migrate::Migrate;
use sqlx::sqlite::SqliteConnectOptions;

#[tokio::test]
async fn a_database_from_before_compression_upgrades_and_reads_its_mail_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let raw =
        b"From: status@acme-amc.example\r\nSubject: Order 48213\r\n\r\nInspection scheduled.\r\n"
            .to_vec();
    {
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        conn.ensure_migrations_table("_sqlx_migrations")
            .await
            .unwrap();
        for m in sqlx::migrate!("./migrations/sqlite")
            .iter()
            .filter(|m| m.version <= 4)
        {
            conn.apply("_sqlx_migrations", m).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO messages (id, dedupe_key, content_hash, size, raw, raw_complete,
                 archived_at, disposition, reason)
             VALUES (1, x'01', x'02', ?, ?, 1, '2026-11-01T00:00:00.000000Z', 'quarantined', 'r')",
        )
        .bind(raw.len() as i64)
        .bind(&raw)
        .execute(&mut conn)
        .await
        .unwrap();
    }

    let store = driftwatch::store::Store::open(&path).await.unwrap();
    let m = store.message(1).await.unwrap().expect("the old message");
    assert_eq!(m.raw, raw, "an uncompressed row reads back as it was");
    assert_eq!(m.disposition, "quarantined");
    store.close().await;
}
