//! The report as plain data: what `build` produces and every renderer reads.
//!
//! Strings here are raw (vendor text, subjects, order refs as they came);
//! escaping belongs to each renderer, so JSON stays exact and HTML stays safe.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::model::Disposition;
use crate::reconcile::drift::Outcome;

/// One day's drift report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The calendar day covered, in `timezone`.
    pub date: NaiveDate,
    pub timezone: String,
    /// The day as UTC instants, `[from, to)`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The instant open drifts and silence are measured at: the end of the
    /// day, or the build time when the day is not over yet.
    pub as_of: DateTime<Utc>,
    /// False for a report of a day still in progress.
    pub complete: bool,
    pub headline: Headline,
    /// What needs a human first, worst first: refused key frames, failed
    /// runs, format changes, silent vendors.
    pub alerts: Vec<Alert>,
    /// All vendors together.
    pub totals: VendorSummary,
    /// One row per vendor, the most troubled first.
    pub vendors: Vec<VendorSummary>,
    /// Open drifts, worst first.
    pub drifts: Listed<DriftItem>,
    pub stuck: Listed<StuckOrder>,
    pub quarantined: Listed<QuarantinedMail>,
    /// Dashboard actions taken during the day, oldest first.
    pub actions: Listed<ActionItem>,
    /// Open drifts (all vendors) at the end of each of the 7 days ending on `date`.
    pub trend: Vec<TrendPoint>,
    pub stuck_after_days: u32,
    pub silent_after_hours: u32,
    /// What the size bounds left out (anyone who can email the mailbox can
    /// put a megabyte in a subject; the report stays small and says so).
    pub omitted: Omitted,
}

/// What `driftwatch::report::build` to keep the report bounded.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Omitted {
    /// Strings from outside cut to their maximum length.
    pub cut_strings: usize,
    /// Characters those cuts left out, in all.
    pub cut_chars: usize,
    /// Alerts beyond the listed maximum.
    pub alerts: usize,
}

/// The numbers that go in the subject line.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Headline {
    pub open_drifts: i64,
    pub new_drifts: i64,
    pub closed_drifts: i64,
    pub refused_runs: i64,
    pub failed_runs: i64,
    pub quarantined: i64,
    pub format_warnings: i64,
    pub stuck_orders: i64,
    pub silent_vendors: i64,
}

/// A list cut to a readable length, remembering how long it was.
#[derive(Debug, Clone, Serialize)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: usize,
}

