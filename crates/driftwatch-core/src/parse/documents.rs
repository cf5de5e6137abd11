//! Attached documents as rule files read them: the text of a PDF
//! (`in = "pdf"`) and the rows of an XLSX sheet (`[xlsx]`).
//!
//! Pure: both read bytes already in memory (lopdf, calamine over a
//! `Cursor`). A document that cannot be read for sure (cut, encrypted, not a
//! PDF/XLSX at all, a sheet that is not there) is a typed error the caller
//! turns into a quarantine reason; nothing here guesses. Both readers run
//! under `catch_unwind`: lopdf is known to panic on crafted PDFs (lopdf
//! issue #532: unwraps and out-of-bounds slices reachable from `load_mem`
//! and content decoding), and one bad attachment must cost one message, not
//! an ingest batch. (A stack overflow from deeply nested objects aborts
//! instead; message size limits bound it, nothing here can catch it.)

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};

/// Decompressed page content read per PDF, at most: a small stream that
/// inflates without bound would otherwise take the memory.
const PDF_MAX_PAGE_CONTENT: usize = 16 << 20;

/// Why an attached document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("PDF `{name}` is encrypted: its text cannot be read")]
    PdfEncrypted { name: String },
    #[error("PDF `{name}` cannot be read: {reason}")]
    Pdf { name: String, reason: String },
    #[error(
        "PDF `{name}` has no text to read (a scanned image, or content that could not be decoded)"
    )]
    PdfNoText { name: String },
    #[error("XLSX `{name}` cannot be read: {reason}")]
    Xlsx { name: String, reason: String },
    #[error("XLSX `{name}` has no sheet `{sheet}` (sheets: {sheets})")]
    NoSheet {
        name: String,
        sheet: String,
        sheets: String,
    },
}

/// Runs a document reader; a panic inside it is an error for this document.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the reader failed on malformed content".into()))
}

/// The text of every page of a PDF, pages separated by a line break.
pub fn pdf_text(name: &str, bytes: &[u8]) -> Result<String, DocumentError> {
    enum Read {
        Text(String),
        Encrypted,
    }
    let pdf_err = |reason: String| DocumentError::Pdf {
        name: name.to_string(),
        reason,
    };
    // A PDF ends with `%%EOF` (perhaps followed by a line break or a little
    // padding). lopdf recovers what it can from a cut file, which would read
    // as a page without text: say what happened instead.
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    if memchr::memmem::rfind(tail, b"%%EOF").is_none() {
        return Err(pdf_err(
            "cut: it does not end with %%EOF (truncated in transit?)".into(),
        ));
    }
    let read = guarded(|| {
        let doc = lopdf::Document::load_mem(bytes).map_err(|e| e.to_string())?;
        if doc.is_encrypted() {
            return Ok(Read::Encrypted);
        }
        let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
        if pages.is_empty() {
            return Err("no pages".into());
        }
        doc.extract_text_with_limit(&pages, PDF_MAX_PAGE_CONTENT)
            .map(Read::Text)
            .map_err(|e| e.to_string())
    })
    .map_err(|reason| {
        if reason.to_ascii_lowercase().contains("encrypt") || reason.contains("password") {
            DocumentError::PdfEncrypted {
                name: name.to_string(),
            }
        } else {
            pdf_err(reason)
        }
    })?;
    let text = match read {
        Read::Encrypted => {
            return Err(DocumentError::PdfEncrypted {
                name: name.to_string(),
            });
        }
        Read::Text(t) => t,
    };
    // lopdf ends each text object with a line break; keep lines, drop the
    // trailing blanks of each so `(?m)...$` patterns read like the text body.
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let text = lines.join("\n").trim().to_string();
    if text.is_empty() {
        return Err(DocumentError::PdfNoText {
            name: name.to_string(),
        });
    }
    Ok(text)
}

/// The rows of one sheet (by name, else the first), each cell as text:
/// numbers as written without a trailing `.0`, dates as `2026-11-24` or
/// `2026-11-24 10:05:00`, booleans `true`/`false`, error cells empty.
pub fn xlsx_rows(name: &str, bytes: &[u8], sheet: Option<&str>) -> Result<Rows, DocumentError> {
    enum Read {
        Rows(Rows),
        NoSheet(Vec<String>),
    }
    let read = guarded(|| {
        let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes))
            .map_err(|e: calamine::XlsxError| e.to_string())?;
        let names = book.sheet_names();
        let target = match sheet {
            Some(s) => match names.iter().find(|n| n.eq_ignore_ascii_case(s)) {
                Some(n) => n.clone(),
                None => return Ok(Read::NoSheet(names)),
            },
            None => names.first().cloned().ok_or("no sheets")?,
        };
        let range = book.worksheet_range(&target).map_err(|e| e.to_string())?;
        Ok(Read::Rows(
            range
                .rows()
                .map(|r| r.iter().map(cell_text).collect())
                .collect(),
        ))
    })
    .map_err(|reason| DocumentError::Xlsx {
        name: name.to_string(),
        reason,
    })?;
    match read {
        Read::Rows(rows) => Ok(rows),
        Read::NoSheet(names) => Err(DocumentError::NoSheet {
            name: name.to_string(),
            sheet: sheet.unwrap_or_default().to_string(),
            sheets: names.join(", "),
        }),
    }
}

