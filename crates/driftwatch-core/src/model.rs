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
/// The declaration order is the usual forward progress of an order; it is used
/// only for explanation (a vendor "moving backwards"), never to decide which
/// delta wins: vendor event time decides that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ordered,
    Accepted,
    Scheduled,
    InProgress,
    OnHold,
    Completed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Ordered,
        Status::Accepted,
        Status::Scheduled,
        Status::InProgress,
        Status::OnHold,
        Status::Completed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ordered => "ordered",
            Status::Accepted => "accepted",
            Status::Scheduled => "scheduled",
            Status::InProgress => "in_progress",
            Status::OnHold => "on_hold",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown status `{0}` (expected one of: ordered, accepted, scheduled, in_progress, on_hold, completed, cancelled)"
)]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
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
