//! The drift simulator: a vendor with a few thousand orders moving through
//! their statuses over simulated days. Its email channel loses, quarantines
//! (a parse failure), duplicates, delays and so reorders a share of the status
//! emails; it publishes a daily CSV export. driftwatch reconciles each export.
//!
//! Checked after every run:
//! - under `fix`: the local view equals the vendor's state at `as_of` for every order;
//! - under `flag`: the open drifts are exactly the disagreements between the
//!   vendor and what the email channel had told us by the cutoff (`as_of`
//!   plus the grace window) — so nothing in flight is flagged, nothing missed;
//! - attribution matches the cause the simulator injected (accuracy printed
//!   and bounded).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod reconcile_support;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use driftwatch::model::{DeltaDraft, DeltaSource, Status, TimeSource};
use driftwatch::reconcile::{Outcome, RunOptions, run_vendor};
use driftwatch::store::{ArchivedMessage, Disposition, IngestBatch, PackedRaw};
use reconcile_support::{Env, Rng};
use sha2::{Digest, Sha256};

const ORDERS_PER_DAY: usize = 500;
const DAYS: i64 = 6;
const GRACE_MIN: i64 = 60;
/// Vendor activity in [0h, 20h) of each day, the export at 20h, the reconcile at 23h.
const EXPORT_H: i64 = 20;
const RECONCILE_H: i64 = 23;

