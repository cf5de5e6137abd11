//! The HTML report: the email's HTML part and `report --format html`.
//!
//! Written for mail clients, not browsers: layout by tables, every style
//! inline (Gmail and Outlook drop `<style>` blocks or parts of them), no
//! scripts, no images, no external resources. Every string that did not come
//! from this file goes through [`esc`], vendor text above all: a subject
//! like `<img src=x onerror=...>` must arrive as text.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::model::*;
use super::text::sparkline;

const RED: &str = "#b42318";
const AMBER: &str = "#b54708";
const MUTED: &str = "#667085";
const BORDER: &str = "#e4e7ec";
const FONT: &str = "font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif";

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

pub fn render_html(r: &Report) -> String {
    let tz: Tz = r.timezone.parse().unwrap_or(Tz::UTC);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title></head>\n\
         <body style=\"margin:0;padding:0;background:#f2f4f7;{FONT};color:#101828\">\n\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#f2f4f7\"><tr><td align=\"center\" style=\"padding:16px\">\n\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:820px;background:#ffffff;border:1px solid {BORDER};border-radius:6px\">",
        esc(&r.subject())
    );

    // Header and headline numbers.
    let _ = writeln!(
        o,
        "<tr><td style=\"padding:20px 24px 8px 24px\">\
         <div style=\"font-size:13px;color:{MUTED}\">driftwatch daily report</div>\
         <div style=\"font-size:22px;font-weight:600;margin-top:2px\">{}{}</div>\
         <div style=\"font-size:13px;color:{MUTED};margin-top:2px\">{} &middot; as of {}</div>\
         </td></tr>",
        esc(&r.date.format("%A %d %B %Y").to_string()),
        if r.complete { "" } else { " (so far)" },
        esc(&r.timezone),
        esc(&local(r.as_of).format("%Y-%m-%d %H:%M %Z").to_string())
    );
    let h = &r.headline;
    let stats = [
        ("open drifts", h.open_drifts, h.open_drifts > 0, RED),
        ("new", h.new_drifts, h.new_drifts > 0, AMBER),
        ("closed", h.closed_drifts, false, MUTED),
        (
            "refused key frames",
            h.refused_runs,
            h.refused_runs > 0,
            RED,
        ),
        ("quarantined", h.quarantined, h.quarantined > 0, AMBER),
        ("stuck orders", h.stuck_orders, h.stuck_orders > 0, AMBER),
    ];
    o.push_str("<tr><td style=\"padding:8px 24px 8px 24px\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr>");
    for (label, n, hot, colour) in stats {
        let colour = if hot { colour } else { "#101828" };
        let _ = write!(
            o,
            "<td style=\"padding:8px;border:1px solid {BORDER};text-align:center;width:16%\">\
             <div style=\"font-size:22px;font-weight:600;color:{colour}\">{n}</div>\
             <div style=\"font-size:11px;color:{MUTED}\">{label}</div></td>"
        );
    }
    o.push_str("</tr></table></td></tr>\n");

    // Alerts.
    heading(&mut o, "Needs a human");
    o.push_str("<tr><td style=\"padding:0 24px 8px 24px\">");
    if r.alerts.is_empty() {
        let msg = if h.open_drifts == 0 && h.stuck_orders == 0 && h.quarantined == 0 {
            "Nothing. No open drifts, no refused key frames, no warnings, no quarantined mail."
        } else {
            "No alerts; see the drifts, stuck orders and quarantined mail below."
        };
        let _ = write!(o, "<div style=\"font-size:14px;color:{MUTED}\">{msg}</div>");
    }
    for a in &r.alerts {
        let colour = match a.kind {
            AlertKind::RefusedKeyFrame | AlertKind::FailedRun => RED,
            _ => AMBER,
        };
        let bg = if colour == RED { "#fef3f2" } else { "#fffaeb" };
        let at =
            a.at.map(|t| local(t).format("%m-%d %H:%M").to_string())
                .unwrap_or_default();
        let _ = write!(
            o,
            "<div style=\"margin:6px 0;padding:8px 12px;background:{bg};border-left:4px solid {colour};font-size:14px\">\
             <strong style=\"color:{colour}\">{}</strong> &middot; <strong>{}</strong> \
             <span style=\"color:{MUTED}\">{}</span><br>{}</div>",
            esc(a.kind.label()),
            esc(&a.vendor),
            esc(&at),
            esc(&a.message)
        );
    }
    o.push_str("</td></tr>\n");

    // Vendor table.
    heading(&mut o, "By vendor");
    table_start(
        &mut o,
        &[
            "vendor",
            "open",
            "new",
            "closed",
            "runs (last)",
            "mail in / parsed / quarantined",
            "stuck",
            "7-day trend",
        ],
    );
    for (i, v) in r
        .vendors
        .iter()
        .chain(std::iter::once(&r.totals))
        .enumerate()
    {
        let is_total = i == r.vendors.len();
        let weight = if is_total { "font-weight:600;" } else { "" };
        let runs = match &v.runs.last_outcome {
            Some(last) => {
                let colour = match last.as_str() {
                    "refused" | "failed" => RED,
                    _ => "#101828",
                };
                format!(
                    "{} (<span style=\"color:{colour}\">{}</span>)",
                    v.runs.total,
                    esc(last)
                )
            }
            None if v.runs.total > 0 => v.runs.total.to_string(),
            None => "&ndash;".to_string(),
        };
        let silent = if v.silent {
            format!(" <span style=\"color:{AMBER};font-size:11px\">SILENT</span>")
        } else {
            String::new()
        };
        let quar = if v.mail.quarantined > 0 {
            format!(
                "<span style=\"color:{AMBER}\">{}</span>",
                v.mail.quarantined
            )
        } else {
            "0".to_string()
        };
        let _ = write!(
            o,
            "<tr style=\"{weight}\">{}{}{}{}{}{}{}{}</tr>",
            td_nowrap(&format!("{}{silent}", esc(&v.vendor))),
            td_num(v.open_drifts),
            td(&format!("+{}", v.new_drifts)),
            td(&format!("&minus;{}", v.closed_drifts)),
            td(&runs),
            td(&format!("{} / {} / {quar}", v.mail.received, v.mail.parsed)),
            td_num(v.stuck_orders),
            td(&format!(
                "<span style=\"font-family:monospace;letter-spacing:1px\">{}</span> <span style=\"color:{MUTED}\">{}</span>",
                esc(&sparkline(&v.trend)),
                v.trend.last().copied().unwrap_or(0)
            )),
        );
    }
    o.push_str("</table></td></tr>\n");
    if !r.totals.open_by_kind.is_empty() {
        let _ = writeln!(
            o,
            "<tr><td style=\"padding:4px 24px;font-size:13px;color:{MUTED}\">Open by kind: {}<br>Likely cause: {}</td></tr>",
            chips(&r.totals.open_by_kind),
            chips(&r.totals.open_by_cause)
        );
    }

    // Drifts.
    if r.drifts.total > 0 {
        heading(
            &mut o,
            &format!("Open drifts ({}, worst first)", r.drifts.total),
        );
        table_start(
            &mut o,
            &[
                "order",
                "drift",
                "we think",
                "vendor says",
                "since",
                "likely cause",
            ],
        );
        for d in &r.drifts.items {
            let what = match &d.field {
                Some(f) => format!("{} <code>{}</code>", esc(&d.kind), esc(f)),
                None => esc(&d.kind),
            };
            let new = if d.new {
                format!(" <span style=\"color:{AMBER};font-size:11px\">NEW</span>")
            } else {
                String::new()
            };
            let none = format!("<span style=\"color:{MUTED}\">(no such order)</span>");
            let _ = write!(
                o,
                "<tr>{}{}{}{}{}{}</tr>",
                td_nowrap(&format!(
                    "<strong>{}</strong><br><span style=\"color:{MUTED};font-size:12px\">{}</span>",
                    esc(&d.order_ref),
                    esc(&d.vendor)
                )),
                td(&format!("{what}{new}")),
                td(&d.ours.as_deref().map(esc).unwrap_or_else(|| none.clone())),
                td(&d.theirs.as_deref().map(esc).unwrap_or(none)),
                td_nowrap(&format!(
                    "{}<br><span style=\"color:{MUTED};font-size:12px\">{}</span>",
                    esc(&local(d.since).format("%Y-%m-%d %H:%M").to_string()),
                    esc(&age(d.since, r.as_of))
                )),
                td(&esc(&d.cause)),
            );
        }
        o.push_str("</table></td></tr>\n");
        more(&mut o, r.drifts.omitted(), "drifts", "driftwatch drifts");
    }

    if r.stuck.total > 0 {
        heading(
            &mut o,
            &format!(
                "Stuck orders ({}: open, no news for {}+ days)",
                r.stuck.total, r.stuck_after_days
            ),
        );
        table_start(&mut o, &["order", "status", "vendor's word", "last delta"]);
        for s in &r.stuck.items {
            let _ = write!(
                o,
                "<tr>{}{}{}{}</tr>",
                td_nowrap(&format!(
                    "<strong>{}</strong><br><span style=\"color:{MUTED};font-size:12px\">{}</span>",
                    esc(&s.order_ref),
                    esc(&s.vendor)
                )),
                td(&esc(s.status.as_deref().unwrap_or("(none)"))),
                td(&esc(s.vendor_status.as_deref().unwrap_or(""))),
                td(&format!(
                    "{} ({} days ago)",
                    esc(&local(s.last_delta_at).format("%Y-%m-%d").to_string()),
                    s.quiet_days
                )),
            );
        }
        o.push_str("</table></td></tr>\n");
        more(&mut o, r.stuck.omitted(), "orders", "driftwatch orders");
    }

    if r.quarantined.total > 0 {
        heading(
            &mut o,
            &format!("Quarantined mail ({})", r.quarantined.total),
        );
        table_start(&mut o, &["time", "from", "subject", "why"]);
        for q in &r.quarantined.items {
            let _ = write!(
                o,
                "<tr>{}{}{}{}</tr>",
                td(&esc(&local(q.archived_at).format("%H:%M").to_string())),
                td(&esc(q.sender.as_deref().unwrap_or("?"))),
                td(&esc(q.subject.as_deref().unwrap_or(""))),
                td(&esc(q.reason.as_deref().unwrap_or(""))),
            );
        }
        o.push_str("</table></td></tr>\n");
        more(
            &mut o,
            r.quarantined.omitted(),
            "messages",
            "driftwatch quarantine",
        );
    }

    // Trend as horizontal bars: table cells with a width render in every client.
    heading(&mut o, "7-day trend (open drifts, all vendors)");
    o.push_str("<tr><td style=\"padding:0 24px 8px 24px\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"font-size:13px\">");
    let max = r.trend.iter().map(|p| p.open).max().unwrap_or(0).max(1);
    for p in &r.trend {
        let pct = (p.open * 100 / max).clamp(0, 100);
        let bar = if pct > 0 {
            format!(
                "<table role=\"presentation\" width=\"{pct}%\" cellpadding=\"0\" cellspacing=\"0\"><tr><td style=\"background:#4e5ba6;height:12px;font-size:1px;line-height:1px\">&nbsp;</td></tr></table>"
            )
        } else {
            String::new()
        };
        let _ = write!(
            o,
            "<tr><td style=\"width:90px;padding:2px 8px 2px 0;color:{MUTED};white-space:nowrap\">{}</td>\
             <td style=\"width:40px;padding:2px 8px 2px 0;text-align:right\">{}</td><td style=\"padding:2px 0\">{bar}</td></tr>",
            esc(&p.date.format("%a %m-%d").to_string()),
            p.open
        );
    }
    o.push_str("</table></td></tr>\n");

    let _ = writeln!(
        o,
        "<tr><td style=\"padding:12px 24px 20px 24px;font-size:12px;color:{MUTED}\">\
         Stuck: open with no delta for {} days. Silent: open orders and no mail for {} hours. \
         Printed by <code>driftwatch report --date {}</code>.</td></tr>\n\
         </table></td></tr></table>\n</body></html>",
        r.stuck_after_days, r.silent_after_hours, r.date
    );
    o
}

