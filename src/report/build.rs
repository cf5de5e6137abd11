//! Builds a [`Report`] from the store for one calendar day.
//!
//! Reads only; every instant comes from the date, the zone and the `now`
//! passed in, so a finished day's report is the same whenever it is built.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::config::ReportSettings;
use super::model::*;
use crate::model::Disposition;
use crate::reconcile::Outcome;
use crate::store::{Store, StoreError};

/// A stored word read back as core's enum: a word this version does not
/// know is an error, never counted under a guess. (Goes away when the store
/// returns typed rows.)
fn stored<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Days in the trend.
const TREND_DAYS: i64 = 7;

/// The most rows any detail list (drifts, stuck orders, quarantined mail,
/// alerts) shows, whatever `max_listed` says. With [`MAX_VALUE_CHARS`] and
/// [`MAX_MESSAGE_CHARS`] that is at most ~160,000 outside characters per
/// report, so a rendered part stays under about 1.5 MB in the worst case
/// (every string at its limit, each character one HTML must escape as
/// `&quot;`), and the whole email, base64-encoded, under 5 MB: below the
/// 10 MB a default Postfix relay accepts and the 25 MB of the big providers.
pub const MAX_LISTED_CAP: usize = 50;
/// Longest outside value (order ref, field value, sender, subject, vendor
/// word) in characters; the rest is cut and counted in [`Omitted`].
pub const MAX_VALUE_CHARS: usize = 200;
/// Longest outside sentence (a quarantine reason, a guard's reason, a
/// format-change detail), in characters.
pub const MAX_MESSAGE_CHARS: usize = 400;

/// The UTC instant a local day starts. Where midnight does not exist (a DST
/// jump at 00:00), the day starts at the first instant that does.
pub fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut t = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        if let Some(s) = tz.from_local_datetime(&t).earliest() {
            return s.with_timezone(&Utc);
        }
        t += Duration::minutes(30);
    }
    // No zone skips two hours; fall back to UTC midnight rather than fail.
    date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

