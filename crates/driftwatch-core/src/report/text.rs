//! The plain-text report: the email's text part and `report --format text`.
//!
//! Fits in 100 columns, worst things first. Text from outside (vendor
//! values, subjects, senders) has its control characters replaced, so a
//! crafted subject cannot move the cursor or recolour a terminal.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::model::*;
use crate::clean::clean;

pub fn render_text(r: &Report) -> String {
    let tz: Tz = r.timezone.parse().unwrap_or(Tz::UTC);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "driftwatch daily report: {}{} ({})",
        r.date.format("%a %d %b %Y"),
        if r.complete { "" } else { ", so far" },
        r.timezone
    );
    let _ = writeln!(o, "{}", r.subject());
    let _ = writeln!(o, "as of {}", local(r.as_of).format("%Y-%m-%d %H:%M %Z"));

    section(&mut o, "NEEDS A HUMAN");
    if r.alerts.is_empty()
        && r.headline.open_drifts == 0
        && r.headline.stuck_orders == 0
        && r.headline.quarantined == 0
    {
        let _ = writeln!(
            o,
            "  Nothing. No open drifts, no refused key frames, no warnings, no quarantined mail."
        );
    } else if r.alerts.is_empty() {
        let _ = writeln!(
            o,
            "  No alerts; see the drifts, stuck orders and quarantined mail below."
        );
    }
    for a in &r.alerts {
        let at =
            a.at.map(|t| local(t).format("%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "  ! {:<17} {}  {}\n      {}",
            a.kind.label(),
            clean(&a.vendor),
            at,
            clean(&a.message)
        );
    }

    if r.omitted.alerts > 0 {
        let _ = writeln!(
            o,
            "  ... and {} more alerts (`driftwatch report --format json`)",
            r.omitted.alerts
        );
    }
    if r.omitted.cut_strings > 0 {
        let _ = writeln!(o, "\n  {}", super::html::cut_note(&r.omitted));
    }

    section(&mut o, "BY VENDOR");
    let _ = writeln!(
        o,
        "  {:<22} {:>5} {:>5} {:>6}  {:<16} {:>16}  {:>5}  7-day open drifts",
        "vendor", "open", "new", "closed", "runs (last)", "mail in/ok/quar", "stuck"
    );
    for v in r.vendors.iter().chain(std::iter::once(&r.totals)) {
        let runs = match &v.runs.last_outcome {
            Some(last) => format!("{} ({})", v.runs.total, last.as_str()),
            None if v.runs.total > 0 => v.runs.total.to_string(),
            None => "-".to_string(),
        };
        let mail = format!(
            "{}/{}/{}",
            v.mail.received, v.mail.parsed, v.mail.quarantined
        );
        let mut name = clean(&v.vendor).into_owned();
        if v.silent {
            name.push_str(" (silent)");
        }
        let _ = writeln!(
            o,
            "  {:<22} {:>5} {:>5} {:>6}  {:<16} {:>16}  {:>5}  {} {}",
            truncate(&name, 22),
            v.open_drifts,
            format!("+{}", v.new_drifts),
            format!("-{}", v.closed_drifts),
            runs,
            mail,
            v.stuck_orders,
            sparkline(&v.trend),
            trend_ends(&v.trend)
        );
    }
    if !r.totals.open_by_kind.is_empty() {
        let _ = writeln!(o, "\n  open by kind:  {}", counts(&r.totals.open_by_kind));
        let _ = writeln!(o, "  likely cause:  {}", counts(&r.totals.open_by_cause));
    }

    if r.drifts.total > 0 {
        section(
            &mut o,
            &format!("OPEN DRIFTS ({}, worst first)", r.drifts.total),
        );
        for d in &r.drifts.items {
            let what = match &d.field {
                Some(f) => format!("{} {}", d.kind, clean(f)),
                None => d.kind.clone(),
            };
            let _ = writeln!(
                o,
                "  {} {}  {}{}",
                clean(&d.vendor),
                clean(&d.order_ref),
                what,
                if d.new { "  [new]" } else { "" }
            );
            let _ = writeln!(
                o,
                "      we think: {}   vendor says: {}",
                d.ours
                    .as_deref()
                    .map(clean)
                    .unwrap_or_else(|| "(no such order)".into()),
                d.theirs
                    .as_deref()
                    .map(clean)
                    .unwrap_or_else(|| "(no such order)".into()),
            );
            let _ = writeln!(
                o,
                "      since {} ({})   likely cause: {}",
                local(d.since).format("%Y-%m-%d %H:%M"),
                age(d.since, r.as_of),
                d.cause
            );
        }
        more(&mut o, r.drifts.omitted(), "drifts", "driftwatch drifts");
    }

    if r.stuck.total > 0 {
        section(
            &mut o,
            &format!(
                "STUCK ORDERS ({}: open, no news for {}+ days)",
                r.stuck.total, r.stuck_after_days
            ),
        );
        for s in &r.stuck.items {
            let _ = writeln!(
                o,
                "  {} {}  {}{}   last delta {} ({} days ago)",
                clean(&s.vendor),
                clean(&s.order_ref),
                s.status.as_deref().unwrap_or("(no status)"),
                s.vendor_status
                    .as_deref()
                    .map(|v| format!(" \"{}\"", clean(v)))
                    .unwrap_or_default(),
                local(s.last_delta_at).format("%Y-%m-%d"),
                s.quiet_days
            );
        }
        more(&mut o, r.stuck.omitted(), "orders", "driftwatch orders");
    }

    if r.quarantined.total > 0 {
        section(
            &mut o,
            &format!("QUARANTINED MAIL ({})", r.quarantined.total),
        );
        for q in &r.quarantined.items {
            let _ = writeln!(
                o,
                "  {}  from {}  \"{}\"",
                local(q.archived_at).format("%H:%M"),
                clean(q.sender.as_deref().unwrap_or("?")),
                clean(q.subject.as_deref().unwrap_or(""))
            );
            let _ = writeln!(o, "      {}", clean(q.reason.as_deref().unwrap_or("")));
        }
        more(
            &mut o,
            r.quarantined.omitted(),
            "messages",
            "driftwatch quarantine",
        );
    }

    if r.actions.total > 0 {
        section(&mut o, &format!("DASHBOARD ACTIONS ({})", r.actions.total));
        for a in &r.actions.items {
            let _ = writeln!(
                o,
                "  {}  {}  {}",
                local(a.at).format("%H:%M"),
                clean(&a.actor),
                clean(&a.what)
            );
        }
        more(
            &mut o,
            r.actions.omitted(),
            "actions",
            "the dashboard's Reports page",
        );
    }

    section(&mut o, "7-DAY TREND (open drifts, all vendors)");
    let max = r.trend.iter().map(|p| p.open).max().unwrap_or(0).max(1);
    for p in &r.trend {
        let width = usize::try_from(p.open * 40 / max).unwrap_or(0);
        let _ = writeln!(
            o,
            "  {}  {:>5}  {}",
            p.date.format("%a %m-%d"),
            p.open,
            "#".repeat(width)
        );
    }
    o
}

fn section(o: &mut String, title: &str) {
    let _ = writeln!(o, "\n{title}");
}

fn more(o: &mut String, omitted: usize, what: &str, command: &str) {
    if omitted > 0 {
        let _ = writeln!(o, "  ... and {omitted} more {what} (`{command}`)");
    }
}

fn counts(m: &std::collections::BTreeMap<String, i64>) -> String {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

/// One block character per day, scaled to the series' own maximum.
pub fn sparkline(series: &[i64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = series.iter().copied().max().unwrap_or(0);
    series
        .iter()
        .map(|&n| {
            if max <= 0 || n <= 0 {
                ' '
            } else {
                let i = usize::try_from(n * 7 / max).unwrap_or(0);
                BARS[i.min(7)]
            }
        })
        .collect::<String>()
        .replace(' ', "·")
}

fn trend_ends(series: &[i64]) -> String {
    match (series.first(), series.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}->{b}"),
        (_, Some(b)) => b.to_string(),
        _ => String::new(),
    }
}