/// A sheet's rows, each a list of cell texts.
pub type Rows = Vec<Vec<String>>;

/// Every sheet of a workbook with its rows (for `parsers explain`).
pub fn xlsx_sheets(name: &str, bytes: &[u8]) -> Result<Vec<(String, Rows)>, DocumentError> {
    guarded(|| {
        let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes))
            .map_err(|e: calamine::XlsxError| e.to_string())?;
        let mut out = Vec::new();
        for sheet in book.sheet_names() {
            let range = book.worksheet_range(&sheet).map_err(|e| e.to_string())?;
            let rows = range
                .rows()
                .map(|r| r.iter().map(cell_text).collect())
                .collect();
            out.push((sheet, rows));
        }
        Ok(out)
    })
    .map_err(|reason| DocumentError::Xlsx {
        name: name.to_string(),
        reason,
    })
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::Empty | Data::Error(_) => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => match d.as_datetime() {
            Some(t) if t.time() == chrono::NaiveTime::MIN => t.format("%Y-%m-%d").to_string(),
            Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => d.as_f64().to_string(),
        },
    }
}

/// Whether an attachment is a PDF: by type, name or magic bytes.
pub fn is_pdf(content_type: &str, name: Option<&str>, bytes: &[u8]) -> bool {
    content_type == "application/pdf"
        || name.is_some_and(|n| n.to_ascii_lowercase().ends_with(".pdf"))
        || bytes.starts_with(b"%PDF-")
}

/// Whether an attachment is an XLSX workbook: by type or name.
pub fn is_xlsx(content_type: &str, name: Option<&str>) -> bool {
    content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        || name.is_some_and(|n| n.to_ascii_lowercase().ends_with(".xlsx"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDF: &[u8] = include_bytes!("../../../../tests/data/documents/appraisal-status.pdf");
    const XLSX: &[u8] = include_bytes!("../../../../tests/data/documents/title-status.xlsx");

    #[test]
    fn a_pdf_reads_as_its_text_lines() {
        let t = pdf_text("r.pdf", PDF).unwrap();
        assert!(t.contains("Order Number: SA-20931"), "{t}");
        assert!(t.contains("Current Status: Inspection Scheduled"), "{t}");
    }

    #[test]
    fn an_xlsx_sheet_reads_as_rows_of_cell_text() {
        let rows = xlsx_rows("t.xlsx", XLSX, Some("orders")).unwrap();
        assert!(
            rows.iter()
                .any(|r| r.first().is_some_and(|c| c == "RT-5521"))
        );
        let e = xlsx_rows("t.xlsx", XLSX, Some("Missing")).unwrap_err();
        assert!(e.to_string().contains("Summary, Orders"), "{e}");
        let row = rows.iter().find(|r| r[0] == "RT-5522").unwrap();
        assert_eq!(row[4], "2026-11-24 11:30:00", "a date-time cell");
        assert_eq!(row[5], "980.5", "a number as written");
        assert_eq!(row[6], "2026-11-24", "a date cell");
    }

    /// Every prefix of a real PDF and XLSX, and the same bytes scrambled,
    /// is an error or a result, never a panic that escapes.
    #[test]
    fn cut_or_garbage_documents_are_errors_never_panics() {
        for doc in [PDF, XLSX] {
            for cut in (0..doc.len()).step_by(97) {
                let _ = pdf_text("x.pdf", &doc[..cut]);
                let _ = xlsx_rows("x.xlsx", &doc[..cut], None);
            }
            let mut garbled = doc.to_vec();
            for (i, b) in garbled.iter_mut().enumerate().skip(200).step_by(53) {
                *b ^= (i % 251) as u8;
            }
            let _ = pdf_text("x.pdf", &garbled);
            let _ = xlsx_rows("x.xlsx", &garbled, None);
        }
        let cut = pdf_text("r.pdf", &PDF[..PDF.len() / 2]).unwrap_err();
        assert!(cut.to_string().contains("cut"), "{cut}");
        let cut = xlsx_rows("t.xlsx", &XLSX[..XLSX.len() / 2], None).unwrap_err();
        assert!(matches!(cut, DocumentError::Xlsx { .. }), "{cut}");
    }
}