pub async fn build(
    store: &Store,
    date: NaiveDate,
    settings: &ReportSettings,
    now: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let tz = settings.timezone;
    let from = day_start(tz, date);
    let to = day_start(tz, date.succ_opt().unwrap_or(date));
    let as_of = to.min(now).max(from);
    let complete = now >= to;

    let breakdown = store.report_open_drift_breakdown(as_of).await?;
    let listed = settings.max_listed.min(MAX_LISTED_CAP);
    let worst = store.report_worst_open_drifts(as_of, listed).await?;
    let movement = store.report_drift_movement(from, as_of).await?;
    let runs = store.report_runs(from, as_of).await?;
    let mail = store.report_mail_counts(from, as_of).await?;
    let quarantined = store.report_quarantined(from, as_of, listed).await?;
    let format_alerts = store.report_format_alerts(from, as_of).await?;
    let stuck_cutoff = as_of - Duration::days(i64::from(settings.stuck_after_days));
    let (stuck, stuck_total) = store.report_stuck_orders(stuck_cutoff, listed).await?;
    let silent_cutoff = as_of - Duration::hours(i64::from(settings.silent_after_hours));
    let vendor_mail = store.report_vendor_mail(as_of).await?;
    // A vendor muted from the dashboard raises no silence alert while the mute lasts.
    let muted = store.muted_vendors(as_of).await?;
    let actions = store.actions_between(from, as_of).await?;
    let mut trend_by_vendor: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut trend = Vec::new();
    for back in (0..TREND_DAYS).rev() {
        let Some(day) = date.checked_sub_signed(Duration::days(back)) else {
            continue;
        };
        let at = if back == 0 {
            as_of
        } else {
            day_start(tz, day.succ_opt().unwrap_or(day))
        };
        let counts = store.report_open_drift_counts(at).await?;
        let idx = trend.len();
        for (v, n) in &counts {
            let series = trend_by_vendor
                .entry(v.clone())
                .or_insert_with(|| vec![0; TREND_DAYS as usize]);
            if let Some(slot) = series.get_mut(idx) {
                *slot = *n;
            }
        }
        trend.push(TrendPoint {
            date: day,
            open: counts.iter().map(|(_, n)| n).sum(),
        });
    }

    let stuck_counts = store.report_stuck_counts(stuck_cutoff).await?;
    let mut names: BTreeSet<String> = store.report_vendors().await?.into_iter().collect();
    names.extend(breakdown.iter().map(|d| d.0.clone()));
    let mut vendors: BTreeMap<String, VendorSummary> = names
        .into_iter()
        .map(|v| {
            let summary = VendorSummary {
                vendor: v.clone(),
                trend: trend_by_vendor
                    .get(&v)
                    .cloned()
                    .unwrap_or_else(|| vec![0; trend.len()]),
                ..VendorSummary::default()
            };
            (v, summary)
        })
        .collect();
    let mut alerts = Vec::new();

    let mut open_total = 0;
    for (name, kind, cause, n) in &breakdown {
        let v = vendor(&mut vendors, name);
        v.open_drifts += n;
        *v.open_by_kind.entry(kind.clone()).or_default() += n;
        *v.open_by_cause.entry(cause.clone()).or_default() += n;
        open_total += n;
    }
    for m in &movement {
        let v = vendor(&mut vendors, &m.vendor);
        v.new_drifts = m.opened;
        v.closed_drifts = m.closed;
        v.fixed_drifts = m.closed_fixed;
    }
    for r in &runs {
        let outcome: Outcome = stored("reconcile_runs.outcome", &r.outcome)?;
        let v = vendor(&mut vendors, &r.vendor);
        v.runs.count(outcome);
        let kind = match outcome {
            Outcome::Refused => AlertKind::RefusedKeyFrame,
            Outcome::Failed => AlertKind::FailedRun,
            Outcome::Ok | Outcome::Unchanged if r.reason.is_some() => AlertKind::KeyFrameWarning,
            Outcome::Ok | Outcome::Unchanged => continue,
        };
        let reason = r.reason.as_deref().unwrap_or("no reason recorded");
        let message = if kind == AlertKind::RefusedKeyFrame {
            format!(
                "key frame refused, nothing reconciled: {reason} (vendor listed {} orders, we hold {})",
                r.orders_remote, r.orders_local
            )
        } else if kind == AlertKind::FailedRun {
            format!("reconcile failed: {reason}")
        } else {
            format!("key frame used with a warning: {reason}")
        };
        alerts.push(Alert {
            kind,
            vendor: r.vendor.clone(),
            at: Some(r.started_at),
            message,
        });
    }
    for m in &mail {
        let name = m
            .vendor
            .clone()
            .unwrap_or_else(|| "(no vendor)".to_string());
        let v = vendor(&mut vendors, &name);
        let disposition: Disposition = stored("messages.disposition", &m.disposition)?;
        v.mail.count(disposition, m.count);
    }
    for a in &format_alerts {
        vendor(&mut vendors, &a.vendor).format_warnings += 1;
        alerts.push(Alert {
            kind: AlertKind::FormatChange,
            vendor: a.vendor.clone(),
            at: Some(a.detected_at),
            // Parser health writes a complete sentence with both rates.
            message: a.detail.clone(),
        });
    }
    let mut stuck_items = Vec::new();
    for s in &stuck {
        stuck_items.push(StuckOrder {
            vendor: s.vendor.clone(),
            order_ref: s.order_ref.clone(),
            status: s.status.clone(),
            vendor_status: s.vendor_status.clone(),
            last_delta_at: s.last_delta_at,
            quiet_days: (as_of - s.last_delta_at).num_days(),
        });
    }
    for (name, n) in &stuck_counts {
        vendor(&mut vendors, name).stuck_orders = *n;
    }
    for vm in &vendor_mail {
        let silent = vm.last_mail_at.is_none_or(|t| t < silent_cutoff);
        if !silent || muted.contains(&vm.vendor) {
            continue;
        }
        vendor(&mut vendors, &vm.vendor).silent = true;
        let message = match vm.last_mail_at {
            Some(t) => format!(
                "no mail for {} hours while {} order{} open",
                (as_of - t).num_hours(),
                vm.open_orders,
                if vm.open_orders == 1 { " is" } else { "s are" }
            ),
            None => format!(
                "no mail ever received while {} order{} open",
                vm.open_orders,
                if vm.open_orders == 1 { " is" } else { "s are" }
            ),
        };
        alerts.push(Alert {
            kind: AlertKind::SilentVendor,
            vendor: vm.vendor.clone(),
            at: vm.last_mail_at,
            message,
        });
    }
    if !settings.keyframe_overdue.is_empty() {
        let last: BTreeMap<String, DateTime<Utc>> = store
            .last_key_frame_as_of(as_of)
            .await?
            .into_iter()
            .collect();
        let mut first_seen = BTreeMap::new();
        for (v, _) in &settings.keyframe_overdue {
            if !last.contains_key(v)
                && let Some(t) = store.vendor_first_seen(v, as_of).await?
            {
                first_seen.insert(v.clone(), t);
            }
        }
        alerts.extend(overdue_alerts(
            &settings.keyframe_overdue,
            &last,
            &first_seen,
            as_of,
        ));
    }
    alerts.sort_by(|a, b| (a.kind, &a.vendor, a.at).cmp(&(b.kind, &b.vendor, b.at)));
    let alerts_omitted = alerts.len().saturating_sub(listed);
    alerts.truncate(listed);

    let drift_items: Vec<DriftItem> = worst
        .iter()
        .map(|d| DriftItem {
            vendor: d.vendor.clone(),
            order_ref: d.order_ref.clone(),
            kind: d.kind.clone(),
            field: d.field.clone(),
            ours: d.local_value.as_ref().map(display_value),
            theirs: d.remote_value.as_ref().map(display_value),
            cause: d.cause.clone(),
            since: d.opened_at,
            new: d.opened_at >= from,
        })
        .collect();

    let mut vendors: Vec<VendorSummary> = vendors.into_values().collect();
    for v in &mut vendors {
        v.trend.resize(trend.len(), 0);
    }
    let badness = |v: &VendorSummary| {
        (
            v.runs.refused + v.runs.failed,
            v.format_warnings + i64::from(v.silent),
            v.open_drifts,
            v.new_drifts,
            v.mail.quarantined,
        )
    };
    vendors.sort_by(|a, b| {
        badness(b)
            .cmp(&badness(a))
            .then_with(|| a.vendor.cmp(&b.vendor))
    });
    let totals = total(&vendors, &trend);
    let headline = Headline {
        open_drifts: totals.open_drifts,
        new_drifts: totals.new_drifts,
        closed_drifts: totals.closed_drifts,
        refused_runs: totals.runs.refused,
        failed_runs: totals.runs.failed,
        quarantined: totals.mail.quarantined,
        format_warnings: totals.format_warnings,
        stuck_orders: stuck_total,
        silent_vendors: vendors.iter().filter(|v| v.silent).count() as i64,
    };

    let mut report = Report {
        date,
        timezone: tz.name().to_string(),
        from,
        to,
        as_of,
        complete,
        headline,
        alerts,
        totals,
        vendors,
        drifts: Listed {
            items: drift_items,
            total: usize::try_from(open_total).unwrap_or(usize::MAX),
        },
        stuck: Listed {
            items: stuck_items,
            total: usize::try_from(stuck_total).unwrap_or(usize::MAX),
        },
        quarantined: Listed {
            total: usize::try_from(totals_quarantined(&mail)).unwrap_or(usize::MAX),
            items: quarantined
                .into_iter()
                .map(|q| QuarantinedMail {
                    vendor: q.vendor,
                    sender: q.sender,
                    subject: q.subject,
                    reason: q.reason,
                    archived_at: q.archived_at,
                })
                .collect(),
        },
        actions: Listed {
            total: actions.len(),
            items: actions
                .iter()
                .take(listed)
                .map(|a| ActionItem {
                    at: a.acted_at,
                    actor: a.actor.clone(),
                    what: describe_action(a),
                })
                .collect(),
        },
        trend,
        stuck_after_days: settings.stuck_after_days,
        silent_after_hours: settings.silent_after_hours,
        omitted: Omitted {
            alerts: alerts_omitted,
            ..Omitted::default()
        },
    };
    bound(&mut report);
    Ok(report)
}

