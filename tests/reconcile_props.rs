//! Property test: generated local views and exports with injected drift
//! (missing, extra, changed status, changed amounts written in several
//! locales, cut files, ambiguous numbers, partial scopes). After every run:
//! - under `fix`, the view equals the export for every order the export
//!   proves, and nothing else changes;
//! - under `flag`, exactly the disagreements are open;
//! - a refused or unreadable key frame writes no fix.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reconcile_support;
mod support;

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use driftwatch::model::{DeltaDraft, DeltaSource, Status, TimeSource};
use driftwatch::number::Decimal;
use driftwatch::reconcile::{Outcome, RunOptions, run_vendor};
use proptest::prelude::*;
use reconcile_support::Env;

const OPEN: [Status; 4] = [
    Status::Ordered,
    Status::Accepted,
    Status::Scheduled,
    Status::InProgress,
];

#[derive(Debug, Clone, Copy)]
enum Locale {
    /// 1234.50
    Plain,
    /// 1,234.50
    DotComma,
    /// 1.234,50
    Euro,
}

impl Locale {
    fn toml(self) -> &'static str {
        match self {
            Locale::Plain => "",
            Locale::DotComma => "decimal = \".\"\nthousands = \",\"\n",
            Locale::Euro => "decimal = \",\"\nthousands = \".\"\n",
        }
    }

    fn write(self, cents: i64) -> String {
        let (int, frac) = (cents / 100, cents % 100);
        let grouped = |sep: char| {
            let s = int.to_string();
            let mut out = String::new();
            for (i, ch) in s.chars().enumerate() {
                if i > 0 && (s.len() - i) % 3 == 0 {
                    out.push(sep);
                }
                out.push(ch);
            }
            out
        };
        match self {
            Locale::Plain => format!("{int}.{frac:02}"),
            Locale::DotComma => format!("\"{}.{frac:02}\"", grouped(',')),
            Locale::Euro => format!("\"{},{frac:02}\"", grouped('.')),
        }
    }

    /// A value the declaration does not settle.
    fn ambiguous(self) -> &'static str {
        match self {
            Locale::Plain => "\"1,234.50\"",
            Locale::DotComma => "\"1.234,50\"",
            Locale::Euro => "\"1,234.50\"",
        }
    }
}

#[derive(Debug, Clone)]
enum Change {
    Same,
    Status(usize),
    Fee(i64),
    Missing,
}

#[derive(Debug, Clone)]
struct World {
    /// Local orders: status index (4 = completed) and fee in cents.
    local: Vec<(usize, i64)>,
    changes: Vec<Change>,
    /// Orders only the vendor has: (status index, fee cents).
    extra: Vec<(usize, i64)>,
    locale: Locale,
    fix: bool,
    open_scope: bool,
    ambiguous_row: Option<usize>,
    cut: bool,
}

fn world() -> impl Strategy<Value = World> {
    (3usize..10).prop_flat_map(|n| {
        (
            prop::collection::vec((0usize..5, 1i64..500_000), n),
            prop::collection::vec(
                prop_oneof![
                    4 => Just(Change::Same),
                    1 => (0usize..4).prop_map(Change::Status),
                    1 => (1i64..500_000).prop_map(Change::Fee),
                    1 => Just(Change::Missing),
                ],
                n,
            ),
            prop::collection::vec((0usize..4, 1i64..500_000), 0..3),
            prop_oneof![
                Just(Locale::Plain),
                Just(Locale::DotComma),
                Just(Locale::Euro)
            ],
            any::<bool>(),
            any::<bool>(),
            prop::option::weighted(0.15, 0..n),
            prop::bool::weighted(0.15),
        )
            .prop_map(
                |(local, changes, extra, locale, fix, open_scope, ambiguous_row, cut)| World {
                    local,
                    changes,
                    extra,
                    locale,
                    fix,
                    open_scope,
                    ambiguous_row,
                    cut,
                },
            )
    })
}

fn status(i: usize) -> Status {
    if i < 4 { OPEN[i] } else { Status::Completed }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
}

/// What the export says for each order it lists: (ref, status idx, cents).
fn export_rows(w: &World) -> Vec<(String, usize, i64)> {
    let mut rows = Vec::new();
    for (i, ((st, fee), ch)) in w.local.iter().zip(&w.changes).enumerate() {
        // An open-orders export does not list completed orders.
        if w.open_scope && *st == 4 {
            continue;
        }
        match ch {
            Change::Same => rows.push((format!("O{i}"), *st, *fee)),
            Change::Status(s) => rows.push((format!("O{i}"), *s, *fee)),
            Change::Fee(f) => rows.push((format!("O{i}"), *st, *f)),
            Change::Missing => {}
        }
    }
    for (j, (st, fee)) in w.extra.iter().enumerate() {
        rows.push((format!("X{j}"), *st, *fee));
    }
    rows
}

fn words(i: usize) -> &'static str {
    [
        "ordered",
        "accepted",
        "scheduled",
        "in_progress",
        "completed",
    ][i]
}

fn export_csv(w: &World, rows: &[(String, usize, i64)]) -> String {
    let mut s = String::from("Order No,Status,Fee,Note\n");
    for (k, (r, st, fee)) in rows.iter().enumerate() {
        let fee = if w.ambiguous_row == Some(k) {
            w.locale.ambiguous().to_string()
        } else {
            w.locale.write(*fee)
        };
        s.push_str(&format!("{r},{},{fee},\"note, for {r}\"\n", words(*st)));
    }
    if w.cut {
        s.push_str("Z9,ordered,1.00,\"a note cut in the midd");
    }
    s
}

fn cents(d: &serde_json::Value) -> i64 {
    let d = driftwatch::number::from_json(d).unwrap();
    (d * Decimal::from(100))
        .trunc()
        .to_string()
        .parse()
        .unwrap()
}

