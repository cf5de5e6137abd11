//! From an export row to a [`RemoteOrder`], and the comparison rules for fields.
//!
//! Both sides of a comparison go through the same normaliser: the export's
//! text through [`FieldMapping::parse_remote`] (a JSON export's numbers
//! through [`FieldMapping::parse_cell`]), our view's JSON (as the rule
//! parsers write it: money as a number, dates as `YYYY-MM-DD`, datetimes as
//! RFC 3339) through [`FieldMapping::parse_local`]. No IO here.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};

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

/// One value of an export row as its reader found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// A CSV cell or a JSON string: read under the vendor's declared format.
    Text(std::borrow::Cow<'a, str>),
    /// A JSON number: dot-decimal by JSON's own syntax whatever the vendor
    /// declares for text, and possibly already cut to a double's digits.
    Number(&'a serde_json::Number),
    /// A JSON number with more significant digits than a double keeps, as
    /// the export wrote it (the reader kept its text: its double would have
    /// dropped digits, and `1.00000000000000000001` would have read as 1).
    Literal(&'a str),
}

impl<'a> Cell<'a> {
    /// The text a key or status word is read from.
    fn into_text(self) -> std::borrow::Cow<'a, str> {
        match self {
            Cell::Text(t) => t,
            Cell::Number(n) => std::borrow::Cow::Owned(n.to_string()),
            Cell::Literal(t) => std::borrow::Cow::Borrowed(t),
        }
    }
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
    let (year, hour, minute, second) = (n(0..4)?, n(11..13)?, n(14..16)?, n(17..19)?);
    // Years below 1000 go to chrono's reader, and are refused there.
    if year < 1000 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = civil_days(year, n(5..7)?, n(8..10)?)?;
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

/// Days from 1970-01-01 to a valid proleptic Gregorian date, by arithmetic
/// (H. Hinnant's `days_from_civil`): chrono's `NaiveDate` and the way back
/// to a timestamp were most of a million export and view times' cost.
fn civil_days(year: u32, month: u32, day: u32) -> Option<i64> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = [
        31,
        28 + u32::from(leap),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day == 0 || day > *month_days.get(month.checked_sub(1)? as usize)? {
        return None;
    }
    // Years from March, so the leap day ends the year.
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((i64::from(month) + 9) % 12) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// A date whose year is not written with four digits (`11/27/26` read with
/// `%Y` is the year 26) is refused rather than stored centuries off.
fn four_digit_year(year: i32) -> Result<(), String> {
    if (1000..=9999).contains(&year) {
        Ok(())
    } else {
        Err(format!(
            "a date with a four-digit year (read as the year {year})"
        ))
    }
}

fn rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "an RFC 3339 date and time (e.g. 2026-11-24T14:05:00Z)".to_string())
}

/// A wall-clock time in `zone`: refused when a DST change skips it (it never
/// happened there) or repeats it (it happened twice, an hour apart).
pub fn in_zone(n: NaiveDateTime, zone: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    use chrono::TimeZone;
    use chrono::offset::LocalResult;
    match zone.from_local_datetime(&n) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(..) => Err(format!(
            "an unambiguous time ({n} happens twice in {zone}: a DST change repeats it)"
        )),
        LocalResult::None => Err(format!(
            "an existing time ({n} does not exist in {zone}: a DST change skips it)"
        )),
    }
}

