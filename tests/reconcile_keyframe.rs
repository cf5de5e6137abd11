//! Key frames that can never write a wrong truth: each test is one rule of
//! issue 10, tried the way it went wrong (decimal commas, ambiguous numbers,
//! unknown status words, cut files, stale exports, partial exports).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reconcile_support;
mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use driftwatch::model::{DeltaDraft, DeltaSource, Status, TimeSource};
use driftwatch::reconcile::{Outcome, ReconcileError, RunOptions, RunSummary, run_vendor};
use reconcile_support::Env;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
}

/// The export's time: a day after the orders were told by email.
fn export_time() -> DateTime<Utc> {
    t0() + Duration::days(1)
}

struct Case {
    env: Env,
    app: driftwatch::app::App,
}

impl Case {
    /// A vendor `acme` (policy fix unless `extra` says otherwise) whose
    /// `[[vendor]]` table ends with `extra`, and orders 1..=n scheduled at
    /// fee 500 told by email.
    async fn new(top: &str, extra: &str, n: usize) -> Case {
        let toml = format!(
            r#"[[vendor]]
name = "acme"
{top}
[vendor.export]
kind = "file"
path = "export.csv"
{extra}
[vendor.status_map]
"Inspection Scheduled" = "scheduled"
"Report Delivered" = "completed"
"Open" = "scheduled"
[vendor.guard]
max_drift_pct = 100
max_row_drop_pct = 100
"#
        );
        let env = Env::new(&toml);
        let app = env.app().await;
        let items: Vec<_> = (1..=n)
            .map(|i| {
                (
                    DeltaDraft {
                        vendor: "acme".into(),
                        order_ref: i.to_string(),
                        status: Some(Status::Scheduled),
                        vendor_status: Some("Inspection Scheduled".into()),
                        fields: [("fee".to_string(), serde_json::json!(500.0))].into(),
                        event_time: t0(),
                        time_source: TimeSource::Vendor,
                    },
                    t0(),
                )
            })
            .collect();
        app.store
            .append_deltas_at(DeltaSource::Email, &items)
            .await
            .unwrap();
        Case { env, app }
    }

    /// Writes the export (mtime `export_time()`) and reconciles it.
    async fn run(&self, csv: &str) -> Result<RunSummary, ReconcileError> {
        self.run_at(csv, export_time()).await
    }

    async fn run_at(
        &self,
        body: impl AsRef<[u8]>,
        mtime: DateTime<Utc>,
    ) -> Result<RunSummary, ReconcileError> {
        let path = self.env.path("export.csv");
        std::fs::write(&path, body).unwrap();
        reconcile_support::set_mtime(&path, mtime);
        let v = self.env.vendor(&self.app, "acme");
        let opts = RunOptions {
            now: Some(Utc::now()),
            ..Default::default()
        };
        run_vendor(&self.app.store, &v, &self.env.path("work"), opts).await
    }

    async fn order(&self, r: &str) -> (Option<Status>, serde_json::Value) {
        let o = self.app.store.order("acme", r).await.unwrap().unwrap();
        (o.status, serde_json::json!(o.fields.get("fee")))
    }

    async fn fixes(&self) -> i64 {
        support::db::count(
            &self.env.database(),
            "SELECT count(*) FROM deltas WHERE source = 'reconcile'",
        )
        .await
    }
}

const MAPPING: &str = r#"[vendor.mapping]
key = "Order No"
status = "Status"
[vendor.mapping.fields.fee]
column = "Fee"
type = "money"
"#;

#[tokio::test]
async fn decimal_comma_export_is_read_exactly_under_its_declared_separators() {
    let mapping = MAPPING.replace(
        "status = \"Status\"\n",
        "status = \"Status\"\ndecimal = \",\"\nthousands = \".\"\n",
    );
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{mapping}"),
        3,
    )
    .await;
    let s = c
        .run("Order No,Status,Fee\n1,Open,\"380,00\"\n2,Open,\"1.234,50\"\n3,Open,\"500,00\"\n")
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert_eq!(c.order("1").await.1, serde_json::json!(380.0));
    assert_eq!(c.order("2").await.1, serde_json::json!(1234.5));
    // 500,00 is what we hold: no drift, no fix.
    assert_eq!(c.fixes().await, 2);
}

