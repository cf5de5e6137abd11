//! The HTML report: the email's HTML part and `report --format html`.
//!
//! Written for mail clients, not browsers: layout by tables, every style
//! inline (Gmail and Outlook drop `<style>` blocks or parts of them), no
//! scripts, no images, no external resources.
//!
//! On a phone (below 600 px) one small `<style>` block with a media query
//! turns it into a single fluid column: headline tiles wrap three to a row,
//! detail tables stack into label/value rows (each cell carries its column
//! name in `data-label`), and long vendor strings wrap anywhere. A client
//! that drops the `<style>` block still gets the inline desktop layout, which
//! is fluid (`width:100%`, `max-width`) and wraps long strings too. Every string that did not come
//! from this file goes through [`esc`], vendor text above all: a subject
//! like `<img src=x onerror=...>` must arrive as text.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::model::*;
use super::text::sparkline;
use crate::reconcile::drift::Outcome;

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
            c if c != '\n' && crate::clean::acts(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The phone layout: only classes, so the inline styles stay the default
/// for clients that ignore `<style>`. `!important` because inline styles
/// otherwise win.
const PHONE_CSS: &str = "@media only screen and (max-width:600px){\
.dw-outer{padding:0 !important}\
.dw-card{border-radius:0 !important;border-left:0 !important;border-right:0 !important}\
.dw-pad{padding-left:12px !important;padding-right:12px !important}\
.dw-tiles tr{display:block !important}\
.dw-tiles td{display:inline-block !important;width:33.33% !important;box-sizing:border-box;vertical-align:top}\
table.dw-stack,.dw-stack tbody,.dw-stack tr,.dw-stack td{display:block !important;width:100% !important;box-sizing:border-box}\
.dw-stack th{display:none !important}\
.dw-stack tr{border-bottom:2px solid #e4e7ec;padding:4px 0}\
.dw-stack td{border:0 !important;padding:2px 0 2px 40% !important;position:relative;white-space:normal !important;overflow-wrap:anywhere}\
.dw-stack td:before{content:attr(data-label);position:absolute;left:0;top:3px;width:37%;font-size:11px;color:#667085}\
}";

/// Lets a long unbroken vendor string (a URL, a 200-character order ref)
/// wrap instead of widening its cell past the screen. Only on cells that
/// hold such a word ([`td`]): on every cell it would let the table squeeze
/// short columns to one letter per line.
const WRAP: &str = "overflow-wrap:anywhere;word-break:break-word";

/// Words longer than this (in characters, markup not counted) get [`WRAP`].
const LONG_WORD: usize = 24;

/// The longest run of non-space characters in `html`'s text (tags skipped,
/// an entity counted as one character).
fn longest_word(html: &str) -> usize {
    let (mut longest, mut run, mut in_tag, mut in_entity) = (0, 0, false, false);
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            '&' => {
                in_entity = true;
                run += 1;
            }
            ';' if in_entity => in_entity = false,
            _ if in_entity => {}
            c if c.is_whitespace() => run = 0,
            _ => run += 1,
        }
        longest = longest.max(run);
    }
    longest
}

