//! From an export row to a [`RemoteOrder`], and the comparison rules for fields.
//!
//! Both sides of a comparison go through the same normaliser: the export's
//! text through [`FieldMapping::parse_remote`], our view's JSON (as the rule
//! parsers write it: money as a number, dates as `YYYY-MM-DD`, datetimes as
//! RFC 3339) through [`FieldMapping::parse_local`]. No IO here.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::settings::{Case, FieldKind, FieldMapping, VendorRules};
use crate::model::Status;
use crate::number::{self, Decimal, NumberFormat};

/// A normalised field value, small enough to keep a million of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Norm {
    Text(Box<str>),
    /// Exact: read under the vendor's declared separators, compared exactly.
    Num(Decimal),
    /// Days since 1970-01-01.
    Date(i32),
    /// Seconds since the epoch.
    Time(i64),
}

/// One order as the vendor states it in a key frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemoteOrder {
    pub order_ref: String,
    /// `None` when the status column is not mapped or the word is unknown.
    pub status: Option<Status>,
    pub vendor_status: Option<String>,
    /// In the order of `mapping.fields`.
    pub fields: Vec<Option<Norm>>,
}

/// A value the export holds that the mapping cannot read: a row error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    #[error("column `{column}`: `{value}` is not {expected}")]
    Value {
        column: String,
        value: String,
        expected: String,
    },
    /// A key or status cell with nothing in it. Skipped, a row without a
    /// key made its order look gone (cancelled under `complete = true`); an
    /// empty status was stored as no status.
    #[error("column `{column}`: empty {what}")]
    Empty { column: String, what: &'static str },
    /// A JSON record without the key or status it must state.
    #[error("column `{column}`: no {what} in this record")]
    Missing { column: String, what: &'static str },
}

impl BadValue {
    /// `value` as shown in a reason: at most 80 characters, control
    /// characters escaped (a NUL in a key must be visible, not printed).
    fn shown(column: &str, value: &str, expected: &str) -> BadValue {
        let mut shown = String::new();
        for c in value.chars().take(80) {
            if c.is_control() {
                shown.extend(c.escape_debug());
            } else {
                shown.push(c);
            }
        }
        BadValue::Value {
            column: column.to_string(),
            value: shown,
            expected: expected.to_string(),
        }
    }
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the RFC 3339 form most exports and our own view
/// write, read without chrono's parser (a few percent of a million-row
/// diff, on both sides). Anything else returns `None` and is read the
/// general way, which gives the same seconds for this form.
fn utc_seconds(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |a, &c| {
            c.is_ascii_digit().then(|| a * 10 + u32::from(c - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_opt(n(11..13)?, n(14..16)?, n(17..19)?)?;
    Some(date.and_time(time).and_utc().timestamp())
}

impl FieldMapping {
    fn bad(&self, value: &str, expected: &str) -> BadValue {
        BadValue::shown(&self.column, value, expected)
    }

    fn text(&self, s: &str) -> Norm {
        let s = collapse(s);
        Norm::Text(
            match self.case {
                Case::Lower => s.to_lowercase(),
                Case::Upper => s.to_uppercase(),
                Case::Preserve | Case::Insensitive => s,
            }
            .into(),
        )
    }

    fn date(&self, s: &str) -> Option<Norm> {
        let d = self
            .format
            .as_deref()
            .and_then(|f| NaiveDate::parse_from_str(s, f).ok())
            .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.date_naive()))?;
        Some(Norm::Date((d - EPOCH).num_days() as i32))
    }

    fn datetime(&self, s: &str) -> Option<Norm> {
        if self.format.is_none()
            && let Some(t) = utc_seconds(s)
        {
            return Some(Norm::Time(t));
        }
        let t = self
            .format
            .as_deref()
            .and_then(|f| {
                DateTime::parse_from_str(s, f)
                    .map(|t| t.with_timezone(&Utc))
                    .ok()
                    .or_else(|| {
                        NaiveDateTime::parse_from_str(s, f)
                            .ok()
                            .map(|n| n.and_utc())
                    })
            })
            .or_else(|| {
                DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            })?;
        Some(Norm::Time(t.timestamp()))
    }

    /// Reads the export's text for this field; empty means absent.
    pub fn parse_remote(&self, raw: &str) -> Result<Option<Norm>, BadValue> {
        let s = raw.trim();
        if s.is_empty() {
            return Ok(None);
        }
        Ok(Some(match self.kind {
            FieldKind::String => self.text(s),
            FieldKind::Number | FieldKind::Money => Norm::Num(
                number::parse(s, self.number)
                    .map_err(|e| self.bad(s, &format!("a number ({e})")))?,
            ),
            FieldKind::Date => self.date(s).ok_or_else(|| self.bad(s, "a date"))?,
            FieldKind::Datetime => self
                .datetime(s)
                .ok_or_else(|| self.bad(s, "a date and time"))?,
        }))
    }

    /// Reads a JSON value (from our view, or from a JSON export).
    pub fn parse_json(&self, v: &serde_json::Value) -> Result<Option<Norm>, BadValue> {
        match v {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => match self.kind {
                FieldKind::Number | FieldKind::Money => Ok(number::from_json(v).map(Norm::Num)),
                _ => self.parse_remote(&n.to_string()),
            },
            serde_json::Value::String(s) => self.parse_remote(s),
            serde_json::Value::Bool(b) => self.parse_remote(&b.to_string()),
            other => self.parse_remote(&other.to_string()),
        }
    }

    /// Our view's value; one the mapping cannot read compares as text, so it
    /// shows up as a field mismatch rather than stopping the run.
    pub fn parse_local(&self, v: Option<&serde_json::Value>) -> Option<Norm> {
        match v? {
            serde_json::Value::String(s) => self.local_str(s),
            v => self
                .parse_json(v)
                .unwrap_or_else(|_| Some(Norm::Text(v.to_string().into()))),
        }
    }

    /// A string in our view. Numbers we stored as text (too long for a JSON
    /// number, see [`number::to_json`]) are in our own plain format, not the
    /// vendor's.
    fn local_str(&self, s: &str) -> Option<Norm> {
        if matches!(self.kind, FieldKind::Number | FieldKind::Money) {
            return Some(match number::parse(s, NumberFormat::PLAIN) {
                Ok(d) => Norm::Num(d),
                Err(_) => Norm::Text(s.into()),
            });
        }
        self.parse_remote(s)
            .unwrap_or_else(|_| Some(Norm::Text(s.into())))
    }

    /// True when the two sides agree within the field's tolerance.
    pub fn agrees(&self, local: Option<&Norm>, remote: Option<&Norm>) -> bool {
        match (local, remote) {
            (None, None) => true,
            (Some(Norm::Num(a)), Some(Norm::Num(b))) => {
                let diff = (*a - *b).abs();
                diff <= self.tolerance
                    || (!self.relative_tolerance.is_zero()
                        && diff <= self.relative_tolerance * a.abs().max(b.abs()))
            }
            (Some(Norm::Time(a)), Some(Norm::Time(b))) => (a - b).abs() <= self.tolerance_secs,
            (Some(Norm::Text(a)), Some(Norm::Text(b))) if self.case == Case::Insensitive => {
                a.to_lowercase() == b.to_lowercase()
            }
            (a, b) => a == b,
        }
    }

    /// The JSON our view stores for a value: the rule parsers' representation.
    pub fn to_json(&self, n: &Norm) -> serde_json::Value {
        match n {
            Norm::Text(s) => serde_json::Value::String(s.to_string()),
            Norm::Num(x) => number::to_json(*x),
            Norm::Date(d) => serde_json::Value::String(
                (EPOCH + chrono::Days::new(u64::try_from(*d).unwrap_or(0)))
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            Norm::Time(t) => serde_json::Value::String(
                DateTime::from_timestamp(*t, 0)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        }
    }
}

/// The order key from its parts. One part is used as is (so it matches the
/// `order_ref` the email parsers extract); several are joined with `|`, each
/// part's `\` and `|` escaped with `\`, so `("a|b","c")` and `("a","b|c")`
/// cannot collide.
pub fn encode_key(parts: &[&str]) -> String {
    if let [one] = parts {
        return one.trim().to_string();
    }
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        for c in p.trim().chars() {
            if c == '\\' || c == '|' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// One key part, trimmed: empty or holding a control character (a NUL made
/// a phantom order) is a row error, never a skipped row or a new order.
fn key_part<'k>(column: &str, part: Option<&'k str>) -> Result<&'k str, BadValue> {
    let Some(part) = part else {
        return Err(BadValue::Missing {
            column: column.to_string(),
            what: "order key",
        });
    };
    let p = part.trim();
    if p.is_empty() {
        return Err(BadValue::Empty {
            column: column.to_string(),
            what: "order key",
        });
    }
    if p.chars().any(char::is_control) {
        return Err(BadValue::shown(
            column,
            p,
            "an order key (it holds a control character)",
        ));
    }
    Ok(p)
}

impl VendorRules {
    /// Builds a remote order from a looked-up row: `get(column)` returns the
    /// cell's text, `None` when the row has no such cell (a JSON record
    /// without the key). A row without a key or (when one is mapped) a
    /// status is an error, never skipped: skipped, its order would count as
    /// gone from the export.
    pub fn remote_order<'a>(
        &self,
        get: impl FnMut(&str) -> Option<std::borrow::Cow<'a, str>>,
    ) -> Result<RemoteOrder, BadValue> {
        let mut order = RemoteOrder::default();
        self.remote_order_into(get, &mut order)?;
        Ok(order)
    }

    /// [`VendorRules::remote_order`] into an order whose buffers are reused:
    /// a million rows each allocating a key, a status word and a field list,
    /// freed on the thread that compares them, were a fifth of a large
    /// reconcile's CPU. After an error `out` holds a partial row.
    pub fn remote_order_into<'a>(
        &self,
        mut get: impl FnMut(&str) -> Option<std::borrow::Cow<'a, str>>,
        out: &mut RemoteOrder,
    ) -> Result<(), BadValue> {
        if let [one] = self.mapping.key.as_slice() {
            let p = get(one);
            let p = key_part(one, p.as_deref())?;
            out.order_ref.clear();
            out.order_ref.push_str(p);
        } else {
            // Every part must be there: `("", "48217")` is no more a key than "".
            let mut parts = Vec::with_capacity(self.mapping.key.len());
            for k in &self.mapping.key {
                let p = get(k);
                key_part(k, p.as_deref())?;
                parts.push(p.unwrap_or_default());
            }
            let refs: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
            out.order_ref = encode_key(&refs);
        }
        if let Some(col) = &self.mapping.status {
            let word = get(col).ok_or_else(|| BadValue::Missing {
                column: col.clone(),
                what: "status",
            })?;
            let w = word.trim();
            if w.is_empty() {
                return Err(BadValue::Empty {
                    column: col.clone(),
                    what: "status",
                });
            }
            out.status = self.map_status(w);
            match &mut out.vendor_status {
                Some(s) => {
                    s.clear();
                    s.push_str(w);
                }
                none => *none = Some(w.to_string()),
            }
        } else {
            out.status = None;
            out.vendor_status = None;
        }
        out.fields.clear();
        for f in &self.mapping.fields {
            let v = match get(&f.column) {
                Some(v) => f.parse_remote(&v)?,
                None => None,
            };
            out.fields.push(v);
        }
        Ok(())
    }
}

/// Reads our view's stored fields JSON straight into normalised values, in
/// mapping order, skipping fields the mapping does not compare: for a
/// million orders, building a map of every field first cost more than the
/// comparison itself. Same results as [`FieldMapping::parse_local`].
pub fn local_fields(
    fields: &[FieldMapping],
    json: &[u8],
    out: &mut Vec<Option<Norm>>,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    out.resize(start + fields.len(), None);
    let mut de = serde_json::Deserializer::from_slice(json);
    serde::Deserializer::deserialize_map(
        &mut de,
        LocalFields {
            fields,
            out: &mut out[start..],
        },
    )?;
    de.end()
}

struct LocalFields<'a> {
    fields: &'a [FieldMapping],
    out: &'a mut [Option<Norm>],
}

impl<'de> serde::de::Visitor<'de> for LocalFields<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of order fields")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(i) = map.next_key_seed(FieldIndex(self.fields))? {
            match i {
                Some(i) => self.out[i] = map.next_value_seed(LocalValue(&self.fields[i]))?,
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key's position in the mapping, compared without copying the key.
struct FieldIndex<'a>(&'a [FieldMapping]);

impl<'de> serde::de::DeserializeSeed<'de> for FieldIndex<'_> {
    type Value = Option<usize>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldIndex<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|f| f.name == k))
    }
}