#[tokio::test]
async fn ambiguous_number_refuses_the_whole_key_frame_and_fixes_nothing() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{MAPPING}"),
        3,
    )
    .await;
    // No thousands separator declared: `1,234` could be 1234 or 1.234.
    let s = c
        .run("Order No,Status,Fee\n1,Report Delivered,600.00\n2,Open,\"1,234\"\n3,Open,500\n")
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    let reason = s.reason.unwrap_or_default();
    assert!(reason.contains("1 row(s) could not be read"), "{reason}");
    assert!(
        reason.contains("row 3") && reason.contains("`1,234`"),
        "{reason}"
    );
    // Not even the good row's fix: the key frame is used whole or not at all.
    assert_eq!(c.fixes().await, 0);
    assert_eq!(c.order("1").await.0, Some(Status::Scheduled));
    // `1.234,50` under the (default) dot decimal is refused too.
    let s = c
        .run("Order No,Status,Fee\n1,Open,\"1.234,50\"\n2,Open,500\n3,Open,500\n")
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn unknown_status_word_refuses_the_key_frame_by_default() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{MAPPING}"),
        3,
    )
    .await;
    let s = c
        .run("Order No,Status,Fee\n1,Awaiting QA,500\n2,Report Delivered,500\n3,Open,500\n")
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused);
    assert!(s.reason.unwrap_or_default().contains("`Awaiting QA`"));
    assert_eq!(s.unmapped_status, 1);
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn unknown_status_word_with_flag_setting_flags_and_fixes_nothing() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{MAPPING}"),
        3,
    )
    .await;
    // The same export with guard.unknown_status = "flag".
    let cfg = std::fs::read_to_string(&c.env.config).unwrap();
    std::fs::write(
        &c.env.config,
        cfg.replace(
            "max_drift_pct = 100",
            "max_drift_pct = 100\nunknown_status = \"flag\"",
        ),
    )
    .unwrap();
    let c = Case {
        app: c.env.app().await,
        env: c.env,
    };
    let s = c
        .run("Order No,Status,Fee\n1,Awaiting QA,500\n2,Report Delivered,500\n3,Open,500\n")
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok);
    assert!(s.reason.unwrap_or_default().contains("not applied"));
    assert_eq!(s.counts.status_mismatch, 1);
    assert_eq!(c.fixes().await, 0);
    assert_eq!(c.order("2").await.0, Some(Status::Scheduled));
}

#[tokio::test]
async fn csv_cut_inside_a_quoted_field_is_refused_and_fixes_nothing() {
    let mapping = MAPPING.replace(
        "type = \"money\"\n",
        "type = \"money\"\n[vendor.mapping.fields.contact]\ncolumn = \"Contact\"\n",
    );
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{mapping}"),
        3,
    )
    .await;
    let cut = "Order No,Status,Fee,Contact\n1,Open,500,Ann\n2,Report Delivered,500,Bo\n3,Open,500,\"Sam Lee and the rest of";
    let e = c.run(cut).await.unwrap_err();
    assert!(e.to_string().contains("ends inside a quoted field"), "{e}");
    // Cut at a line end but without the final line break: the last value may be short.
    let e = c
        .run(
            "Order No,Status,Fee,Contact\n1,Open,500,Ann\n2,Report Delivered,500,Bo\n3,Open,500,Sa",
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("does not end with a line break"),
        "{e}"
    );
    assert_eq!(c.fixes().await, 0);
    let runs = c.app.store.reconcile_runs("acme", 5).await.unwrap();
    assert!(runs.iter().all(|r| r.outcome == "failed"));
}

#[tokio::test]
async fn json_cut_inside_its_structure_is_refused() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("format = \"json\"\nas_of = \"modified\"\n{}", MAPPING),
        2,
    )
    .await;
    let e = c
        .run(r#"[{"Order No":"1","Status":"Report Delivered","Fee":"500"},{"Order No":"2","Sta"#)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a whole export"), "{e}");
    assert_eq!(c.fixes().await, 0);
}

