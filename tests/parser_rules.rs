//! The rules that keep parsers from lying quietly: a missing status, two
//! patterns that disagree, two rule files claiming one sender, a time format
//! that cannot work, vendor mail that is not status mail, forwarded mail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use driftwatch::fixtures::outcome_json;
use driftwatch::parse::{Registry, RegistryOptions};
use serde_json::Value;
use support::app::{fixture, parsers_dir};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/parser-rules")
            .join(name),
    )
    .unwrap()
}

/// A registry of the given rule files (name, text) in a temp dir.
fn registry(files: &[(&str, &str)]) -> Result<Registry, String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    driftwatch::parse::load_dir(dir.path(), RegistryOptions::default()).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

const BEACON: &str = r#"vendor = "beacon"
version = 1
[match]
senders = ["status@beacon.example"]
[[extract]]
in = "subject"
optional = true
pattern = 'Order (?P<order_ref>\d+) - (?P<status>\w+)'
[[extract]]
in = "text"
optional = true
pattern = '(?m)^Order #?:? ?(?P<order_ref>\d+)'
[[extract]]
in = "text"
optional = true
pattern = '(?m)^Status: (?P<status>\w+)'
[[extract]]
in = "text"
optional = true
pattern = '(?m)^Fee changed: (?P<fee>\S+)'
[fields.fee]
type = "money"
[status_map]
"Completed" = "completed"
"#;

#[test]
fn a_message_without_a_status_is_quarantined_unless_the_file_declares_field_updates_only() {
    let r = registry(&[("beacon.toml", BEACON)]).unwrap();
    let out = outcome_json(&data("no-status.eml"), &r);
    assert_eq!(out["outcome"], "quarantined", "{out}");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("no status captured"),
        "{out}"
    );

    let declared = BEACON.replace("version = 1\n", "version = 1\nfield_updates_only = true\n");
    let r = registry(&[("beacon.toml", &declared)]).unwrap();
    let out = outcome_json(&data("no-status.eml"), &r);
    assert_eq!(out["outcome"], "parsed", "{out}");
    assert_eq!(out["deltas"][0]["status"], Value::Null);
    assert_eq!(out["deltas"][0]["fields"]["fee"], 480.0);
}

#[test]
fn a_rule_file_that_never_captures_a_status_must_say_field_updates_only() {
    let no_status = BEACON
        .replace(" - (?P<status>\\w+)", "")
        .replace("(?P<status>\\w+)", "(?P<state>\\w+)");
    let e = registry(&[("beacon.toml", &no_status)]).err().unwrap();
    assert!(
        e.contains("beacon.toml") && e.contains("field_updates_only"),
        "{e}"
    );
}

#[test]
fn conflicting_captures_quarantine_naming_both_values() {
    let r = registry(&[("beacon.toml", BEACON)]).unwrap();
    let out = outcome_json(&data("conflicting-order-ids.eml"), &r);
    assert_eq!(out["outcome"], "quarantined", "{out}");
    let reason = out["reason"].as_str().unwrap();
    assert!(
        reason.contains("`order_ref` captured twice")
            && reason.contains("`7002` (pattern 0 over the subject)")
            && reason.contains("`7003` (pattern 1 over the text body)"),
        "{reason}"
    );
}

#[test]
fn a_declared_pattern_priority_resolves_conflicting_captures() {
    let prioritised = BEACON.replacen(
        "optional = true\npattern = '(?m)^Order",
        "optional = true\npriority = 10\npattern = '(?m)^Order",
        1,
    );
    let r = registry(&[("beacon.toml", &prioritised)]).unwrap();
    let out = outcome_json(&data("conflicting-order-ids.eml"), &r);
    assert_eq!(out["outcome"], "parsed", "{out}");
    assert_eq!(out["deltas"][0]["order_ref"], "7003");
    assert_eq!(out["deltas"][0]["status"], "completed");
}

