//! HTTP and paginated-API export sources against a local server playing the
//! vendor: auth header from a secret file, ETag/Last-Modified, CSV dialect
//! (semicolons, Latin-1, composite keys), page pagination with a page that
//! fails once, cursor listings that stop early.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reconcile_support;
mod support;

use std::sync::{Arc, Mutex};

use chrono::{Duration, TimeZone, Utc};
use driftwatch::model::Status;
use driftwatch::reconcile::{Outcome, ReconcileError, RunOptions, run_once};
use driftwatch::store::Store;
use reconcile_support::{Env, seed_scheduled};
use support::vendor_http::{Response, VendorHttp};

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
}

async fn seed(store: &Store, vendor: &str, refs: impl Iterator<Item = String>, appraiser: &str) {
    let fields = [("appraiser".to_string(), serde_json::json!(appraiser))].into();
    seed_scheduled(store, vendor, "scheduled", refs, &fields, t0()).await;
}

/// A semicolon-separated Latin-1 export with a composite key.
fn latin1_export(second_status: &str) -> Vec<u8> {
    let text = format!(
        "Branch;Order No;Status;Appraiser\r\nB1;1000;SCHED;Jos\u{e9} Mart\u{ed}nez\r\nB1;1001;{second_status};Jos\u{e9} Mart\u{ed}nez\r\nB2;1000;SCHED;\"Jos\u{e9}; Mart\u{ed}nez\"\r\n"
    );
    text.chars().map(|c| c as u32 as u8).collect()
}

