//! The declarative vendor parser: one TOML rule file per vendor under `parsers/`.
//!
//! A rule file says how to recognise the vendor's mail (senders, optional
//! subject/body patterns), where to find the order, status, event time and
//! fields (regexes with named captures over the subject, the text body, the
//! HTML body as text, or a header), and how vendor status words map to
//! canonical statuses. Everything is checked when the file loads, so a broken
//! rule file fails at start with its file, key and line, not on the first mail.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::time::TimeFormat;
use super::{DateHeader, ExtractError, Mail, Parser, glob_match};
use crate::model::{DeltaDraft, Fields, Status, TimeSource};
use crate::toml_source::{ConfigError, TomlSource};

/// Compiled regex size cap: rule files are trusted config, but a runaway
/// pattern should fail at load, not eat memory on every message.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    vendor: String,
    version: u32,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(rename = "match")]
    matcher: MatchSpec,
    #[serde(default)]
    extract: Vec<ExtractSpec>,
    /// This vendor's mail that is not status mail (marketing, one-time
    /// codes): archived as ignored with the rule as the reason.
    #[serde(default)]
    ignore: Vec<IgnoreSpec>,
    event_time: Option<TimeSpec>,
    #[serde(default)]
    fields: BTreeMap<String, FieldSpec>,
    status_map: BTreeMap<String, String>,
    csv: Option<CsvSpec>,
    xlsx: Option<XlsxSpec>,
    /// Zone abbreviation → IANA zone (the vendor's wall clock there) or
    /// fixed offset, for times read with `%Z`: `CST = "America/Chicago"`.
    #[serde(default)]
    zones: BTreeMap<String, String>,
    /// Orders among rule files whose senders overlap: the higher is tried
    /// first. Overlapping files without distinct priorities do not load.
    priority: Option<i32>,
    /// This vendor's mail may carry field updates without a status; without
    /// it, a message that yields no status is quarantined.
    #[serde(default)]
    field_updates_only: bool,
    /// How Authentication-Results are treated for this vendor.
    #[serde(default)]
    sender_auth: super::AuthPolicy,
    /// `rust:NAME` hands extraction to a parser written in Rust (see
    /// `parse::builtin`); recognition, status map and field types still come
    /// from this file.
    engine: Option<String>,
}

/// Rows of an attached CSV file, one delta per row.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvSpec {
    /// Regex over the attachment's file name (`(?i)\.csv$` by default).
    attachment: Option<String>,
    delimiter: Option<String>,
    /// Capture name (order_ref, status, event_time or a field) → column header.
    columns: BTreeMap<String, String>,
}