/// One field's value, normalised as [`FieldMapping::parse_local`] would.
struct LocalValue<'a>(&'a FieldMapping);

impl<'de> serde::de::DeserializeSeed<'de> for LocalValue<'_> {
    type Value = Option<Norm>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<Norm>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for LocalValue<'_> {
    type Value = Option<Norm>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field value")
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Option<Norm>, E> {
        Ok(self.0.local_str(s))
    }
    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<Option<Norm>, E> {
        if matches!(self.0.kind, FieldKind::Number | FieldKind::Money)
            && let Some(d) = number::from_f64(x)
        {
            return Ok(Some(Norm::Num(d)));
        }
        Ok(self.0.parse_local(Some(&serde_json::Value::from(x))))
    }
    fn visit_i64<E: serde::de::Error>(self, x: i64) -> Result<Option<Norm>, E> {
        Ok(self.0.parse_local(Some(&serde_json::Value::from(x))))
    }
    fn visit_u64<E: serde::de::Error>(self, x: u64) -> Result<Option<Norm>, E> {
        Ok(self.0.parse_local(Some(&serde_json::Value::from(x))))
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Option<Norm>, E> {
        Ok(self.0.parse_local(Some(&serde_json::Value::from(b))))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<Norm>, E> {
        Ok(None)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Option<Norm>, A::Error> {
        let v = serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(self.0.parse_local(Some(&v)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Option<Norm>, A::Error> {
        let v = serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(self.0.parse_local(Some(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    proptest::proptest! {
        /// The fast path reads what chrono's RFC 3339 parser reads, to the
        /// second, and leaves everything else (bad dates, leap seconds,
        /// other layouts) to it.
        #[test]
        fn utc_seconds_agrees_with_chrono(
            y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..25, mi in 0u32..61, sec in 0u32..62,
            sep in proptest::sample::select(vec!['T', 't', ' ']),
            z in proptest::sample::select(vec!["Z", "z", "+00:00", "+01:00"]),
        ) {
            let s = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{sec:02}{z}");
            let chrono = DateTime::parse_from_rfc3339(&s).ok().map(|t| t.timestamp());
            match utc_seconds(&s) {
                Some(t) => proptest::prop_assert_eq!(Some(t), chrono),
                None => proptest::prop_assert!(sep != 'T' || z != "Z" || sec >= 60 || chrono.is_none()),
            }
        }
    }

    fn field(kind: FieldKind) -> FieldMapping {
        FieldMapping {
            name: "f".into(),
            column: "f".into(),
            kind,
            case: Case::Preserve,
            format: None,
            number: NumberFormat::PLAIN,
            tolerance: Decimal::ZERO,
            relative_tolerance: Decimal::ZERO,
            tolerance_secs: 0,
        }
    }

    /// The fast reader of stored fields must say exactly what the general
    /// one says, for every kind of value a view can hold.
    #[test]
    fn stored_fields_read_directly_equal_the_general_reader() {
        let mut fields = Vec::new();
        for (name, kind) in [
            ("fee", FieldKind::Money),
            ("due", FieldKind::Date),
            ("at", FieldKind::Datetime),
            ("who", FieldKind::String),
            ("n", FieldKind::Number),
        ] {
            let mut f = field(kind);
            f.name = name.into();
            fields.push(f);
        }
        for json in [
            r#"{"fee":1234.5,"due":"2026-11-23","at":"2026-11-23T09:00:00Z","who":"Ann  Lee","n":3}"#,
            r#"{"fee":"$1,234.50","due":"11/23/2026","at":"yesterday","who":"caf\u00e9 \"x\"","n":-7}"#,
            r#"{"fee":null,"who":{"nested":[1,2]},"n":true,"extra":{"a":[1,{"b":2}]},"due":[1]}"#,
            r#"{"fee":18446744073709551615,"at":1732350000,"who":12.5}"#,
            r#"{}"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            let expected: Vec<Option<Norm>> = fields
                .iter()
                .map(|f| f.parse_local(value.get(&f.name)))
                .collect();
            let mut got = vec![Some(Norm::Num(Decimal::from(99)))];
            local_fields(&fields, json.as_bytes(), &mut got).unwrap();
            assert_eq!(
                got[0],
                Some(Norm::Num(Decimal::from(99))),
                "appends, keeps what was there"
            );
            assert_eq!(got[1..], expected[..], "{json}");
        }
        let mut out = Vec::new();
        assert!(local_fields(&fields, br#"{"fee":1"#, &mut out).is_err());
        assert!(local_fields(&fields, br#"[1]"#, &mut out).is_err());
    }

    fn row<'a>(cells: &'a [(&'a str, &'a str)]) -> impl FnMut(&str) -> Option<Cow<'a, str>> {
        move |c| {
            cells
                .iter()
                .find(|(k, _)| *k == c)
                .map(|(_, v)| Cow::Borrowed(*v))
        }
    }

    /// A row with no key (or part of a composite key) is a row error that
    /// names the column: skipped, its order looked gone from the export.
    #[test]
    fn an_empty_or_missing_key_is_a_row_error() {
        let mut v = super::super::settings::VendorRules::minimal("v");
        let e = v
            .remote_order(row(&[("order_ref", "  "), ("status", "open")]))
            .unwrap_err();
        assert_eq!(e.to_string(), "column `order_ref`: empty order key");
        let e = v.remote_order(row(&[("status", "open")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column `order_ref`: no order key in this record"
        );
        v.mapping.key = vec!["branch".into(), "order_ref".into()];
        let e = v
            .remote_order(row(&[
                ("branch", ""),
                ("order_ref", "7"),
                ("status", "open"),
            ]))
            .unwrap_err();
        assert_eq!(e.to_string(), "column `branch`: empty order key");
        let o = v
            .remote_order(row(&[
                ("branch", "N"),
                ("order_ref", "7"),
                ("status", "open"),
            ]))
            .unwrap();
        assert_eq!(o.order_ref, "N|7");
    }

    /// `48217\0` made a phantom order beside 48217.
    #[test]
    fn a_key_with_a_control_character_is_a_row_error() {
        let v = super::super::settings::VendorRules::minimal("v");
        let e = v
            .remote_order(row(&[("order_ref", "48217\0"), ("status", "open")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "column `order_ref`: `48217\\0` is not an order key (it holds a control character)"
        );
    }

    /// A mapped status column with nothing in it is not "no status".
    #[test]
    fn an_empty_status_is_a_row_error() {
        let v = super::super::settings::VendorRules::minimal("v");
        let e = v
            .remote_order(row(&[("order_ref", "48299"), ("status", " ")]))
            .unwrap_err();
        assert_eq!(e.to_string(), "column `status`: empty status");
    }

    #[test]
    fn composite_keys_do_not_collide() {
        assert_ne!(encode_key(&["a|b", "c"]), encode_key(&["a", "b|c"]));
        assert_ne!(encode_key(&["a\\", "|c"]), encode_key(&["a\\|", "c"]));
        assert_eq!(encode_key(&[" 48213 "]), "48213");
    }

    #[test]
    fn money_tolerance_and_local_json_agree() {
        let mut f = field(FieldKind::Money);
        f.tolerance = number::tolerance(0.01);
        f.number = NumberFormat::DOT_COMMA;
        let remote = f.parse_remote("$1,234.50").unwrap();
        let local = f.parse_local(Some(&serde_json::json!(1234.5)));
        assert!(f.agrees(local.as_ref(), remote.as_ref()));
        let off = f.parse_local(Some(&serde_json::json!(1234.6)));
        assert!(!f.agrees(off.as_ref(), remote.as_ref()));
        assert!(f.parse_remote("twelve").is_err());
    }

    #[test]
    fn dates_in_vendor_format_match_parser_output() {
        let mut f = field(FieldKind::Date);
        f.format = Some("%m/%d/%Y".into());
        let remote = f.parse_remote("11/23/2026").unwrap();
        let local = f.parse_local(Some(&serde_json::json!("2026-11-23")));
        assert_eq!(remote, local);
        assert_eq!(f.to_json(remote.as_ref().unwrap()), "2026-11-23");
    }

    #[test]
    fn datetime_tolerance_in_seconds() {
        let mut f = field(FieldKind::Datetime);
        f.tolerance_secs = 60;
        let a = f.parse_remote("2026-11-23T09:00:00Z").unwrap();
        let b = f.parse_remote("2026-11-23T09:00:59Z").unwrap();
        let c = f.parse_remote("2026-11-23T09:02:00Z").unwrap();
        assert!(f.agrees(a.as_ref(), b.as_ref()));
        assert!(!f.agrees(a.as_ref(), c.as_ref()));
    }

    #[test]
    fn text_case_and_space() {
        let mut f = field(FieldKind::String);
        f.case = Case::Insensitive;
        let a = f.parse_remote("  Jane   DOE ").unwrap();
        let b = f.parse_local(Some(&serde_json::json!("jane doe")));
        assert!(f.agrees(a.as_ref(), b.as_ref()));
        assert_eq!(f.parse_remote("   ").unwrap(), None);
    }
}
