//! The small types that pass between pipeline stages.
//!
//! Each stage talks to the next through one of these, never through tables it
//! happens to know: `ingest` hands `RawMessage`s to the pipeline, `parse`
//! returns `DeltaDraft`s, `store` returns `Delta`s and `OrderState`s.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Canonical order status, shared by every vendor so reports and reconcile can
/// compare vendors. Vendor words map onto these through each parser's status map.
///
/// The seven built-in statuses always exist; a deployment declares more
/// (`[[status]]` in the config: `shipped`, `delivered`, ...) with
/// [`declare_statuses`] before anything reads a status. A `Status` is a small
/// index into that process-wide set, so it stays `Copy` and its name is
/// readable anywhere (store, API, report) without passing the set around;
/// the set only grows, and a name declared twice must be declared the same
/// way. Stored statuses are text, so the index never leaves the process.
///
/// `Ord` is declaration order (the built-ins first), used only for stable
/// listings; the forward progress that attribution reads is [`Status::rank`],
/// and which delta wins is decided by vendor event time, never by status.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Status(u8);

/// A status a deployment adds to the built-ins, with the properties the
/// built-ins have fixed (config `[[status]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusDecl {
    /// Lower-case word, `a-z`, digits and `_` (`shipped`, `out_for_delivery`).
    pub name: String,
    /// Its place in the forward progress: right after this status (e.g.
    /// `shipped` after `in_progress`). `None`: a side state like `on_hold`,
    /// from which a move is never a regression.
    pub after: Option<String>,
    /// The order needs nothing more from the vendor (like `completed` and
    /// `cancelled`): not counted open, never stuck.
    pub terminal: bool,
}

/// Why a `[[status]]` declaration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error(
        "status `{0}` must be lower case letters, digits and `_`, starting with a letter, at most 40 characters"
    )]
    BadName(String),
    #[error("status `{name}`: `after = \"{after}\"` names no status declared before it")]
    UnknownAfter { name: String, after: String },
    #[error("status `{name}`: `after = \"{after}\"` is a side state (not in the forward progress)")]
    SideAnchor { name: String, after: String },
    #[error(
        "status `{name}`: `{other}` already comes right after `{after}`; put `{name}` after `{other}`"
    )]
    AnchorTaken {
        name: String,
        after: String,
        other: String,
    },
    #[error(
        "status `{0}` is already declared with different properties (the built-in seven cannot be redeclared)"
    )]
    Redeclared(String),
    #[error("too many statuses (at most {MAX_STATUSES})")]
    TooMany,
}

const MAX_STATUSES: usize = 256;

/// A declared status's properties (the built-ins are the first seven).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Declared {
    name: &'static str,
    after: Option<Status>,
    terminal: bool,
}

/// The process-wide set: built-ins are answered without it; extra names are
/// leaked once each (bounded by the declared set).
struct Registry {
    extra: Vec<Declared>,
    /// Forward progress, computed on each declaration.
    progress: Vec<Status>,
}

static REGISTRY: std::sync::RwLock<Registry> = std::sync::RwLock::new(Registry {
    extra: Vec::new(),
    progress: Vec::new(),
});

fn registry() -> std::sync::RwLockReadGuard<'static, Registry> {
    REGISTRY
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(non_upper_case_globals)]
impl Status {
    pub const Ordered: Status = Status(0);
    pub const Accepted: Status = Status(1);
    pub const Scheduled: Status = Status(2);
    pub const InProgress: Status = Status(3);
    pub const OnHold: Status = Status(4);
    pub const Completed: Status = Status(5);
    pub const Cancelled: Status = Status(6);

    /// The built-in statuses, the default set.
    pub const ALL: [Status; 7] = [
        Status::Ordered,
        Status::Accepted,
        Status::Scheduled,
        Status::InProgress,
        Status::OnHold,
        Status::Completed,
        Status::Cancelled,
    ];

    const BUILTIN: [&'static str; 7] = [
        "ordered",
        "accepted",
        "scheduled",
        "in_progress",
        "on_hold",
        "completed",
        "cancelled",
    ];

    /// Built-in forward progress; `on_hold` and `cancelled` are side exits.
    const BUILTIN_PROGRESS: [Status; 5] = [
        Status::Ordered,
        Status::Accepted,
        Status::Scheduled,
        Status::InProgress,
        Status::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        let i = usize::from(self.0);
        match Self::BUILTIN.get(i) {
            Some(s) => s,
            None => registry()
                .extra
                .get(i - Self::BUILTIN.len())
                .map_or("?", |d| d.name),
        }
    }