#[test]
fn overlapping_sender_claims_are_a_load_error_unless_priorities_differ() {
    let wide = BEACON
        .replace("vendor = \"beacon\"", "vendor = \"beacon-billing\"")
        .replace("status@beacon.example", "*@beacon.example");
    let e = registry(&[("beacon.toml", BEACON), ("beacon-billing.toml", &wide)])
        .err()
        .unwrap();
    assert!(
        e.contains("beacon.toml: key `match.senders`")
            && e.contains("`*@beacon.example`")
            && e.contains("`status@beacon.example`")
            && e.contains("priority"),
        "{e}"
    );

    // With priorities the narrower file goes first, whatever the file names.
    let first = BEACON.replace("version = 1\n", "version = 1\npriority = 10\n");
    let r = registry(&[("beacon.toml", &first), ("beacon-billing.toml", &wide)]).unwrap();
    let vendors: Vec<&str> = r.parsers().iter().map(|p| p.vendor()).collect();
    assert_eq!(vendors, ["beacon", "beacon-billing"]);
    let out = outcome_json(&data("conflicting-order-ids.eml"), &r);
    assert_eq!(out["vendor"], "beacon", "{out}");
}

#[test]
fn an_invalid_time_format_is_refused_at_load_with_file_line_and_key() {
    let bad = format!(
        "{}[event_time]\nformat = \"%m/%d/%Y %Q\"\n",
        BEACON.replace(
            "Status: (?P<status>\\w+)",
            "Status: (?P<status>\\w+) at (?P<event_time>.+)"
        )
    );
    let e = registry(&[("beacon.toml", &bad)]).err().unwrap();
    assert!(
        e.contains("beacon.toml:") && e.contains("key `event_time.format`") && e.contains("%Q"),
        "{e}"
    );

    // `%Z` without a zones table is refused too: it would read and drop the zone.
    let unmapped = bad.replace("%Q", "%H:%M %Z");
    let e = registry(&[("beacon.toml", &unmapped)]).err().unwrap();
    assert!(
        e.contains("event_time.format") && e.contains("zones"),
        "{e}"
    );
}

#[test]
fn check_config_refuses_an_invalid_time_format() {
    let dir = tempfile::tempdir().unwrap();
    let parsers = dir.path().join("parsers");
    std::fs::create_dir(&parsers).unwrap();
    for f in std::fs::read_dir(parsers_dir()).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, parsers.join(p.file_name().unwrap())).unwrap();
    }
    let acme = parsers.join("acme-appraisal.toml");
    let text = std::fs::read_to_string(&acme).unwrap();
    std::fs::write(&acme, text.replace("%I:%M %p\",", "%I:%M %Q\",")).unwrap();
    std::fs::write(
        dir.path().join("driftwatch.toml"),
        "parsers_dir = \"parsers\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .current_dir(dir.path())
        .env_remove("DRIFTWATCH_CONFIG")
        .arg("check-config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("acme-appraisal.toml")
            && stderr.contains("event_time.format")
            && stderr.contains("%Q"),
        "{stderr}"
    );
}

#[test]
fn zone_abbreviations_in_captured_times_map_through_the_vendor_table() {
    let r = driftwatch::parse::load_dir(&parsers_dir(), RegistryOptions::default()).unwrap();
    let out = outcome_json(
        &fixture("acme-appraisal/11-acme-48220-eastern-zone-abbreviation.eml"),
        &r,
    );
    // 10:30 AM EST, not the file's Chicago default.
    assert_eq!(
        out["deltas"][0]["event_time"], "2026-11-25T15:30:00Z",
        "{out}"
    );
    let out = outcome_json(
        &fixture("acme-appraisal/12-acme-48221-unmapped-zone-pt.eml"),
        &r,
    );
    assert_eq!(out["outcome"], "quarantined");
    assert!(out["reason"].as_str().unwrap().contains("`PT`"), "{out}");
}

#[test]
fn vendor_ignore_rules_archive_non_status_mail_as_ignored_with_the_rule() {
    let r = driftwatch::parse::load_dir(&parsers_dir(), RegistryOptions::default()).unwrap();
    let out = outcome_json(
        &fixture("acme-appraisal/13-acme-newsletter-ignored.eml"),
        &r,
    );
    assert_eq!(out["outcome"], "ignored", "{out}");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .starts_with("acme-appraisal: ignore rule 0: Acme newsletter"),
        "{out}"
    );
}

#[test]
fn a_forward_from_a_listed_forwarder_parses_as_the_vendors_mail() {
    let r = driftwatch::parse::load_dir(&parsers_dir(), RegistryOptions::default()).unwrap();
    for (file, order) in [
        (
            "acme-appraisal/14-acme-48222-forwarded-by-colleague.eml",
            "48222",
        ),
        (
            "acme-appraisal/15-acme-48223-forwarded-as-attachment.eml",
            "48223",
        ),
    ] {
        let out = outcome_json(&fixture(file), &r);
        assert_eq!(out["outcome"], "parsed", "{file}: {out}");
        assert_eq!(out["deltas"][0]["order_ref"], order);
    }
    // A listed forwarder passing on someone else's mail gains nothing.
    let out = outcome_json(
        &fixture("acme-appraisal/16-acme-forward-of-non-acme-original.eml"),
        &r,
    );
    assert_eq!(out["outcome"], "quarantined", "{out}");
}

