//! Whole files only: a reader that watches an export's structure while its
//! bytes stream past, so a cut or oversized export is refused with the
//! reason instead of being read as complete.
//!
//! - A CSV that ends inside a quoted field was cut (the `csv` crate reads
//!   such a tail as a complete last value); a JSON body that ends inside a
//!   string or an open array/object likewise (serde reports that itself).
//! - A field or row over its configured limit stops the read at the limit:
//!   memory stays bounded by the limit, not by what the vendor sent.
//! - A CSV quoted field that goes on after its closing quote (`"Sam"Lee`)
//!   is refused with its line: the `csv` crate has no strict mode and reads
//!   it as `SamLee`. A quote opens a field only at its start, as in `csv`.
//!
//! The state is kept with `memchr` jumps between quote, escape and newline
//! bytes, so a million-row export costs a few scans, not a byte loop.

use std::io::{self, Read};

/// Size limits for one export (`[vendor.export] max_field_bytes`, `max_row_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    pub field: u64,
    pub row: u64,
}

impl Default for SizeLimits {
    fn default() -> Self {
        SizeLimits {
            field: 1 << 20,
            row: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// CSV with this quote and delimiter byte (quotes inside a field are doubled).
    Csv { quote: u8, delimiter: u8 },
    /// JSON: strings in `"`, with `\` escapes.
    Json,
}

/// Why the structure check stopped a read (carried inside an `io::Error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Oversize {
    #[error(
        "a field is longer than the limit of {limit} bytes (export.max_field_bytes); the export is refused"
    )]
    Field { limit: u64 },
    #[error(
        "a row is longer than the limit of {limit} bytes (export.max_row_bytes); the export is refused"
    )]
    Row { limit: u64 },
    /// `"Sam"Lee`: the `csv` crate reads it as `SamLee` without a word, so
    /// what the vendor meant is a guess; the file is refused instead.
    #[error(
        "line {line}: a quoted field goes on after its closing quote (as in `\"Sam\"Lee`); a field is either quoted whole, with quotes inside it doubled, or not quoted; the export is refused"
    )]
    TextAfterQuote { line: u64 },
}

/// Reads through `inner`, tracking whether it is inside a quoted field or
/// string, how long the current one is, and how long the current row is.
pub struct Checked<R> {
    inner: R,
    syntax: Syntax,
    limits: SizeLimits,
    in_quote: bool,
    /// JSON: the previous byte was a `\` inside a string.
    escaped: bool,
    quoted_len: u64,
    row_len: u64,
    last_byte: Option<u8>,
    /// CSV: the previous byte closed a quoted field (or was its doubled quote's first half).
    closed: bool,
    /// Line breaks seen outside quoted fields.
    lines: u64,
}

impl<R: Read> Checked<R> {
    pub fn new(inner: R, syntax: Syntax, limits: SizeLimits) -> Checked<R> {
        Checked {
            inner,
            syntax,
            limits,
            in_quote: false,
            escaped: false,
            quoted_len: 0,
            row_len: 0,
            last_byte: None,
            closed: false,
            lines: 0,
        }
    }

    /// Line feeds seen outside quoted fields: zero for a file whose lines
    /// end with a bare CR.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// At the end of the input: true when it stopped inside a quoted field
    /// or string, i.e. the file was cut.
    pub fn ends_inside_quotes(&self) -> bool {
        self.in_quote
    }

    /// The last byte read, to check a final line break.
    pub fn last_byte(&self) -> Option<u8> {
        self.last_byte
    }