pub fn render_html(r: &Report) -> String {
    let tz: Tz = r.timezone.parse().unwrap_or(Tz::UTC);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{PHONE_CSS}</style></head>\n\
         <body style=\"margin:0;padding:0;background:#f2f4f7;{FONT};color:#101828\">\n\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#f2f4f7;table-layout:fixed\"><tr><td class=\"dw-outer\" align=\"center\" style=\"padding:16px\">\n\
         <table class=\"dw-card\" role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:820px;background:#ffffff;border:1px solid {BORDER};border-radius:6px\">",
        esc(&r.subject())
    );

    // Header and headline numbers.
    let _ = writeln!(
        o,
        "<tr><td class=\"dw-pad\" style=\"padding:20px 24px 8px 24px\">\
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
    o.push_str("<tr><td class=\"dw-pad\" style=\"padding:8px 24px 8px 24px\"><table class=\"dw-tiles\" role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr>");
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
    o.push_str("<tr><td class=\"dw-pad\" style=\"padding:0 24px 8px 24px\">");
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
            AlertKind::FormatChange
            | AlertKind::SilentVendor
            | AlertKind::KeyFrameWarning
            | AlertKind::KeyFrameOverdue => AMBER,
        };
        let bg = if colour == RED { "#fef3f2" } else { "#fffaeb" };
        let at =
            a.at.map(|t| local(t).format("%m-%d %H:%M").to_string())
                .unwrap_or_default();
        let _ = write!(
            o,
            "<div style=\"margin:6px 0;padding:8px 12px;background:{bg};border-left:4px solid {colour};font-size:14px;{WRAP}\">\
             <strong style=\"color:{colour}\">{}</strong> &middot; <strong>{}</strong> \
             <span style=\"color:{MUTED}\">{}</span><br>{}</div>",
            esc(a.kind.label()),
            esc(&a.vendor),
            esc(&at),
            esc(&a.message)
        );
    }
    if r.omitted.alerts > 0 {
        let _ = write!(
            o,
            "<div style=\"font-size:12px;color:{MUTED}\">&hellip; and {} more alerts (<code>driftwatch report --format json</code>)</div>",
            r.omitted.alerts
        );
    }
    o.push_str("</td></tr>\n");
    if r.omitted.cut_strings > 0 {
        let _ = writeln!(
            o,
            "<tr><td class=\"dw-pad\" style=\"padding:0 24px 8px 24px;font-size:12px;color:{MUTED}\">{}</td></tr>",
            esc(&cut_note(&r.omitted))
        );
    }

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
            "mail in / ok / quar.",
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
                let colour = match last {
                    Outcome::Refused | Outcome::Failed => RED,
                    Outcome::Ok | Outcome::Unchanged => "#101828",
                };
                format!(
                    "{} (<span style=\"color:{colour}\">{}</span>)",
                    v.runs.total,
                    last.as_str()
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
            td_nowrap("vendor", &format!("{}{silent}", esc(&v.vendor))),
            td("open", &v.open_drifts.to_string()),
            td("new", &format!("+{}", v.new_drifts)),
            td("closed", &format!("&minus;{}", v.closed_drifts)),
            td("runs (last)", &runs),
            td(
                "mail in / ok / quar.",
                &format!("{} / {} / {quar}", v.mail.received, v.mail.parsed)
            ),
            td("stuck", &v.stuck_orders.to_string()),
            td(
                "7-day trend",
                &format!(
                    "<span style=\"font-family:monospace;letter-spacing:1px\">{}</span> <span style=\"color:{MUTED}\">{}</span>",
                    esc(&sparkline(&v.trend)),
                    v.trend.last().copied().unwrap_or(0)
                )
            ),
        );
    }
    o.push_str("</table></td></tr>\n");
    if !r.totals.open_by_kind.is_empty() {
        let _ = writeln!(
            o,
            "<tr><td class=\"dw-pad\" style=\"padding:4px 24px;font-size:13px;color:{MUTED}\">Open by kind: {}<br>Likely cause: {}</td></tr>",
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
                td(
                    "order",
                    &format!(
                        "<strong>{}</strong><br><span style=\"color:{MUTED};font-size:12px\">{}</span>",
                        esc(&d.order_ref),
                        esc(&d.vendor)
                    )
                ),
                td("drift", &format!("{what}{new}")),
                td(
                    "we think",
                    &d.ours.as_deref().map(esc).unwrap_or_else(|| none.clone())
                ),
                td("vendor says", &d.theirs.as_deref().map(esc).unwrap_or(none)),
                td_nowrap(
                    "since",
                    &format!(
                        "{}<br><span style=\"color:{MUTED};font-size:12px\">{}</span>",
                        esc(&local(d.since).format("%Y-%m-%d %H:%M").to_string()),
                        esc(&age(d.since, r.as_of))
                    )
                ),
                td("likely cause", &esc(&d.cause)),
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
                td(
                    "order",
                    &format!(
                        "<strong>{}</strong><br><span style=\"color:{MUTED};font-size:12px\">{}</span>",
                        esc(&s.order_ref),
                        esc(&s.vendor)
                    )
                ),
                td("status", &esc(s.status.as_deref().unwrap_or("(none)"))),
                td(
                    "vendor's word",
                    &esc(s.vendor_status.as_deref().unwrap_or(""))
                ),
                td(
                    "last delta",
                    &format!(
                        "{} ({} days ago)",
                        esc(&local(s.last_delta_at).format("%Y-%m-%d").to_string()),
                        s.quiet_days
                    )
                ),
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
                td(
                    "time",
                    &esc(&local(q.archived_at).format("%H:%M").to_string())
                ),
                td("from", &esc(q.sender.as_deref().unwrap_or("?"))),
                td("subject", &esc(q.subject.as_deref().unwrap_or(""))),
                td("why", &esc(q.reason.as_deref().unwrap_or(""))),
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

    if r.actions.total > 0 {
        heading(&mut o, &format!("Dashboard actions ({})", r.actions.total));
        table_start(&mut o, &["time", "who", "what"]);
        for a in &r.actions.items {
            let _ = write!(
                o,
                "<tr>{}{}{}</tr>",
                td("time", &esc(&local(a.at).format("%H:%M").to_string())),
                td("who", &esc(&a.actor)),
                td("what", &esc(&a.what)),
            );
        }
        o.push_str("</table></td></tr>\n");
        more(
            &mut o,
            r.actions.omitted(),
            "actions",
            "the dashboard's Reports page",
        );
    }

    // Trend as horizontal bars: table cells with a width render in every client.
    heading(&mut o, "7-day trend (open drifts, all vendors)");
    o.push_str("<tr><td class=\"dw-pad\" style=\"padding:0 24px 8px 24px\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"font-size:13px\">");
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
        "<tr><td class=\"dw-pad\" style=\"padding:12px 24px 20px 24px;font-size:12px;color:{MUTED}\">\
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
        "<tr><td class=\"dw-pad\" style=\"padding:16px 24px 6px 24px;font-size:15px;font-weight:600;border-top:1px solid {BORDER}\">{}</td></tr>",
        esc(title)
    );
}