#[test]
fn a_forward_is_checked_against_the_forwarders_authentication() {
    let r = driftwatch::parse::load_dir(&parsers_dir(), RegistryOptions::default()).unwrap();
    let raw = fixture("acme-appraisal/14-acme-48222-forwarded-by-colleague.eml");
    let with = |verdict: &str| -> Vec<u8> {
        let mut m = format!(
            "Authentication-Results: mx.lender.example; dmarc={verdict} header.from=lender.example\r\n"
        )
        .into_bytes();
        m.extend_from_slice(&raw);
        m
    };
    let out = outcome_json(&with("fail"), &r);
    assert_eq!(out["outcome"], "quarantined", "{out}");
    assert!(
        out["reason"].as_str().unwrap().contains("lender.example"),
        "{out}"
    );
    assert_eq!(outcome_json(&with("pass"), &r)["outcome"], "parsed");
}

#[test]
fn charsets_decode_through_encoding_rs_iso_2022_jp_windows_1252_utf_16() {
    let raw = fixture("acme-appraisal/17-acme-48225-iso2022jp-subject-windows1252-body.eml");
    let mail = driftwatch::parse::Mail::parse(&raw, None).unwrap();
    assert_eq!(mail.subject(), "ご注文の状況 Order 48225");
    assert!(
        mail.text().contains("Appraiser: Zoë Müller – “senior”"),
        "{}",
        mail.text()
    );
    let raw = fixture("acme-appraisal/18-acme-48226-utf16-body.eml");
    let mail = driftwatch::parse::Mail::parse(&raw, None).unwrap();
    assert!(
        mail.text().contains("Appraiser: Søren Ødegård"),
        "{}",
        mail.text()
    );
}

#[test]
fn quoted_printable_is_decoded_in_a_multipart_with_no_closing_boundary() {
    let raw = fixture("keystone-title/06-keystone-T7794-unterminated-multipart-qp.eml");
    let mail = driftwatch::parse::Mail::parse(&raw, None).unwrap();
    let html = mail.html_text();
    assert!(html.contains("Status | Title Search Complete"), "{html}");
    assert!(
        html.contains("Property | 12 Café Row, Portland, ME"),
        "{html}"
    );
}

/// A part cut by a missing closing boundary is decoded by the same decoder,
/// to the same text, as the part with its boundary: trailing whitespace
/// dropped before line breaks, a malformed escape kept, a soft break after
/// a stray CR.
#[test]
fn an_unterminated_quoted_printable_part_reads_as_the_terminated_one() {
    let body = "<p>Status: T=C3=ADtulo =3D Complete   \r\n<p>Order 42 =ZZ and =\r\r\nsoft</p>\r\n";
    let mail = |end: &str| {
        format!(
            "From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{body}{end}"
        )
    };
    let (whole, cut) = (mail("--b--\r\n"), mail(""));
    let whole = driftwatch::parse::Mail::parse(whole.as_bytes(), None).unwrap();
    let cut = driftwatch::parse::Mail::parse(cut.as_bytes(), None).unwrap();
    assert_eq!(
        whole.html_text(),
        "Status: Título = Complete\nOrder 42 =ZZ and soft"
    );
    assert_eq!(cut.html_text(), whole.html_text());
}

#[test]
fn html_tables_survive_gt_in_attributes_and_html5_entities() {
    let raw = fixture("keystone-title/05-keystone-T7793-gt-in-attribute-html5-entity.eml");
    let mail = driftwatch::parse::Mail::parse(&raw, None).unwrap();
    let html = mail.html_text();
    assert!(
        html.contains("\nStatus | Title Search Complete\n"),
        "{html}"
    );
    assert!(html.contains("Examiner | ☆☆☆ M. Brennan"), "{html}");
}