/// A JSON number is read from the text the vendor wrote, not from the
/// double serde_json makes of it: `1.00000000000000000001` was read as 1
/// and fixed into the view as 1. Exact whatever its length, or, beyond what
/// a decimal holds, a row error that refuses the key frame.
#[tokio::test]
async fn a_json_number_is_read_from_its_own_text_exactly_or_refused() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("format = \"json\"\nas_of = \"modified\"\n{MAPPING}"),
        3,
    )
    .await;
    let doc = r#"{"count": 3.14159265358979323846, "items": [
        {"Order No":"1","Status":"Report Delivered","Note":"\"1.00000000000000000001","Fee":600.5},
        {"Order No":"2","Status":"Open","Fee":380.12345678901234567890},
        {"Order No":"3","Status":"Open","Fee":1.00000000000000000001}]}"#;
    let s = c.run(doc).await.unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert_eq!(
        c.order("1").await,
        (Some(Status::Completed), serde_json::json!(600.5))
    );
    assert_eq!(
        c.order("2").await.1,
        serde_json::json!("380.1234567890123456789")
    );
    assert_eq!(
        c.order("3").await.1,
        serde_json::json!("1.00000000000000000001")
    );
    // More digits than a decimal keeps: refused, named, nothing written.
    let s = c
        .run(&doc.replace(
            "380.12345678901234567890",
            "380.123456789012345678901234567890",
        ))
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Refused, "{s:?}");
    let reason = s.reason.unwrap_or_default();
    assert!(reason.contains("1 row(s) could not be read"), "{reason}");
    assert!(
        reason.contains("row 2") && reason.contains("more digits than a decimal keeps exactly"),
        "{reason}"
    );
    assert_eq!(
        c.order("2").await.1,
        serde_json::json!("380.1234567890123456789")
    );
}

#[tokio::test]
async fn a_field_over_the_size_limit_is_refused_with_the_reason() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\nmax_field_bytes = 4096\nmax_row_bytes = 65536\n{MAPPING}"),
        2,
    )
    .await;
    // A 50 MB quoted field: the read stops at the limit.
    let big = format!(
        "Order No,Status,Fee\n1,Open,500\n2,\"{}\",500\n",
        "x".repeat(50 << 20)
    );
    let e = c.run(&big).await.unwrap_err();
    assert!(e.to_string().contains("max_field_bytes"), "{e}");
    // Unquoted, over the field limit but inside the row limit.
    let wide = format!(
        "Order No,Status,Fee\n1,Open,500\n2,{},500\n",
        "y".repeat(5000)
    );
    let e = c.run(&wide).await.unwrap_err();
    assert!(e.to_string().contains("max_field_bytes"), "{e}");
    assert_eq!(c.fixes().await, 0);
}

/// Appends one email delta for order `r` with event and record time `at`.
async fn email(c: &Case, r: &str, status: Status, word: &str, at: DateTime<Utc>) {
    let d = DeltaDraft {
        vendor: "acme".into(),
        order_ref: r.into(),
        status: Some(status),
        vendor_status: Some(word.into()),
        fields: Default::default(),
        event_time: at,
        time_source: TimeSource::Vendor,
    };
    c.app
        .store
        .append_deltas_at(DeltaSource::Email, &[(d, at)])
        .await
        .unwrap();
}