    /// `prev` is the byte before `buf` (the previous chunk's last).
    fn scan(&mut self, buf: &[u8], prev: Option<u8>) -> Result<(), Oversize> {
        let (quote, esc, delimiter) = match self.syntax {
            Syntax::Csv { quote, delimiter } => (quote, None, Some(delimiter)),
            Syntax::Json => (b'"', Some(b'\\'), None),
        };
        let mut pos = 0;
        // The row limit applies to CSV rows; JSON has no rows, its strings are the fields.
        let rows = delimiter.is_some();
        while pos < buf.len() {
            if self.escaped {
                self.escaped = false;
                pos += 1;
                self.quoted_len += 1;
                self.row_len += 1;
                continue;
            }
            if self.closed {
                // After a closing quote: a doubled quote, the field's end, or the line's.
                self.closed = false;
                let b = buf[pos];
                if b == quote {
                    self.in_quote = true;
                    self.quoted_len = 0;
                    self.row_len += 1;
                    pos += 1;
                    continue;
                }
                if Some(b) != delimiter && b != b'\n' && b != b'\r' {
                    return Err(Oversize::TextAfterQuote {
                        line: self.lines + 1,
                    });
                }
            }
            let rest = &buf[pos..];
            let hit = match esc {
                Some(e) if self.in_quote => memchr::memchr2(quote, e, rest),
                _ if rows && !self.in_quote => memchr::memchr2(quote, b'\n', rest),
                _ => memchr::memchr(quote, rest),
            };
            let step = hit.map_or(rest.len(), |i| i + 1) as u64;
            if self.in_quote {
                self.quoted_len += step;
            }
            self.row_len += step;
            if self.in_quote && self.quoted_len > self.limits.field {
                return Err(Oversize::Field {
                    limit: self.limits.field,
                });
            }
            if rows && self.row_len > self.limits.row {
                return Err(Oversize::Row {
                    limit: self.limits.row,
                });
            }
            let Some(i) = hit else { break };
            let b = rest[i];
            if b == b'\n' {
                self.row_len = 0;
                self.lines += 1;
            } else if Some(b) == esc && self.in_quote {
                self.escaped = true;
            } else if self.in_quote {
                self.in_quote = false;
                self.quoted_len = 0;
                self.closed = rows;
            } else {
                // CSV opens a quoted field only at a field's start, as the
                // `csv` crate does; elsewhere (`5" pipe`) a quote is text.
                let before = if pos + i > 0 {
                    Some(buf[pos + i - 1])
                } else {
                    prev
                };
                if delimiter
                    .is_none_or(|d| before.is_none_or(|p| p == d || p == b'\n' || p == b'\r'))
                {
                    self.in_quote = true;
                    self.quoted_len = 0;
                }
            }
            pos += i + 1;
        }
        Ok(())
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let prev = self.last_byte.replace(buf[n - 1]);
            self.scan(&buf[..n], prev).map_err(io::Error::other)?;
        }
        Ok(n)
    }
}

/// The `Oversize` inside an error from a [`Checked`] reader, if that is what it was.
pub fn oversize(e: &io::Error) -> Option<&Oversize> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Oversize>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(
        data: &[u8],
        syntax: Syntax,
        limits: SizeLimits,
    ) -> (Result<Vec<u8>, String>, bool) {
        let mut r = Checked::new(data, syntax, limits);
        let mut out = Vec::new();
        // Small reads, so state crosses buffer boundaries.
        let mut buf = [0u8; 7];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (Err(e.to_string()), r.ends_inside_quotes()),
            }
        }
        (Ok(out), r.ends_inside_quotes())
    }

    const CSV: Syntax = Syntax::Csv {
        quote: b'"',
        delimiter: b',',
    };

    #[test]
    fn a_csv_cut_inside_a_quoted_field_is_seen() {
        let whole = b"a,b\n1,\"Sam Lee and \"\"the\"\" rest\"\n2,x\n";
        assert!(!read_all(whole, CSV, SizeLimits::default()).1);
        let cut = b"a,b\n1,\"Sam Lee and the rest of";
        assert!(read_all(cut, CSV, SizeLimits::default()).1);
    }

    #[test]
    fn json_strings_with_escaped_quotes_are_tracked() {
        let whole = br#"[{"a":"x \" y \\","b":"z"}]"#;
        assert!(!read_all(whole, Syntax::Json, SizeLimits::default()).1);
        let cut = br#"[{"a":"x \" y"#;
        assert!(read_all(cut, Syntax::Json, SizeLimits::default()).1);
    }

    #[test]
    fn text_after_a_closing_quote_is_refused_with_its_line() {
        let bad = b"a,b\n1,\"Sam Lee\"\n2,\"Sam\"Lee\n";
        let (r, _) = read_all(bad, CSV, SizeLimits::default());
        let e = r.unwrap_err();
        assert!(e.contains("line 3") && e.contains("closing quote"), "{e}");
        // Doubled quotes (across the 7-byte reads too), quotes inside an
        // unquoted field, and a quoted field at the end of the file are fine.
        for ok in [
            &b"a,b\n1,\"Sam \"\"The\"\" Lee\"\n2,\"\"\r\n"[..],
            b"a,b\n1,Sam \"The\" Lee\n2,5\" pipe\n",
            b"a,b\n1,\"x\"",
        ] {
            let (r, cut) = read_all(ok, CSV, SizeLimits::default());
            assert!(r.is_ok() && !cut, "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn oversized_fields_and_rows_stop_at_the_limit() {
        let limits = SizeLimits { field: 16, row: 64 };
        let big_field = format!("a,b\n1,\"{}\"\n", "x".repeat(100));
        let (r, _) = read_all(big_field.as_bytes(), CSV, limits);
        assert!(r.unwrap_err().contains("max_field_bytes"));
        let big_row = format!("a,b\n1,{}\n", "y,".repeat(100));
        let (r, _) = read_all(big_row.as_bytes(), CSV, limits);
        assert!(r.unwrap_err().contains("max_row_bytes"));
        let json = format!("[{{\"a\":\"{}\"}}]", "z".repeat(100));
        let (r, _) = read_all(json.as_bytes(), Syntax::Json, limits);
        assert!(r.unwrap_err().contains("max_field_bytes"));
        let fine = format!("a,b\n{}", "1,\"short\"\n".repeat(100));
        assert!(read_all(fine.as_bytes(), CSV, limits).0.is_ok());
    }
}