fn table_start(o: &mut String, headers: &[&str]) {
    let _ = write!(
        o,
        "<tr><td class=\"dw-pad\" style=\"padding:0 24px 8px 24px\"><table class=\"dw-stack\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"border-collapse:collapse;font-size:13px\"><tr>"
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

/// A cell of a detail table; `html` must already be escaped. `label` is its
/// column's name, shown above the value when the table stacks on a phone.
fn td(label: &str, html: &str) -> String {
    let wrap = if longest_word(html) > LONG_WORD {
        WRAP
    } else {
        ""
    };
    format!(
        "<td data-label=\"{}\" style=\"padding:6px 8px;border-bottom:1px solid {BORDER};vertical-align:top;{wrap}\">{html}</td>",
        esc(label)
    )
}

/// A cell that does not wrap on a wide screen (dates, order refs with
/// hyphens); on a phone it wraps like any other.
fn td_nowrap(label: &str, html: &str) -> String {
    format!(
        "<td data-label=\"{}\" style=\"padding:6px 8px;border-bottom:1px solid {BORDER};vertical-align:top;white-space:nowrap\">{html}</td>",
        esc(label)
    )
}

/// The sentence saying what the size bounds cut (text and HTML).
pub fn cut_note(o: &Omitted) -> String {
    format!(
        "{} long value{} cut to keep this email small ({} characters left out); \
         `driftwatch quarantine show ID` and `driftwatch drifts --json` have them whole.",
        o.cut_strings,
        if o.cut_strings == 1 { " was" } else { "s were" },
        o.cut_chars
    )
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
            "<tr><td class=\"dw-pad\" style=\"padding:0 24px 8px 24px;font-size:12px;color:{MUTED}\">&hellip; and {omitted} more {what} (<code>{}</code>)</td></tr>",
            esc(command)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{esc, longest_word};

    #[test]
    fn longest_word_skips_markup_and_counts_entities_once() {
        assert_eq!(
            longest_word("<span style=\"color:#667085;font-size:12px\">ab</span> abc"),
            3
        );
        assert_eq!(longest_word("a&amp;b c"), 3);
        assert_eq!(longest_word(&"x".repeat(30)), 30);
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<img src=x onerror=\"alert('x')\">&"),
            "&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;"
        );
        assert_eq!(esc("a\u{1b}[31mb"), "a\u{fffd}[31mb");
        assert_eq!(esc("48213\u{202e}<b>"), "48213\u{fffd}&lt;b&gt;");
    }
}