#[tokio::test]
async fn drop_folder_export_is_as_of_its_mtime_so_a_later_email_wins() {
    // No as_of configured: a file's default is its modification time.
    let c = Case::new("policy = \"fix\"", MAPPING, 3).await;
    // Yesterday's export still says scheduled; the vendor emailed "delivered" since.
    email(
        &c,
        "1",
        Status::Completed,
        "Report Delivered",
        export_time() + Duration::hours(2),
    )
    .await;
    let s = c
        .run("Order No,Status,Fee\n1,Inspection Scheduled,500\n2,Open,500\n3,Open,500\n")
        .await
        .unwrap();
    assert_eq!(s.as_of, Some(export_time()));
    assert_eq!(c.order("1").await.0, Some(Status::Completed));
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn a_key_frame_dated_after_now_is_refused_and_fixes_nothing() {
    // A touched file (or a server clock years ahead) would date every fix
    // after any email the vendor will ever send.
    let c = Case::new("policy = \"fix\"", MAPPING, 2).await;
    let e = c
        .run_at(
            "Order No,Status,Fee\n1,Report Delivered,500\n2,Open,500\n",
            Utc::now() + Duration::days(365 * 70),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("later than now"), "{e}");
    assert_eq!(c.fixes().await, 0);
    assert_eq!(c.order("1").await.0, Some(Status::Scheduled));
}

#[tokio::test]
async fn an_as_of_field_without_a_zone_is_refused_unless_the_vendors_zone_is_set() {
    let csv = "Order No,Status,Fee,Exported\n1,Report Delivered,500,2026-05-02 03:00:00\n2,Open,500,2026-05-02 03:00:00\n";
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"field:Exported\"\n{MAPPING}"),
        2,
    )
    .await;
    let e = c.run(csv).await.unwrap_err();
    assert!(e.to_string().contains("no zone or offset"), "{e}");
    assert_eq!(c.fixes().await, 0);

    // Declared: the vendor's 03:00 in Chicago is 08:00 UTC.
    let mapping = MAPPING.replace(
        "status = \"Status\"\n",
        "status = \"Status\"\ntimezone = \"America/Chicago\"\n",
    );
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"field:Exported\"\n{mapping}"),
        2,
    )
    .await;
    let s = c.run(csv).await.unwrap();
    assert_eq!(
        s.as_of,
        Some(Utc.with_ymd_and_hms(2026, 5, 2, 8, 0, 0).unwrap())
    );
    assert_eq!(c.order("1").await.0, Some(Status::Completed));
}

#[tokio::test]
async fn key_frame_older_than_a_contradicting_email_is_stale_for_that_order() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"field:Exported At\"\n{MAPPING}"),
        3,
    )
    .await;
    // The email was recorded before we read the export, but the vendor's own
    // time for it is after the export was cut (its as_of column).
    let at = export_time() - Duration::hours(1);
    email(&c, "1", Status::Completed, "Report Delivered", at).await;
    let cut = (at - Duration::hours(3)).format("%Y-%m-%dT%H:%M:%SZ");
    // The grace window would count the email as known at the cut: none here.
    let csv = format!(
        "Order No,Status,Fee,Exported At\n1,Inspection Scheduled,520,{cut}\n2,Report Delivered,500,{cut}\n3,Open,500,{cut}\n"
    );
    let s = c.run(&csv).await.unwrap();
    assert_eq!(s.outcome, Outcome::Ok);
    assert_eq!(s.stale_orders, 1, "{:?}", s.reason);
    assert!(s.reason.unwrap_or_default().contains("stale for 1 order"));
    // Order 2 is fixed; order 1 keeps what the later email said, fee included.
    assert_eq!(c.order("2").await.0, Some(Status::Completed));
    assert_eq!(
        c.order("1").await,
        (Some(Status::Completed), serde_json::json!(500.0))
    );
    assert_eq!(c.fixes().await, 1);
}

#[tokio::test]
async fn key_frame_older_than_stale_after_hours_is_reported() {
    let c = Case::new("policy = \"fix\"\nstale_after_hours = 24", MAPPING, 2).await;
    let s = c
        .run_at(
            "Order No,Status,Fee\n1,Open,500\n2,Open,500\n",
            Utc::now() - Duration::hours(80),
        )
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok);
    let reason = s.reason.unwrap_or_default();
    assert!(
        reason.contains("hours old") && reason.contains("stale_after_hours = 24"),
        "{reason}"
    );
    // The report lists it under "Needs a human".
    let runs = c.app.store.reconcile_runs("acme", 1).await.unwrap();
    assert_eq!(runs[0].reason.as_deref(), Some(reason.as_str()));
}

