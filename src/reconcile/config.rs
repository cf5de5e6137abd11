//! The `[[vendor]]` tables of the config file: export source, mapping,
//! policy, guard and schedule per vendor.
//!
//! The export's status words are mapped by the vendor's own `[vendor.status_map]`
//! (falling back to the canonical names), not by the parser rule file's map:
//! exports and emails of one vendor often use different words ("DLVD" in the
//! export, "Report Delivered" in the mail), and one map per channel keeps
//! reconcile independent of `parse`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use driftwatch_core::reconcile::settings::{
    Case, FieldKind, FieldMapping, GuardSettings, Mapping, Policy, Scope, UnknownStatus,
    VendorRules, exact_words, normalise_word,
};

use crate::model::Status;
use crate::secret::Secret;
use driftwatch_core::reconcile::mapping::check_format;
use driftwatch_core::toml_source::{ConfigError, TomlSource};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVendor {
    pub name: String,
    export: Option<RawExport>,
    #[serde(default)]
    mapping: Option<RawMapping>,
    #[serde(default)]
    status_map: BTreeMap<String, String>,
    policy: Option<Policy>,
    schedule: Option<String>,
    grace_minutes: Option<u64>,
    missing_remote_after: Option<u32>,
    stale_after_hours: Option<u64>,
    /// "26h", "90m", "2d": no key frame for this long is reported under "Needs a human".
    keyframe_overdue_after: Option<String>,
    #[serde(default)]
    guard: RawGuard,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExport {
    pub(crate) kind: ExportKind,
    pub(crate) path: Option<PathBuf>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) pattern: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) format: Option<ExportFormat>,
    pub(crate) auth_header: Option<String>,
    pub(crate) auth_env: Option<String>,
    pub(crate) auth_file: Option<PathBuf>,
    pub(crate) as_of: Option<String>,
    pub(crate) timeout_secs: Option<u64>,
    // csv dialect
    pub(crate) delimiter: Option<String>,
    pub(crate) quote: Option<String>,
    pub(crate) has_header: Option<bool>,
    pub(crate) encoding: Option<Encoding>,
    pub(crate) final_newline: Option<bool>,
    pub(crate) max_field_bytes: Option<u64>,
    pub(crate) max_row_bytes: Option<u64>,
    // json / api
    pub(crate) items: Option<String>,
    pub(crate) pagination: Option<Pagination>,
    pub(crate) page_param: Option<String>,
    pub(crate) page_size_param: Option<String>,
    pub(crate) page_size: Option<u32>,
    pub(crate) cursor_param: Option<String>,
    pub(crate) next_cursor: Option<String>,
    pub(crate) total: Option<String>,
    pub(crate) max_pages: Option<u32>,
    pub(crate) retries: Option<u32>,
    pub(crate) retry_backoff_ms: Option<u64>,
    pub(crate) scope: Option<RawScope>,
    pub(crate) complete: Option<bool>,
    // sftp
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) user: Option<String>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) key_env: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) password_env: Option<String>,
    pub(crate) host_key: Option<String>,
    pub(super) host_key_sha256: Option<String>,
    pub(crate) settle_ms: Option<u64>,
    pub(crate) ready_marker: Option<String>,
    pub(crate) after: Option<super::sftp::After>,
    pub(crate) move_to: Option<String>,
    // mail
    pub(crate) from: Option<Vec<String>>,
    pub(crate) subject: Option<String>,
    pub(crate) attachment: Option<String>,
    pub(crate) auth: Option<driftwatch_core::parse::AuthPolicy>,
}

