//! The view is a function of the log: `rebuild` gives the same rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use support::app::{maildir_config, parsers_dir};
use support::db;

#[tokio::test]
async fn rebuild_recomputes_exactly_the_incremental_view() {
    let cfg = maildir_config(&parsers_dir(), "");
    // The demo mail includes a late, older email and a duplicate; the
    // fixtures add digests and CSV rows touching many orders.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in [
        "demo/mail",
        "fixtures/pinnacle-credit",
        "fixtures/rivergate-flood",
        "fixtures/acme-appraisal",
    ] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        {
            n += 1;
            cfg.deliver(&format!("{n:03}"), &std::fs::read(f).unwrap());
        }
    }
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    let orders_sql = "SELECT count(*) FROM orders";
    let count = db::count(&cfg.database(), orders_sql).await;
    assert!(count >= 15, "only {count} orders");

    let incremental = dump_orders(&cfg.database()).await;
    let rebuilt = app.store.rebuild_view().await.unwrap();
    assert_eq!(rebuilt as i64, count);
    assert_eq!(dump_orders(&cfg.database()).await, incremental);
}

/// Every column of the orders table, including the ones `db::dump` leaves out.
async fn dump_orders(
    path: &db::Db,
) -> Vec<(
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    String,
    i64,
)> {
    let pool = db::open(path).await;
    sqlx::query_as(
        "SELECT vendor, order_ref, status, fields, event_time, last_offset, updated_at, delta_count
         FROM orders ORDER BY vendor, order_ref",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_is_exact_across_its_internal_chunks() {
    // 1,100 orders: more than one rebuild chunk (1,024 orders).
    let cfg = maildir_config(&parsers_dir(), "");
    for (i, m) in support::vendor_mail::acme_batch(4400, 0)
        .into_iter()
        .enumerate()
    {
        cfg.deliver(&format!("{i:05}"), &m);
    }
    let app = cfg.app().await;
    app.ingest_once().await.unwrap();
    let incremental = dump_orders(&cfg.database()).await;
    assert_eq!(incremental.len(), 1100);
    assert_eq!(app.store.rebuild_view().await.unwrap(), 1100);
    assert_eq!(dump_orders(&cfg.database()).await, incremental);
}
