//! The order view as a pure function of the delta log.
//!
//! Deltas are applied in vendor event-time order (ties broken by offset), so a
//! late email carrying an older event sorts before the newer one and can never
//! move an order back. A `reconcile` delta is a key frame: it replaces the whole
//! state as of its event time, superseding every delta that sorts before it.
//!
//! This module does no IO: `store` loads deltas and saves states, `rebuild`
//! and the incremental path both go through [`fold`]/[`apply`], so they cannot
//! disagree.

use crate::model::{Delta, DeltaSource, OrderState};

/// The key deltas are applied in.
pub fn sort_key(d: &Delta) -> (chrono::DateTime<chrono::Utc>, i64) {
    (d.draft.event_time, d.offset)
}

/// True when `d` sorts after everything already folded into `state`, so it can
/// be applied incrementally instead of refolding the order's history.
pub fn applies_after(state: &OrderState, d: &Delta) -> bool {
    sort_key(d) > (state.event_time, state.last_offset)
}

/// Applies one delta on top of a state (or starts a new one). The caller
/// guarantees event order; see [`applies_after`].
pub fn apply(state: Option<OrderState>, d: &Delta) -> OrderState {
    let mut s = state.unwrap_or_else(|| OrderState {
        vendor: d.draft.vendor.clone(),
        order_ref: d.draft.order_ref.clone(),
        status: None,
        vendor_status: None,
        fields: Default::default(),
        event_time: d.draft.event_time,
        last_offset: d.offset,
        updated_at: d.recorded_at,
        delta_count: 0,
    });
    if d.source == DeltaSource::Reconcile {
        s.status = d.draft.status;
        s.vendor_status = d.draft.vendor_status.clone();
        s.fields = d.draft.fields.clone();
    } else {
        if d.draft.status.is_some() {
            s.status = d.draft.status;
            s.vendor_status = d.draft.vendor_status.clone();
        }
        for (k, v) in &d.draft.fields {
            if v.is_null() {
                s.fields.remove(k);
            } else {
                s.fields.insert(k.clone(), v.clone());
            }
        }
    }
    s.event_time = d.draft.event_time;
    s.last_offset = d.offset;
    s.updated_at = s.updated_at.max(d.recorded_at);
    s.delta_count += 1;
    s
}

/// Folds a set of deltas of one order, in any order, into its state.
pub fn fold(deltas: &mut [Delta]) -> Option<OrderState> {
    deltas.sort_by_key(sort_key);
    deltas.iter().fold(None, |s, d| Some(apply(s, d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeltaDraft, Status, TimeSource};
    use chrono::{TimeZone, Utc};

    fn delta(offset: i64, hour: u32, status: Status, source: DeltaSource) -> Delta {
        Delta {
            offset,
            source,
            draft: DeltaDraft {
                vendor: "v".into(),
                order_ref: "1".into(),
                status: Some(status),
                vendor_status: Some(status.to_string()),
                fields: [(format!("f{offset}"), serde_json::json!(offset))]
                    .into_iter()
                    .collect(),
                event_time: Utc.with_ymd_and_hms(2026, 1, 1, hour, 0, 0).unwrap(),
                time_source: TimeSource::Vendor,
            },
            recorded_at: Utc
                .with_ymd_and_hms(2026, 1, 2, 0, 0, offset as u32)
                .unwrap(),
            message: None,
            parser: None,
            parser_version: None,
        }
    }

    #[test]
    fn late_older_delta_never_moves_order_back() {
        let newer = delta(1, 12, Status::Completed, DeltaSource::Email);
        let older_arriving_late = delta(2, 9, Status::Scheduled, DeltaSource::Email);
        let s = fold(&mut [newer, older_arriving_late]).unwrap();
        assert_eq!(s.status, Some(Status::Completed));
        // Its fields still count: an older delta adds what it knows.
        assert!(s.fields.contains_key("f2"));
        assert_eq!(s.delta_count, 2);
    }

    #[test]
    fn every_arrival_order_gives_the_same_state() {
        let ds = vec![
            delta(1, 9, Status::Accepted, DeltaSource::Email),
            delta(2, 10, Status::Scheduled, DeltaSource::Email),
            delta(3, 11, Status::InProgress, DeltaSource::Email),
            delta(4, 12, Status::Completed, DeltaSource::Email),
        ];
        let expected = fold(&mut ds.clone()).unwrap();
        // All 24 permutations, applied incrementally the way `store` does it.
        let mut idx = [0usize, 1, 2, 3];
        let mut perms = vec![];
        permute(&mut idx, 0, &mut perms);
        for p in perms {
            let mut state: Option<OrderState> = None;
            let mut seen: Vec<Delta> = vec![];
            for &i in &p {
                let d = &ds[i];
                seen.push(d.clone());
                state = match state {
                    Some(s) if applies_after(&s, d) => Some(apply(Some(s), d)),
                    _ => fold(&mut seen.clone()),
                };
            }
            assert_eq!(state.as_ref(), Some(&expected), "order {p:?}");
        }
    }

    fn permute(a: &mut [usize; 4], k: usize, out: &mut Vec<[usize; 4]>) {
        if k == a.len() {
            out.push(*a);
            return;
        }
        for i in k..a.len() {
            a.swap(k, i);
            permute(a, k + 1, out);
            a.swap(k, i);
        }
    }

    #[test]
    fn reconcile_key_frame_supersedes_earlier_and_yields_to_later() {
        let early_email = delta(1, 9, Status::Scheduled, DeltaSource::Email);
        let key_frame = delta(2, 10, Status::OnHold, DeltaSource::Reconcile);
        let late_but_older_email = delta(3, 8, Status::InProgress, DeltaSource::Email);
        let s = fold(&mut [
            early_email.clone(),
            key_frame.clone(),
            late_but_older_email.clone(),
        ])
        .unwrap();
        assert_eq!(s.status, Some(Status::OnHold));
        // The key frame replaced the fields that came before it.
        assert_eq!(s.fields.keys().collect::<Vec<_>>(), vec!["f2"]);

        let newer_email = delta(4, 11, Status::Completed, DeltaSource::Email);
        let s = fold(&mut [early_email, key_frame, late_but_older_email, newer_email]).unwrap();
        assert_eq!(s.status, Some(Status::Completed));
    }
}
