//! `driftwatch parsers explain`: what the patterns see and what they make of
//! it. Shows the decoded views of a message (subject, text, HTML as text,
//! attachments), which rule files claim it and why, each pattern's match,
//! and the outcome it would get. Pure: the caller reads the file and prints.

use std::fmt::Write as _;

use super::{DateHeader, Mail, Outcome, Parser, Registry, documents};

/// The first `max` lines of `text`, indented under an attachment, and how
/// many more there are.
fn indented(out: &mut String, text: &str, max: usize) {
    let mut lines = text.lines();
    for line in lines.by_ref().take(max) {
        let _ = writeln!(out, "    {line}");
    }
    let more = lines.count();
    if more > 0 {
        let _ = writeln!(out, "    … {more} more lines");
    }
}

/// The explanation as text. With `vendor`, only that vendor's rule file is
/// examined, and its extraction is shown even if another file would win.
pub fn explain(raw: &[u8], registry: &Registry, vendor: Option<&str>) -> String {
    let mut out = String::new();
    let Some(mail) = Mail::parse(raw, None) else {
        return "not a parseable email: no header section\n".into();
    };
    let sender = mail.from_address();
    let _ = writeln!(out, "== message ==");
    let _ = writeln!(out, "from:    {}", sender.as_deref().unwrap_or("(none)"));
    let _ = writeln!(out, "subject: {}", mail.subject());
    let _ = writeln!(
        out,
        "date:    {}",
        match mail.date_header() {
            DateHeader::Placed(d) => d.to_rfc3339(),
            DateHeader::Absent => "(none)".into(),
            DateHeader::Unreadable(v) => format!("(cannot be placed: `{v}`)"),
        }
    );
    section(&mut out, "text (what `in = \"text\"` sees)", mail.text());
    section(
        &mut out,
        "HTML as text (what `in = \"html\"` sees)",
        mail.html_text(),
    );
    let _ = writeln!(out, "\n== attachments ==");
    let mut any = false;
    for a in mail.attachments() {
        any = true;
        let _ = writeln!(
            out,
            "- {} ({}, {} bytes)",
            a.name.as_deref().unwrap_or("(unnamed)"),
            if a.content_type.is_empty() {
                "no type"
            } else {
                &a.content_type
            },
            a.bytes.len()
        );
        let textual = a.content_type.starts_with("text/")
            || a.content_type.contains("csv")
            || a.content_type.contains("json")
            || a.name.as_deref().is_some_and(|n| {
                let n = n.to_ascii_lowercase();
                n.ends_with(".csv") || n.ends_with(".txt") || n.ends_with(".json")
            });
        let name = a.name.as_deref().unwrap_or("(unnamed)");
        if documents::is_pdf(&a.content_type, a.name.as_deref(), a.bytes) {
            let _ = writeln!(out, "  PDF text (what `in = \"pdf\"` sees):");
            match documents::pdf_text(name, a.bytes) {
                Ok(t) => indented(&mut out, &t, 60),
                Err(e) => {
                    let _ = writeln!(out, "    cannot be read: {e}");
                }
            }
        } else if documents::is_xlsx(&a.content_type, a.name.as_deref()) {
            match documents::xlsx_sheets(name, a.bytes) {
                Ok(sheets) => {
                    for (sheet, rows) in sheets {
                        let _ = writeln!(out, "  sheet `{sheet}` ({} rows):", rows.len());
                        let lines: Vec<String> = rows
                            .iter()
                            .filter(|r| r.iter().any(|c| !c.trim().is_empty()))
                            .map(|r| r.join(" | "))
                            .collect();
                        indented(&mut out, &lines.join("\n"), 20);
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "    cannot be read: {e}");
                }
            }
        } else if textual {
            indented(&mut out, &String::from_utf8_lossy(a.bytes), 20);
        }
    }
    if !any {
        let _ = writeln!(out, "(none)");
    }

    let _ = writeln!(out, "\n== rule files ==");
    let chosen: Vec<&std::sync::Arc<dyn Parser>> = registry
        .parsers()
        .iter()
        .filter(|p| vendor.is_none_or(|v| p.vendor() == v))
        .collect();
    if chosen.is_empty() {
        let _ = writeln!(out, "no rule file for vendor {}", vendor.unwrap_or(""));
    }
    for p in &chosen {
        let claim = match &sender {
            Some(s) if p.accepts_sender(s) => format!("claims sender {s}"),
            Some(s) if p.accepts_forwarder(s) => format!("lists {s} as a forwarder"),
            Some(s) => format!("does not claim sender {s}"),
            None => "no sender to check".into(),
        };
        let _ = writeln!(
            out,
            "{} (priority {}): {claim}",
            p.name(),
            p.priority().unwrap_or(0)
        );
        let forwarded = sender.as_deref().is_some_and(|s| p.accepts_forwarder(s));
        let original = forwarded.then(|| mail.forwarded_original()).flatten();
        match original.as_deref().and_then(|r| Mail::parse(r, None)) {
            Some(orig) => {
                let _ = writeln!(
                    out,
                    "  forwarded original from {}, subject {:?}:",
                    orig.from_address().as_deref().unwrap_or("(none)"),
                    orig.subject()
                );
                for line in p.explain(&orig) {
                    let _ = writeln!(out, "  {line}");
                }
            }
            None if vendor.is_some() || sender.as_deref().is_some_and(|s| p.accepts_sender(s)) => {
                for line in p.explain(&mail) {
                    let _ = writeln!(out, "  {line}");
                }
            }
            None => {}
        }
    }

    let _ = writeln!(out, "\n== outcome ==");
    let outcome = match vendor.and_then(|v| chosen.iter().find(|p| p.vendor() == v)) {
        // One vendor asked for: its extraction, whoever would take the mail.
        Some(p) => super::extract_outcome(p.as_ref(), &mail),
        None => registry.classify(&mail),
    };
    match outcome {
        Outcome::Parsed { parser, deltas, .. } => {
            let _ = writeln!(out, "parsed by {parser}: {} delta(s)", deltas.len());
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&deltas).unwrap_or_default()
            );
        }
        Outcome::Quarantined { reason, .. } => {
            let _ = writeln!(out, "quarantined: {reason}");
        }
        Outcome::Ignored { reason } => {
            let _ = writeln!(out, "ignored: {reason}");
        }
    }
    // Mail is untrusted: no terminal control sequences reach the screen.
    out.chars()
        .filter(|&c| c != '\r')
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

