//! What counts as known at a key frame: the cutoff, and the evidence
//! (deltas) attribution and fixes are judged on. Plain types; the store
//! fills them.

use chrono::{DateTime, Utc};

use crate::model::Delta;

/// Which deltas count as known at a key frame's `as_of`: recorded by then, or
/// recorded within the grace window with an event time before it (mail in
/// transit when the vendor cut the export).
#[derive(Debug, Clone, Copy)]
pub struct Cutoff {
    pub as_of: DateTime<Utc>,
    pub grace_end: DateTime<Utc>,
}

impl Cutoff {
    /// The cutoff of a key frame cut at `as_of`, with the vendor's grace window.
    pub fn new(as_of: DateTime<Utc>, grace: std::time::Duration) -> Cutoff {
        Cutoff {
            as_of,
            grace_end: as_of
                + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero()),
        }
    }

    pub fn knows(&self, d: &Delta) -> bool {
        d.recorded_at <= self.as_of
            || (d.recorded_at <= self.grace_end && d.draft.event_time <= self.as_of)
    }
}

/// A delta with whether a reparse superseded it.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub delta: Delta,
    pub superseded: bool,
}

/// Evidence for unit tests: one email delta setting `status`.
#[cfg(test)]
pub(crate) fn test_evidence(
    offset: i64,
    order_ref: &str,
    status: crate::model::Status,
    event_time: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
) -> Evidence {
    use crate::model::{DeltaDraft, DeltaSource, TimeSource};
    Evidence {
        delta: Delta {
            offset,
            source: DeltaSource::Email,
            draft: DeltaDraft {
                vendor: "v".into(),
                order_ref: order_ref.into(),
                status: Some(status),
                vendor_status: None,
                fields: Default::default(),
                event_time,
                time_source: TimeSource::Vendor,
            },
            recorded_at,
            message: None,
            parser: None,
            parser_version: None,
        },
        superseded: false,
    }
}