fn vendor_toml(policy: &str) -> String {
    format!(
        r#"[[vendor]]
name = "sim"
policy = "{policy}"
grace_minutes = {GRACE_MIN}
[vendor.export]
kind = "file"
path = "export.csv"
as_of = "field:as_of"
complete = true
[vendor.mapping]
key = "order_ref"
status = "status"
[vendor.mapping.fields.fee]
type = "money"
tolerance = 0.005
[vendor.guard]
max_drift_pct = 60
"#
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Normal,
    Lost,
    Quarantined,
    Delayed,
    Duplicated,
}

#[derive(Debug, Clone)]
struct Email {
    order: usize,
    status: Option<Status>,
    fee: Option<f64>,
    event: DateTime<Utc>,
    fate: Fate,
    /// Arrival times (empty when lost or quarantined: the quarantined one
    /// arrives too, but as a message no parser read).
    arrivals: Vec<DateTime<Utc>>,
    regression: bool,
}

#[derive(Debug, Clone)]
struct VOrder {
    order_ref: String,
    status: Status,
    fee: f64,
    /// Index of the email of the transition that set the current status / fee.
    status_email: usize,
    fee_email: usize,
}

struct Sim {
    rng: Rng,
    orders: Vec<VOrder>,
    emails: Vec<Email>,
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
}

impl Sim {
    fn email(
        &mut self,
        order: usize,
        status: Option<Status>,
        fee: Option<f64>,
        event: DateTime<Utc>,
        regression: bool,
    ) -> usize {
        let r = self.rng.unit();
        let small = Duration::seconds(self.rng.below(20 * 60) as i64);
        let (fate, arrivals) = if r < 0.05 {
            (Fate::Lost, vec![])
        } else if r < 0.08 {
            (Fate::Quarantined, vec![event + small])
        } else if r < 0.20 {
            let delay = Duration::minutes(60 + self.rng.below(29 * 60) as i64);
            (Fate::Delayed, vec![event + delay])
        } else if r < 0.25 {
            let second = Duration::minutes(self.rng.below(5 * 60) as i64);
            (Fate::Duplicated, vec![event + small, event + second])
        } else {
            (Fate::Normal, vec![event + small])
        };
        self.emails.push(Email {
            order,
            status,
            fee,
            event,
            fate,
            arrivals,
            regression,
        });
        self.emails.len() - 1
    }

    /// One simulated day of vendor activity.
    fn day(&mut self, d: i64) {
        let start = base() + Duration::days(d);
        let at =
            |rng: &mut Rng| start + Duration::seconds(rng.below(EXPORT_H as u64 * 3600) as i64);
        // Existing orders move (one status transition a day at most, plus fee changes).
        for i in 0..self.orders.len() {
            let cur = self.orders[i].status;
            if matches!(cur, Status::Completed | Status::Cancelled) {
                continue;
            }
            let t = at(&mut self.rng);
            let p = self.rng.unit();
            let (next, regression) = match cur {
                _ if p < 0.02 => (Some(Status::Cancelled), false),
                Status::InProgress if p < 0.06 => (Some(Status::Scheduled), true),
                Status::Scheduled if p < 0.06 => (Some(Status::Accepted), true),
                Status::Scheduled if p < 0.10 => (Some(Status::OnHold), false),
                Status::OnHold if p < 0.5 => (Some(Status::Scheduled), false),
                Status::Ordered if p < 0.7 => (Some(Status::Accepted), false),
                Status::Accepted if p < 0.7 => (Some(Status::Scheduled), false),
                Status::Scheduled if p < 0.6 => (Some(Status::InProgress), false),
                Status::InProgress if p < 0.6 => (Some(Status::Completed), false),
                _ => (None, false),
            };
            if let Some(s) = next {
                let e = self.email(i, Some(s), None, t, regression);
                self.orders[i].status = s;
                self.orders[i].status_email = e;
            }
            if self.rng.chance(0.03) {
                let fee = 300.0 + self.rng.below(50_000) as f64 / 100.0;
                let t = at(&mut self.rng);
                let e = self.email(i, None, Some(fee), t, false);
                self.orders[i].fee = fee;
                self.orders[i].fee_email = e;
            }
        }
        // New orders.
        for _ in 0..ORDERS_PER_DAY {
            let i = self.orders.len();
            let fee = 300.0 + self.rng.below(50_000) as f64 / 100.0;
            let t = at(&mut self.rng);
            let e = self.email(i, Some(Status::Ordered), Some(fee), t, false);
            self.orders.push(VOrder {
                order_ref: format!("S{i:05}"),
                status: Status::Ordered,
                fee,
                status_email: e,
                fee_email: e,
            });
        }
    }

    fn export_csv(&self, as_of: DateTime<Utc>) -> String {
        let mut out = String::from("order_ref,status,fee,as_of\n");
        for o in &self.orders {
            out.push_str(&format!(
                "{},{},{:.2},{}\n",
                o.order_ref,
                o.status.as_str(),
                o.fee,
                as_of.to_rfc3339()
            ));
        }
        out
    }
}

fn known(arrival: DateTime<Utc>, event: DateTime<Utc>, as_of: DateTime<Utc>) -> bool {
    arrival <= as_of || (arrival <= as_of + Duration::minutes(GRACE_MIN) && event <= as_of)
}

/// The vendor's state at a previous `as_of`: under `fix`, that run made our
/// view equal to it (a fix acts as a key frame at its `as_of`).
type Baseline = (DateTime<Utc>, Vec<(Status, f64)>);

/// What the simulator expects a run to flag, from what email had told us by
/// the cutoff (on top of the last fixed key frame, under `fix`).
fn expected_disagreements(
    sim: &Sim,
    as_of: DateTime<Utc>,
    baseline: Option<&Baseline>,
) -> BTreeSet<(String, String)> {
    // Latest known status / fee per order, by vendor event time.
    let mut status: HashMap<usize, (DateTime<Utc>, Status)> = HashMap::new();
    let mut fee: HashMap<usize, (DateTime<Utc>, f64)> = HashMap::new();
    let mut exists: BTreeSet<usize> = BTreeSet::new();
    if let Some((t, states)) = baseline {
        for (i, (s, f)) in states.iter().enumerate() {
            exists.insert(i);
            status.insert(i, (*t, *s));
            fee.insert(i, (*t, *f));
        }
    }
    for e in &sim.emails {
        if e.fate == Fate::Quarantined || !e.arrivals.iter().any(|a| known(*a, e.event, as_of)) {
            continue;
        }
        exists.insert(e.order);
        if let Some(s) = e.status
            && status.get(&e.order).is_none_or(|x| x.0 <= e.event)
        {
            status.insert(e.order, (e.event, s));
        }
        if let Some(f) = e.fee
            && fee.get(&e.order).is_none_or(|x| x.0 <= e.event)
        {
            fee.insert(e.order, (e.event, f));
        }
    }
    let mut out = BTreeSet::new();
    for (i, o) in sim.orders.iter().enumerate() {
        if !exists.contains(&i) {
            out.insert((o.order_ref.clone(), "missing_local".into()));
            continue;
        }
        if status.get(&i).map(|x| x.1) != Some(o.status) {
            out.insert((o.order_ref.clone(), "status_mismatch".into()));
        }
        if fee.get(&i).is_none_or(|x| (x.1 - o.fee).abs() > 0.005) {
            out.insert((o.order_ref.clone(), "field_mismatch".into()));
        }
    }
    out
}

/// The cause the simulator injected for a drift, judged at reconcile time `r`.
fn true_cause(e: &Email, kind: &str, as_of: DateTime<Utc>, r: DateTime<Utc>) -> &'static str {
    if e.fate == Fate::Quarantined {
        return "parse_error";
    }
    if e.regression && kind == "status_mismatch" {
        return "vendor_regression";
    }
    let arrived = e.arrivals.iter().filter(|a| **a <= r).min();
    match arrived {
        // Not arrived by the time we looked: to the evidence, never seen.
        None => "missed_email",
        Some(a) if !known(*a, e.event, as_of) => "late_email",
        Some(_) => "unexplained",
    }
}