impl<T> Listed<T> {
    pub fn omitted(&self) -> usize {
        self.total.saturating_sub(self.items.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The guard refused a key frame: the vendor's export looks broken and
    /// nothing was reconciled.
    RefusedKeyFrame,
    FailedRun,
    FormatChange,
    SilentVendor,
    /// A key frame was used with a warning: stale for some orders, old, or
    /// unknown status words allowed as flag-only (the run's reason says which).
    KeyFrameWarning,
    /// No key frame as of within the vendor's `keyframe_overdue_after`: the
    /// drop or the daily report mail did not come.
    KeyFrameOverdue,
}

impl AlertKind {
    pub fn label(self) -> &'static str {
        match self {
            AlertKind::RefusedKeyFrame => "REFUSED KEY FRAME",
            AlertKind::FailedRun => "RECONCILE FAILED",
            AlertKind::FormatChange => "FORMAT CHANGE",
            AlertKind::SilentVendor => "VENDOR SILENT",
            AlertKind::KeyFrameWarning => "KEY FRAME WARNING",
            AlertKind::KeyFrameOverdue => "KEY FRAME OVERDUE",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub vendor: String,
    pub at: Option<DateTime<Utc>>,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VendorSummary {
    pub vendor: String,
    pub open_drifts: i64,
    pub open_by_kind: BTreeMap<String, i64>,
    pub open_by_cause: BTreeMap<String, i64>,
    pub new_drifts: i64,
    pub closed_drifts: i64,
    /// Of the closed ones, how many a `fix` policy closed by appending a delta.
    pub fixed_drifts: i64,
    pub runs: RunOutcomes,
    pub mail: MailCounts,
    pub format_warnings: i64,
    pub stuck_orders: i64,
    pub silent: bool,
    /// Open drifts at the end of each of the 7 days ending on the report date.
    pub trend: Vec<i64>,
}

/// A vendor's reconcile runs in the day, by outcome (not to be confused with
/// `reconcile::plan::RunCounts`, what one run counted).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RunOutcomes {
    pub total: i64,
    pub ok: i64,
    pub unchanged: i64,
    pub refused: i64,
    pub failed: i64,
    /// The outcome of the day's last run, for the at-a-glance column.
    pub last_outcome: Option<Outcome>,
}

impl RunOutcomes {
    /// Counts one run; the day's runs come in start order, so the last
    /// counted is the last outcome.
    pub fn count(&mut self, outcome: Outcome) {
        self.total += 1;
        *match outcome {
            Outcome::Ok => &mut self.ok,
            Outcome::Unchanged => &mut self.unchanged,
            Outcome::Refused => &mut self.refused,
            Outcome::Failed => &mut self.failed,
        } += 1;
        self.last_outcome = Some(outcome);
    }

    /// Adds another vendor's runs (for the totals row); the last outcome
    /// stays this row's.
    pub fn add(&mut self, other: &RunOutcomes) {
        self.total += other.total;
        self.ok += other.ok;
        self.unchanged += other.unchanged;
        self.refused += other.refused;
        self.failed += other.failed;
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MailCounts {
    pub received: i64,
    pub parsed: i64,
    pub quarantined: i64,
    pub ignored: i64,
    pub skipped: i64,
}

impl MailCounts {
    /// Counts `n` messages that ended as `disposition`.
    pub fn count(&mut self, disposition: Disposition, n: i64) {
        self.received += n;
        *match disposition {
            Disposition::Parsed => &mut self.parsed,
            Disposition::Quarantined => &mut self.quarantined,
            Disposition::Ignored => &mut self.ignored,
            Disposition::Skipped => &mut self.skipped,
        } += n;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftItem {
    pub vendor: String,
    pub order_ref: String,
    pub kind: String,
    pub field: Option<String>,
    /// What we think (`None`: we have no such order).
    pub ours: Option<String>,
    /// What the vendor says (`None`: the vendor has no such order).
    pub theirs: Option<String>,
    pub cause: String,
    pub since: DateTime<Utc>,
    /// Opened during the report's day.
    pub new: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StuckOrder {
    pub vendor: String,
    pub order_ref: String,
    pub status: Option<String>,
    pub vendor_status: Option<String>,
    pub last_delta_at: DateTime<Utc>,
    pub quiet_days: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantinedMail {
    pub vendor: Option<String>,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub reason: Option<String>,
    pub archived_at: DateTime<Utc>,
}

/// Something a person did in the dashboard that day: who, when, what.
#[derive(Debug, Clone, Serialize)]
pub struct ActionItem {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub what: String,
}

/// One sentence for a recorded dashboard action (the report and the
/// dashboard's timeline say it the same way).
pub fn describe_action(a: &crate::model::ActionRow) -> String {
    use crate::model::ActionKind;
    let note = a
        .note
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(|n| format!(": {n}"))
        .unwrap_or_default();
    match a.kind {
        ActionKind::AcknowledgeDrift => format!(
            "acknowledged drift {} ({} {}){note}",
            a.drift.unwrap_or_default(),
            a.vendor.as_deref().unwrap_or(""),
            a.order_ref.as_deref().unwrap_or("")
        ),
        ActionKind::MuteSilence => format!(
            "muted the silence alert of {} until {}{note}",
            a.vendor.as_deref().unwrap_or(""),
            a.mute_until
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default()
        ),
        ActionKind::ReleaseMessage => format!(
            "released message {}: {}",
            a.message.unwrap_or_default(),
            a.outcome.as_deref().unwrap_or("")
        ),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TrendPoint {
    pub date: NaiveDate,
    pub open: i64,
}

impl Report {
    /// The subject line: the date and the numbers that decide whether to open it.
    pub fn subject(&self) -> String {
        let h = &self.headline;
        let mut s = format!(
            "driftwatch {}: {} open drift{} (+{} new, -{} closed)",
            self.date,
            h.open_drifts,
            plural(h.open_drifts),
            h.new_drifts,
            h.closed_drifts
        );
        for (n, what) in [
            (h.refused_runs, "refused key frame"),
            (h.failed_runs, "failed run"),
            (h.format_warnings, "format warning"),
            (h.silent_vendors, "silent vendor"),
            (h.quarantined, "quarantined"),
            (h.stuck_orders, "stuck"),
        ] {
            if n > 0 {
                let what = if what.ends_with("ed") || what == "stuck" {
                    what.to_string()
                } else {
                    format!("{what}{}", plural(n))
                };
                s.push_str(&format!(", {n} {what}"));
            }
        }
        if !self.complete {
            s.push_str(" (so far)");
        }
        s
    }
}

pub fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A drift's value as a person reads it: strings bare, other JSON as JSON.
pub fn display_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "(empty)".to_string(),
        other => other.to_string(),
    }
}

/// How long ago, for a reader: hours under two days, days after that.
pub fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = now - since;
    if d.num_hours() < 48 {
        format!("{} h", d.num_hours().max(0))
    } else {
        format!("{} days", d.num_days())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_counted_by_outcome_and_the_last_one_is_shown() {
        let mut r = RunOutcomes::default();
        for o in [Outcome::Ok, Outcome::Refused, Outcome::Unchanged] {
            r.count(o);
        }
        assert_eq!(
            (r.total, r.ok, r.refused, r.unchanged, r.failed),
            (3, 1, 1, 1, 0)
        );
        assert_eq!(r.last_outcome, Some(Outcome::Unchanged));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["last_outcome"], "unchanged",
            "JSON keeps the stored word"
        );
    }

    #[test]
    fn mail_is_counted_by_disposition_and_all_of_it_as_received() {
        let mut m = MailCounts::default();
        m.count(Disposition::Parsed, 5);
        m.count(Disposition::Skipped, 1);
        assert_eq!(
            (m.received, m.parsed, m.skipped, m.quarantined),
            (6, 5, 1, 0)
        );
    }
}