#[test]
fn fetched_as_of_with_fix_on_a_file_is_a_config_error() {
    let env = Env::new(
        "[[vendor]]\nname = \"acme\"\npolicy = \"fix\"\n[vendor.export]\nkind = \"glob\"\ndir = \"x\"\npattern = \"*.csv\"\nas_of = \"fetched\"\n",
    );
    let e = driftwatch::config::Config::load(&env.config).unwrap_err();
    assert!(
        e.to_string()
            .contains("stale export would outrank later emails"),
        "{e}"
    );
}

#[tokio::test]
async fn order_leaving_an_open_orders_export_is_never_drift() {
    let scope = "complete = true\n[vendor.export.scope]\nstatuses = [\"ordered\", \"accepted\", \"scheduled\", \"in_progress\", \"on_hold\"]\n";
    let c = Case::new("policy = \"fix\"", &format!("{scope}{MAPPING}"), 3).await;
    // Order 1 completed (told by email before the exports); open-orders
    // exports stop listing it. Two exports in a row, missing_remote_after = 2.
    email(
        &c,
        "1",
        Status::Completed,
        "Report Delivered",
        t0() + Duration::hours(1),
    )
    .await;
    for (i, extra) in ["", "4,Open,500\n"].iter().enumerate() {
        let s = c
            .run_at(
                &format!("Order No,Status,Fee\n2,Open,500\n3,Open,500\n{extra}"),
                export_time() + Duration::hours(i as i64),
            )
            .await
            .unwrap();
        assert_eq!(s.counts.missing_remote, 0, "export {i}");
    }
    assert_eq!(c.order("1").await.0, Some(Status::Completed));
    // An open order missing twice from the complete-for-its-scope export is acted on.
    for (i, extra) in ["", "4,Open,500\n"].iter().enumerate() {
        let s = c
            .run_at(
                &format!("Order No,Status,Fee\n2,Open,500\n{extra}"),
                export_time() + Duration::hours(2 + i as i64),
            )
            .await
            .unwrap();
        assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    }
    assert_eq!(c.order("3").await.0, Some(Status::Cancelled));
    assert_eq!(c.order("1").await.0, Some(Status::Completed));
}

#[tokio::test]
async fn missing_remote_is_only_flagged_unless_the_export_is_stated_complete() {
    let c = Case::new("policy = \"fix\"\nmissing_remote_after = 1", MAPPING, 3).await;
    for i in 0..3 {
        let s = c
            .run_at(
                &format!("Order No,Status,Fee\n1,Open,500\n2,Open,{}\n", 500 + i),
                export_time() + Duration::hours(i),
            )
            .await
            .unwrap();
        assert_eq!((s.counts.missing_remote, s.outcome), (1, Outcome::Ok));
    }
    assert_eq!(c.order("3").await.0, Some(Status::Scheduled));
    let open = c.app.store.drifts(Some("acme"), true).await.unwrap();
    let missing: Vec<_> = open
        .iter()
        .filter(|d| d.order_ref == "3")
        .map(|d| (d.kind.as_str(), d.seen_count))
        .collect();
    assert_eq!(missing, [("missing_remote", 3)]);
}

#[tokio::test]
async fn order_outside_an_update_window_is_never_missing() {
    let scope = "complete = true\n[vendor.export.scope]\nupdated_within_days = 7\n";
    let c = Case::new(
        "policy = \"fix\"\nmissing_remote_after = 1",
        &format!("{scope}{MAPPING}"),
        2,
    )
    .await;
    // Orders 1 and 2 were last updated at t0; the export lists only order 1
    // and is cut 30 days later: order 2 is outside its window.
    let s = c
        .run_at(
            "Order No,Status,Fee\n1,Open,500\n",
            t0() + Duration::days(30),
        )
        .await
        .unwrap();
    assert_eq!(s.counts.missing_remote, 0);
    assert_eq!(c.order("2").await.0, Some(Status::Scheduled));
}