/// Checks a date or datetime format when the config loads, so a typo is
/// a config error rather than every row refused. A zone name (`%Z`) is
/// refused: chrono reads it and drops it, and abbreviations are ambiguous
/// (CST is three zones). A datetime format must place its time: an offset
/// in it (`%z`), epoch seconds (`%s`), or the vendor's `zone`.
pub fn check_format(format: &str, kind: FieldKind, zone: bool) -> Result<(), String> {
    use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
    let mut placed = false;
    for item in StrftimeItems::new(format) {
        match item {
            Item::Error => return Err(format!("`{format}` is not a valid chrono format")),
            Item::Fixed(Fixed::TimezoneName) => {
                return Err(format!(
                    "`{format}` reads a zone name (%Z), which chrono drops and which is ambiguous (CST is three zones): use %z for an offset, or set mapping.timezone"
                ));
            }
            Item::Fixed(
                Fixed::TimezoneOffset
                | Fixed::TimezoneOffsetColon
                | Fixed::TimezoneOffsetDoubleColon
                | Fixed::TimezoneOffsetTripleColon
                | Fixed::TimezoneOffsetColonZ
                | Fixed::TimezoneOffsetZ
                | Fixed::RFC2822
                | Fixed::RFC3339,
            )
            | Item::Numeric(Numeric::Timestamp, _) => placed = true,
            _ => {}
        }
    }
    if kind == FieldKind::Datetime && !placed && !zone {
        return Err(format!(
            "`{format}` has no offset (%z), so its times cannot be placed: set mapping.timezone to the zone the vendor writes in (\"UTC\" if it writes UTC)"
        ));
    }
    Ok(())
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

    fn date(&self, s: &str) -> Result<Norm, String> {
        let d = self
            .format
            .as_deref()
            .and_then(|f| NaiveDate::parse_from_str(s, f).ok())
            .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.date_naive()))
            .ok_or_else(|| match &self.format {
                Some(f) => format!("a date in the format `{f}`"),
                None => "a date (YYYY-MM-DD)".to_string(),
            })?;
        four_digit_year(d.year())?;
        Ok(Norm::Date((d - EPOCH).num_days() as i32))
    }

    /// Seconds since the epoch. A time without an offset is placed in the
    /// vendor's declared zone (the config refuses a format without an offset
    /// and without `mapping.timezone`); one that a DST change skips or
    /// repeats there is refused, never shifted.
    fn datetime(&self, s: &str) -> Result<Norm, String> {
        if self.format.is_none()
            && let Some(t) = utc_seconds(s)
        {
            return Ok(Norm::Time(t));
        }
        let with_offset = |f: &str| DateTime::parse_from_str(s, f).map(|t| t.with_timezone(&Utc));
        let t = match self.format.as_deref() {
            Some(f) => match (with_offset(f), self.zone) {
                (Ok(t), _) => t,
                (Err(_), Some(zone)) => match NaiveDateTime::parse_from_str(s, f) {
                    Ok(n) => in_zone(n, zone)?,
                    Err(_) => {
                        rfc3339(s).map_err(|_| format!("a date and time in the format `{f}`"))?
                    }
                },
                (Err(_), None) => rfc3339(s)
                    .map_err(|_| format!("a date and time with an offset in the format `{f}`"))?,
            },
            None => rfc3339(s)?,
        };
        four_digit_year(t.year())?;
        Ok(Norm::Time(t.timestamp()))
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
            FieldKind::Date => self.date(s).map_err(|e| self.bad(s, &e))?,
            FieldKind::Datetime => self.datetime(s).map_err(|e| self.bad(s, &e))?,
        }))
    }

    /// Reads one export value: a JSON export's number for a money or number
    /// field exactly (the reader passes one a double cannot hold as its text,
    /// [`Cell::Literal`]; [`number::from_export_json`] refuses a double that
    /// may have lost digits all the same), anything else as
    /// [`Self::parse_remote`].
    pub fn parse_cell(&self, cell: &Cell) -> Result<Option<Norm>, BadValue> {
        match cell {
            Cell::Text(t) => self.parse_remote(t),
            Cell::Number(n) => match self.kind {
                FieldKind::Number | FieldKind::Money => number::from_export_json(n)
                    .map(|d| Some(Norm::Num(d)))
                    .map_err(|e| self.bad(&n.to_string(), &format!("a number ({e})"))),
                _ => self.parse_remote(&n.to_string()),
            },
            Cell::Literal(t) => match self.kind {
                FieldKind::Number | FieldKind::Money => number::from_json_literal(t)
                    .map(|d| Some(Norm::Num(d)))
                    .map_err(|e| self.bad(t, &format!("a number ({e})"))),
                _ => self.parse_remote(t),
            },
        }
    }

    /// Reads a JSON value from our view. Its numbers were written by
    /// [`number::to_json`] and read back as written; an export's JSON
    /// numbers go through [`Self::parse_cell`].
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
    pub(super) fn local_str(&self, s: &str) -> Option<Norm> {
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
                EPOCH
                    .checked_add_signed(chrono::TimeDelta::days(i64::from(*d)))
                    .unwrap_or(EPOCH)
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

    /// [`VendorRules::remote_order_cells_into`] for text cells (a CSV row).
    pub fn remote_order_into<'a>(
        &self,
        mut get: impl FnMut(&str) -> Option<std::borrow::Cow<'a, str>>,
        out: &mut RemoteOrder,
    ) -> Result<(), BadValue> {
        self.remote_order_cells_into(|c| get(c).map(Cell::Text), out)
    }

    /// [`VendorRules::remote_order`] into an order whose buffers are reused:
    /// a million rows each allocating a key, a status word and a field list,
    /// freed on the thread that compares them, were a fifth of a large
    /// reconcile's CPU. After an error `out` holds a partial row.
    pub fn remote_order_cells_into<'a>(
        &self,
        mut get: impl FnMut(&str) -> Option<Cell<'a>>,
        out: &mut RemoteOrder,
    ) -> Result<(), BadValue> {
        let mut get_text = |c: &str| get(c).map(Cell::into_text);
        if let [one] = self.mapping.key.as_slice() {
            let p = get_text(one);
            let p = key_part(one, p.as_deref())?;
            out.order_ref.clear();
            out.order_ref.push_str(p);
        } else {
            // Every part must be there: `("", "48217")` is no more a key than "".
            let mut parts = Vec::with_capacity(self.mapping.key.len());
            for k in &self.mapping.key {
                let p = get_text(k);
                key_part(k, p.as_deref())?;
                parts.push(p.unwrap_or_default());
            }
            let refs: Vec<&str> = parts.iter().map(|p| p.as_ref()).collect();
            out.order_ref = encode_key(&refs);
        }
        if let Some(col) = &self.mapping.status {
            let word = get_text(col).ok_or_else(|| BadValue::Missing {
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
                Some(v) => f.parse_cell(&v)?,
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
    if super::stored_fields::read(fields, json, &mut out[start..]).is_some() {
        return Ok(());
    }
    out[start..].fill(None);
    local_fields_serde(fields, json, &mut out[start..])
}

/// The general reader of stored fields, for what [`super::stored_fields`]
/// leaves to it; `out` holds one `None` per field.
pub(super) fn local_fields_serde(
    fields: &[FieldMapping],
    json: &[u8],
    out: &mut [Option<Norm>],
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    serde::Deserializer::deserialize_map(&mut de, LocalFields { fields, out })?;
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
                None => proptest::prop_assert!(sep != 'T' || z != "Z" || sec >= 60 || y < 1000 || chrono.is_none()),
            }
        }
    }

    /// Every day of four centuries (each leap rule), and the ends of the
    /// range, as chrono counts them; days that do not exist are refused.
    #[test]
    fn civil_days_counts_as_chrono_counts() {
        let years = (1599..=2401).chain([1000, 1001, 9998, 9999]);
        for y in years {
            for m in 0..=13 {
                for d in 0..=32 {
                    let chrono = NaiveDate::from_ymd_opt(y as i32, m, d)
                        .map(|t| t.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() / 86_400);
                    assert_eq!(civil_days(y, m, d), chrono, "{y}-{m}-{d}");
                }
            }
        }
    }

    fn field(kind: FieldKind) -> FieldMapping {
        FieldMapping::plain("f", kind)
    }

    fn timed(format: &str, zone: Option<chrono_tz::Tz>) -> FieldMapping {
        FieldMapping {
            format: Some(format.into()),
            zone,
            ..field(FieldKind::Datetime)
        }
    }

    fn secs(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn a_time_without_an_offset_is_placed_in_the_vendors_zone() {
        let f = timed("%Y-%m-%d %H:%M", Some(chrono_tz::America::Chicago));
        assert_eq!(
            f.parse_remote("2026-11-24 10:05"),
            Ok(Some(Norm::Time(secs("2026-11-24T16:05:00Z"))))
        );
        // An offset in the text wins over the zone.
        let f = timed("%Y-%m-%d %H:%M %z", None);
        assert_eq!(
            f.parse_remote("2026-11-24 10:05 +0530"),
            Ok(Some(Norm::Time(secs("2026-11-24T04:35:00Z"))))
        );
    }

    #[test]
    fn a_time_a_dst_change_skips_or_repeats_is_refused() {
        let f = timed("%Y-%m-%d %H:%M", Some(chrono_tz::America::New_York));
        let gap = f.parse_remote("2026-03-08 02:30").unwrap_err();
        assert!(gap.to_string().contains("skips it"), "{gap}");
        let overlap = f.parse_remote("2026-11-01 01:30").unwrap_err();
        assert!(overlap.to_string().contains("repeats it"), "{overlap}");
    }

    #[test]
    fn a_year_not_written_with_four_digits_is_refused() {
        let date = FieldMapping {
            format: Some("%m/%d/%Y".into()),
            ..field(FieldKind::Date)
        };
        let e = date.parse_remote("11/27/26").unwrap_err();
        assert!(e.to_string().contains("four-digit year"), "{e}");
        let e = timed("%m/%d/%Y %I:%M %p", Some(chrono_tz::UTC))
            .parse_remote("11/24/26 10:05 PM")
            .unwrap_err();
        assert!(e.to_string().contains("four-digit year"), "{e}");
    }

    #[test]
    fn dates_before_1970_are_stored_as_written() {
        let date = FieldMapping {
            format: Some("%m/%d/%Y".into()),
            ..field(FieldKind::Date)
        };
        let n = date.parse_remote("12/31/1969").unwrap().unwrap();
        assert_eq!(date.to_json(&n), serde_json::json!("1969-12-31"));
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

    /// A JSON export's number for a money field is exact when a double
    /// holds it and refused, naming the column, when its shortest form has
    /// more digits than a double keeps; our view's stored numbers still read
    /// back; and JSON's dot is the decimal point whatever the vendor declares.
    #[test]
    fn a_json_export_number_with_more_digits_than_a_double_holds_is_refused() {
        let mut f = field(FieldKind::Money);
        f.column = "Fee".into();
        let n = |s: &str| serde_json::from_str::<serde_json::Number>(s).unwrap();
        let long = n("380.12345678901234567890");
        let e = f.parse_cell(&Cell::Number(&long)).unwrap_err();
        assert!(
            matches!(&e, BadValue::Value { column, .. } if column == "Fee"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("more significant digits than a double holds exactly")
                && e.to_string().contains("send it as a string"),
            "{e}"
        );
        // The same digits sent as a string are read exactly.
        let exact: Decimal = "380.1234567890123456789".parse().unwrap();
        assert_eq!(
            f.parse_cell(&Cell::Text("380.12345678901234567890".into())),
            Ok(Some(Norm::Num(exact)))
        );
        let fee = n("380.12");
        assert_eq!(
            f.parse_cell(&Cell::Number(&fee)),
            Ok(Some(Norm::Num("380.12".parse().unwrap())))
        );
        // Our own stored view values are not export values: they read back.
        let stored = serde_json::json!(380.1234567890123);
        assert_eq!(
            f.parse_local(Some(&stored)),
            Some(Norm::Num("380.1234567890123".parse().unwrap()))
        );
        let mut out = Vec::new();
        local_fields(
            std::slice::from_ref(&f),
            br#"{"f":380.1234567890123}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec![f.parse_local(Some(&stored))]);
        // A decimal comma declared for text does not make JSON's 1.234 1234.
        f.number = NumberFormat {
            decimal: ',',
            thousands: Some('.'),
        };
        let small = n("1.234");
        assert_eq!(
            f.parse_cell(&Cell::Number(&small)),
            Ok(Some(Norm::Num("1.234".parse().unwrap())))
        );
        // A text field keeps reading the number's text.
        let t = field(FieldKind::String);
        assert_eq!(
            t.parse_cell(&Cell::Number(&long)),
            Ok(Some(Norm::Text("380.1234567890123".into())))
        );
    }

    /// A JSON number's own text (kept by the reader when a double would
    /// have dropped digits) is read exactly under JSON's dot, whatever the
    /// vendor declares for text; a text field keeps the text as written.
    #[test]
    fn a_json_number_literal_is_read_exactly() {
        let mut f = field(FieldKind::Money);
        f.number = NumberFormat {
            decimal: ',',
            thousands: Some('.'),
        };
        assert_eq!(
            f.parse_cell(&Cell::Literal("1.00000000000000000001")),
            Ok(Some(Norm::Num("1.00000000000000000001".parse().unwrap())))
        );
        let e = f
            .parse_cell(&Cell::Literal("1.23456789012345678901234567891"))
            .unwrap_err();
        assert!(
            e.to_string().contains("more digits than a decimal keeps"),
            "{e}"
        );
        assert_eq!(
            field(FieldKind::String).parse_cell(&Cell::Literal("12345678901234567890123")),
            Ok(Some(Norm::Text("12345678901234567890123".into())))
        );
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