fn section(out: &mut String, title: &str, body: &str) {
    let _ = writeln!(out, "\n== {title} ==");
    if body.is_empty() {
        let _ = writeln!(out, "(empty)");
    } else {
        let _ = writeln!(out, "{body}");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::parse::RegistryOptions;

    #[test]
    fn explain_shows_the_decoded_views_each_pattern_and_the_deltas() {
        // Two shipped rule files, compiled in: core reads no files.
        let file = |name: &str, text: &str| (Path::new(name).to_path_buf(), text.to_string());
        let registry = Registry::from_rule_files(
            vec![
                file(
                    "acme-appraisal.toml",
                    include_str!("../../../../parsers/acme-appraisal.toml"),
                ),
                file(
                    "keystone-title.toml",
                    include_str!("../../../../parsers/keystone-title.toml"),
                ),
            ],
            RegistryOptions::default(),
        )
        .unwrap();
        let raw: &[u8] =
            include_bytes!("../../../../fixtures/acme-appraisal/02-acme-48213-scheduled.eml");
        let text = explain(raw, &registry, None);
        for want in [
            "subject: Order 48213 — Inspection Scheduled",
            "Appraiser: José Martínez",
            "rules:acme-appraisal (priority 0): claims sender status@acme-amc.example",
            "extract[0] over the text body: order_ref=`48213`",
            "extract[1] over the text body: status=`Inspection Scheduled`",
            "ignore[0] over the subject: no match",
            "parsed by rules:acme-appraisal: 1 delta(s)",
            "\"order_ref\": \"48213\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        // --vendor: another vendor's patterns, and why they do not match.
        let text = explain(raw, &registry, Some("keystone-title"));
        assert!(text.contains("does not claim sender"), "{text}");
        assert!(
            text.contains("extract[0] over the HTML body: no match"),
            "{text}"
        );
        assert!(
            text.contains("quarantined: rules:keystone-title: pattern 0"),
            "{text}"
        );
    }
}
