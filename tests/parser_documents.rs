//! PDF and XLSX attachments as rule-file inputs: `in = "pdf"` reads a PDF's
//! text, `[xlsx]` a sheet's rows; a document that cannot be read for sure is
//! quarantined with the reason. Fixtures come from scripts/make-fixtures.py.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use driftwatch::fixtures::outcome_json;
use driftwatch::parse::{Registry, RegistryOptions};
use serde_json::{Value, json};
use support::app::{fixture, parsers_dir};

fn shipped() -> Registry {
    driftwatch::parse::load_dir(&parsers_dir(), RegistryOptions::default()).unwrap()
}

fn reason(out: &Value) -> &str {
    assert_eq!(out["outcome"], "quarantined", "{out}");
    out["reason"].as_str().unwrap()
}

#[test]
fn in_pdf_patterns_read_the_text_of_the_attached_pdf() {
    let out = outcome_json(
        &fixture("summit-appraisal/02-sa-20931-completed.eml"),
        &shipped(),
    );
    assert_eq!(out["outcome"], "parsed", "{out}");
    let d = &out["deltas"][0];
    assert_eq!(d["order_ref"], "SA-20931");
    assert_eq!(d["status"], "completed");
    assert_eq!(d["vendor_status"], "Report Delivered");
    // 03:05 PM Denver (MST) is 22:05 UTC, read from the PDF, not the Date header.
    assert_eq!(d["event_time"], "2026-11-27T22:05:00Z");
    assert_eq!(d["time_source"], "vendor");
    assert_eq!(d["fields"]["appraised_value"], json!(412000.0));
}

#[test]
fn a_cut_pdf_is_quarantined_with_the_reason() {
    let out = outcome_json(
        &fixture("summit-appraisal/03-sa-20944-cut-pdf.eml"),
        &shipped(),
    );
    let r = reason(&out);
    assert!(
        r.contains("StatusReport_SA-20944.pdf") && r.contains("cut"),
        "{r}"
    );
}

#[test]
fn an_encrypted_pdf_is_quarantined_with_the_reason() {
    let out = outcome_json(
        &fixture("summit-appraisal/04-sa-20951-encrypted-pdf.eml"),
        &shipped(),
    );
    assert!(reason(&out).contains("is encrypted"), "{out}");
}

#[test]
fn xlsx_rows_are_deltas_read_under_the_row_that_names_the_columns() {
    let out = outcome_json(
        &fixture("ridgeline-title/01-daily-2026-11-24.eml"),
        &shipped(),
    );
    assert_eq!(out["outcome"], "parsed", "{out}");
    let deltas = out["deltas"].as_array().unwrap();
    let refs: Vec<&str> = deltas
        .iter()
        .map(|d| d["order_ref"].as_str().unwrap())
        .collect();
    // The title line and the blank row above the header are not orders, and
    // the "Summary" sheet (the first one) is not read: `sheet = "Orders"`.
    assert_eq!(refs, ["RT-5521", "RT-5522", "RT-5523"]);
    let d = &deltas[1];
    assert_eq!(d["status"], "scheduled");
    // A date-time cell, in Phoenix time: 11:30 MST = 18:30 UTC.
    assert_eq!(d["event_time"], "2026-11-24T18:30:00Z");
    assert_eq!(d["fields"]["commitment_date"], "2026-11-24");
    assert_eq!(d["fields"]["title_premium"], json!(980.5));
}

#[test]
fn an_xlsx_with_a_header_and_no_rows_parses_with_no_deltas() {
    let out = outcome_json(
        &fixture("ridgeline-title/02-daily-2026-11-26-no-activity.eml"),
        &shipped(),
    );
    assert_eq!(out["outcome"], "parsed", "{out}");
    assert_eq!(out["deltas"], json!([]));
}

#[test]
fn a_cut_xlsx_is_quarantined_with_the_reason() {
    let out = outcome_json(
        &fixture("ridgeline-title/03-daily-2026-11-25-cut-xlsx.eml"),
        &shipped(),
    );
    let r = reason(&out);
    assert!(
        r.contains("XLSX `Ridgeline_Status_2026-11-25.xlsx` cannot be read"),
        "{r}"
    );
}

#[test]
fn a_missing_xlsx_sheet_is_quarantined_naming_the_sheets_there() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(parsers_dir().join("ridgeline-title.toml"))
        .unwrap()
        .replace("sheet = \"Orders\"", "sheet = \"Open Orders\"");
    std::fs::write(dir.path().join("ridgeline-title.toml"), text).unwrap();
    let r = driftwatch::parse::load_dir(dir.path(), RegistryOptions::default()).unwrap();
    let out = outcome_json(&fixture("ridgeline-title/01-daily-2026-11-24.eml"), &r);
    let r = reason(&out);
    assert!(
        r.contains("no sheet `Open Orders` (sheets: Summary, Orders)"),
        "{r}"
    );
}

#[test]
fn explain_shows_the_pdf_text_and_the_xlsx_rows_of_attachments() {
    let r = shipped();
    let pdf = driftwatch::parse::explain(
        &fixture("summit-appraisal/01-sa-20931-scheduled.eml"),
        &r,
        None,
    );
    assert!(pdf.contains("PDF text (what `in = \"pdf\"` sees)"), "{pdf}");
    assert!(
        pdf.contains("    Current Status: Inspection Scheduled"),
        "{pdf}"
    );
    let xlsx = driftwatch::parse::explain(
        &fixture("ridgeline-title/01-daily-2026-11-24.eml"),
        &r,
        None,
    );
    assert!(xlsx.contains("sheet `Orders` (6 rows):"), "{xlsx}");
    assert!(
        xlsx.contains("RT-5522 | LN-88007 | O'Brien, Sean | Commitment Issued"),
        "{xlsx}"
    );
    let cut = driftwatch::parse::explain(
        &fixture("summit-appraisal/03-sa-20944-cut-pdf.eml"),
        &r,
        None,
    );
    assert!(cut.contains("cannot be read"), "{cut}");
}
