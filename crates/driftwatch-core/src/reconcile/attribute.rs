//! Attribution: the likely cause of each drift, from the evidence in the log.
//! Pure: the caller loads the order's deltas and the quarantined mail.

use chrono::{DateTime, Utc};

use super::cutoff::{Cutoff, Evidence};
use super::drift::{Cause, DriftKind};
use crate::model::Status;

/// True when the vendor's status is behind ours in the forward progress.
pub fn is_regression(local: Option<Status>, remote: Option<Status>) -> bool {
    match (local.and_then(Status::rank), remote.and_then(Status::rank)) {
        (Some(l), Some(r)) => r < l,
        _ => false,
    }
}

/// What the drift is about, to look for in the deltas.
pub enum Target<'a> {
    /// The vendor's status (status mismatch, missing local).
    Status(Option<Status>),
    /// A field: `carries` says whether a delta's fields hold the vendor's value.
    Field(&'a dyn Fn(&crate::model::Fields) -> Option<bool>),
}

pub struct Facts<'a> {
    pub kind: DriftKind,
    pub local_status: Option<Status>,
    pub target: Target<'a>,
    pub evidence: &'a [Evidence],
    /// Dates of quarantined messages whose subject names this order.
    pub quarantined: &'a [DateTime<Utc>],
    pub cut: Cutoff,
}

/// The rules, in order:
/// 1. `parse_error`: a delta of the order superseded by a reparse, or a
///    quarantined message naming it, dated after the last transition we knew
///    and no later than `as_of`.
/// 2. `vendor_regression`: the vendor's status is behind ours.
/// 3. The latest delta (by event time, up to `as_of`) about the drifted
///    status or field: none, or one carrying something else → `missed_email`;
///    one carrying the vendor's value but recorded too late → `late_email`;
///    one carrying it and known in time → `unexplained` (we were told, and
///    still disagree).
pub fn attribute(f: &Facts<'_>) -> Cause {
    if f.kind == DriftKind::MissingRemote {
        return Cause::Unexplained;
    }
    let live = || {
        f.evidence
            .iter()
            .filter(|e| !e.superseded && e.delta.draft.event_time <= f.cut.as_of)
    };
    // Whether a delta is about what drifted: its status, or the field.
    let about = |e: &Evidence| match &f.target {
        Target::Status(_) => f.kind == DriftKind::MissingLocal || e.delta.draft.status.is_some(),
        Target::Field(carries) => carries(&e.delta.draft.fields).is_some(),
    };
    let last_known = live()
        .filter(|e| f.cut.knows(&e.delta) && about(e))
        .map(|e| e.delta.draft.event_time)
        .max();
    // Evidence of a failed parse counts only if it is about what happened
    // after the last thing we knew, up to the key frame.
    let recent = |t: DateTime<Utc>| t <= f.cut.as_of && last_known.is_none_or(|k| t >= k);
    if f.evidence
        .iter()
        .any(|e| e.superseded && recent(e.delta.draft.event_time))
        || f.quarantined.iter().any(|q| recent(*q))
    {
        return Cause::ParseError;
    }
    let latest = match &f.target {
        Target::Status(remote) => {
            if f.kind == DriftKind::StatusMismatch && is_regression(f.local_status, *remote) {
                return Cause::VendorRegression;
            }
            live()
                .filter(|e| e.delta.draft.status.is_some() || f.kind == DriftKind::MissingLocal)
                .max_by_key(|e| (e.delta.draft.event_time, e.delta.offset))
                .map(|e| {
                    let carries =
                        f.kind == DriftKind::MissingLocal || e.delta.draft.status == *remote;
                    (carries, f.cut.knows(&e.delta))
                })
        }
        Target::Field(carries) => live()
            .filter_map(|e| carries(&e.delta.draft.fields).map(|c| (e, c)))
            .max_by_key(|(e, _)| (e.delta.draft.event_time, e.delta.offset))
            .map(|(e, c)| (c, f.cut.knows(&e.delta))),
    };
    match latest {
        None | Some((false, _)) => Cause::MissedEmail,
        Some((true, false)) => Cause::LateEmail,
        Some((true, true)) => Cause::Unexplained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    fn ev(offset: i64, status: Status, event: i64, recorded: i64) -> Evidence {
        crate::reconcile::cutoff::test_evidence(offset, "1", status, t(event), t(recorded))
    }

    fn cut() -> Cutoff {
        Cutoff {
            as_of: t(10),
            grace_end: t(11),
        }
    }

    fn status_facts<'a>(ev: &'a [Evidence], local: Status, remote: Status) -> Facts<'a> {
        Facts {
            kind: DriftKind::StatusMismatch,
            local_status: Some(local),
            target: Target::Status(Some(remote)),
            evidence: ev,
            quarantined: &[],
            cut: cut(),
        }
    }

    #[test]
    fn causes() {
        let accepted = ev(1, Status::Accepted, 1, 1);
        // Never told of `scheduled`.
        let e = [accepted.clone()];
        assert_eq!(
            attribute(&status_facts(&e, Status::Accepted, Status::Scheduled)),
            Cause::MissedEmail
        );
        // Told, but after the grace window.
        let e = [accepted.clone(), ev(2, Status::Scheduled, 5, 12)];
        assert_eq!(
            attribute(&status_facts(&e, Status::Accepted, Status::Scheduled)),
            Cause::LateEmail
        );
        // Vendor went backwards.
        let e = [accepted.clone(), ev(2, Status::Scheduled, 5, 6)];
        assert_eq!(
            attribute(&status_facts(&e, Status::Scheduled, Status::Accepted)),
            Cause::VendorRegression
        );
        // A quarantined mail about it after what we knew.
        let q = [t(4)];
        let e = [accepted.clone()];
        let mut f = status_facts(&e, Status::Accepted, Status::Scheduled);
        f.quarantined = &q;
        assert_eq!(attribute(&f), Cause::ParseError);
        // An old quarantined mail, before what we knew, is not the reason.
        let q = [t(0)];
        f.quarantined = &q;
        assert_eq!(attribute(&f), Cause::MissedEmail);
    }
}