#[test]
fn explain_reads_every_real_vendor_mail_without_a_panic_or_control_characters() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!("SKIP: no mail corpus at {} (CI has it)", corpus.display());
        return;
    }
    let r = driftwatch::parse::load_dir(&parsers_dir(), RegistryOptions::default()).unwrap();
    let mut stack = vec![corpus];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "eml") {
                let text = driftwatch::parse::explain(&std::fs::read(&p).unwrap(), &r, None);
                assert!(text.contains("== outcome =="), "{}", p.display());
                assert!(
                    !text
                        .chars()
                        .any(|c| c.is_control() && c != '\n' && c != '\t'),
                    "{}",
                    p.display()
                );
                n += 1;
            }
        }
    }
    assert!(n > 100, "corpus too small: {n}");
}

/// A Beacon status mail with the given Date header (or none).
fn beacon_mail(date: Option<&str>) -> Vec<u8> {
    let date = date.map(|d| format!("Date: {d}\r\n")).unwrap_or_default();
    format!(
        "From: status@beacon.example\r\nTo: orders@lender.example\r\nSubject: Order 61 - Completed\r\n{date}Message-ID: <d@beacon.example>\r\n\r\nOrder: 61\r\nStatus: Completed\r\n"
    )
    .into_bytes()
}

#[test]
fn a_date_header_that_cannot_be_placed_quarantines_mail_that_needs_it() {
    let r = registry(&[("beacon.toml", BEACON)]).unwrap();
    // Audit cases: mail-parser read each of these as a wrong UTC time.
    for date in [
        "Wed, 9 Jul 2025 23:18:26 CEST",
        "Wed, 9 Jul 2025 05:18:26 PM -0400",
        "Tue, 31 Feb 2026 10:00:00 +0000",
        "Wed, 9 Jul 2025 23:18:26 +2400",
    ] {
        let out = outcome_json(&beacon_mail(Some(date)), &r);
        assert_eq!(out["outcome"], "quarantined", "{date}: {out}");
        let reason = out["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("Date header `{date}` cannot be placed")),
            "{reason}"
        );
    }
    // A readable one is the event time, in UTC.
    let out = outcome_json(&beacon_mail(Some("Wed, 9 Jul 2025 23:18:26 +0200")), &r);
    assert_eq!(out["outcome"], "parsed", "{out}");
    let delta = &out["deltas"][0];
    assert_eq!(delta["event_time"], "2025-07-09T21:18:26Z", "{out}");
    assert_eq!(delta["time_source"], "date_header", "{out}");
    // No Date header at all: the arrival time, as before (none here).
    let out = outcome_json(&beacon_mail(None), &r);
    assert_eq!(out["outcome"], "parsed", "{out}");
    assert_eq!(out["deltas"][0]["time_source"], "received", "{out}");
}

/// Beacon reading `Updated: ...` as the event time in `format`.
fn beacon_with_updated(format: &str) -> String {
    format!(
        "{}[event_time]\nformat = \"{format}\"\n",
        BEACON.replace(
            "[fields.fee]",
            "[[extract]]\nin = \"text\"\noptional = true\npattern = '(?m)^Updated: (?P<event_time>.+?)\\r?$'\n[fields.fee]"
        )
    )
}

fn beacon_updated_mail(updated: &str) -> Vec<u8> {
    format!(
        "From: status@beacon.example\r\nSubject: Order 1 - Completed\r\nDate: Tue, 24 Nov 2026 16:00:00 +0000\r\n\r\nOrder: 1\r\nStatus: Completed\r\nUpdated: {updated}\r\n"
    )
    .into_bytes()
}

#[test]
fn a_time_format_with_time_fields_never_yields_a_date_only_time() {
    // Audit: `11/24/2026 3 PM` in `%m/%d/%Y %I %p` was stored as midnight.
    let r = registry(&[("beacon.toml", &beacon_with_updated("%m/%d/%Y %I %p"))]).unwrap();
    let out = outcome_json(&beacon_updated_mail("11/24/2026 3 PM"), &r);
    assert_eq!(out["outcome"], "parsed", "{out}");
    assert_eq!(
        out["deltas"][0]["event_time"], "2026-11-24T15:00:00Z",
        "{out}"
    );
    assert_eq!(out["deltas"][0]["time_source"], "vendor", "{out}");
    // A date alone does not fit a format with a time: quarantined, not 00:00.
    let r = registry(&[("beacon.toml", &beacon_with_updated("%m/%d/%Y %H:%M"))]).unwrap();
    let out = outcome_json(&beacon_updated_mail("11/24/2026"), &r);
    assert_eq!(out["outcome"], "quarantined", "{out}");
    assert!(
        out["reason"].as_str().unwrap().contains("`11/24/2026`"),
        "{out}"
    );
    // The date-only rule still holds for a format with no time field.
    let r = registry(&[("beacon.toml", &beacon_with_updated("%m/%d/%Y"))]).unwrap();
    let out = outcome_json(&beacon_updated_mail("11/24/2026"), &r);
    assert_eq!(
        out["deltas"][0]["event_time"], "2026-11-24T00:00:00Z",
        "{out}"
    );
}