struct Tally {
    right: usize,
    total: usize,
    by_cause: BTreeMap<(String, String), usize>,
}

async fn simulate(policy: &str) -> Tally {
    let env = Env::new(&vendor_toml(policy));
    let app = env.app().await;
    let vendor = env.vendor(&app, "sim");
    let export = env.path("export.csv");
    let mut sim = Sim {
        rng: Rng::new(0x5EED_0000 + policy.len() as u64),
        orders: vec![],
        emails: vec![],
    };
    let mut delivered_until = base() - Duration::days(1);
    let mut tally = Tally {
        right: 0,
        total: 0,
        by_cause: BTreeMap::new(),
    };
    let mut quarantine_seq = 0u64;
    let mut baseline: Option<Baseline> = None;
    let mut reliability = Vec::new();
    for d in 0..DAYS {
        sim.day(d);
        let start = base() + Duration::days(d);
        let as_of = start + Duration::hours(EXPORT_H);
        let r = start + Duration::hours(RECONCILE_H);

        // Deliver what arrives by the reconcile time.
        let mut deltas = Vec::new();
        let mut quarantined = Vec::new();
        for e in &sim.emails {
            for a in &e.arrivals {
                if *a > delivered_until && *a <= r {
                    let o = &sim.orders[e.order];
                    if e.fate == Fate::Quarantined {
                        quarantine_seq += 1;
                        quarantined.push(quarantined_message(
                            quarantine_seq,
                            &o.order_ref,
                            e.event,
                        ));
                        continue;
                    }
                    let mut fields = BTreeMap::new();
                    if let Some(f) = e.fee {
                        fields.insert("fee".to_string(), serde_json::json!(f));
                    }
                    deltas.push((
                        DeltaDraft {
                            vendor: "sim".into(),
                            order_ref: o.order_ref.clone(),
                            status: e.status,
                            vendor_status: e.status.map(|s| s.as_str().to_string()),
                            fields,
                            event_time: e.event,
                            time_source: TimeSource::Vendor,
                        },
                        *a,
                    ));
                }
            }
        }
        delivered_until = r;
        deltas.sort_by_key(|x| x.1);
        app.store
            .append_deltas_at(DeltaSource::Email, &deltas)
            .await
            .unwrap();
        if !quarantined.is_empty() {
            app.store
                .commit_batch(&IngestBatch {
                    source: "sim".into(),
                    folder: "INBOX".into(),
                    checkpoint: None,
                    messages: quarantined,
                })
                .await
                .unwrap();
        }

        std::fs::write(&export, sim.export_csv(as_of)).unwrap();
        let expected = expected_disagreements(&sim, as_of, baseline.as_ref());
        let summary = run_vendor(
            &app.store,
            &vendor,
            &env.path("work"),
            RunOptions {
                now: Some(r),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            summary.outcome,
            Outcome::Ok,
            "day {d}: {:?}",
            summary.reason
        );
        assert_eq!(summary.as_of, Some(as_of));
        if d > 0 {
            // The email channel's reliability: most changes, not all, told by email.
            let r = summary
                .reliability()
                .expect("reliability after the first key frame");
            assert!((0.5..0.99).contains(&r), "day {d}: reliability {r}");
            reliability.push(r);
        }

        let all = app.store.drifts(Some("sim"), false).await.unwrap();
        let opened_now: Vec<_> = all.iter().filter(|x| x.opened_at == r).collect();
        if policy == "flag" {
            let open: BTreeSet<(String, String)> = all
                .iter()
                .filter(|x| x.closed_at.is_none())
                .map(|x| (x.order_ref.clone(), x.kind.as_str().to_string()))
                .collect();
            let extra: Vec<_> = open.difference(&expected).take(5).collect();
            let missed: Vec<_> = expected.difference(&open).take(5).collect();
            assert!(
                extra.is_empty() && missed.is_empty(),
                "day {d}: flagged but not a disagreement: {extra:?}; disagreement not flagged: {missed:?}"
            );
        } else {
            // The run saw exactly the disagreements the simulator expects…
            let seen: BTreeSet<(String, String)> = opened_now
                .iter()
                .map(|x| (x.order_ref.clone(), x.kind.as_str().to_string()))
                .collect();
            assert_eq!(seen, expected, "day {d}: drifts found");
            // …and after the fixes the view is the vendor's state, order for order.
            let view: HashMap<String, _> = app
                .store
                .orders(Some("sim"))
                .await
                .unwrap()
                .into_iter()
                .map(|o| (o.order_ref.clone(), o))
                .collect();
            assert_eq!(view.len(), sim.orders.len(), "day {d}: order count");
            baseline = Some((
                as_of,
                sim.orders.iter().map(|o| (o.status, o.fee)).collect(),
            ));
            for o in &sim.orders {
                let local = &view[&o.order_ref];
                assert_eq!(
                    local.status,
                    Some(o.status),
                    "day {d}: {} status",
                    o.order_ref
                );
                let fee = local.fields.get("fee").and_then(|v| v.as_f64());
                assert!(
                    fee.is_some_and(|f| (f - o.fee).abs() <= 0.005),
                    "day {d}: {} fee {fee:?} vs {}",
                    o.order_ref,
                    o.fee
                );
            }
        }

        // Attribution of the drifts this run opened.
        let by_ref: HashMap<&str, &VOrder> = sim
            .orders
            .iter()
            .map(|o| (o.order_ref.as_str(), o))
            .collect();
        for x in opened_now {
            let o = by_ref[x.order_ref.as_str()];
            let kind = x.kind.as_str();
            let email = match kind {
                "field_mismatch" => &sim.emails[o.fee_email],
                _ => &sim.emails[o.status_email],
            };
            let truth = true_cause(email, kind, as_of, r);
            // A missing order is explained by its first email, not its latest.
            let truth = if kind == "missing_local" {
                let first = sim
                    .emails
                    .iter()
                    .filter(|e| {
                        by_ref[x.order_ref.as_str()].order_ref == sim.orders[e.order].order_ref
                    })
                    .filter(|e| e.event <= as_of)
                    .map(|e| true_cause(e, kind, as_of, r))
                    .collect::<Vec<_>>();
                if first.contains(&"late_email") {
                    "late_email"
                } else if first.iter().all(|c| *c == "parse_error") {
                    "parse_error"
                } else {
                    truth
                }
            } else {
                truth
            };
            tally.total += 1;
            if x.cause.as_str() == truth {
                tally.right += 1;
            }
            *tally
                .by_cause
                .entry((truth.to_string(), x.cause.as_str().to_string()))
                .or_default() += 1;
        }
    }
    eprintln!(
        "drift simulator ({policy}): email reliability per day {:?}",
        reliability
            .iter()
            .map(|r| format!("{:.1}%", r * 100.0))
            .collect::<Vec<_>>()
    );
    tally
}

fn quarantined_message(seq: u64, order_ref: &str, event: DateTime<Utc>) -> ArchivedMessage {
    let subject = format!("Order {order_ref} - Awaiting Borrower Access");
    let raw = format!("Subject: {subject}\r\n\r\nunparseable {seq}\r\n").into_bytes();
    let hash: [u8; 32] = Sha256::digest(&raw).into();
    ArchivedMessage {
        location: format!("q{seq}"),
        dedupe_key: hash,
        message_id: None,
        size: raw.len() as u64,
        raw: PackedRaw::pack(raw),
        raw_complete: true,
        sender: Some("status@sim.example".into()),
        subject: Some(subject),
        date_header: Some(event),
        internal_date: Some(event),
        disposition: Disposition::Quarantined,
        reason: Some("vendor status not in the status map".into()),
        vendor: Some("sim".into()),
        parser: None,
        parser_version: None,
        deltas: vec![],
    }
}

fn report(policy: &str, t: &Tally) -> f64 {
    let acc = t.right as f64 / t.total.max(1) as f64;
    eprintln!(
        "drift simulator ({policy}): attribution {}/{} right ({:.1}%)",
        t.right,
        t.total,
        acc * 100.0
    );
    for ((truth, got), n) in &t.by_cause {
        eprintln!("  injected {truth:<18} attributed {got:<18} {n}");
    }
    acc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fix_the_view_equals_the_vendor_after_every_reconcile() {
    let t = simulate("fix").await;
    assert!(
        t.total > 200,
        "the simulator injected too little drift: {}",
        t.total
    );
    let acc = report("fix", &t);
    assert!(acc >= 0.95, "attribution accuracy {acc:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_flag_every_disagreement_is_flagged_and_nothing_in_flight() {
    let t = simulate("flag").await;
    assert!(
        t.total > 200,
        "the simulator injected too little drift: {}",
        t.total
    );
    let acc = report("flag", &t);
    assert!(acc >= 0.95, "attribution accuracy {acc:.3}");
}