    /// Every declared status: the built-ins, then the deployment's in
    /// declaration order.
    pub fn declared() -> Vec<Status> {
        let n = Self::BUILTIN.len() + registry().extra.len();
        (0..n)
            .filter_map(|i| u8::try_from(i).ok().map(Status))
            .collect()
    }

    /// The order needs nothing more from the vendor: `completed`,
    /// `cancelled` and every declared `terminal = true` status.
    pub fn is_terminal(self) -> bool {
        match self {
            Status::Completed | Status::Cancelled => true,
            s if s.0 < 7 => false,
            s => registry()
                .extra
                .get(usize::from(s.0) - Self::BUILTIN.len())
                .is_some_and(|d| d.terminal),
        }
    }

    /// Every terminal status, for queries about open orders.
    pub fn terminal() -> Vec<Status> {
        Self::declared()
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect()
    }

    /// Position in the usual forward progress (`ordered` first); `None` for
    /// side states (`on_hold`, `cancelled`, a declared status without
    /// `after`), from which a move is never a regression.
    pub fn rank(self) -> Option<usize> {
        if usize::from(self.0) < Self::BUILTIN.len() && registry().extra.is_empty() {
            return Self::BUILTIN_PROGRESS.iter().position(|s| *s == self);
        }
        registry().progress.iter().position(|s| *s == self)
    }
}

/// Adds a deployment's statuses to the process-wide set (config load).
/// Declaring the same set again is a no-op; a name already declared with
/// other properties is refused, and so is an `after` naming no status.
pub fn declare_statuses(decls: &[StatusDecl]) -> Result<(), StatusError> {
    let mut reg = REGISTRY
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for d in decls {
        let ok = d.name.len() <= 40
            && d.name.starts_with(|c: char| c.is_ascii_lowercase())
            && d.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(StatusError::BadName(d.name.clone()));
        }
        let find = |reg: &Registry, name: &str| -> Option<Status> {
            Status::BUILTIN
                .iter()
                .position(|b| *b == name)
                .or_else(|| {
                    reg.extra
                        .iter()
                        .position(|e| e.name == name)
                        .map(|i| i + Status::BUILTIN.len())
                })
                .and_then(|i| u8::try_from(i).ok().map(Status))
        };
        let after = match &d.after {
            Some(a) => {
                let anchor = find(&reg, a).ok_or_else(|| StatusError::UnknownAfter {
                    name: d.name.clone(),
                    after: a.clone(),
                })?;
                let in_chain = Status::BUILTIN_PROGRESS.contains(&anchor)
                    || reg
                        .extra
                        .iter()
                        .any(|e| e.name == a.as_str() && e.after.is_some());
                if !in_chain {
                    return Err(StatusError::SideAnchor {
                        name: d.name.clone(),
                        after: a.clone(),
                    });
                }
                let taken = reg
                    .extra
                    .iter()
                    .find(|e| e.after == Some(anchor) && e.name != d.name.as_str());
                if let Some(other) = taken {
                    return Err(StatusError::AnchorTaken {
                        name: d.name.clone(),
                        after: a.clone(),
                        other: other.name.to_string(),
                    });
                }
                Some(anchor)
            }
            None => None,
        };
        match find(&reg, &d.name) {
            Some(s) if usize::from(s.0) < Status::BUILTIN.len() => {
                return Err(StatusError::Redeclared(d.name.clone()));
            }
            Some(s) => {
                let e = &reg.extra[usize::from(s.0) - Status::BUILTIN.len()];
                if e.after != after || e.terminal != d.terminal {
                    return Err(StatusError::Redeclared(d.name.clone()));
                }
            }
            None => {
                if Status::BUILTIN.len() + reg.extra.len() >= MAX_STATUSES {
                    return Err(StatusError::TooMany);
                }
                let name: &'static str = Box::leak(d.name.clone().into_boxed_str());
                reg.extra.push(Declared {
                    name,
                    after,
                    terminal: d.terminal,
                });
            }
        }
    }
    // Forward progress: the built-in chain, each declared status placed
    // right after its `after` (checked above to be in the chain and taken by
    // no other status).
    let mut progress = Status::BUILTIN_PROGRESS.to_vec();
    for (i, e) in reg.extra.iter().enumerate() {
        if let (Some(a), Ok(idx)) = (e.after, u8::try_from(i + Status::BUILTIN.len()))
            && let Some(at) = progress.iter().position(|p| *p == a)
        {
            progress.insert(at + 1, Status(idx));
        }
    }
    reg.progress = progress;
    Ok(())
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = std::borrow::Cow::<'de, str>::deserialize(d)?;
        word.parse().map_err(serde::de::Error::custom)
    }
}