#[test]
fn a_12_hour_clock_without_am_pm_is_a_load_error_with_file_and_line() {
    // Audit: `11/24/2026 03:05` in `%m/%d/%Y %I:%M` was stored as midnight.
    let text = beacon_with_updated("%m/%d/%Y %I:%M");
    let line = text
        .lines()
        .position(|l| l.starts_with("format = "))
        .unwrap()
        + 1;
    let e = registry(&[("beacon.toml", &text)]).err().unwrap();
    assert!(
        e.contains(&format!("beacon.toml:{line}"))
            && e.contains("event_time.format")
            && e.contains("without AM/PM (%p)"),
        "{e}"
    );
}

#[test]
fn check_config_prints_each_rule_file_error_on_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let parsers = dir.path().join("parsers");
    std::fs::create_dir(&parsers).unwrap();
    std::fs::write(
        parsers.join("a.toml"),
        BEACON.replace("[match]\n", "[match]\npriority = 3\n"),
    )
    .unwrap();
    std::fs::write(
        parsers.join("b.toml"),
        BEACON.replace(
            "\"Completed\" = \"completed\"\n",
            "\"Done\" = \"finished\"\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("driftwatch.toml"),
        "parsers_dir = \"parsers\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .current_dir(dir.path())
        .env_remove("DRIFTWATCH_CONFIG")
        .arg("check-config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains('\u{fffd}'), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "error: invalid parser rule files:", "{stderr}");
    assert!(
        lines[1].starts_with("  parsers/a.toml:") && lines[1].contains("priority"),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with("  parsers/b.toml:") && lines[2].contains("finished"),
        "{stderr}"
    );
}

/// The shipped demo config, with its parsers read from the repository.
fn demo_config() -> driftwatch::config::Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = driftwatch::config::Config::load(&root.join("demo/driftwatch.toml")).unwrap();
    config.parsers_dir = parsers_dir();
    config
}

#[test]
fn the_demo_parses_forwards_from_the_forwarders_acme_trusts() {
    let config = demo_config();
    let r = driftwatch::app::load_registry(&config).unwrap();
    assert_eq!(r.shadowed_forwarders(), Vec::<String>::new());
    for file in [
        "acme-appraisal/14-acme-48222-forwarded-by-colleague.eml",
        "acme-appraisal/15-acme-48223-forwarded-as-attachment.eml",
    ] {
        let out = outcome_json(&fixture(file), &r);
        assert_eq!(out["outcome"], "parsed", "{file}: {out}");
    }
}

#[test]
fn check_config_warns_when_an_ignore_rule_swallows_a_trusted_forwarder() {
    let dir = tempfile::tempdir().unwrap();
    let parsers = dir.path().join("parsers");
    std::fs::create_dir(&parsers).unwrap();
    for f in std::fs::read_dir(parsers_dir()).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, parsers.join(p.file_name().unwrap())).unwrap();
    }
    let check = |ignore: &str| {
        std::fs::write(
            dir.path().join("driftwatch.toml"),
            format!("parsers_dir = \"parsers\"\n[ingest]\nignore_senders = [{ignore}]\n"),
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .current_dir(dir.path())
            .env_remove("DRIFTWATCH_CONFIG")
            .arg("check-config")
            .output()
            .unwrap()
    };
    // The demo's old list: acme-appraisal.toml trusts `*@lender.example`.
    for ignore in [
        "\"*@lender.example\"",
        "\"*@LENDER.example\"",
        "\"*.example\"",
    ] {
        let out = check(ignore);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("warning: ignore_senders `")
                && stderr.contains("forwarder `*@lender.example`")
                && stderr.contains("acme"),
            "{ignore}: {stderr}"
        );
    }
    // Narrower lists leave the forwarders alone: no warning.
    for ignore in ["\"noreply@lender.example\"", "\"*@other.example\""] {
        let out = check(ignore);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("warning"), "{ignore}: {stderr}");
    }
}