/// `complete = true` and `missing_remote_after = 1`: an order the export
/// does not list is cancelled at once, so a row skipped instead of counted
/// would cancel its order.
async fn complete_case(format: &str, n: usize) -> Case {
    Case::new(
        "policy = \"fix\"\nmissing_remote_after = 1",
        &format!("{format}as_of = \"modified\"\ncomplete = true\n{MAPPING}"),
        n,
    )
    .await
}

/// The reason of a run the guard refused.
fn refused(s: &RunSummary) -> String {
    assert_eq!(s.outcome, Outcome::Refused, "{:?}", s.reason);
    s.reason.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_row_without_a_key_is_a_row_error_not_a_missing_order() {
    let c = complete_case("", 3).await;
    // Order 3's row lost its key: skipped, order 3 was cancelled.
    let s = c
        .run("Order No,Status,Fee\n1,Open,500\n2,Open,500\n,Report Delivered,380\n")
        .await
        .unwrap();
    let reason = refused(&s);
    assert!(
        reason.contains("row 4: column `Order No`: empty order key"),
        "{reason}"
    );
    // A line of only delimiters says nothing and is not a row.
    let s = c
        .run("Order No,Status,Fee\n1,Open,500\n2,Open,500\n3,Open,500\n,,\n")
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert_eq!(c.order("3").await.0, Some(Status::Scheduled));
    assert_eq!(c.fixes().await, 0);

    // JSON: the key renamed, null, or the record not an object at all.
    let c = complete_case("format = \"json\"\n", 3).await;
    let ok = r#"{"Order No":"1","Status":"Open","Fee":"500"},{"Order No":"2","Status":"Open","Fee":"500"}"#;
    for (third, why) in [
        (
            r#"{"OrderNo":"3","Status":"Open"}"#,
            "column `Order No`: no order key in this record",
        ),
        (
            r#"{"Order No":null,"Status":"Open"}"#,
            "column `Order No`: empty order key",
        ),
        ("5", "`5` is not a record"),
        ("null", "`null` is not a record"),
        (r#"[{"Order No":"3"}]"#, "is not a record"),
    ] {
        let s = c.run(&format!("[{ok},{third}]")).await.unwrap();
        let reason = refused(&s);
        assert!(reason.contains("row 3: "), "{third}: {reason}");
        assert!(reason.contains(why), "{third}: {reason}");
    }
    assert_eq!(c.order("3").await.0, Some(Status::Scheduled));
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn a_composite_key_with_an_empty_part_is_a_row_error() {
    let mapping = MAPPING.replace("key = \"Order No\"", "key = [\"Branch\", \"Order No\"]");
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{mapping}"),
        0,
    )
    .await;
    let s = c
        .run("Branch,Order No,Status,Fee\nN,1,Open,500\n,2,Open,500\nS,,Open,500\n")
        .await
        .unwrap();
    let reason = refused(&s);
    assert!(reason.contains("2 row(s) could not be read"), "{reason}");
    assert!(
        reason.contains("row 3: column `Branch`: empty order key")
            && reason.contains("row 4: column `Order No`: empty order key"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_mapped_column_named_twice_in_the_header_is_refused() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{MAPPING}"),
        2,
    )
    .await;
    let e = c
        .run("Order No,Status,Fee,Status\n1,Open,500,Report Delivered\n2,Open,500,Open\n")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("column `Status` appears 2 times in the header"),
        "{e}"
    );
    assert_eq!(c.fixes().await, 0);
    // An unmapped column named twice is never read: no harm.
    let s = c
        .run("Order No,Status,Fee,Note,Note\n1,Open,500,a,b\n2,Open,500,,\n")
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
}

#[tokio::test]
async fn a_mapped_key_given_twice_in_a_json_record_is_a_row_error() {
    let c = complete_case("format = \"json\"\n", 2).await;
    let s = c
        .run(r#"[{"Order No":"1","Status":"Open","Status":"Report Delivered","Fee":"500"},{"Order No":"2","Status":"Open","Fee":"500","x":1,"x":2}]"#)
        .await
        .unwrap();
    let reason = refused(&s);
    assert!(reason.contains("1 row(s) could not be read"), "{reason}");
    assert!(
        reason.contains("row 1: column `Status` is given more than once"),
        "{reason}"
    );
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn an_empty_status_is_a_row_error_not_no_status() {
    let c = complete_case("", 2).await;
    // 48299 was created with a NULL status; order 2 was "not compared".
    let s = c
        .run("Order No,Status,Fee\n1,Open,500\n2,,500\n48299,,100\n")
        .await
        .unwrap();
    let reason = refused(&s);
    assert!(
        reason.contains("row 3: column `Status`: empty status")
            && reason.contains("row 4: column `Status`: empty status"),
        "{reason}"
    );
    assert!(c.app.store.order("acme", "48299").await.unwrap().is_none());
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn a_key_with_a_control_character_is_a_row_error() {
    let c = complete_case("", 2).await;
    let s = c
        .run("Order No,Status,Fee\n1,Open,500\n2\0,Report Delivered,500\n")
        .await
        .unwrap();
    let reason = refused(&s);
    assert!(
        reason.contains(r"row 3: column `Order No`: `2\0` is not an order key"),
        "{reason}"
    );
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn a_json_key_that_is_not_a_whole_number_is_a_row_error() {
    let c = complete_case("format = \"json\"\n", 2).await;
    let s = c
        .run(r#"[{"Order No":1,"Status":"Open","Fee":"500"},{"Order No":2.0,"Status":"Open","Fee":"500"}]"#)
        .await
        .unwrap();
    let reason = refused(&s);
    assert!(
        reason.contains("row 2: column `Order No`: `2.0` is not an order key"),
        "{reason}"
    );
    // A whole number is the key as written.
    let s = c
        .run(r#"[{"Order No":1,"Status":"Open","Fee":"500"},{"Order No":2,"Status":"Report Delivered","Fee":"500"}]"#)
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert_eq!(c.order("2").await.0, Some(Status::Completed));
}

#[tokio::test]
async fn text_after_a_closing_quote_refuses_the_csv() {
    let mapping = MAPPING.replace(
        "type = \"money\"\n",
        "type = \"money\"\n[vendor.mapping.fields.contact]\ncolumn = \"Contact\"\n",
    );
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{mapping}"),
        2,
    )
    .await;
    let e = c
        .run("Order No,Status,Fee,Contact\n1,Open,500,\"Ann \"\"B\"\" Lee\"\n2,Open,500,\"Sam\"Lee\n")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("line 3: a quoted field goes on after its closing quote"),
        "{e}"
    );
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn a_json_record_over_max_row_bytes_is_refused() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!(
            "format = \"json\"\nas_of = \"modified\"\nmax_field_bytes = 4096\nmax_row_bytes = 65536\n{MAPPING}"
        ),
        2,
    )
    .await;
    // Many small keys: no one string is long, the record is.
    let keys: String = (0..50_000).map(|i| format!(",\"k{i}\":1")).collect();
    let doc = format!(
        r#"[{{"Order No":"1","Status":"Open","Fee":"500"}},{{"Order No":"2","Status":"Open","Fee":"500"{keys}}}]"#
    );
    let e = c.run(&doc).await.unwrap_err();
    assert!(
        e.to_string().contains(
            "row 2: a record is longer than the limit of 65536 bytes (export.max_row_bytes)"
        ),
        "{e}"
    );
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn a_json_export_with_a_utf8_bom_is_read_and_a_utf16_one_is_named() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("format = \"json\"\nas_of = \"modified\"\n{MAPPING}"),
        1,
    )
    .await;
    let doc = r#"[{"Order No":"1","Status":"Report Delivered","Fee":"500"}]"#;
    let s = c.run(&format!("\u{feff}{doc}")).await.unwrap();
    assert_eq!(s.outcome, Outcome::Ok, "{:?}", s.reason);
    assert_eq!(c.order("1").await.0, Some(Status::Completed));
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(doc.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let e = c
        .run_at(utf16, export_time() + Duration::hours(1))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("UTF-16"), "{e}");
}

/// Spreadsheet tools save "Unicode text" as UTF-16: named as such, with or
/// without a byte order mark, not as row 1's invalid UTF-8.
#[tokio::test]
async fn a_utf16_csv_is_refused_as_utf16() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{MAPPING}"),
        1,
    )
    .await;
    let csv = "Order No,Status,Fee\n1,Report Delivered,500\n";
    let le = csv.encode_utf16().flat_map(u16::to_le_bytes);
    let be = csv.encode_utf16().flat_map(u16::to_be_bytes);
    for (what, body) in [
        (
            "UTF-16LE with its mark",
            [0xFF, 0xFE]
                .into_iter()
                .chain(le.clone())
                .collect::<Vec<u8>>(),
        ),
        (
            "UTF-16BE with its mark",
            [0xFE, 0xFF].into_iter().chain(be.clone()).collect(),
        ),
        ("UTF-16LE without a mark", le.collect()),
        ("UTF-16BE without a mark", be.collect()),
    ] {
        let e = c
            .run_at(body, export_time() + Duration::hours(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("UTF-16"), "{what}: {e}");
    }
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn a_csv_with_bare_cr_line_ends_is_refused_as_such() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{MAPPING}"),
        2,
    )
    .await;
    let e = c
        .run("Order No,Status,Fee\r1,Open,500\r2,Report Delivered,500\r")
        .await
        .unwrap_err();
    let e = e.to_string();
    assert!(e.contains("bare CR"), "{e}");
    assert!(!e.contains("final_newline"), "{e}");
    assert_eq!(c.fixes().await, 0);
}

#[tokio::test]
async fn a_failure_states_its_reason_once() {
    let c = Case::new(
        "policy = \"fix\"",
        &format!("as_of = \"modified\"\n{MAPPING}"),
        1,
    )
    .await;
    let e = c.run("Order No,Status,Fee\n1,Open,500").await.unwrap_err();
    // What the CLI prints: the error and its sources (`{e:#}`).
    let mut shown = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        shown = format!("{shown}: {c}");
        cause = c.source();
    }
    assert_eq!(
        shown.matches("does not end with a line break").count(),
        1,
        "{shown}"
    );
}

/// A cut export fails the run with its own reason, not the view reader's:
/// 20,000 orders, so the reader is stopped mid-scan by the failed export
/// (it used to read the whole view first).
#[tokio::test]
async fn a_cut_export_stops_the_view_scan_and_names_the_cut() {
    let c = Case::new("policy = \"fix\"", MAPPING, 20_000).await;
    let mut csv = String::from("Order No,Status,Fee,Contact\n");
    for i in 1..=20 {
        csv.push_str(&format!("{i},Report Delivered,500,Ann\n"));
    }
    csv.push_str("21,Open,500,\"Sam Lee and the rest of");
    let err = c.run(&csv).await.unwrap_err().to_string();
    assert!(err.contains("ends inside a quoted field"), "{err}");
    assert_eq!(c.fixes().await, 0);
}

/// The view is read on one thread and compared on another: an order whose
/// stored fields cannot be read stops the run, naming that order, in the
/// middle of a view of several batches, and nothing is fixed.
#[tokio::test]
async fn an_unreadable_order_in_the_view_stops_the_run_naming_it() {
    let c = Case::new("policy = \"fix\"", MAPPING, 20_000).await;
    let pool = support::db::open_writable(&c.env.database()).await;
    sqlx::query("UPDATE orders SET fields = '{\"fee\":' WHERE order_ref = '2000'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mut csv = String::from("Order No,Status,Fee\n");
    for i in 1..=20_000 {
        // Every order drifts, so a run that went on would fix them all.
        csv.push_str(&format!("{i},Report Delivered,500\n"));
    }
    let err = c.run(&csv).await.unwrap_err().to_string();
    assert!(
        err.contains("order `2000` fields"),
        "the error names the order: {err}"
    );
    assert_eq!(c.fixes().await, 0);
    assert_eq!(c.order("1").await.0, Some(Status::Scheduled));
}