/// A word that is not a declared status.
#[derive(Debug)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Status::declared().into_iter().map(Status::as_str).collect();
        write!(
            f,
            "unknown status `{}` (expected one of: {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownStatus {}

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(i) = Status::BUILTIN.iter().position(|b| *b == s) {
            return Ok(Status::ALL[i]);
        }
        registry()
            .extra
            .iter()
            .position(|e| e.name == s)
            .and_then(|i| u8::try_from(i + Status::BUILTIN.len()).ok())
            .map(Status)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// What happened to an archived message. Every fetched message ends in exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A parser produced its deltas.
    Parsed,
    /// Kept with a reason for a human: no vendor matched, extraction failed, a sender check failed.
    Quarantined,
    /// Dropped by a configured rule (e.g. an internal sender); kept raw all the same.
    Ignored,
    /// Over the size limit: only its header was fetched and archived.
    Skipped,
}

impl Disposition {
    pub const ALL: [Disposition; 4] = [
        Disposition::Parsed,
        Disposition::Quarantined,
        Disposition::Ignored,
        Disposition::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Parsed => "parsed",
            Disposition::Quarantined => "quarantined",
            Disposition::Ignored => "ignored",
            Disposition::Skipped => "skipped",
        }
    }
}

impl FromStr for Disposition {
    type Err = UnknownDisposition;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Disposition::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDisposition(s.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown disposition `{0}` (expected one of: parsed, quarantined, ignored, skipped)")]
pub struct UnknownDisposition(pub String);

/// Where a delta came from. `reconcile` deltas are key frames: they replace the
/// whole state of the order as of their event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaSource {
    Email,
    Webhook,
    Reconcile,
    Manual,
}

impl DeltaSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DeltaSource::Email => "email",
            DeltaSource::Webhook => "webhook",
            DeltaSource::Reconcile => "reconcile",
            DeltaSource::Manual => "manual",
        }
    }
}

impl FromStr for DeltaSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "email" => Ok(DeltaSource::Email),
            "webhook" => Ok(DeltaSource::Webhook),
            "reconcile" => Ok(DeltaSource::Reconcile),
            "manual" => Ok(DeltaSource::Manual),
            other => Err(format!("unknown delta source `{other}`")),
        }
    }
}

/// How trustworthy a delta's event time is: the vendor's own timestamp beats
/// the Date header, which beats the time we happened to receive the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    Vendor,
    DateHeader,
    Received,
}

impl TimeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::Vendor => "vendor",
            TimeSource::DateHeader => "date_header",
            TimeSource::Received => "received",
        }
    }
}

impl FromStr for TimeSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vendor" => Ok(TimeSource::Vendor),
            "date_header" => Ok(TimeSource::DateHeader),
            "received" => Ok(TimeSource::Received),
            other => Err(format!("unknown time source `{other}`")),
        }
    }
}

/// Named order fields. A BTreeMap so that serialised views compare equal
/// byte for byte (`rebuild` must give the same rows).
pub type Fields = BTreeMap<String, serde_json::Value>;

/// One observation about one order, as a parser or reconcile produces it,
/// before the log gives it an offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaDraft {
    pub vendor: String,
    pub order_ref: String,
    pub status: Option<Status>,
    /// The vendor's own word for the status, kept for explanation and reports.
    pub vendor_status: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: Fields,
    pub event_time: DateTime<Utc>,
    pub time_source: TimeSource,
}

/// A delta in the log. Its offset is its identity and the cursor readers resume from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delta {
    pub offset: i64,
    pub source: DeltaSource,
    #[serde(flatten)]
    pub draft: DeltaDraft,
    pub recorded_at: DateTime<Utc>,
    /// The archived message this delta was parsed from, if any.
    pub message: Option<i64>,
    pub parser: Option<String>,
    pub parser_version: Option<i64>,
}

impl Delta {
    /// A delta from a channel without a message (reconcile, a replay), not
    /// yet in the log: `offset` is 0 until the store appends it.
    pub fn unlogged(source: DeltaSource, draft: DeltaDraft, recorded_at: DateTime<Utc>) -> Delta {
        Delta {
            offset: 0,
            source,
            draft,
            recorded_at,
            message: None,
            parser: None,
            parser_version: None,
        }
    }
}