#[tokio::test]
async fn http_csv_export_with_auth_etag_and_dialect() {
    let body: Arc<Mutex<(String, Vec<u8>, &str)>> = Arc::new(Mutex::new((
        "\"v1\"".into(),
        latin1_export("DLVD"),
        "Fri, 01 May 2026 20:00:00 GMT",
    )));
    let served = body.clone();
    let server = VendorHttp::start(move |req| {
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer s3cret") {
            return Response::status(401);
        }
        let (etag, bytes, modified) = served.lock().unwrap().clone();
        if req.headers.get("if-none-match") == Some(&etag) {
            return Response::status(304);
        }
        Response::ok(bytes)
            .header("ETag", &etag)
            .header("Last-Modified", modified)
    })
    .await;
    let env = Env::new(&format!(
        r#"[[vendor]]
name = "acme"
policy = "fix"
[vendor.export]
kind = "http"
url = "{}/export.csv"
auth_file = "token"
as_of = "modified"
delimiter = ";"
encoding = "latin1"
[vendor.mapping]
key = ["Branch", "Order No"]
status = "Status"
[vendor.mapping.fields.appraiser]
column = "Appraiser"
[vendor.status_map]
SCHED = "scheduled"
DLVD = "completed"
[vendor.guard]
max_drift_pct = 80
"#,
        server.base_url
    ));
    std::fs::write(env.path("token"), "Bearer s3cret\n").unwrap();
    let app = env.app().await;
    seed(
        &app.store,
        "acme",
        ["B1|1000", "B1|1001", "B2|1000"]
            .into_iter()
            .map(String::from),
        "José Martínez",
    )
    .await;
    let opts = || RunOptions {
        now: Some(t0() + Duration::days(1)),
        ..Default::default()
    };

    let s = run_once(&app.store, &app.config, "acme", opts())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert_eq!(
        s.as_of,
        Some(Utc.with_ymd_and_hms(2026, 5, 1, 20, 0, 0).unwrap()),
        "as_of from Last-Modified"
    );
    assert_eq!(s.counts.orders_remote, 3);
    // B2|1000's appraiser has a quoted semicolon: a real difference, decoded from Latin-1.
    assert_eq!((s.counts.status_mismatch, s.counts.field_mismatch), (1, 1));
    let fixed = app.store.order("acme", "B1|1001").await.unwrap().unwrap();
    assert_eq!(fixed.status, Some(Status::Completed));
    let b2 = app.store.order("acme", "B2|1000").await.unwrap().unwrap();
    assert_eq!(b2.fields["appraiser"], "José; Martínez");

    // Unchanged on the server: a conditional GET, answered 304.
    let s = run_once(&app.store, &app.config, "acme", opts())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Unchanged);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].headers.get("if-none-match").map(String::as_str),
        Some("\"v1\"")
    );
    assert!(
        reqs.iter()
            .all(|r| r.headers["authorization"] == "Bearer s3cret")
    );

    // A new export version is diffed again.
    // A new export version (the vendor moved 1001 back) is diffed again.
    *body.lock().unwrap() = (
        "\"v2\"".into(),
        latin1_export("SCHED"),
        "Sat, 02 May 2026 20:00:00 GMT",
    );
    let s = run_once(
        &app.store,
        &app.config,
        "acme",
        RunOptions {
            now: Some(t0() + Duration::days(2)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((s.outcome, s.counts.status_mismatch), (Outcome::Ok, 1));

    // A rejected token is a fetch error, recorded as a failed run.
    std::fs::write(env.path("token"), "Bearer wrong\n").unwrap();
    let e = run_once(&app.store, &app.config, "acme", opts())
        .await
        .unwrap_err();
    assert!(matches!(e, ReconcileError::Fetch(_)), "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    let runs = app.store.reconcile_runs("acme", 1).await.unwrap();
    assert_eq!(runs[0].outcome, "failed");
}

fn api_env(base: &str, pagination: &str) -> Env {
    Env::new(&format!(
        r#"[[vendor]]
name = "api"
policy = "fix"
[vendor.export]
kind = "api"
url = "{base}/orders"
pagination = "{pagination}"
page_size = 100
items = "/data"
next_cursor = "/next"
total = "/total"
retries = 2
retry_backoff_ms = 5
as_of = "field:/generated_at"
[vendor.mapping]
key = "id"
status = "state"
"#
    ))
}

fn page(from: usize, to: usize, extra: serde_json::Value) -> Vec<u8> {
    let data: Vec<_> = (from..to)
        .map(|i| serde_json::json!({"id": format!("A{i:04}"), "state": "scheduled"}))
        .collect();
    let mut doc =
        serde_json::json!({"data": data, "generated_at": "2026-05-01T20:00:00Z", "total": 250});
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    serde_json::to_vec(&doc).unwrap()
}

#[tokio::test]
async fn api_page_pagination_retries_a_failed_page() {
    let failed_once = Arc::new(Mutex::new(false));
    let server = VendorHttp::start(move |req| {
        let p: usize = req
            .query
            .get("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        assert_eq!(req.query.get("per_page").map(String::as_str), Some("100"));
        if p == 2 && !std::mem::replace(&mut *failed_once.lock().unwrap(), true) {
            return Response::status(503);
        }
        let from = (p - 1) * 100;
        Response::ok(page(from, (from + 100).min(250), serde_json::json!({})))
    })
    .await;
    let env = api_env(&server.base_url, "page");
    let app = env.app().await;
    seed(&app.store, "api", (0..250).map(|i| format!("A{i:04}")), "x").await;
    let s = run_once(&app.store, &app.config, "api", RunOptions::default())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert_eq!((s.counts.orders_remote, s.drifts()), (250, 0));
    assert_eq!(
        s.as_of,
        Some(Utc.with_ymd_and_hms(2026, 5, 1, 20, 0, 0).unwrap())
    );
    let pages: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.query["page"].clone())
        .collect();
    assert_eq!(pages, ["1", "2", "2", "3"]);
}

#[tokio::test]
async fn api_listing_that_stops_early_is_refused() {
    // Cursor pagination whose second page forgets the cursor: 200 of 250 listed.
    let server = VendorHttp::start(|req| match req.query.get("cursor").map(String::as_str) {
        None => Response::ok(page(0, 100, serde_json::json!({"next": "c2"}))),
        Some("c2") => Response::ok(page(100, 200, serde_json::json!({}))),
        Some(_) => Response::status(404),
    })
    .await;
    let env = api_env(&server.base_url, "cursor");
    let app = env.app().await;
    seed(&app.store, "api", (0..250).map(|i| format!("A{i:04}")), "x").await;
    let before = support::db::dump(&env.database()).await;
    let s = run_once(&app.store, &app.config, "api", RunOptions::default())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    assert!(
        s.reason
            .as_deref()
            .unwrap()
            .contains("listing ended after 200 of 250"),
        "{:?}",
        s.reason
    );
    assert_eq!(s.counts.missing_remote, 50, "what it would have said");
    assert_eq!(support::db::dump(&env.database()).await, before);

    // A page that keeps failing: the listing is incomplete, nothing fixed.
    let server = VendorHttp::start(|req| match req.query.get("cursor").map(String::as_str) {
        None => Response::ok(page(0, 100, serde_json::json!({"next": "c2"}))),
        _ => Response::status(500),
    })
    .await;
    let env = api_env(&server.base_url, "cursor");
    let app = env.app().await;
    seed(&app.store, "api", (0..250).map(|i| format!("A{i:04}")), "x").await;
    let s = run_once(&app.store, &app.config, "api", RunOptions::default())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    assert!(
        s.reason
            .as_deref()
            .unwrap()
            .contains("page 2 failed after 2 retries: HTTP 500"),
        "{:?}",
        s.reason
    );
    assert_eq!(server.requests().len(), 4, "1 + 3 attempts at page 2");
    let runs = app.store.reconcile_runs("api", 1).await.unwrap();
    assert_eq!(runs[0].outcome, "refused");
}

/// A vendor API serving `body` as its one page, and a `fix` vendor `api`
/// reading it (key `id`, status `state`, then `mapping`), with orders
/// A0001 and A0002 scheduled. The `Env` holds the data directory.
async fn one_page_api(
    body: &'static [u8],
    mapping: &str,
) -> (VendorHttp, Env, driftwatch::app::App) {
    let server = VendorHttp::start(move |_req| Response::ok(body.to_vec())).await;
    let env = Env::new(&format!(
        r#"[[vendor]]
name = "api"
policy = "fix"
[vendor.export]
kind = "api"
url = "{}/orders"
items = "/data"
as_of = "field:/generated_at"
[vendor.mapping]
key = "id"
status = "state"
{mapping}"#,
        server.base_url
    ));
    let app = env.app().await;
    seed(
        &app.store,
        "api",
        ["A0001", "A0002"].map(String::from).into_iter(),
        "x",
    )
    .await;
    (server, env, app)
}

/// An API page's numbers are read from their own text, as an export file's
/// are: a double would have made `1.00000000000000000001` the fee 1.
#[tokio::test]
async fn api_numbers_are_read_from_their_own_text() {
    let (_server, _env, app) = one_page_api(
        br#"{"data": [{"id": "A0001", "state": "scheduled", "fee": 1.00000000000000000001},
                      {"id": "A0002", "state": "scheduled", "fee": 2}],
            "generated_at": "2026-05-01T20:00:00Z", "total": 1.00000000000000000002}"#,
        "[vendor.mapping.fields.fee]\ncolumn = \"fee\"\ntype = \"money\"\n[vendor.guard]\nmax_drift_pct = 100\n",
    )
    .await;
    let s = run_once(&app.store, &app.config, "api", RunOptions::default())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    let orders = app.store.orders(Some("api")).await.unwrap();
    assert_eq!(
        orders[0].fields.get("fee"),
        Some(&serde_json::json!("1.00000000000000000001"))
    );
}

/// An API record naming a mapped column twice is a row error, as in an
/// export file: the JSON reader keeps the last value, so which one the
/// vendor meant would be a guess. Another key named twice is no matter.
#[tokio::test]
async fn api_record_naming_a_column_twice_is_a_row_error() {
    let (_server, _env, app) = one_page_api(
        br#"{"data": [{"id": "A0001", "state": "completed", "state": "scheduled"},
                      {"id": "A0002", "state": "completed", "note": "a", "note": "b"}],
            "generated_at": "2026-05-01T20:00:00Z"}"#,
        "",
    )
    .await;
    let s = run_once(&app.store, &app.config, "api", RunOptions::default())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:?}");
    let reason = s.reason.unwrap_or_default();
    assert!(reason.contains("1 row(s) could not be read"), "{reason}");
    assert!(
        reason.contains("row 1") && reason.contains("`state` is given more than once"),
        "{reason}"
    );
    let orders = app.store.orders(Some("api")).await.unwrap();
    assert!(
        orders.iter().all(|o| o.status == Some(Status::Scheduled)),
        "{orders:?}"
    );
}