async fn check(w: World) {
    let scope = if w.open_scope {
        "[vendor.export.scope]\nstatuses = [\"ordered\", \"accepted\", \"scheduled\", \"in_progress\", \"on_hold\"]\n"
    } else {
        ""
    };
    let toml = format!(
        r#"[[vendor]]
name = "v"
policy = "{}"
missing_remote_after = 2
[vendor.export]
kind = "file"
path = "export.csv"
complete = true
{scope}[vendor.mapping]
key = "Order No"
status = "Status"
{}[vendor.mapping.fields.fee]
column = "Fee"
type = "money"
[vendor.guard]
max_drift_pct = 100
max_row_drop_pct = 100
"#,
        if w.fix { "fix" } else { "flag" },
        w.locale.toml()
    );
    let env = Env::new(&toml);
    let app = env.app().await;
    let items: Vec<_> = w
        .local
        .iter()
        .enumerate()
        .map(|(i, (st, fee))| {
            let fee = Decimal::new(*fee, 2);
            (
                DeltaDraft {
                    vendor: "v".into(),
                    order_ref: format!("O{i}"),
                    status: Some(status(*st)),
                    vendor_status: None,
                    fields: [("fee".to_string(), driftwatch::number::to_json(fee))].into(),
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
    let before = support::db::dump(&env.database()).await;
    let rows = export_rows(&w);
    let path = env.path("export.csv");
    std::fs::write(&path, export_csv(&w, &rows)).unwrap();
    reconcile_support::set_mtime(&path, t0() + chrono::Duration::days(1));
    let v = env.vendor(&app, "v");
    let result = run_vendor(&app.store, &v, &env.path("work"), RunOptions::default()).await;
    let fixes = support::db::count(
        &env.database(),
        "SELECT count(*) FROM deltas WHERE source = 'reconcile'",
    )
    .await;

    let ambiguous = w.ambiguous_row.is_some_and(|k| k < rows.len());
    if w.cut || ambiguous {
        // Unreadable (cut) or refused (a bad row): nothing written but the run row.
        match &result {
            Ok(s) => assert_eq!(s.outcome, Outcome::Refused, "{w:?}"),
            Err(_) => assert!(w.cut, "{w:?}: {result:?}"),
        }
        assert_eq!(fixes, 0, "{w:?}");
        assert_eq!(support::db::dump(&env.database()).await, before);
        let drifts = support::db::count(&env.database(), "SELECT count(*) FROM drifts").await;
        assert_eq!(drifts, 0);
        return;
    }
    let s = result.unwrap();
    if s.outcome == Outcome::Refused {
        // The guard did not believe it (a tiny view drifts past any share):
        // a refused key frame writes no fix and no drift.
        assert_eq!(fixes, 0, "{w:?}");
        assert_eq!(support::db::dump(&env.database()).await, before);
        return;
    }
    assert_eq!(s.outcome, Outcome::Ok, "{w:?}: {:?}", s.reason);

    // The disagreements the export proves, by (order, kind).
    let mut expected: BTreeSet<(String, &str)> = BTreeSet::new();
    for (r, st, fee) in &rows {
        match r.strip_prefix('O').and_then(|i| i.parse::<usize>().ok()) {
            None => {
                expected.insert((r.clone(), "missing_local"));
            }
            Some(i) => {
                let (lst, lfee) = w.local[i];
                if lst != *st {
                    expected.insert((r.clone(), "status_mismatch"));
                }
                if lfee != *fee {
                    expected.insert((r.clone(), "field_mismatch"));
                }
            }
        }
    }
    for (i, ((st, _), ch)) in w.local.iter().zip(&w.changes).enumerate() {
        let in_scope = !(w.open_scope && *st == 4);
        if in_scope && matches!(ch, Change::Missing) {
            expected.insert((format!("O{i}"), "missing_remote"));
        }
    }
    let found: BTreeSet<(String, &str)> = app
        .store
        .drifts(Some("v"), false)
        .await
        .unwrap()
        .iter()
        .map(|d| (d.order_ref.clone(), d.kind.as_str()))
        .collect();
    assert_eq!(found, expected, "{w:?}");

    let open: BTreeSet<(String, &str)> = app
        .store
        .drifts(Some("v"), true)
        .await
        .unwrap()
        .iter()
        .map(|d| (d.order_ref.clone(), d.kind.as_str()))
        .collect();
    if w.fix {
        // Every order the export lists now reads as the export says.
        for (r, st, fee) in &rows {
            let o = app.store.order("v", r).await.unwrap().unwrap();
            assert_eq!(o.status, Some(status(*st)), "{r} {w:?}");
            assert_eq!(cents(o.fields.get("fee").unwrap()), *fee, "{r} {w:?}");
        }
        // Orders it does not list are untouched (missing once is not acted on).
        for (i, (st, fee)) in w.local.iter().enumerate() {
            let r = format!("O{i}");
            if rows.iter().any(|x| x.0 == r) {
                continue;
            }
            let o = app.store.order("v", &r).await.unwrap().unwrap();
            assert_eq!(o.status, Some(status(*st)), "{r} {w:?}");
            assert_eq!(cents(o.fields.get("fee").unwrap()), *fee, "{r} {w:?}");
        }
        // Only the missing_remote drifts (waiting for a second key frame) stay open.
        assert!(open.iter().all(|(_, k)| *k == "missing_remote"), "{open:?}");
    } else {
        assert_eq!(open, expected, "{w:?}");
        assert_eq!(fixes, 0);
        assert_eq!(support::db::dump(&env.database()).await, before);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_key_frames_fix_exactly_what_they_prove_and_nothing_else(w in world()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(w));
    }
}