/// Rows of an attached XLSX workbook's sheet, one delta per row.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct XlsxSpec {
    /// Regex over the attachment's file name (`(?i)\.xlsx$` by default).
    attachment: Option<String>,
    /// The sheet's name (case-insensitive); the first sheet by default.
    sheet: Option<String>,
    /// Capture name → column header, as for CSV.
    columns: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IgnoreSpec {
    #[serde(rename = "in")]
    source: String,
    pattern: String,
    /// Said in the archive; defaults to the pattern.
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    senders: Vec<String>,
    /// People or systems that forward this vendor's mail to us: a forward
    /// from one of them whose original is from `senders` is parsed as the
    /// vendor's mail.
    #[serde(default)]
    forwarders: Vec<String>,
    subject: Option<String>,
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtractSpec {
    #[serde(rename = "in")]
    source: String,
    pattern: String,
    /// Every match yields one delta: a digest of several orders in one body.
    #[serde(default)]
    repeat: bool,
    /// A pattern that may legitimately be absent.
    #[serde(default)]
    optional: bool,
    /// When two patterns capture different values for one name, the higher
    /// priority wins; without one, the message is quarantined.
    priority: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeSpec {
    format: Formats,
    timezone: Option<String>,
}

/// One format, or several tried in order: a vendor that changes how it
/// writes dates keeps working with the old and the new form listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Formats {
    One(String),
    Many(Vec<String>),
}

impl Formats {
    fn into_vec(self) -> Vec<String> {
        match self {
            Formats::One(f) => vec![f],
            Formats::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    #[serde(rename = "type")]
    kind: FieldType,
    format: Option<Formats>,
    timezone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FieldType {
    String,
    Integer,
    Decimal,
    Money,
    Date,
    Datetime,
}

/// Where a pattern looks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Subject,
    Text,
    Html,
    Pdf,
    Header(String),
}

impl Source {
    fn parse(s: &str) -> Option<Source> {
        match s {
            "subject" => Some(Source::Subject),
            "text" => Some(Source::Text),
            "html" => Some(Source::Html),
            "pdf" => Some(Source::Pdf),
            _ => s
                .strip_prefix("header:")
                .filter(|h| !h.is_empty())
                .map(|h| Source::Header(h.to_string())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Subject => "the subject".into(),
            Source::Text => "the text body".into(),
            Source::Html => "the HTML body".into(),
            Source::Pdf => "the PDF attachments' text".into(),
            Source::Header(h) => format!("header {h}"),
        }
    }

    /// Borrowed where the mail already holds the text: patterns run over a
    /// 30 KB body several times per message, so no copy each time.
    fn read<'m>(&self, mail: &'m Mail<'_>) -> Cow<'m, str> {
        match self {
            Source::Subject => Cow::Borrowed(mail.subject()),
            Source::Text => Cow::Borrowed(mail.text()),
            Source::Html => Cow::Borrowed(mail.html_text()),
            // A PDF that cannot be read: empty here; `extract` quarantines
            // with the reason before reading it.
            Source::Pdf => Cow::Borrowed(mail.pdf_text().unwrap_or_default()),
            Source::Header(h) => Cow::Owned(mail.header(h).unwrap_or_default()),
        }
    }
}

struct Pattern {
    source: Source,
    regex: Regex,
    repeat: bool,
    optional: bool,
    priority: Option<i32>,
}

/// One captured value and where it came from, so two patterns that disagree
/// can be named in the quarantine reason.
#[derive(Debug, Clone)]
struct Capture {
    value: String,
    priority: Option<i32>,
    from: String,
}

type CaptureRow = BTreeMap<String, Capture>;

/// Adds a capture to a row: an equal value (ignoring case and spacing) is
/// the same; a different one is resolved by priority or refused.
fn merge(row: &mut CaptureRow, name: &str, c: Capture) -> Result<(), ExtractError> {
    let Some(old) = row.get(name) else {
        row.insert(name.to_string(), c);
        return Ok(());
    };
    if normalise_word(&old.value) == normalise_word(&c.value) {
        return Ok(());
    }
    match (old.priority, c.priority) {
        (Some(a), Some(b)) if a > b => Ok(()),
        (Some(_), None) => Ok(()),
        (Some(a), Some(b)) if b > a => {
            row.insert(name.to_string(), c);
            Ok(())
        }
        (None, Some(_)) => {
            row.insert(name.to_string(), c);
            Ok(())
        }
        _ => Err(ExtractError::Conflict {
            name: name.to_string(),
            first: old.value.chars().take(80).collect(),
            first_from: old.from.clone(),
            second: c.value.chars().take(80).collect(),
            second_from: c.from,
        }),
    }
}

/// A compiled `[csv]` or `[xlsx]` table: rows of matching attachments.
struct Table {
    kind: TableKind,
    attachment: Regex,
    columns: BTreeMap<String, String>,
}

enum TableKind {
    Csv { delimiter: u8 },
    Xlsx { sheet: Option<String> },
}

impl Table {
    fn describe(&self) -> &'static str {
        match self.kind {
            TableKind::Csv { .. } => "CSV",
            TableKind::Xlsx { .. } => "XLSX",
        }
    }

    /// Whether this table reads the attachment: by name, or an unnamed one by type.
    fn takes(&self, a: &super::Attachment<'_>) -> bool {
        match &a.name {
            Some(n) => self.attachment.is_match(n),
            None => match self.kind {
                TableKind::Csv { .. } => a.content_type == "text/csv",
                TableKind::Xlsx { .. } => super::documents::is_xlsx(&a.content_type, None),
            },
        }
    }

    fn rows(
        &self,
        a: &super::Attachment<'_>,
    ) -> Result<Vec<BTreeMap<String, String>>, ExtractError> {
        match &self.kind {
            TableKind::Csv { delimiter } => csv_rows(&self.columns, *delimiter, a.bytes),
            TableKind::Xlsx { sheet } => {
                let name = a.name.as_deref().unwrap_or("(unnamed)");
                // Sheets put titles and blank lines above the table: the
                // header is the first row that holds every mapped column.
                let rows = super::documents::xlsx_rows(name, a.bytes, sheet.as_deref())?;
                let holds_all = |r: &Vec<String>| {
                    self.columns
                        .values()
                        .all(|c| r.iter().any(|h| h.trim().eq_ignore_ascii_case(c.trim())))
                };
                let at = rows.iter().position(holds_all).unwrap_or(0);
                let mut rows = rows.into_iter().skip(at);
                let headers = rows.next().unwrap_or_default();
                rows_by_header(&self.columns, &headers, rows.map(Ok))
            }
        }
    }
}

struct Field {
    kind: FieldType,
    time: Option<TimeFormat>,
}

/// A compiled `[[ignore]]` rule.
struct Ignore {
    source: Source,
    regex: Regex,
    reason: String,
}

pub struct RuleParser {
    vendor: String,
    name: String,
    version: u32,
    senders: Vec<String>,
    forwarders: Vec<String>,
    ignores: Vec<Ignore>,
    subject: Option<Regex>,
    body: Option<Regex>,
    patterns: Vec<Pattern>,
    tables: Vec<Table>,
    event_time: Option<TimeFormat>,
    fields: BTreeMap<String, Field>,
    engine: Option<String>,
    auth: super::AuthPolicy,
    /// Every capture name other than order_ref/status/event_time.
    field_names: Vec<String>,
    priority: Option<i32>,
    field_updates_only: bool,
    /// Normalised vendor word (lower case, single spaces) → canonical status.
    status_map: BTreeMap<String, Status>,
}

fn normalise_word(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

const SPECIAL: [&str; 3] = ["order_ref", "status", "event_time"];

impl RuleParser {
    /// A rule file from its text; `file` names it in errors (the caller reads it).
    pub fn from_text(file: &Path, text: String) -> Result<RuleParser, ConfigError> {
        let src = TomlSource::new(file, text);
        let raw: RuleFile = src.parse()?;
        Self::build(&src, raw)
    }

    fn build(src: &TomlSource, raw: RuleFile) -> Result<RuleParser, ConfigError> {
        let vendor_ok = !raw.vendor.is_empty()
            && raw
                .vendor
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !vendor_ok {
            return Err(src.error("vendor", "must be lower-case letters, digits, `-` or `_`"));
        }
        if raw.matcher.senders.is_empty() {
            return Err(src.error(
                "match.senders",
                "must list at least one sender address or `*@domain` pattern",
            ));
        }
        for (list, key) in [
            (&raw.matcher.senders, "senders"),
            (&raw.matcher.forwarders, "forwarders"),
        ] {
            for (i, s) in list.iter().enumerate() {
                if !s.contains('@') || s == "*" || s.starts_with("*@*") && !s.contains('.') {
                    return Err(src.error(
                        &format!("match.{key}[{i}]"),
                        format!("`{s}` is not an address or `*@domain` pattern"),
                    ));
                }
            }
        }
        let compile = |key: &str, pattern: &str| -> Result<Regex, ConfigError> {
            RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| src.error(key, format!("invalid regex: {e}")))
        };
        let subject = raw
            .matcher
            .subject
            .as_deref()
            .map(|p| compile("match.subject", p))
            .transpose()?;
        let body = raw
            .matcher
            .body
            .as_deref()
            .map(|p| compile("match.body", p))
            .transpose()?;

        let time_format = |prefix: &str,
                           formats: Vec<String>,
                           tz: Option<&str>|
         -> Result<TimeFormat, ConfigError> {
            TimeFormat::new(formats, tz, &raw.zones).map_err(|(key, message)| {
                let key = if key == "zones" {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                src.error(&key, message)
            })
        };

        let mut fields = BTreeMap::new();
        for (name, spec) in &raw.fields {
            let key = format!("fields.{name}");
            if SPECIAL.contains(&name.as_str()) {
                return Err(src.error(
                    &key,
                    format!("`{name}` is not a field: it is read by its capture name"),
                ));
            }
            let time = match spec.kind {
                FieldType::Date | FieldType::Datetime => Some(time_format(
                    &key,
                    spec.format
                        .clone()
                        .map(Formats::into_vec)
                        .unwrap_or_else(|| match spec.kind {
                            FieldType::Date => vec!["%Y-%m-%d".into()],
                            _ => vec!["rfc3339".into()],
                        }),
                    spec.timezone.as_deref(),
                )?),
                _ => {
                    if spec.format.is_some() || spec.timezone.is_some() {
                        return Err(src.error(
                            &key,
                            "format/timezone only apply to date and datetime fields",
                        ));
                    }
                    None
                }
            };
            fields.insert(
                name.clone(),
                Field {
                    kind: spec.kind,
                    time,
                },
            );
        }

        let event_time = raw
            .event_time
            .as_ref()
            .map(|t| {
                time_format(
                    "event_time",
                    t.format.clone().into_vec(),
                    t.timezone.as_deref(),
                )
            })
            .transpose()?;

        let engine = match raw.engine.as_deref() {
            None | Some("rules") => None,
            Some(e) => match e.strip_prefix("rust:") {
                Some(name) if super::builtin::exists(name) => Some(name.to_string()),
                _ => {
                    return Err(src.error(
                        "engine",
                        format!(
                            "unknown engine `{e}`; use \"rules\" or one of: {}",
                            super::builtin::names().join(", ")
                        ),
                    ));
                }
            },
        };
        if raw.extract.is_empty() && raw.csv.is_none() && raw.xlsx.is_none() && engine.is_none() {
            return Err(src.error(
                "extract",
                "at least one [[extract]] pattern (or a [csv] or [xlsx] table) is needed",
            ));
        }
        let source_of = |key: &str, place: &str| -> Result<Source, ConfigError> {
            Source::parse(place).ok_or_else(|| {
                src.error(
                    &format!("{key}.in"),
                    format!(
                        "`{place}` is not a place to look: use subject, text, html, pdf or header:NAME"
                    ),
                )
            })
        };
        let mut patterns = Vec::new();
        let mut captured = std::collections::BTreeSet::new();
        for (i, e) in raw.extract.iter().enumerate() {
            let key = format!("extract[{i}]");
            let source = source_of(&key, &e.source)?;
            let regex = compile(&format!("{key}.pattern"), &e.pattern)?;
            let names: Vec<&str> = regex.capture_names().flatten().collect();
            if names.is_empty() {
                return Err(src.error(
                    &format!("{key}.pattern"),
                    "has no named capture: use (?P<order_ref>...), (?P<status>...), (?P<event_time>...) or a field name",
                ));
            }
            captured.extend(names.iter().map(|s| s.to_string()));
            if e.repeat && !names.contains(&"order_ref") {
                return Err(src.error(
                    &format!("{key}.pattern"),
                    "a repeat pattern yields one order per match, so it must capture order_ref",
                ));
            }
            patterns.push(Pattern {
                source,
                regex,
                repeat: e.repeat,
                optional: e.optional,
                priority: e.priority,
            });
        }
        let mut ignores = Vec::new();
        for (i, g) in raw.ignore.iter().enumerate() {
            let key = format!("ignore[{i}]");
            let source = source_of(&key, &g.source)?;
            let regex = compile(&format!("{key}.pattern"), &g.pattern)?;
            ignores.push(Ignore {
                reason: g
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("{} matches `{}`", source.describe(), g.pattern)),
                source,
                regex,
            });
        }
        let mut tables = Vec::new();
        if let Some(c) = &raw.csv {
            let delimiter = match c.delimiter.as_deref().unwrap_or(",").as_bytes() {
                [b] => *b,
                _ if c.delimiter.as_deref() == Some("\\t") => b'\t',
                _ => {
                    return Err(src.error(
                        "csv.delimiter",
                        "must be a single character (\",\", \";\", \"\\t\", ...)",
                    ));
                }
            };
            tables.push(Table {
                kind: TableKind::Csv { delimiter },
                attachment: compile(
                    "csv.attachment",
                    c.attachment.as_deref().unwrap_or(r"(?i)\.csv$"),
                )?,
                columns: c.columns.clone(),
            });
        }
        if let Some(x) = &raw.xlsx {
            tables.push(Table {
                kind: TableKind::Xlsx {
                    sheet: x.sheet.clone(),
                },
                attachment: compile(
                    "xlsx.attachment",
                    x.attachment.as_deref().unwrap_or(r"(?i)\.xlsx$"),
                )?,
                columns: x.columns.clone(),
            });
        }
        for t in &tables {
            if t.columns.is_empty() {
                let key = format!("{}.columns", t.describe().to_ascii_lowercase());
                return Err(src.error(&key, "must map at least order_ref to a column header"));
            }
            captured.extend(t.columns.keys().cloned());
        }
        if engine.is_some() {
            // The Rust parser supplies its own capture names.
            captured.extend(
                super::builtin::captures(engine.as_deref().unwrap_or_default())
                    .iter()
                    .map(|s| s.to_string()),
            );
        }
        if !captured.contains("order_ref") {
            return Err(src.error("extract", "no pattern or CSV column captures order_ref"));
        }
        if !captured.contains("status") && !raw.field_updates_only {
            return Err(src.error(
                "extract",
                "no pattern or CSV column captures status, so every message would be quarantined; if this vendor's mail carries field updates only, say so with field_updates_only = true",
            ));
        }
        if captured.contains("event_time") && event_time.is_none() {
            return Err(src.error(
                "event_time",
                "a pattern captures event_time, so [event_time] must give its format",
            ));
        }
        for name in raw.fields.keys() {
            if !captured.contains(name) {
                return Err(src.error(
                    &format!("fields.{name}"),
                    "declared but no pattern captures it",
                ));
            }
        }

        if raw.status_map.is_empty() {
            return Err(src.error("status_map", "must map at least one vendor status word"));
        }
        let mut status_map = BTreeMap::new();
        for (word, canonical) in &raw.status_map {
            let status: Status = canonical
                .parse()
                .map_err(|e: crate::model::UnknownStatus| {
                    src.error(&format!("status_map.{word}"), e.to_string())
                })?;
            status_map.insert(normalise_word(word), status);
        }

        Ok(RuleParser {
            name: format!("rules:{}", raw.vendor),
            vendor: raw.vendor,
            version: raw.version,
            senders: raw
                .matcher
                .senders
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            forwarders: raw
                .matcher
                .forwarders
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            ignores,
            subject,
            body,
            patterns,
            tables,
            event_time,
            fields,
            status_map,
            engine,
            auth: raw.sender_auth,
            field_names: captured
                .into_iter()
                .filter(|c| !SPECIAL.contains(&c.as_str()))
                .collect(),
            priority: raw.priority,
            field_updates_only: raw.field_updates_only,
        })
    }

    /// The Rust engine this file asks for, if any.
    pub(super) fn engine(&self) -> Option<&str> {
        self.engine.as_deref()
    }

    fn convert(&self, name: &str, value: &str) -> Result<serde_json::Value, ExtractError> {
        let value = value.trim();
        let bad = |expected: &str| ExtractError::BadValue {
            field: name.to_string(),
            value: value.chars().take(80).collect(),
            expected: expected.to_string(),
        };
        let Some(field) = self.fields.get(name) else {
            return Ok(serde_json::Value::String(normalise_space(value)));
        };
        Ok(match field.kind {
            FieldType::String => serde_json::Value::String(normalise_space(value)),
            FieldType::Integer => {
                let n: i64 = value
                    .replace([',', ' '], "")
                    .parse()
                    .map_err(|_| bad("an integer"))?;
                n.into()
            }
            FieldType::Decimal | FieldType::Money => {
                crate::number::to_json(parse_number(value).ok_or_else(|| bad("a number"))?)
            }
            FieldType::Date => {
                let tf = field.time.as_ref().ok_or_else(|| bad("a date"))?;
                let d = tf.parse_date(value).map_err(|e| time_error(name, e))?;
                serde_json::Value::String(d.format("%Y-%m-%d").to_string())
            }
            FieldType::Datetime => {
                let tf = field.time.as_ref().ok_or_else(|| bad("a date and time"))?;
                let t = tf.parse(value).map_err(|e| time_error(name, e))?;
                serde_json::Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }
        })
    }

    /// Turns one row of captures into a delta: maps the status, reads the
    /// event time, converts fields to their declared types. Shared with the
    /// Rust engines, which produce rows their own way.
    pub(super) fn row_to_delta(
        &self,
        mail: &Mail<'_>,
        row: &BTreeMap<String, String>,
    ) -> Result<DeltaDraft, ExtractError> {
        let order_ref = row
            .get("order_ref")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or(ExtractError::MissingOrderRef)?;
        let (status, vendor_status) = match row.get("status").map(|s| normalise_space(s)) {
            Some(word) if !word.is_empty() => {
                let st = self
                    .status_map
                    .get(&normalise_word(&word))
                    .copied()
                    .ok_or_else(|| ExtractError::UnmappedStatus(word.clone()))?;
                (Some(st), Some(word))
            }
            _ if self.field_updates_only => (None, None),
            _ => return Err(ExtractError::MissingStatus),
        };
        let (event_time, time_source) = match (row.get("event_time"), &self.event_time) {
            (Some(raw), Some(tf)) if !raw.trim().is_empty() => {
                let t = tf.parse(raw).map_err(|e| time_error("event_time", e))?;
                (t, TimeSource::Vendor)
            }
            _ => match (mail.date_header(), mail.received) {
                (DateHeader::Placed(d), _) => (d, TimeSource::DateHeader),
                // A Date header that is there but cannot be read for sure
                // (CEST, `05:18:26 PM -0400`, 31 Feb) is not skipped for the
                // arrival time: the vendor said when, we just cannot place it.
                (DateHeader::Unreadable(value), _) => {
                    return Err(ExtractError::UnreadableDateHeader(value));
                }
                (DateHeader::Absent, Some(r)) => (r, TimeSource::Received),
                // Nothing to go on: the epoch sorts before any real event, so
                // this delta can never override a dated one.
                (DateHeader::Absent, None) => (DateTime::<Utc>::UNIX_EPOCH, TimeSource::Received),
            },
        };
        let mut fields = Fields::new();
        for (name, value) in row {
            if SPECIAL.contains(&name.as_str()) || value.trim().is_empty() {
                continue;
            }
            fields.insert(name.clone(), self.convert(name, value)?);
        }
        Ok(DeltaDraft {
            vendor: self.vendor.clone(),
            order_ref,
            status,
            vendor_status,
            fields,
            event_time,
            time_source,
        })
    }
}

fn time_error(field: &str, e: super::time::TimeError) -> ExtractError {
    ExtractError::Time {
        field: field.to_string(),
        reason: e.to_string(),
    }
}

fn normalise_space(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads `$1,234.50`, `USD 99`, `(12.00)`, `-12` as an exact decimal: `.` is
/// the decimal point, `,` separates thousands (groups of exactly three
/// digits). Anything ambiguous, such as a European `1.234,50` or `12,5`, is
/// refused rather than misread: a wrong amount is worse than a quarantined
/// message. The same reader as the export side ([`crate::number`]).
fn parse_number(s: &str) -> Option<crate::number::Decimal> {
    crate::number::parse(s, crate::number::NumberFormat::DOT_COMMA).ok()
}

impl Parser for RuleParser {
    fn vendor(&self) -> &str {
        &self.vendor
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn accepts_sender(&self, sender: &str) -> bool {
        self.senders.iter().any(|p| glob_match(p, sender))
    }
    fn recognises(&self, mail: &Mail<'_>) -> bool {
        self.subject
            .as_ref()
            .is_none_or(|r| r.is_match(mail.subject()))
            && self.body.as_ref().is_none_or(|r| r.is_match(mail.text()))
    }

    fn auth_policy(&self) -> super::AuthPolicy {
        self.auth
    }

    fn declared_fields(&self) -> Vec<String> {
        self.field_names.clone()
    }

    fn senders(&self) -> &[String] {
        &self.senders
    }

    fn accepts_forwarder(&self, sender: &str) -> bool {
        self.forwarders.iter().any(|p| glob_match(p, sender))
    }

    fn forwarders(&self) -> &[String] {
        &self.forwarders
    }

    fn explain(&self, mail: &Mail<'_>) -> Vec<String> {
        self.explain_patterns(mail)
    }

    fn ignores(&self, mail: &Mail<'_>) -> Option<String> {
        self.ignores
            .iter()
            .enumerate()
            .find(|(_, g)| g.regex.is_match(&g.source.read(mail)))
            .map(|(i, g)| format!("ignore rule {i}: {}", g.reason))
    }

    fn priority(&self) -> Option<i32> {
        self.priority
    }

    fn extract(&self, mail: &Mail<'_>) -> Result<Vec<DeltaDraft>, ExtractError> {
        let mut common = CaptureRow::new();
        let mut rows: Vec<CaptureRow> = Vec::new();
        let mut has_repeat = false;
        for (index, p) in self.patterns.iter().enumerate() {
            if p.source == Source::Pdf {
                mail.pdf_text()
                    .map_err(|e| ExtractError::Document(e.clone()))?;
            }
            let hay = p.source.read(mail);
            let from = || format!("pattern {index} over {}", p.source.describe());
            if p.repeat {
                has_repeat = true;
                for caps in p.regex.captures_iter(&hay) {
                    rows.push(captures_to_row(&p.regex, &caps, p.priority, &from()));
                }
                continue;
            }
            match p.regex.captures(&hay) {
                Some(caps) => {
                    for (k, v) in captures_to_row(&p.regex, &caps, p.priority, &from()) {
                        merge(&mut common, &k, v)?;
                    }
                }
                None if p.optional => {}
                None => {
                    return Err(ExtractError::NoMatch {
                        index,
                        place: p.source.describe(),
                    });
                }
            }
        }
        let mut table_seen = false;
        for table in &self.tables {
            has_repeat = true;
            for a in mail.attachments().filter(|a| table.takes(a)) {
                table_seen = true;
                let from = format!(
                    "{} attachment {}",
                    table.describe(),
                    a.name.as_deref().unwrap_or("(unnamed)")
                );
                rows.extend(table.rows(&a)?.into_iter().map(|r| {
                    r.into_iter()
                        .map(|(k, value)| {
                            let c = Capture {
                                value,
                                priority: None,
                                from: from.clone(),
                            };
                            (k, c)
                        })
                        .collect()
                }));
            }
        }
        if !self.tables.is_empty() && !table_seen && self.patterns.iter().all(|p| !p.repeat) {
            let names: Vec<String> = self
                .tables
                .iter()
                .map(|t| format!("`{}`", t.attachment.as_str()))
                .collect();
            return Err(ExtractError::Csv(format!(
                "no attachment whose name matches {}",
                names.join(" or ")
            )));
        }
        if has_repeat {
            // A CSV or sheet with a header and no rows is a vendor's "no
            // activity" day: parsed, nothing to record. Anything else without
            // rows is suspect.
            if rows.is_empty() && table_seen {
                return Ok(Vec::new());
            }
            if rows.is_empty() {
                return Err(ExtractError::NoRows);
            }
            for row in &mut rows {
                for (k, v) in &common {
                    merge(row, k, v.clone())?;
                }
            }
        } else {
            rows.push(common);
        }
        rows.iter()
            .map(|r| {
                let plain: BTreeMap<String, String> = r
                    .iter()
                    .map(|(k, c)| (k.clone(), c.value.clone()))
                    .collect();
                self.row_to_delta(mail, &plain)
            })
            .collect()
    }
}

impl RuleParser {
    /// What each check and pattern of this file makes of the message, one
    /// line each, for `parsers explain`.
    pub(super) fn explain_patterns(&self, mail: &Mail<'_>) -> Vec<String> {
        let mut out = Vec::new();
        let check = |name: &str, r: &Option<Regex>, hay: &str| match r {
            None => format!("match.{name}: (none: any)"),
            Some(r) if r.is_match(hay) => format!("match.{name} `{}`: matches", r.as_str()),
            Some(r) => format!("match.{name} `{}`: does NOT match", r.as_str()),
        };
        out.push(check("subject", &self.subject, mail.subject()));
        out.push(check("body", &self.body, mail.text()));
        for (i, g) in self.ignores.iter().enumerate() {
            let hay = g.source.read(mail);
            let hit = g.regex.find(&hay);
            out.push(match hit {
                Some(m) => format!(
                    "ignore[{i}] over {}: matches `{}` -> ignored ({})",
                    g.source.describe(),
                    short(m.as_str()),
                    g.reason
                ),
                None => format!("ignore[{i}] over {}: no match", g.source.describe()),
            });
        }
        for (i, p) in self.patterns.iter().enumerate() {
            let hay = p.source.read(mail);
            let flags = match (p.repeat, p.optional) {
                (true, _) => " (repeat)",
                (_, true) => " (optional)",
                _ => "",
            };
            let found: Vec<String> = p
                .regex
                .captures_iter(&hay)
                .take(if p.repeat { 50 } else { 1 })
                .map(|c| {
                    captures_to_row(&p.regex, &c, p.priority, "")
                        .into_iter()
                        .map(|(k, v)| format!("{k}=`{}`", short(&v.value)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            if found.is_empty() {
                out.push(format!(
                    "extract[{i}]{flags} over {}: no match for `{}`{}",
                    p.source.describe(),
                    short(p.regex.as_str()),
                    if hay.is_empty() {
                        " (that place is empty)"
                    } else {
                        ""
                    }
                ));
            } else {
                for f in found {
                    out.push(format!(
                        "extract[{i}]{flags} over {}: {f}",
                        p.source.describe()
                    ));
                }
            }
        }
        for t in &self.tables {
            let mut lines = Vec::new();
            for a in mail.attachments().filter(|a| t.takes(a)) {
                let name = a.name.as_deref().unwrap_or("(unnamed)").to_string();
                match t.rows(&a) {
                    Ok(rows) => {
                        lines.push(format!("{name}: {} rows", rows.len()));
                        for r in rows.iter().take(20) {
                            let cells: Vec<String> = r
                                .iter()
                                .map(|(k, v)| format!("{k}=`{}`", short(v)))
                                .collect();
                            lines.push(format!("  {}", cells.join(" ")));
                        }
                    }
                    Err(e) => lines.push(format!("{name}: {e}")),
                }
            }
            out.push(format!(
                "{} attachment `{}`: {}",
                t.describe().to_ascii_lowercase(),
                t.attachment.as_str(),
                if lines.is_empty() {
                    "no attachment matches".to_string()
                } else {
                    lines.join("\n    ")
                }
            ));
        }
        out
    }
}

fn short(s: &str) -> String {
    let one_line = s.replace(['\r', '\n'], "⏎");
    if one_line.chars().count() > 100 {
        one_line.chars().take(100).collect::<String>() + "…"
    } else {
        one_line
    }
}

/// Reads an attached CSV: header row required; a BOM is ignored.
fn csv_rows(
    columns: &BTreeMap<String, String>,
    delimiter: u8,
    bytes: &[u8],
) -> Result<Vec<BTreeMap<String, String>>, ExtractError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ExtractError::Csv(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let records = reader.into_records().map(|r| {
        r.map(|rec| rec.iter().map(str::to_string).collect::<Vec<_>>())
            .map_err(|e| ExtractError::Csv(e.to_string()))
    });
    rows_by_header(columns, &headers, records)
}

/// A table's rows as captures by column header. A column named in the rule
/// file but missing from the header is an error (a vendor renaming a column
/// must not silently empty a field); blank rows are skipped.
fn rows_by_header(
    columns: &BTreeMap<String, String>,
    headers: &[String],
    records: impl Iterator<Item = Result<Vec<String>, ExtractError>>,
) -> Result<Vec<BTreeMap<String, String>>, ExtractError> {
    let mut index = Vec::new();
    for (name, column) in columns {
        let i = headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(column.trim()))
            .ok_or_else(|| {
                ExtractError::Csv(format!(
                    "column `{column}` (for {name}) is not in the attachment's header"
                ))
            })?;
        index.push((name.clone(), i));
    }
    let mut rows = Vec::new();
    for record in records {
        let record = record?;
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        rows.push(
            index
                .iter()
                .filter_map(|(name, i)| {
                    let v = record.get(*i)?.trim().to_string();
                    (!v.is_empty()).then(|| (name.clone(), v))
                })
                .collect(),
        );
    }
    Ok(rows)
}

fn captures_to_row(
    re: &Regex,
    caps: &regex::Captures<'_>,
    priority: Option<i32>,
    from: &str,
) -> CaptureRow {
    re.capture_names()
        .flatten()
        .filter_map(|n| {
            caps.name(n)
                .map(|m| m.as_str().trim())
                .filter(|s| !s.is_empty())
                .map(|s| {
                    let c = Capture {
                        value: s.to_string(),
                        priority,
                        from: from.to_string(),
                    };
                    (n.to_string(), c)
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_or_refused_never_misread() {
        let n = |s: &str| parse_number(s).map(|d| d.to_string());
        assert_eq!(n("$1,234.50").as_deref(), Some("1234.50"));
        assert_eq!(n("USD 99").as_deref(), Some("99"));
        assert_eq!(n("(12.00)").as_deref(), Some("-12.00"));
        assert_eq!(n("1.234,50"), None);
        assert_eq!(n("12,50"), None);
        assert_eq!(n("n/a"), None);
        assert_eq!(n("1,234").as_deref(), Some("1234"));
        assert_eq!(n("-0.5").as_deref(), Some("-0.5"));
    }
}