/// "Key frame overdue" for each vendor whose newest key frame is as of
/// longer ago than its limit, or that has had none for that long since we
/// first heard of it (a run or a mail; before that there is nothing to miss).
fn overdue_alerts(
    limits: &[(String, std::time::Duration)],
    last: &BTreeMap<String, DateTime<Utc>>,
    first_seen: &BTreeMap<String, DateTime<Utc>>,
    as_of: DateTime<Utc>,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for (vendor, limit) in limits {
        let limit = Duration::from_std(*limit).unwrap_or(Duration::MAX);
        let at = last.get(vendor).copied();
        let message = match at {
            Some(t) if as_of - t <= limit => continue,
            Some(t) => format!(
                "no key frame for {} hours (the newest is as of {}; expected within {} hours)",
                (as_of - t).num_hours(),
                t.format("%Y-%m-%d %H:%M UTC"),
                limit.num_hours()
            ),
            None => match first_seen.get(vendor) {
                Some(f) if as_of - *f > limit => format!(
                    "no key frame received yet, {} hours after we first heard of the vendor (expected within {} hours)",
                    (as_of - *f).num_hours(),
                    limit.num_hours()
                ),
                _ => continue,
            },
        };
        alerts.push(Alert {
            kind: AlertKind::KeyFrameOverdue,
            vendor: vendor.clone(),
            at,
            message,
        });
    }
    alerts
}