/// `[vendor.export.scope]`: which of the vendor's orders the export speaks
/// for. Every given condition must hold; none given means all orders.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScope {
    statuses: Option<Vec<String>>,
    updated_within_days: Option<u64>,
    field: Option<String>,
    values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ExportKind {
    File,
    Glob,
    Http,
    Api,
    Sftp,
    Mail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    #[serde(alias = "utf8")]
    Utf8,
    #[serde(alias = "iso-8859-1", alias = "latin-1")]
    Latin1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pagination {
    Page,
    Cursor,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    key: Option<KeySpec>,
    status: Option<String>,
    /// The export's decimal separator: "." (default) or ",".
    decimal: Option<String>,
    /// The export's thousands separator: "none" (default), ",", ".", " " or "'".
    thousands: Option<String>,
    /// IANA zone for times the export writes without an offset.
    timezone: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum KeySpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    column: Option<String>,
    #[serde(rename = "type")]
    kind: Option<FieldKind>,
    case: Option<Case>,
    format: Option<String>,
    tolerance: Option<f64>,
    relative_tolerance: Option<f64>,
    tolerance_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    min_rows: Option<u64>,
    max_row_drop_pct: Option<f64>,
    max_drift_pct: Option<f64>,
    max_fixes: Option<u64>,
    unknown_status: Option<UnknownStatus>,
}

// ---------------------------------------------------------------------------

/// One `[[vendor]]`: the pure rules reconcile planning reads (core's
/// [`VendorRules`], reached through `Deref`) plus what only the binary uses:
/// where the export comes from, how its bytes are read, and when to run.
#[derive(Debug, Clone)]
pub struct VendorSettings {
    pub rules: VendorRules,
    /// `None`: the vendor is only reconciled with `--file`.
    pub export: Option<ExportSettings>,
    pub csv: CsvDialect,
    /// Largest field and row an export may hold (memory stays bounded by them).
    pub limits: super::whole::SizeLimits,
    pub schedule: Option<croner::Cron>,
    /// No key frame with an `as_of` within this long is reported under
    /// "Needs a human" (`keyframe_overdue_after`).
    pub keyframe_overdue: Option<Duration>,
}

impl std::ops::Deref for VendorSettings {
    type Target = VendorRules;
    fn deref(&self) -> &VendorRules {
        &self.rules
    }
}

impl std::ops::DerefMut for VendorSettings {
    fn deref_mut(&mut self) -> &mut VendorRules {
        &mut self.rules
    }
}

#[derive(Debug, Clone)]
pub enum ExportSettings {
    /// One file, or the newest file in `dir` whose name matches `pattern`.
    File {
        path: Option<PathBuf>,
        dir: Option<(PathBuf, String)>,
        format: ExportFormat,
        as_of: AsOf,
    },
    Http {
        url: String,
        format: ExportFormat,
        auth: Option<(String, Secret)>,
        as_of: AsOf,
        timeout: Duration,
    },
    Api(ApiSettings),
    /// The newest complete file in a directory on an SFTP server.
    Sftp(super::sftp::SftpSettings),
    /// The newest archived report mail of the vendor, read from its attachment.
    Mail(super::mail_source::MailSettings),
}

impl ExportSettings {
    /// The mail source, when the vendor's key frames come by mail: `serve`
    /// runs such a vendor when a matching mail is archived.
    pub fn mail(&self) -> Option<&super::mail_source::MailSettings> {
        match self {
            ExportSettings::Mail(m) => Some(m),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub url: String,
    pub auth: Option<(String, Secret)>,
    pub as_of: AsOf,
    pub timeout: Duration,
    pub pagination: Pagination,
    pub items: String,
    pub page_param: String,
    pub page_size_param: String,
    pub page_size: u32,
    pub cursor_param: String,
    pub next_cursor: String,
    pub total: Option<String>,
    pub max_pages: u32,
    pub retries: u32,
    pub retry_backoff: Duration,
}

/// Where a key frame's `as_of` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    /// The time we fetched it: the default only for a live API listing.
    Fetched,
    /// File mtime, or the HTTP `Last-Modified` header (else `Date`): the
    /// default for files, drop folders and HTTP downloads.
    Modified,
    /// An HTTP response header holding an RFC 3339 or RFC 2822 time.
    Header(String),
    /// A CSV column (first data row) or a JSON pointer into the (first) document.
    Field(String),
    /// Mail only: the time written after this phrase in the mail's body.
    Body(String),
}

#[derive(Debug, Clone)]
pub struct CsvDialect {
    pub delimiter: u8,
    pub quote: u8,
    pub has_header: bool,
    pub encoding: Encoding,
    /// Require the file to end with a line break, so a cut last row is seen.
    pub final_newline: bool,
}

impl Default for CsvDialect {
    fn default() -> Self {
        CsvDialect {
            delimiter: b',',
            quote: b'"',
            has_header: true,
            encoding: Encoding::Utf8,
            final_newline: true,
        }
    }
}

impl VendorSettings {
    /// A vendor with only a name: reconcile from `--file` with canonical
    /// column names (`order_ref`, `status`). Used by tests and benchmarks.
    pub fn minimal(name: &str) -> VendorSettings {
        VendorSettings {
            rules: VendorRules::minimal(name),
            export: None,
            csv: CsvDialect::default(),
            limits: super::whole::SizeLimits::default(),
            schedule: None,
            keyframe_overdue: None,
        }
    }
}

/// The mail sources check Authentication-Results from the same servers
/// ingest trusts (`[ingest] authserv_ids`).
pub fn trust_authserv_ids(vendors: &mut [VendorSettings], ids: &[String]) {
    for v in vendors {
        if let Some(ExportSettings::Mail(m)) = &mut v.export {
            m.authserv_ids = ids.to_vec();
        }
    }
}

/// (vendor, limit) for every vendor with `keyframe_overdue_after`: the
/// report's "key frame overdue" alert.
pub fn keyframe_overdue(vendors: &[VendorSettings]) -> Vec<(String, Duration)> {
    vendors
        .iter()
        .filter_map(|v| Some((v.name.clone(), v.keyframe_overdue?)))
        .collect()
}

/// A duration written as a number and a unit: `"90s"`, `"45m"`, `"26h"`, `"2d"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The mapping's declared separators; anything unusual is a config error.
fn number_format(
    src: &TomlSource,
    key: &dyn Fn(&str) -> String,
    decimal: Option<&str>,
    thousands: Option<&str>,
) -> Result<crate::number::NumberFormat, ConfigError> {
    let decimal = match decimal.unwrap_or(".") {
        "." => '.',
        "," => ',',
        _ => return Err(src.error(&key("mapping.decimal"), "must be \".\" or \",\"")),
    };
    let thousands = match thousands.unwrap_or("none") {
        "none" | "" => None,
        t @ ("," | "." | " " | "'") => t.chars().next(),
        _ => {
            return Err(src.error(
                &key("mapping.thousands"),
                "must be \"none\", \",\", \".\", \" \" or \"'\"",
            ));
        }
    };
    if thousands == Some(decimal) {
        return Err(src.error(
            &key("mapping.thousands"),
            "must differ from the decimal separator",
        ));
    }
    Ok(crate::number::NumberFormat { decimal, thousands })
}

/// Validates `vendor[index]`; `base` is the config file's directory, for relative paths.
pub fn validate(
    src: &TomlSource,
    index: usize,
    raw: RawVendor,
    base: &Path,
) -> Result<VendorSettings, ConfigError> {
    let key = |k: &str| format!("vendor[{index}].{k}");
    let rel = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    if raw.name.trim().is_empty() {
        return Err(src.error(&key("name"), "must not be empty"));
    }

    let mut csv = CsvDialect::default();
    let mut raw_scope: Option<RawScope> = None;
    let mut complete = false;
    let mut limits = super::whole::SizeLimits::default();
    let export = match raw.export {
        None => None,
        Some(mut e) => {
            let ek = |k: &str| key(&format!("export.{k}"));
            let one_byte = |k: &str, v: &Option<String>, default: u8| -> Result<u8, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(s) if s == "\\t" || s == "tab" => Ok(b'\t'),
                    Some(s) if s.len() == 1 => Ok(s.as_bytes()[0]),
                    Some(_) => Err(src.error(&ek(k), "must be one ASCII character (or \"tab\")")),
                }
            };
            csv = CsvDialect {
                delimiter: one_byte("delimiter", &e.delimiter, b',')?,
                quote: one_byte("quote", &e.quote, b'"')?,
                has_header: e.has_header.unwrap_or(true),
                encoding: e.encoding.unwrap_or(Encoding::Utf8),
                final_newline: e.final_newline.unwrap_or(true),
            };
            raw_scope = e.scope.take();
            complete = e.complete.unwrap_or(false);
            let dl = super::whole::SizeLimits::default();
            limits = super::whole::SizeLimits {
                field: e.max_field_bytes.unwrap_or(dl.field),
                row: e.max_row_bytes.unwrap_or(dl.row),
            };
            if limits.field == 0 || limits.row < limits.field {
                return Err(src.error(
                    &ek("max_row_bytes"),
                    "limits must be positive, and a row at least as large as a field",
                ));
            }
            // The default is the vendor's own time for the source: a file's
            // mtime, an HTTP response's Last-Modified (else Date); only a live
            // API listing is as of when we fetched it.
            let as_of = match e.as_of.as_deref() {
                None if e.kind == ExportKind::Api => AsOf::Fetched,
                None => AsOf::Modified,
                Some(s) if s.starts_with("body:") && e.kind == ExportKind::Mail => {
                    AsOf::Body(s[5..].to_string())
                }
                Some("date") if e.kind == ExportKind::Mail => AsOf::Modified,
                Some("fetched") => {
                    if e.kind != ExportKind::Api && raw.policy == Some(Policy::Fix) {
                        return Err(src.error(
                            &ek("as_of"),
                            "\"fetched\" stamps a file or download with the time we read it, so with policy = \"fix\" a stale export would outrank later emails; use \"modified\" (the default), \"header:NAME\" or \"field:COLUMN\"",
                        ));
                    }
                    AsOf::Fetched
                }
                Some("modified") => AsOf::Modified,
                Some(s) if s.starts_with("header:") => AsOf::Header(s[7..].to_string()),
                Some(s) if s.starts_with("field:") => AsOf::Field(s[6..].to_string()),
                Some(_) => {
                    return Err(src.error(
                        &ek("as_of"),
                        "expected \"fetched\", \"modified\", \"header:NAME\" or \"field:COLUMN\" (mail: \"date\", \"field:COLUMN\" or \"body:PHRASE\")",
                    ));
                }
            };
            let auth = match (&e.auth_env, &e.auth_file) {
                (Some(_), Some(_)) => {
                    return Err(src.error(&ek("auth_file"), "conflicts with `auth_env`: give one"));
                }
                (Some(v), None) => Some(Secret::Env(v.clone())),
                (None, Some(p)) => Some(Secret::File(rel(p))),
                (None, None) => None,
            }
            .map(|s| {
                (
                    e.auth_header
                        .clone()
                        .unwrap_or_else(|| "Authorization".into()),
                    s,
                )
            });
            let timeout = Duration::from_secs(e.timeout_secs.unwrap_or(60).max(1));
            let need_url = || -> Result<String, ConfigError> {
                let url = e
                    .url
                    .clone()
                    .ok_or_else(|| src.error(&ek("kind"), "missing key `url`"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(src.error(&ek("url"), "must start with http:// or https://"));
                }
                Ok(url)
            };
            Some(match e.kind {
                ExportKind::File => ExportSettings::File {
                    path: Some(rel(e
                        .path
                        .as_deref()
                        .ok_or_else(|| src.error(&ek("kind"), "missing key `path`"))?)),
                    dir: None,
                    format: e.format.unwrap_or(ExportFormat::Csv),
                    as_of,
                },
                ExportKind::Glob => {
                    let dir = e
                        .dir
                        .as_deref()
                        .ok_or_else(|| src.error(&ek("kind"), "missing key `dir`"))?;
                    let pattern = e
                        .pattern
                        .clone()
                        .ok_or_else(|| src.error(&ek("kind"), "missing key `pattern`"))?;
                    ExportSettings::File {
                        path: None,
                        dir: Some((rel(dir), pattern)),
                        format: e.format.unwrap_or(ExportFormat::Csv),
                        as_of,
                    }
                }
                ExportKind::Http => ExportSettings::Http {
                    url: need_url()?,
                    format: e.format.unwrap_or(ExportFormat::Csv),
                    auth,
                    as_of,
                    timeout,
                },
                ExportKind::Api => {
                    let page_size = e.page_size.unwrap_or(100);
                    if page_size == 0 {
                        return Err(src.error(&ek("page_size"), "must be at least 1"));
                    }
                    ExportSettings::Api(ApiSettings {
                        url: need_url()?,
                        auth,
                        as_of,
                        timeout,
                        pagination: e.pagination.unwrap_or(Pagination::Page),
                        items: e.items.clone().unwrap_or_else(|| "/items".into()),
                        page_param: e.page_param.clone().unwrap_or_else(|| "page".into()),
                        page_size_param: e
                            .page_size_param
                            .clone()
                            .unwrap_or_else(|| "per_page".into()),
                        page_size,
                        cursor_param: e.cursor_param.clone().unwrap_or_else(|| "cursor".into()),
                        next_cursor: e
                            .next_cursor
                            .clone()
                            .unwrap_or_else(|| "/next_cursor".into()),
                        total: e.total.clone(),
                        max_pages: e.max_pages.unwrap_or(100_000),
                        retries: e.retries.unwrap_or(3),
                        retry_backoff: Duration::from_millis(e.retry_backoff_ms.unwrap_or(500)),
                    })
                }
                ExportKind::Sftp => {
                    ExportSettings::Sftp(super::sftp::validate(src, &ek, &e, as_of, timeout, &rel)?)
                }
                ExportKind::Mail => {
                    ExportSettings::Mail(super::mail_source::validate(src, &ek, &e, as_of)?)
                }
            })
        }
    };

    let mapping = match raw.mapping {
        None => Mapping {
            key: vec!["order_ref".into()],
            status: Some("status".into()),
            fields: vec![],
            timezone: None,
        },
        Some(m) => {
            let keycols = match m.key {
                None => vec!["order_ref".to_string()],
                Some(KeySpec::One(k)) => vec![k],
                Some(KeySpec::Many(ks)) => ks,
            };
            if keycols.is_empty() || keycols.iter().any(|k| k.trim().is_empty()) {
                return Err(src.error(&key("mapping.key"), "must name at least one column"));
            }
            let number = number_format(src, &key, m.decimal.as_deref(), m.thousands.as_deref())?;
            let timezone = match &m.timezone {
                None => None,
                Some(z) => Some(z.parse::<chrono_tz::Tz>().map_err(|_| {
                    src.error(
                        &key("mapping.timezone"),
                        format!(
                            "`{z}` is not an IANA time zone (e.g. \"America/Chicago\" or \"UTC\")"
                        ),
                    )
                })?),
            };
            let mut fields = Vec::new();
            for (name, f) in m.fields {
                let fk = |k: &str| key(&format!("mapping.fields.{name}.{k}"));
                let kind = f.kind.unwrap_or(FieldKind::String);
                if let Some(fmt) = &f.format {
                    if !matches!(kind, FieldKind::Date | FieldKind::Datetime) {
                        return Err(src.error(&fk("format"), "only applies to date and datetime"));
                    }
                    if fmt.trim().is_empty() {
                        return Err(src.error(&fk("format"), "must not be empty"));
                    }
                    check_format(fmt, kind, timezone.is_some())
                        .map_err(|e| src.error(&fk("format"), e))?;
                }
                for (v, k) in [
                    (f.tolerance, "tolerance"),
                    (f.relative_tolerance, "relative_tolerance"),
                ] {
                    if let Some(v) = v {
                        if !matches!(kind, FieldKind::Number | FieldKind::Money) {
                            return Err(src.error(&fk(k), "only applies to number and money"));
                        }
                        if !(v.is_finite() && v >= 0.0) {
                            return Err(src.error(&fk(k), "must be a non-negative number"));
                        }
                    }
                }
                if f.tolerance_secs.is_some() && kind != FieldKind::Datetime {
                    return Err(src.error(&fk("tolerance_secs"), "only applies to datetime"));
                }
                fields.push(FieldMapping {
                    column: f.column.unwrap_or_else(|| name.clone()),
                    name,
                    kind,
                    case: f.case.unwrap_or_default(),
                    format: f.format,
                    zone: timezone,
                    number,
                    tolerance: crate::number::tolerance(f.tolerance.unwrap_or(0.0)),
                    relative_tolerance: crate::number::tolerance(
                        f.relative_tolerance.unwrap_or(0.0),
                    ),
                    tolerance_secs: f.tolerance_secs.unwrap_or(0).max(0),
                });
            }
            Mapping {
                key: keycols,
                status: m.status,
                fields,
                timezone,
            }
        }
    };

    let sk = |k: &str| key(&format!("export.scope.{k}"));
    let scope = match raw_scope {
        None => Scope::default(),
        Some(r) => Scope {
            statuses: r
                .statuses
                .map(|ws| {
                    ws.iter()
                        .map(|w| {
                            w.parse::<Status>()
                                .map_err(|e| src.error(&sk("statuses"), e.to_string()))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
            updated_within: r
                .updated_within_days
                .map(|d| Duration::from_secs(d * 86_400)),
            field: match (r.field, r.values) {
                (None, None) => None,
                (Some(f), Some(vals)) => Some((
                    mapping
                        .fields
                        .iter()
                        .position(|m| m.name == f)
                        .ok_or_else(|| {
                            src.error(&sk("field"), "must name a field of [vendor.mapping.fields]")
                        })?,
                    vals,
                )),
                _ => return Err(src.error(&sk("field"), "`field` and `values` go together")),
            },
        },
    };

    let mut status_map = BTreeMap::new();
    let mut exact = Vec::new();
    for (word, canonical) in raw.status_map {
        let st: Status = canonical
            .parse()
            .map_err(|e: crate::model::UnknownStatus| {
                src.error(&key(&format!("status_map.{word}")), e.to_string())
            })?;
        status_map.insert(normalise_word(&word), st);
        exact.push((word.trim().to_string(), st));
    }

    let schedule = match raw.schedule {
        None => None,
        Some(s) => Some(s.parse::<croner::Cron>().map_err(|e| {
            src.error(
                &key("schedule"),
                format!("not a 5-field cron expression (e.g. \"0 6 * * *\"): {e}"),
            )
        })?),
    };
    let g = GuardSettings::default();
    let guard = GuardSettings {
        min_rows: raw.guard.min_rows.unwrap_or(g.min_rows),
        max_row_drop_pct: raw.guard.max_row_drop_pct.unwrap_or(g.max_row_drop_pct),
        max_drift_pct: raw.guard.max_drift_pct.unwrap_or(g.max_drift_pct),
        max_fixes: raw.guard.max_fixes.unwrap_or(g.max_fixes),
        unknown_status: raw.guard.unknown_status.unwrap_or(g.unknown_status),
    };
    for (v, k) in [
        (guard.max_row_drop_pct, "guard.max_row_drop_pct"),
        (guard.max_drift_pct, "guard.max_drift_pct"),
    ] {
        if !(0.0..=100.0).contains(&v) {
            return Err(src.error(&key(k), "must be a percentage between 0 and 100"));
        }
    }
    let keyframe_overdue = match raw.keyframe_overdue_after.as_deref() {
        None => None,
        Some(t) => Some(parse_duration(t).ok_or_else(|| {
            src.error(
                &key("keyframe_overdue_after"),
                "expected a positive duration such as \"26h\", \"90m\" or \"2d\"",
            )
        })?),
    };
    let missing_remote_after = raw.missing_remote_after.unwrap_or(2);
    if missing_remote_after == 0 {
        return Err(src.error(&key("missing_remote_after"), "must be at least 1"));
    }
    Ok(VendorSettings {
        rules: VendorRules {
            name: raw.name,
            mapping,
            status_map,
            status_exact: exact_words(&exact),
            policy: raw.policy.unwrap_or(Policy::Flag),
            grace: Duration::from_secs(raw.grace_minutes.unwrap_or(60) * 60),
            missing_remote_after,
            scope,
            complete,
            stale_after: Duration::from_secs(raw.stale_after_hours.unwrap_or(48) * 3600),
            guard,
        },
        export,
        csv,
        limits,
        schedule,
        keyframe_overdue,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, crate::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("driftwatch.toml");
        std::fs::write(&f, text).unwrap();
        Config::load(&f)
    }

    #[test]
    fn vendor_errors_are_located() {
        let base = "[[vendor]]\nname = \"acme\"\n";
        for (extra, key, line) in [
            ("schedule = \"every day\"\n", "vendor[0].schedule", 3),
            (
                "[vendor.export]\nkind = \"http\"\nurl = \"ftp://x\"\n",
                "vendor[0].export.url",
                5,
            ),
            (
                "[vendor.status_map]\nDONE = \"finished\"\n",
                "vendor[0].status_map.DONE",
                4,
            ),
            (
                "[vendor.mapping.fields.fee]\ntype = \"money\"\nformat = \"%Y\"\n",
                "vendor[0].mapping.fields.fee.format",
                5,
            ),
            (
                "[vendor.export]\nkind = \"file\"\npth = \"x\"\n",
                "vendor[0].export.pth",
                5,
            ),
            (
                "[vendor.guard]\nmax_drift_pct = 250\n",
                "vendor[0].guard.max_drift_pct",
                4,
            ),
        ] {
            let e = load(&format!("{base}{extra}")).unwrap_err();
            assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(line)), "{e}");
        }
    }

    #[test]
    fn an_export_time_format_that_cannot_place_its_times_is_a_config_error() {
        let base = "[[vendor]]\nname = \"acme\"\n[vendor.mapping]\n";
        let field = |fmt: &str| {
            format!("[vendor.mapping.fields.at]\ntype = \"datetime\"\nformat = \"{fmt}\"\n")
        };
        for (mapping, fmt, says) in [
            ("", "%Y-%m-%d %H:%M %Z", "zone name (%Z)"),
            (
                "timezone = \"America/Chicago\"\n",
                "%Y-%m-%d %H:%M %Z",
                "zone name (%Z)",
            ),
            ("", "%Y-%m-%d %H:%M", "set mapping.timezone"),
            ("", "%Y-%m-%d %Q", "not a valid chrono format"),
        ] {
            let e = load(&format!("{base}{mapping}{}", field(fmt))).unwrap_err();
            assert_eq!(
                e.key.as_deref(),
                Some("vendor[0].mapping.fields.at.format"),
                "{e}"
            );
            assert!(e.to_string().contains(says), "{fmt}: {e}");
        }
        for (mapping, fmt) in [
            ("timezone = \"America/Chicago\"\n", "%Y-%m-%d %H:%M"),
            ("", "%Y-%m-%d %H:%M %z"),
            ("", "%s"),
        ] {
            load(&format!("{base}{mapping}{}", field(fmt))).unwrap();
        }
        let e = load(&format!("{base}timezone = \"CST\"\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("vendor[0].mapping.timezone"), "{e}");
    }

    #[test]
    fn a_full_vendor_loads() {
        let c = load(
            "[[vendor]]\nname = \"acme\"\npolicy = \"fix\"\nschedule = \"0 6 * * *\"\n\
             [vendor.export]\nkind = \"api\"\nurl = \"https://v.example/orders\"\nauth_env = \"TOKEN\"\npagination = \"cursor\"\n\
             [vendor.mapping]\nkey = [\"branch\", \"no\"]\nstatus = \"state\"\n\
             [vendor.status_map]\n\"Report Delivered\" = \"completed\"\n",
        )
        .unwrap();
        let v = &c.vendors[0];
        assert_eq!(v.mapping.key, ["branch", "no"]);
        assert_eq!(
            v.map_status("  REPORT_delivered "),
            Some(crate::model::Status::Completed)
        );
        assert_eq!(
            v.map_status("in progress"),
            Some(crate::model::Status::InProgress)
        );
        assert!(v.schedule.is_some());
        assert!(format!("{v:?}").contains("Secret(env TOKEN)"));
    }
}