/// The local view of one order: a pure function of its deltas (see `view`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderState {
    pub vendor: String,
    pub order_ref: String,
    pub status: Option<Status>,
    pub vendor_status: Option<String>,
    pub fields: Fields,
    /// Event time of the latest delta in event order.
    pub event_time: DateTime<Utc>,
    /// Offset of that delta: ties on event time are broken by offset.
    pub last_offset: i64,
    /// The latest recorded_at among the applied deltas.
    pub updated_at: DateTime<Utc>,
    pub delta_count: i64,
}

/// A message as fetched from a mail source, before anything is decided about it.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Where it was found, unique within the source+folder: `uidvalidity/uid`
    /// for IMAP, the unique file name for Maildir.
    pub location: String,
    /// IMAP UID (0 for sources without UIDs); the checkpoint advances to the
    /// highest UID of a committed batch.
    pub uid: u32,
    pub body: MessageBody,
    /// The server's arrival time (IMAP INTERNALDATE, Maildir mtime).
    pub internal_date: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum MessageBody {
    /// The whole message.
    Full(Vec<u8>),
    /// Over the size limit: only the header section was fetched.
    TooLarge { header: Vec<u8>, size: u64 },
}

/// What a person did in the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    AcknowledgeDrift,
    MuteSilence,
    ReleaseMessage,
}

impl ActionKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionKind::AcknowledgeDrift => "acknowledge_drift",
            ActionKind::MuteSilence => "mute_silence",
            ActionKind::ReleaseMessage => "release_message",
        }
    }
}

/// One recorded dashboard action: who, when, what, about which drift,
/// vendor or message.
#[derive(Debug, Clone)]
pub struct ActionRow {
    pub id: i64,
    pub acted_at: DateTime<Utc>,
    pub actor: String,
    pub kind: ActionKind,
    pub vendor: Option<String>,
    pub order_ref: Option<String>,
    pub drift: Option<i64>,
    pub message: Option<i64>,
    pub note: Option<String>,
    pub mute_until: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, after: Option<&str>, terminal: bool) -> StatusDecl {
        StatusDecl {
            name: name.into(),
            after: after.map(Into::into),
            terminal,
        }
    }

    #[test]
    fn built_in_statuses_keep_their_words_progress_and_terminal_flags() {
        let words: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            words,
            [
                "ordered",
                "accepted",
                "scheduled",
                "in_progress",
                "on_hold",
                "completed",
                "cancelled"
            ]
        );
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert!(Status::Completed.is_terminal() && Status::Cancelled.is_terminal());
        assert!(!Status::OnHold.is_terminal() && !Status::InProgress.is_terminal());
        assert!(Status::Ordered.rank() < Status::Completed.rank());
        assert_eq!(Status::OnHold.rank(), None);
        assert_eq!(Status::Cancelled.rank(), None);
    }

    #[test]
    fn a_declared_status_sits_in_the_forward_progress_right_after_its_anchor() {
        declare_statuses(&[
            decl("m_shipped", Some("in_progress"), false),
            decl("m_delivered", Some("m_shipped"), true),
            decl("m_delayed", None, false),
        ])
        .unwrap();
        let st = |w: &str| w.parse::<Status>().unwrap();
        let (shipped, delivered) = (st("m_shipped"), st("m_delivered"));
        assert!(Status::InProgress.rank() < shipped.rank());
        assert!(shipped.rank() < delivered.rank());
        assert!(delivered.rank() < Status::Completed.rank());
        assert_eq!(st("m_delayed").rank(), None, "no `after`: a side state");
        assert!(delivered.is_terminal() && !shipped.is_terminal());
        assert_eq!(shipped.as_str(), "m_shipped");
        assert_eq!(
            serde_json::to_string(&delivered).unwrap(),
            "\"m_delivered\""
        );
        // The same declaration again (a second App in one process) is fine.
        declare_statuses(&[decl("m_shipped", Some("in_progress"), false)]).unwrap();
    }

    #[test]
    fn an_undeclared_status_word_is_refused() {
        let e = "m_teleported".parse::<Status>().unwrap_err();
        assert!(
            e.to_string().contains("unknown status `m_teleported`"),
            "{e}"
        );
        assert!(serde_json::from_str::<Status>("\"m_teleported\"").is_err());
        assert!(matches!(
            declare_statuses(&[decl("Bad Word", None, false)]),
            Err(StatusError::BadName(_))
        ));
        assert!(matches!(
            declare_statuses(&[decl("m_x", Some("m_nowhere"), false)]),
            Err(StatusError::UnknownAfter { .. })
        ));
    }
}