/// Cuts every string that came from outside to its maximum length,
/// counting what was left out in `r.omitted`. A cut string ends with
/// `… [+N chars]`, so a reader sees the cut where it happened.
fn bound(r: &mut Report) {
    let mut cut = Cutter::default();
    for a in &mut r.alerts {
        cut.value(&mut a.vendor);
        cut.message(&mut a.message);
    }
    for v in &mut r.vendors {
        cut.value(&mut v.vendor);
    }
    for d in &mut r.drifts.items {
        cut.value(&mut d.vendor);
        cut.value(&mut d.order_ref);
        cut.opt(&mut d.field);
        cut.opt(&mut d.ours);
        cut.opt(&mut d.theirs);
    }
    for s in &mut r.stuck.items {
        cut.value(&mut s.vendor);
        cut.value(&mut s.order_ref);
        cut.opt(&mut s.vendor_status);
    }
    for q in &mut r.quarantined.items {
        cut.opt(&mut q.vendor);
        cut.opt(&mut q.sender);
        cut.opt(&mut q.subject);
        if let Some(reason) = &mut q.reason {
            cut.message(reason);
        }
    }
    for a in &mut r.actions.items {
        cut.value(&mut a.actor);
        cut.message(&mut a.what);
    }
    r.omitted.cut_strings = cut.strings;
    r.omitted.cut_chars = cut.chars;
}

#[derive(Default)]
struct Cutter {
    strings: usize,
    chars: usize,
}

impl Cutter {
    fn value(&mut self, s: &mut String) {
        self.cut(s, MAX_VALUE_CHARS);
    }
    fn message(&mut self, s: &mut String) {
        self.cut(s, MAX_MESSAGE_CHARS);
    }
    fn opt(&mut self, s: &mut Option<String>) {
        if let Some(s) = s {
            self.cut(s, MAX_VALUE_CHARS);
        }
    }
    fn cut(&mut self, s: &mut String, max: usize) {
        let Some((end, _)) = s.char_indices().nth(max) else {
            return;
        };
        let left_out = s[end..].chars().count();
        s.truncate(end);
        s.push_str(&format!("… [+{left_out} chars]"));
        self.strings += 1;
        self.chars += left_out;
    }
}

fn vendor<'a>(map: &'a mut BTreeMap<String, VendorSummary>, name: &str) -> &'a mut VendorSummary {
    map.entry(name.to_string())
        .or_insert_with(|| VendorSummary {
            vendor: name.to_string(),
            ..VendorSummary::default()
        })
}

fn totals_quarantined(mail: &[crate::store::MailCountRow]) -> i64 {
    mail.iter()
        .filter(|m| m.disposition == "quarantined")
        .map(|m| m.count)
        .sum()
}

fn total(vendors: &[VendorSummary], trend: &[TrendPoint]) -> VendorSummary {
    let mut t = VendorSummary {
        vendor: "all vendors".to_string(),
        trend: trend.iter().map(|p| p.open).collect(),
        ..VendorSummary::default()
    };
    for v in vendors {
        t.open_drifts += v.open_drifts;
        for (k, n) in &v.open_by_kind {
            *t.open_by_kind.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &v.open_by_cause {
            *t.open_by_cause.entry(k.clone()).or_default() += n;
        }
        t.new_drifts += v.new_drifts;
        t.closed_drifts += v.closed_drifts;
        t.fixed_drifts += v.fixed_drifts;
        t.runs.add(&v.runs);
        t.mail.received += v.mail.received;
        t.mail.parsed += v.mail.parsed;
        t.mail.quarantined += v.mail.quarantined;
        t.mail.ignored += v.mail.ignored;
        t.mail.skipped += v.mail.skipped;
        t.format_warnings += v.format_warnings;
        t.stuck_orders += v.stuck_orders;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_outside_strings_are_cut_and_counted() {
        let mut c = Cutter::default();
        let mut s = "é".repeat(MAX_VALUE_CHARS + 50);
        c.value(&mut s);
        assert!(s.ends_with("… [+50 chars]"), "{s}");
        assert_eq!(s.chars().filter(|&ch| ch == 'é').count(), MAX_VALUE_CHARS);
        let mut short = "fine".to_string();
        c.value(&mut short);
        assert_eq!(short, "fine");
        assert_eq!((c.strings, c.chars), (1, 50));
    }

    #[test]
    fn day_boundaries_follow_the_zone() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert_eq!(
            day_start(chrono_tz::America::Chicago, d).to_rfc3339(),
            "2026-11-24T06:00:00+00:00"
        );
        // 2026-03-08: Chicago springs forward at 02:00; the day is 23 hours.
        let d = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let tz = chrono_tz::America::Chicago;
        let len = day_start(tz, d.succ_opt().unwrap()) - day_start(tz, d);
        assert_eq!(len, Duration::hours(23));
        // America/Santiago skips midnight on its DST day: the day starts at 01:00.
        let d = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        assert_eq!(
            day_start(chrono_tz::America::Santiago, d).to_rfc3339(),
            "2026-09-06T04:00:00+00:00"
        );
    }
}