fn heading(o: &mut String, title: &str) {
    let _ = writeln!(
        o,
        "<tr><td style=\"padding:16px 24px 6px 24px;font-size:15px;font-weight:600;border-top:1px solid {BORDER}\">{}</td></tr>",
        esc(title)
    );
}

fn table_start(o: &mut String, headers: &[&str]) {
    let _ = write!(
        o,
        "<tr><td style=\"padding:0 24px 8px 24px\"><table width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"border-collapse:collapse;font-size:13px\"><tr>"
    );
    for h in headers {
        let _ = write!(
            o,
            "<th align=\"left\" style=\"padding:6px 8px;border-bottom:2px solid {BORDER};color:{MUTED};font-weight:600;font-size:12px\">{}</th>",
            esc(h)
        );
    }
    o.push_str("</tr>");
}

/// A cell; `html` must already be escaped.
fn td(html: &str) -> String {
    format!(
        "<td style=\"padding:6px 8px;border-bottom:1px solid {BORDER};vertical-align:top\">{html}</td>"
    )
}

/// A cell that must not wrap (dates, order refs with hyphens).
fn td_nowrap(html: &str) -> String {
    format!(
        "<td style=\"padding:6px 8px;border-bottom:1px solid {BORDER};vertical-align:top;white-space:nowrap\">{html}</td>"
    )
}

fn td_num(n: i64) -> String {
    td(&n.to_string())
}

fn chips(m: &std::collections::BTreeMap<String, i64>) -> String {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{} <strong>{n}</strong>", esc(k)))
        .collect::<Vec<_>>()
        .join(" &middot; ")
}

fn more(o: &mut String, omitted: usize, what: &str, command: &str) {
    if omitted > 0 {
        let _ = writeln!(
            o,
            "<tr><td style=\"padding:0 24px 8px 24px;font-size:12px;color:{MUTED}\">&hellip; and {omitted} more {what} (<code>{}</code>)</td></tr>",
            esc(command)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<img src=x onerror=\"alert('x')\">&"),
            "&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;"
        );
        assert_eq!(esc("a\u{1b}[31mb"), "a\u{fffd}[31mb");
    }
}
