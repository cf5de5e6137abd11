//! Our view's stored fields JSON read without serde, when it is what
//! driftwatch writes: one flat object of strings without escapes, plain
//! decimal numbers, booleans and nulls. A million orders through serde's
//! visitor were a fifth of a large reconcile's critical thread (the view
//! scan). Anything else (an escape, nesting, an exponent, a number of more
//! than 15 significant digits, text that is not UTF-8, JSON that is not
//! well formed) gives `None`, and [`super::mapping::local_fields`] reads the
//! document with serde instead: that reader's values, or its error, stand.
//! Being stricter than JSON here is always safe; being looser never is.

use super::mapping::Norm;
use super::settings::{FieldKind, FieldMapping};
use crate::number::Decimal;

/// Reads `json` into `out` (one slot per field, in mapping order, already
/// `None`), or `None` when the document is not the simple kind.
pub(super) fn read(fields: &[FieldMapping], json: &[u8], out: &mut [Option<Norm>]) -> Option<()> {
    let mut c = Cursor { b: json, i: 0 };
    c.ws();
    c.eat(b'{')?;
    c.ws();
    if !c.eat(b'}')? {
        loop {
            // A key equal to a field's name is UTF-8 already; only others
            // are checked. A UTF-8 pass per string, keys included, was a
            // quarter of the diff's thread.
            let key = c.raw_string()?;
            let slot = fields.iter().position(|f| f.name.as_bytes() == key);
            if slot.is_none() {
                std::str::from_utf8(key).ok()?;
            }
            c.ws();
            c.eat(b':')?.then_some(())?;
            c.ws();
            match c.peek()? {
                b'"' => {
                    let s = c.string()?;
                    if let Some(i) = slot {
                        out[i] = fields[i].local_str(s);
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let n = c.number()?;
                    if let Some(i) = slot {
                        // Only where serde's path reads a number as a
                        // decimal; other kinds take the general way.
                        if !matches!(fields[i].kind, FieldKind::Money | FieldKind::Number) {
                            return None;
                        }
                        out[i] = Some(Norm::Num(n?));
                    }
                }
                b't' | b'f' => {
                    let b = c.boolean()?;
                    if let Some(i) = slot {
                        out[i] = fields[i].parse_local(Some(&serde_json::Value::Bool(b)));
                    }
                }
                b'n' => {
                    c.literal(b"null")?;
                    if let Some(i) = slot {
                        out[i] = None;
                    }
                }
                _ => return None,
            }
            c.ws();
            match c.next()? {
                b',' => c.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.ws();
    (c.i == json.len()).then_some(())
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    /// `Some(true)` and past it when the next byte is `c`.
    fn eat(&mut self, c: u8) -> Option<bool> {
        let hit = self.peek()? == c;
        self.i += usize::from(hit);
        Some(hit)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then_some(())?;
        self.i = end;
        Some(())
    }

    fn boolean(&mut self) -> Option<bool> {
        if self.peek()? == b't' {
            self.literal(b"true").map(|()| true)
        } else {
            self.literal(b"false").map(|()| false)
        }
    }

    /// A string, checked as UTF-8 (as serde checks every string, values
    /// skipped or not); `None` at an escape or a control byte.
    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_string()?).ok()
    }

    /// A string's bytes, not yet checked as UTF-8.
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        (self.next()? == b'"').then_some(())?;
        let start = self.i;
        let len = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        let s = &self.b[start..start + len];
        self.i = start + len;
        (self.next()? == b'"').then_some(())?;
        Some(s)
    }

    /// A JSON number in plain notation: its value (`None` inside when its
    /// digits cannot be read exactly here), or `None` for an exponent or bad
    /// grammar.
    fn number(&mut self) -> Option<Option<Decimal>> {
        let negative = self.eat(b'-')?;
        let (mut mantissa, mut digits, mut significant) = (0i64, 0u32, 0u32);
        let mut digit = |c: u8| {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(i64::from(c - b'0'));
            digits += 1;
            significant += u32::from(significant > 0 || c != b'0');
        };
        let first = self.next()?;
        if !first.is_ascii_digit() {
            return None;
        }
        digit(first);
        if first != b'0' {
            while let Some(c @ b'0'..=b'9') = self.peek() {
                digit(c);
                self.i += 1;
            }
        }
        let mut scale = 0u32;
        if self.peek() == Some(b'.') {
            self.i += 1;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                digit(c);
                scale += 1;
                self.i += 1;
            }
            if scale == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            return None;
        }
        // 15 significant digits: a shorter decimal is the one the JSON
        // writer printed for its f64, so it equals what serde's path reads
        // (the f64's shortest text). 18 digits in all fit an i64.
        if significant > 15 || digits > 18 {
            return Some(None);
        }
        let m = if negative { -mantissa } else { mantissa };
        Some(Some(Decimal::new(m, scale)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::mapping::{local_fields, local_fields_serde};
    use super::*;
    use proptest::prelude::*;

    fn fields() -> Vec<FieldMapping> {
        [
            ("fee", FieldKind::Money),
            ("n", FieldKind::Number),
            ("at", FieldKind::Datetime),
            ("due", FieldKind::Date),
            ("who", FieldKind::String),
        ]
        .into_iter()
        .map(|(name, kind)| FieldMapping::plain(name, kind))
        .collect()
    }

    fn number() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["", "-"]),
            prop::sample::select(vec![
                "0",
                "00",
                "1",
                "380",
                "12345678901234",
                "123456789012345678",
                "98765432109876543210",
            ]),
            // Short fractions, and ones about as long as an f64 holds.
            prop::option::of(prop_oneof!["[0-9]{0,3}", "[0-9]{12,18}"]),
            prop::sample::select(vec!["", "", "", "e2", "E-3", "e+0"]),
        )
            .prop_map(|(sign, int, frac, exp)| {
                let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
                format!("{sign}{int}{frac}{exp}")
            })
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => number(),
            3 => "[a-zA-Z0-9 :/T\\-é\\\\\"\u{1}]{0,12}".prop_map(|s| format!("\"{s}\"")),
            3 => prop::sample::select(vec![
                "\"2026-11-23\"",
                "\"2026-11-23T09:00:00Z\"",
                "\"2026-11-23T09:00:00+05:30\"",
                "\"11/23/2026\"",
                "\"380.50\"",
                "\"1,234.5\"",
                "true",
                "false",
                "null",
                "{}",
                "[1,2]",
                "{\"a\":1}",
                "tru",
                "nul",
                "",
            ])
            .prop_map(String::from),
        ]
    }

    fn document() -> impl Strategy<Value = Vec<u8>> {
        let key = prop::sample::select(vec![
            "fee",
            "fee",
            "n",
            "at",
            "due",
            "who",
            "other",
            "fe\\u0065",
            "f\u{e9}e",
            "",
        ]);
        let ws = prop::sample::select(vec!["", "", " ", "\n\t "]);
        (
            prop::collection::vec((key, ws.clone(), value()), 0..7),
            ws,
            prop::sample::select(vec!["}", "}", "}", "} ", "},", "}}", "}x", ""]),
            any::<prop::sample::Index>(),
            prop::sample::select(vec![0u8, 0, 0, 1, 2]),
        )
            .prop_map(|(pairs, space, end, at, damage)| {
                let body: Vec<String> = pairs
                    .iter()
                    .map(|(k, w, v)| format!("{w}\"{k}\"{w}:{w}{v}{w}"))
                    .collect();
                let mut doc = format!("{{{space}{}{end}", body.join(",")).into_bytes();
                match damage {
                    // A cut document.
                    1 => doc.truncate(at.index(doc.len() + 1)),
                    // A byte that is not UTF-8.
                    2 if !doc.is_empty() => {
                        let i = at.index(doc.len());
                        doc[i] = 0xff;
                    }
                    _ => {}
                }
                doc
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Whatever the stored document, the fast reader and serde's give
        /// the same values, or both refuse it.
        #[test]
        fn the_fast_reader_reads_what_serde_reads(doc in document()) {
            let fields = fields();
            let mut fast = Vec::new();
            let fast_result = local_fields(&fields, &doc, &mut fast);
            let mut general = vec![None; fields.len()];
            let general_result = local_fields_serde(&fields, &doc, &mut general);
            prop_assert_eq!(fast_result.is_ok(), general_result.is_ok(), "{}", String::from_utf8_lossy(&doc));
            if fast_result.is_ok() {
                prop_assert_eq!(&fast, &general, "{}", String::from_utf8_lossy(&doc));
                for (f, (a, b)) in fields.iter().zip(fast.iter().zip(&general)) {
                    prop_assert_eq!(a.as_ref().map(|n| f.to_json(n)), b.as_ref().map(|n| f.to_json(n)));
                }
            }
        }

        /// What driftwatch writes (money as JSON numbers, times as RFC 3339
        /// text) takes the fast way: else the speed it buys is gone unseen.
        #[test]
        fn what_driftwatch_stores_is_read_without_serde(
            cents in -10_000_000_000i64..10_000_000_000,
            secs in 0i64..4_000_000_000,
            who in "[a-zA-Z0-9 .,'-]{0,20}",
        ) {
            let fields = fields();
            let at = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
            let stored = serde_json::json!({
                "fee": crate::number::to_json(Decimal::new(cents, 2)),
                "at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "who": who,
                "note": "kept, not compared",
            });
            let doc = serde_json::to_vec(&stored).unwrap_or_default();
            let mut out = vec![None; fields.len()];
            prop_assert!(read(&fields, &doc, &mut out).is_some(), "{}", String::from_utf8_lossy(&doc));
            prop_assert_eq!(&out[0], &Some(Norm::Num(Decimal::new(cents, 2))));
            prop_assert_eq!(&out[2], &Some(Norm::Time(secs)));
        }
    }
}
