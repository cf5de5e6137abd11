//! The typed per-vendor settings reconcile planning reads. The binary builds
//! them from `[[vendor]]` (validation with file and line is there); nothing
//! here reads a file.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use crate::model::Status;

/// What reconcile planning needs to know about one vendor: how an export row
/// maps onto an order, what the vendor's status words mean, the policy, the
/// cutoff's grace, the export's scope and the guard. Built by the binary from
/// `[[vendor]]`.
#[derive(Debug, Clone)]
pub struct VendorRules {
    pub name: String,
    pub mapping: Mapping,
    /// Normalised vendor word (see [`normalise_word`]) → canonical status.
    pub status_map: BTreeMap<String, Status>,
    /// The same words exactly as configured, plus the canonical names: a
    /// lookup without normalising, for the million-row path. A fast fixed
    /// hash: the table is small and fixed, so words chosen to collide cost
    /// a few probes at most, and SipHash was a twentieth of the parser.
    pub status_exact: StatusWords,
    pub policy: Policy,
    /// Mail still in transit at `as_of`: deltas recorded up to this long after
    /// `as_of` whose event time is before it count as known.
    pub grace: Duration,
    /// `missing_remote` is acted on only after this many consecutive key frames.
    pub missing_remote_after: u32,
    /// Which of our orders the export speaks for: only those can be `missing_remote`.
    pub scope: Scope,
    /// The config states the export lists every order in its scope
    /// (`export.complete = true`): only then is a `missing_remote` fixed
    /// (the order marked gone); otherwise it is flagged.
    pub complete: bool,
    /// A key frame older than this when a run uses it is reported (the
    /// vendor's export has stopped moving).
    pub stale_after: Duration,
    pub guard: GuardSettings,
}

impl VendorRules {
    /// A vendor with only a name and the defaults: canonical column names
    /// (`order_ref`, `status`), `flag`, a complete export. For `--file` runs,
    /// tests and benchmarks.
    pub fn minimal(name: &str) -> VendorRules {
        VendorRules {
            name: name.to_string(),
            mapping: Mapping {
                key: vec!["order_ref".into()],
                status: Some("status".into()),
                fields: vec![],
                timezone: None,
            },
            status_map: BTreeMap::new(),
            status_exact: exact_words(&[]),
            policy: Policy::Flag,
            grace: Duration::from_secs(3600),
            missing_remote_after: 2,
            scope: Scope::default(),
            complete: true,
            stale_after: Duration::from_secs(48 * 3600),
            guard: GuardSettings::default(),
        }
    }

    /// The canonical status for a vendor word: the vendor's map first, then the
    /// canonical names themselves (`in progress`, `IN_PROGRESS`).
    pub fn map_status(&self, word: &str) -> Option<Status> {
        if let Some(s) = self.status_exact.get(word.trim()) {
            return Some(*s);
        }
        let w = normalise_word(word);
        self.status_map
            .get(&w)
            .copied()
            .or_else(|| w.replace(' ', "_").parse().ok())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Record drifts; the report shows them.
    Flag,
    /// Also append `reconcile` deltas that make the view equal the vendor's.
    Fix,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Flag => "flag",
            Policy::Fix => "fix",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    String,
    Number,
    Money,
    Date,
    Datetime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    #[default]
    Preserve,
    Lower,
    Upper,
    /// Compare case-insensitively but keep the vendor's spelling in fixes.
    Insensitive,
}

/// Which orders of our view an export speaks for, judged on the view as of
/// the key frame. An order outside it (e.g. completed, for an open-orders
/// export) is never `missing_remote`.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only orders in these statuses (e.g. the open ones).
    pub statuses: Option<Vec<Status>>,
    /// Only orders whose latest event is within this long before `as_of`.
    pub updated_within: Option<Duration>,
    /// Only orders whose mapped field (index into `mapping.fields`) has one of these values.
    pub field: Option<(usize, Vec<String>)>,
}

#[derive(Debug, Clone)]
pub struct Mapping {
    /// Columns (or JSON keys) that make the order key, in order.
    pub key: Vec<String>,
    pub status: Option<String>,
    pub fields: Vec<FieldMapping>,
    /// `mapping.timezone`: the zone the vendor writes times without an
    /// offset in (datetime fields whose format has none, an `as_of` read
    /// from a field). Without it such a time is refused, never read as UTC.
    pub timezone: Option<chrono_tz::Tz>,
}

#[derive(Debug, Clone)]
pub struct FieldMapping {
    /// The field name in the order view.
    pub name: String,
    /// The export column (or JSON key).
    pub column: String,
    pub kind: FieldKind,
    pub case: Case,
    /// chrono format for dates/datetimes in the export; RFC 3339 / ISO when absent.
    pub format: Option<String>,
    /// The vendor's zone ([`Mapping::timezone`]) for a datetime format with
    /// no offset in it; the config refuses such a format without one.
    pub zone: Option<chrono_tz::Tz>,
    /// How the export writes numbers (the vendor's `mapping.decimal` and
    /// `mapping.thousands`): what it does not settle is a row error.
    pub number: crate::number::NumberFormat,
    pub tolerance: crate::number::Decimal,
    pub relative_tolerance: crate::number::Decimal,
    pub tolerance_secs: i64,
}

#[derive(Debug, Clone)]
pub struct GuardSettings {
    pub min_rows: u64,
    pub max_row_drop_pct: f64,
    pub max_drift_pct: f64,
    pub max_fixes: u64,
    /// What an export status word outside the status map does to the key frame.
    pub unknown_status: UnknownStatus,
}

/// `guard.unknown_status`: a status word we cannot map means we cannot say
/// what the vendor claims for that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownStatus {
    /// The guard refuses the key frame (the default).
    #[default]
    Refuse,
    /// The key frame is used to flag drifts, and fixes nothing.
    Flag,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            min_rows: 1,
            max_row_drop_pct: 20.0,
            max_drift_pct: 10.0,
            max_fixes: 10_000,
            unknown_status: UnknownStatus::Refuse,
        }
    }
}

/// Status words compare trimmed, lowercased, with runs of space/`_`/`-` as one space.
pub fn normalise_word(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c == '_' || c == '-')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

pub type StatusWords = HashMap<String, Status, foldhash::fast::FixedState>;

/// The exact-word lookup: the configured words plus the canonical names.
pub fn exact_words(configured: &[(String, Status)]) -> StatusWords {
    let mut m: StatusWords = Status::declared()
        .iter()
        .flat_map(|s| {
            [
                (s.as_str().to_string(), *s),
                (s.as_str().to_uppercase(), *s),
            ]
        })
        .collect();
    m.extend(configured.iter().cloned());
    m
}

#[cfg(test)]
impl FieldMapping {
    /// A field compared exactly, with no format, zone or tolerance: where
    /// tests start.
    pub(crate) fn plain(name: &str, kind: FieldKind) -> FieldMapping {
        FieldMapping {
            name: name.into(),
            column: name.into(),
            kind,
            case: Case::Preserve,
            format: None,
            zone: None,
            number: crate::number::NumberFormat::PLAIN,
            tolerance: crate::number::Decimal::ZERO,
            relative_tolerance: crate::number::Decimal::ZERO,
            tolerance_secs: 0,
        }
    }
}
