//! Reconcile planning: everything a run decides, as pure functions.
//!
//! The binary reads (the view as of `as_of`, the export's rows, the evidence
//! for drifted orders) and writes the result once; in between, [`Differ`]
//! compares the two sides and [`plan`] applies the cutoff, attribution, the
//! fix rules and the guard, returning a [`RunPlan`]. The planner is split in
//! two steps only because evidence is read for drifted orders alone (a
//! million-order view needs none for the orders that agree).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;

use chrono::{DateTime, Utc};
use hashbrown::hash_table::HashTable;

use super::attribute::{self, Facts, Target};
use super::cutoff::{Cutoff, Evidence};
use super::drift::{Cause, Drift, DriftKind, Outcome};
use super::guard::{self, GuardInput};
use super::mapping::{self, Norm, RemoteOrder};
use super::settings::{Policy, VendorRules};
use crate::model::{DeltaDraft, Fields, Status, TimeSource};
use crate::view;

/// What one run counted: the sides' sizes, drifts by kind, and how much of
/// what the key frame changed the email channel had already told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub orders_remote: i64,
    pub orders_local: i64,
    pub missing_local: i64,
    pub missing_remote: i64,
    pub status_mismatch: i64,
    pub field_mismatch: i64,
    pub key_frame_changes: i64,
    pub email_told: i64,
}

/// Counts by kind and cause, for the summary.
pub type CauseCounts = BTreeMap<(DriftKind, Cause), u64>;

/// Open drifts by (order, kind, field or ""), with how many key frames in a
/// row have seen them.
pub type OpenDrifts = HashMap<(String, DriftKind, String), i64>;

/// Our side of the diff, for a million orders in a handful of allocations:
/// keys packed in one string, entries and normalised fields in flat vectors.
/// A map of boxed keys spent most of the diff in malloc and in following a
/// pointer per lookup.
///
/// The view is read in key order, so the entries start as a sorted run and
/// need no hash table while lookups follow that order too (exports usually
/// are in key order): a key is either at the hinted slot or, when the vendor
/// lists an order we lack, between the hinted slot and the one before it.
/// A hash index is built only for what breaks the order: entries added out
/// of order (orders refolded after the scan), and the whole run once lookups
/// stop following it. Inserting a million keys into a hash table was the
/// largest single cost of reading the view.
struct LocalSide {
    keys: String,
    /// u32 offsets and indexes: 4 bytes per order rather than 8. Past 4 GiB
    /// of keys or 4G orders, `insert` refuses.
    key_ends: Vec<u32>,
    entries: Vec<LocalEntry>,
    /// `width` normalised fields per entry, in the order of `mapping.fields`.
    fields: Vec<Option<Norm>>,
    width: usize,
    /// Entries `[0, sorted)` are in strictly increasing key order.
    sorted: usize,
    /// Entries past the sorted run; and the run too once `run_indexed`.
    index: HashTable<u32>,
    run_indexed: bool,
    /// Binary searches of the run so far: past [`MAX_SEARCHES`] it is indexed.
    searches: u32,
    /// Keys come from our view and the vendor's export, not from an
    /// anonymous attacker: a fast fixed hash buys speed and loses nothing.
    hasher: foldhash::fast::FixedState,
}

/// Out-of-order lookups by binary search before the sorted run is hashed:
/// a few are cheaper than hashing a million keys, many are not.
const MAX_SEARCHES: u32 = 4096;

/// Our side of one order.
struct LocalEntry {
    status: Option<Status>,
    event_time: DateTime<Utc>,
    seen: bool,
}

impl LocalSide {
    fn with_capacity(orders: usize, width: usize) -> LocalSide {
        LocalSide {
            keys: String::with_capacity(orders * 12),
            key_ends: Vec::with_capacity(orders),
            entries: Vec::with_capacity(orders),
            fields: Vec::with_capacity(orders * width),
            width,
            sorted: 0,
            index: HashTable::new(),
            run_indexed: false,
            searches: 0,
            hasher: foldhash::fast::FixedState::default(),
        }
    }

    fn key(&self, i: usize) -> &str {
        key_at(&self.keys, &self.key_ends, i)
    }

    fn fields(&self, i: usize) -> &[Option<Norm>] {
        &self.fields[i * self.width..(i + 1) * self.width]
    }

    /// `hint` is where the caller expects the key: one past the last match.
    pub(crate) fn find(&mut self, key: &str, hint: usize) -> Option<usize> {
        if hint < self.entries.len() && self.key(hint) == key {
            return Some(hint);
        }
        if !self.run_indexed {
            let after_hint = hint <= self.sorted && (hint == 0 || self.key(hint - 1) < key);
            if after_hint && hint < self.sorted && self.key(hint) < key {
                // Ahead of the hint, as when an export in key order skips
                // orders of ours (they are `missing_remote`): gallop forward.
                // Not counted as out of order: a few skipped orders must
                // not make a sorted export hash a million keys.
                let i = self.gallop(key, hint + 1);
                if i < self.sorted && self.key(i) == key {
                    return Some(i);
                }
            } else if !after_hint {
                // Behind the hint, or the hint is past the run: out of order.
                self.searches += 1;
                if self.searches > MAX_SEARCHES {
                    self.index_run();
                    return self.find_hashed(key);
                }
                let i = self.lower_bound(key, 0, self.sorted);
                if i < self.sorted && self.key(i) == key {
                    return Some(i);
                }
            }
        }
        self.find_hashed(key)
    }

    /// The first slot of the run at or after `from` whose key is not below
    /// `key`, probing 1, 2, 4, … slots ahead first: O(log gap), so a run of
    /// lookups in key order costs about what the hint alone would.
    fn gallop(&self, key: &str, from: usize) -> usize {
        let (mut lo, mut step) = (from, 1);
        while lo + step <= self.sorted && self.key(lo + step - 1) < key {
            lo += step;
            step *= 2;
        }
        self.lower_bound(key, lo, (lo + step).min(self.sorted))
    }

    /// The first slot in `[lo, hi)` of the run whose key is not below `key`
    /// (`hi` when none is).
    fn lower_bound(&self, key: &str, mut lo: usize, mut hi: usize) -> usize {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn find_hashed(&self, key: &str) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let (keys, ends) = (&self.keys, &self.key_ends);
        self.index
            .find(self.hasher.hash_one(key), |&i| {
                key_at(keys, ends, i as usize) == key
            })
            .map(|&i| i as usize)
    }

    /// Hashes the sorted run, for lookups that do not follow its order.
    fn index_run(&mut self) {
        let LocalSide {
            keys,
            key_ends,
            index,
            hasher,
            sorted,
            ..
        } = self;
        index.reserve(*sorted, |&i| {
            hasher.hash_one(key_at(keys, key_ends, i as usize))
        });
        for i in 0..*sorted {
            let h = hasher.hash_one(key_at(keys, key_ends, i));
            index.insert_unique(h, i as u32, |&j| {
                hasher.hash_one(key_at(keys, key_ends, j as usize))
            });
        }
        self.run_indexed = true;
    }

    /// Adds an order; `fields` appends its normalised fields. The view holds
    /// each key once, so a repeat replaces.
    fn insert<E: serde::de::Error>(
        &mut self,
        key: &str,
        entry: LocalEntry,
        fields: impl FnOnce(&mut Vec<Option<Norm>>) -> Result<(), E>,
    ) -> Result<(), E> {
        let len = self.entries.len();
        let extends_run = self.sorted == len && (len == 0 || self.key(len - 1) < key);
        if !extends_run && let Some(i) = self.find(key, len) {
            let mut new = Vec::with_capacity(self.width);
            fields(&mut new)?;
            self.fields
                .splice(i * self.width..(i + 1) * self.width, new);
            self.entries[i] = entry;
            return Ok(());
        }
        let too_many = || E::custom("over 4 GiB of order keys or 4G orders in one diff");
        let n = u32::try_from(len).map_err(|_| too_many())?;
        let end = u32::try_from(self.keys.len() + key.len()).map_err(|_| too_many())?;
        fields(&mut self.fields)?;
        self.keys.push_str(key);
        self.key_ends.push(end);
        self.entries.push(entry);
        if extends_run {
            self.sorted = len + 1;
        }
        if !extends_run || self.run_indexed {
            let LocalSide {
                keys,
                key_ends,
                index,
                hasher,
                ..
            } = self;
            let h = hasher.hash_one(key);
            index.insert_unique(h, n, |&j| {
                hasher.hash_one(key_at(keys, key_ends, j as usize))
            });
        }
        Ok(())
    }
}

fn key_at<'a>(keys: &'a str, ends: &[u32], i: usize) -> &'a str {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &keys[start..ends[i] as usize]
}

/// A drift before attribution.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    kind: DriftKind,
    /// Index into `mapping.fields`, for `field_mismatch`.
    field: Option<usize>,
    local: Option<serde_json::Value>,
    remote: Option<serde_json::Value>,
}

/// One order with at least one drift.
#[derive(Debug, Clone)]
pub(crate) struct DriftedOrder {
    order_ref: String,
    /// The vendor's row; `None` for `missing_remote`.
    remote: Option<RemoteOrder>,
    local_status: Option<Status>,
    found: Vec<Found>,
}

/// What the diff found, before attribution: only [`plan`] reads it.
#[derive(Debug, Clone, Default)]
pub struct Diff {
    local_orders: u64,
    unmapped_status: u64,
    /// A few of the unmapped status words, for the reason and the report.
    unknown_words: Vec<String>,
    /// Drifted orders, sorted by key.
    orders: Vec<DriftedOrder>,
    /// Orders that agree and changed (by email) since the last trusted key frame.
    email_told: u64,
}

impl Diff {
    /// The drifted orders' keys: whose evidence [`plan`] needs.
    pub fn order_refs(&self) -> Vec<String> {
        self.orders.iter().map(|o| o.order_ref.clone()).collect()
    }
}

/// The export lists an order key more than once: it is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKeys {
    pub count: u64,
    /// A few of them, quoted.
    pub examples: String,
}

fn status_json(s: Option<Status>) -> Option<serde_json::Value> {
    s.map(|s| serde_json::Value::String(s.as_str().to_string()))
}

/// The diff of a key frame against the view as of its `as_of`: fed our side
/// first ([`Differ::add_local`]), then the export's rows as they stream
/// ([`Differ::add_remote`]).
///
/// `R` is the vendor's rules, borrowed or owned (owned to move the diff onto
/// another thread).
pub struct Differ<R: Borrow<VendorRules>> {
    rules: R,
    local: LocalSide,
    changed_since: Option<DateTime<Utc>>,
    orders: Vec<DriftedOrder>,
    missing_seen: HashSet<String, foldhash::fast::FixedState>,
    /// Export rows that came before our side of their order was read
    /// ([`Differ::add_remote_early`]): compared when it is, or at the end.
    pending: HashMap<String, RemoteOrder, foldhash::fast::FixedState>,
    dups: Vec<String>,
    unmapped_status: u64,
    unknown_words: Vec<String>,
    email_told: u64,
    hint: usize,
}

impl<R: Borrow<VendorRules>> Differ<R> {
    /// `expected`: about how many orders our side holds (capacity only).
    /// `changed_since`: the last trusted key frame's `as_of`, to count what
    /// email told us first.
    pub fn new(rules: R, expected: usize, changed_since: Option<DateTime<Utc>>) -> Differ<R> {
        let width = rules.borrow().mapping.fields.len();
        Differ {
            rules,
            local: LocalSide::with_capacity(expected, width),
            changed_since,
            orders: Vec::new(),
            missing_seen: HashSet::default(),
            pending: HashMap::default(),
            dups: Vec::new(),
            unmapped_status: 0,
            unknown_words: Vec::new(),
            email_told: 0,
            hint: 0,
        }
    }

    /// One order of our view as of the cutoff; `fields_json` is the view's
    /// stored fields (read straight into normalised values).
    pub fn add_local(
        &mut self,
        order_ref: &str,
        status: Option<Status>,
        event_time: DateTime<Utc>,
        fields_json: &[u8],
    ) -> Result<(), serde_json::Error> {
        let fields = &self.rules.borrow().mapping.fields;
        self.local.insert(
            order_ref,
            LocalEntry {
                status,
                event_time,
                seen: false,
            },
            |out| mapping::local_fields(fields, fields_json, out),
        )?;
        if !self.pending.is_empty()
            && let Some(mut r) = self.pending.remove(order_ref)
        {
            self.add_remote(&mut r);
        }
        Ok(())
    }

    /// One row of the export while our side is still being read, so the
    /// export is parsed on one core while the view is read on the other. A
    /// row whose order we have not read yet waits in `pending`; with both
    /// sides in key order (the view always is, exports usually are) few do.
    ///
    /// Rows are lent, as in [`Differ::add_remote`].
    pub fn add_remote_early(&mut self, r: &mut RemoteOrder) {
        if self.local.find(&r.order_ref, self.hint).is_some() {
            return self.add_remote(r);
        }
        match self.pending.entry(r.order_ref.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => self.dups.push(r.order_ref.clone()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(std::mem::take(r));
            }
        }
    }

    /// Export rows waiting for our side: the caller bounds memory by
    /// pausing early rows while this is large.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn local_orders(&self) -> u64 {
        self.local.entries.len() as u64
    }

    /// One row of the export, lent: the diff takes it (leaving an empty
    /// row) only to keep it, for a drifted order. The caller reuses what is
    /// left, so a million agreeing rows allocate nothing.
    pub fn add_remote(&mut self, r: &mut RemoteOrder) {
        if r.status.is_none()
            && let Some(w) = &r.vendor_status
        {
            self.unmapped_status += 1;
            // The five first in sort order, not in arrival order: which rows
            // arrive early depends on thread timing, the report must not.
            if !self.unknown_words.contains(w)
                && (self.unknown_words.len() < 5 || self.unknown_words.last() > Some(w))
            {
                self.unknown_words.push(w.clone());
                self.unknown_words.sort();
                self.unknown_words.truncate(5);
            }
        }
        let local = &mut self.local;
        match local.find(&r.order_ref, self.hint) {
            Some(i) if local.entries[i].seen => self.dups.push(r.order_ref.clone()),
            Some(i) => {
                self.hint = i + 1;
                local.entries[i].seen = true;
                let e = &local.entries[i];
                let mut found = Vec::new();
                if r.status.is_some() && r.status != e.status {
                    found.push(Found {
                        kind: DriftKind::StatusMismatch,
                        field: None,
                        local: status_json(e.status),
                        remote: status_json(r.status),
                    });
                }
                let fields = &self.rules.borrow().mapping.fields;
                for (i, (f, l)) in fields.iter().zip(local.fields(i)).enumerate() {
                    let (l, rv) = (l.as_ref(), r.fields[i].as_ref());
                    if !f.agrees(l, rv) {
                        found.push(Found {
                            kind: DriftKind::FieldMismatch,
                            field: Some(i),
                            local: l.map(|n| f.to_json(n)),
                            remote: rv.map(|n| f.to_json(n)),
                        });
                    }
                }
                if found.is_empty() {
                    if self.changed_since.is_some_and(|t| e.event_time > t) {
                        self.email_told += 1;
                    }
                } else {
                    self.orders.push(DriftedOrder {
                        order_ref: r.order_ref.clone(),
                        remote: Some(std::mem::take(r)),
                        local_status: e.status,
                        found,
                    });
                }
            }
            None => {
                if !self.missing_seen.insert(r.order_ref.clone()) {
                    self.dups.push(r.order_ref.clone());
                } else {
                    let remote = status_json(r.status)
                        .or_else(|| r.vendor_status.clone().map(serde_json::Value::String));
                    self.orders.push(DriftedOrder {
                        order_ref: r.order_ref.clone(),
                        remote: Some(std::mem::take(r)),
                        local_status: None,
                        found: vec![Found {
                            kind: DriftKind::MissingLocal,
                            field: None,
                            local: None,
                            remote,
                        }],
                    });
                }
            }
        }
    }

    /// Ends the diff: our orders the export did not list, within its scope,
    /// are `missing_remote`. A key listed twice makes the key frame unusable.
    pub fn finish(mut self, cut: Cutoff) -> Result<Diff, DuplicateKeys> {
        // Our side is whole now: what still waits is not ours (or a repeat).
        for (_, mut r) in std::mem::take(&mut self.pending) {
            self.add_remote(&mut r);
        }
        let Differ {
            rules,
            local,
            mut orders,
            mut dups,
            unmapped_status,
            unknown_words,
            email_told,
            ..
        } = self;
        let v: &VendorRules = rules.borrow();
        if !dups.is_empty() {
            dups.sort();
            dups.dedup();
            return Err(DuplicateKeys {
                count: dups.len() as u64,
                examples: dups
                    .iter()
                    .take(5)
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let in_scope = |i: usize, e: &LocalEntry| {
            let sc = &v.scope;
            sc.statuses
                .as_ref()
                .is_none_or(|ss| e.status.is_some_and(|s| ss.contains(&s)))
                && sc.updated_within.is_none_or(|w| {
                    cut.as_of - e.event_time
                        <= chrono::Duration::from_std(w).unwrap_or(chrono::Duration::MAX)
                })
                && sc.field.as_ref().is_none_or(|(fi, vals)| {
                    let f = &v.mapping.fields[*fi];
                    let have = local.fields(i)[*fi].as_ref();
                    vals.iter()
                        .any(|val| f.agrees(have, f.parse_remote(val).ok().flatten().as_ref()))
                })
        };
        for (i, e) in local.entries.iter().enumerate() {
            // Out of the export's scope: the export says nothing about it.
            if !e.seen && in_scope(i, e) {
                orders.push(DriftedOrder {
                    order_ref: local.key(i).to_string(),
                    remote: None,
                    local_status: e.status,
                    found: vec![Found {
                        kind: DriftKind::MissingRemote,
                        field: None,
                        local: status_json(e.status),
                        remote: None,
                    }],
                });
            }
        }
        orders.sort_by(|a, b| a.order_ref.cmp(&b.order_ref));
        Ok(Diff {
            local_orders: local.entries.len() as u64,
            unmapped_status,
            unknown_words,
            orders,
            email_told,
        })
    }
}

/// What the export itself says about the key frame, for the guard.
#[derive(Debug, Clone, Default)]
pub struct KeyFrameFacts {
    /// Rows read.
    pub rows: u64,
    /// The source declared the listing whole (an API that reached its end).
    pub complete: bool,
    pub incomplete_reason: Option<String>,
    /// Rows whose values could not be read, and the first reasons.
    pub row_errors: u64,
    pub row_error_examples: Vec<String>,
}

/// Everything [`plan`] decides on; read by the binary.
pub struct PlanInput<'a> {
    pub rules: &'a VendorRules,
    pub cut: Cutoff,
    pub diff: Diff,
    pub key_frame: KeyFrameFacts,
    /// Row count of the last key frame a run trusted; `None` for the first.
    pub last_good_rows: Option<u64>,
    /// The drifted orders' deltas, by order.
    pub evidence: &'a HashMap<String, Vec<Evidence>>,
    /// When mail naming each drifted order was quarantined.
    pub quarantined: &'a HashMap<String, Vec<DateTime<Utc>>>,
    pub open: &'a OpenDrifts,
    pub now: DateTime<Utc>,
}

/// A drift to record; `existing`: an open drift on the same (order, kind,
/// field) is updated rather than opened again.
#[derive(Debug, Clone)]
pub struct PlannedDrift {
    pub drift: Drift,
    pub existing: bool,
}

/// What one run decided, ready to be written in one transaction.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub outcome: Outcome,
    /// Why the guard refused, or what a person should know about a run it let
    /// through; `None` when there is nothing to say.
    pub reason: Option<String>,
    pub counts: RunCounts,
    pub by_cause: CauseCounts,
    pub unmapped_status: u64,
    /// Drifted orders the vendor emailed about after `as_of`: the key frame
    /// is stale for them and fixes nothing there.
    pub stale_orders: u64,
    /// Every drift found, attributed (recorded unless refused).
    pub drifts: Vec<PlannedDrift>,
    /// Fix deltas the run applies (or, dry or refused, would apply).
    pub fixes: Vec<DeltaDraft>,
    /// Open drifts a later delta has settled (unchanged key frames).
    pub close_agreed: Vec<i64>,
}

impl RunPlan {
    /// The key frame is the one a run already trusted: nothing to diff; only
    /// drifts a later delta settled are closed.
    pub fn unchanged(rows: i64, close_agreed: Vec<i64>, reason: Option<String>) -> RunPlan {
        RunPlan {
            outcome: Outcome::Unchanged,
            reason,
            counts: RunCounts {
                orders_remote: rows,
                ..Default::default()
            },
            by_cause: CauseCounts::new(),
            unmapped_status: 0,
            stale_orders: 0,
            drifts: vec![],
            fixes: vec![],
            close_agreed,
        }
    }

    /// The export could not be fetched or read.
    pub fn failed(reason: String) -> RunPlan {
        RunPlan {
            outcome: Outcome::Failed,
            reason: Some(reason),
            ..RunPlan::unchanged(0, vec![], None)
        }
    }

    fn acts(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// Drifts to record: none unless the key frame was diffed and trusted.
    pub fn drifts_to_record(&self) -> &[PlannedDrift] {
        if self.acts() { &self.drifts } else { &[] }
    }

    /// Fix deltas to append: none unless the key frame was diffed and trusted.
    pub fn fixes_to_apply(&self) -> &[DeltaDraft] {
        if self.acts() { &self.fixes } else { &[] }
    }

    /// Open drifts this key frame did not see again are closed: only by a
    /// key frame that was diffed and trusted.
    pub fn close_unseen(&self) -> bool {
        self.acts()
    }
}

/// A warning when the key frame is older than the vendor's `stale_after`:
/// its export has stopped moving, and the report says so.
pub fn age_note(v: &VendorRules, as_of: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
    let age = now - as_of;
    (age > chrono::Duration::from_std(v.stale_after).unwrap_or(chrono::Duration::MAX)).then(|| {
        format!(
            "the key frame is {} hours old (as of {}); stale_after_hours = {}",
            age.num_hours(),
            as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            v.stale_after.as_secs() / 3600
        )
    })
}

/// Whether the current view now says what the vendor said in an open drift
/// (`remote_value` as stored, JSON text): a later delta settled it.
pub fn view_agrees(
    v: &VendorRules,
    kind: DriftKind,
    field: Option<&str>,
    remote_value: Option<&str>,
    status: Option<Status>,
    fields: &Fields,
) -> bool {
    let remote: Option<serde_json::Value> = remote_value.and_then(|s| serde_json::from_str(s).ok());
    match kind {
        DriftKind::MissingLocal => true,
        DriftKind::MissingRemote => false,
        DriftKind::StatusMismatch => {
            remote.as_ref().and_then(|r| r.as_str()) == status.map(Status::as_str)
        }
        DriftKind::FieldMismatch => {
            match v
                .mapping
                .fields
                .iter()
                .find(|f| Some(f.name.as_str()) == field)
            {
                Some(f) => f.agrees(
                    f.parse_local(fields.get(&f.name)).as_ref(),
                    f.parse_local(remote.as_ref()).as_ref(),
                ),
                None => false,
            }
        }
    }
}

/// Decides a run: attributes every drift, plans the fixes (never for an
/// order the vendor emailed about after `as_of`; `missing_remote` only from
/// a complete export, after `missing_remote_after` key frames), counts, and
/// lets the guard judge the key frame.
pub fn plan(input: PlanInput<'_>) -> RunPlan {
    let PlanInput {
        rules: v,
        cut,
        diff: d,
        key_frame: kf,
        last_good_rows,
        evidence,
        quarantined,
        open,
        now,
    } = input;
    let as_of = cut.as_of;
    let empty: Vec<Evidence> = Vec::new();
    let mut stale: Vec<String> = Vec::new();
    let mut drifts: Vec<PlannedDrift> = Vec::new();
    let mut fixes: Vec<DeltaDraft> = Vec::new();
    for DriftedOrder {
        order_ref,
        remote,
        local_status,
        found,
    } in &d.orders
    {
        let ev = evidence.get(order_ref).unwrap_or(&empty);
        let q = quarantined.get(order_ref).map(Vec::as_slice).unwrap_or(&[]);
        for f in found {
            let field = f.field.map(|i| &v.mapping.fields[i]);
            let carries = |fields: &Fields| -> Option<bool> {
                let (fm, i) = (field?, f.field?);
                let val = fields.get(&fm.name)?;
                let remote_n = remote.as_ref().and_then(|r| r.fields[i].as_ref());
                Some(fm.agrees(fm.parse_local(Some(val)).as_ref(), remote_n))
            };
            let target = match f.kind {
                DriftKind::FieldMismatch => Target::Field(&carries),
                _ => Target::Status(remote.as_ref().and_then(|r| r.status)),
            };
            let cause = attribute::attribute(&Facts {
                kind: f.kind,
                local_status: *local_status,
                target,
                evidence: ev,
                quarantined: q,
                cut,
            });
            let field_name = field.map(|fm| fm.name.clone());
            drifts.push(PlannedDrift {
                existing: open.contains_key(&(
                    order_ref.clone(),
                    f.kind,
                    field_name.clone().unwrap_or_default(),
                )),
                drift: Drift {
                    order_ref: order_ref.clone(),
                    kind: f.kind,
                    field: field_name,
                    local_value: f.local.clone(),
                    remote_value: f.remote.clone(),
                    cause,
                },
            });
        }
        // The vendor told us something after this key frame was cut: the key
        // frame is stale for this order, and a fix would undo newer news.
        let newer = ev
            .iter()
            .any(|e| !e.superseded && e.delta.draft.event_time > as_of);
        if v.policy == Policy::Fix && newer {
            stale.push(order_ref.clone());
        }
        if v.policy == Policy::Fix && !newer {
            fixes.extend(fix_for(
                v,
                cut,
                order_ref,
                remote.as_ref(),
                *local_status,
                ev,
                open,
            ));
        }
    }

    let mut counts = RunCounts {
        orders_remote: kf.rows as i64,
        orders_local: d.local_orders as i64,
        email_told: d.email_told as i64,
        ..Default::default()
    };
    let mut by_cause = CauseCounts::new();
    for dr in &drifts {
        let dr = &dr.drift;
        match dr.kind {
            DriftKind::MissingLocal => counts.missing_local += 1,
            DriftKind::MissingRemote => counts.missing_remote += 1,
            DriftKind::StatusMismatch => counts.status_mismatch += 1,
            DriftKind::FieldMismatch => counts.field_mismatch += 1,
        }
        *by_cause.entry((dr.kind, dr.cause)).or_default() += 1;
    }
    counts.key_frame_changes = if last_good_rows.is_some() {
        counts.email_told + d.orders.len() as i64
    } else {
        0
    };

    let refusal = guard::check(
        &v.guard,
        &GuardInput {
            rows: kf.rows,
            complete: kf.complete,
            incomplete_reason: kf.incomplete_reason,
            last_good_rows,
            local_orders: d.local_orders,
            drifted_orders: d.orders.len() as u64,
            fixes: fixes.len() as u64,
            row_errors: kf.row_errors,
            row_error_examples: kf.row_error_examples,
            unknown_status: d.unmapped_status,
            unknown_words: d.unknown_words,
        },
    );
    // What a person should know about a run the guard let through.
    let mut notes: Vec<String> = Vec::new();
    // Allowed past the guard with unknown status words: flag only.
    if refusal.is_none() && d.unmapped_status > 0 && !fixes.is_empty() {
        notes.push(format!(
            "{} row(s) have a status word not in the status map; guard.unknown_status = \"flag\": drifts flagged, {} fix(es) not applied",
            d.unmapped_status,
            fixes.len()
        ));
        fixes.clear();
    }
    if !stale.is_empty() {
        notes.push(format!(
            "stale for {} order(s): the vendor emailed about them after this key frame (as of {}), so it was not applied to them (e.g. {})",
            stale.len(),
            as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            stale.iter().take(3).map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    notes.extend(age_note(v, as_of, now));
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    RunPlan {
        outcome: if refusal.is_some() {
            Outcome::Refused
        } else {
            Outcome::Ok
        },
        reason: refusal.or(note),
        counts,
        by_cause,
        unmapped_status: d.unmapped_status,
        stale_orders: stale.len() as u64,
        drifts,
        fixes,
        close_agreed: vec![],
    }
}

/// The delta that makes one drifted order equal the vendor's row, starting
/// from what was known at the cutoff; `None` when no fix is due.
fn fix_for(
    v: &VendorRules,
    cut: Cutoff,
    order_ref: &str,
    remote: Option<&RemoteOrder>,
    local_status: Option<Status>,
    ev: &[Evidence],
    open: &OpenDrifts,
) -> Option<DeltaDraft> {
    let mut known: Vec<_> = ev
        .iter()
        .filter(|e| !e.superseded && cut.knows(&e.delta))
        .map(|e| e.delta.clone())
        .collect();
    let base = view::fold(&mut known);
    let mut fields = base.as_ref().map(|s| s.fields.clone()).unwrap_or_default();
    match remote {
        Some(r) => {
            for (i, fm) in v.mapping.fields.iter().enumerate() {
                match &r.fields[i] {
                    Some(n) => {
                        fields.insert(fm.name.clone(), fm.to_json(n));
                    }
                    None => {
                        fields.remove(&fm.name);
                    }
                }
            }
            let keep_local = r.status.is_none();
            Some(DeltaDraft {
                vendor: v.name.clone(),
                order_ref: order_ref.to_string(),
                status: if keep_local { local_status } else { r.status },
                vendor_status: if keep_local {
                    base.as_ref().and_then(|s| s.vendor_status.clone())
                } else {
                    r.vendor_status.clone()
                },
                fields,
                event_time: cut.as_of,
                time_source: TimeSource::Vendor,
            })
        }
        None if !v.complete => None,
        None => {
            // Gone from the vendor: acted on only after N key frames in a
            // row, and only from an export stated complete for its scope.
            let seen = open
                .get(&(
                    order_ref.to_string(),
                    DriftKind::MissingRemote,
                    String::new(),
                ))
                .copied()
                .unwrap_or(0)
                + 1;
            (seen >= i64::from(v.missing_remote_after)).then(|| DeltaDraft {
                vendor: v.name.clone(),
                order_ref: order_ref.to_string(),
                status: Some(Status::Cancelled),
                vendor_status: Some("absent from vendor export".into()),
                fields,
                event_time: cut.as_of,
                time_source: TimeSource::Vendor,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    /// The key frame is cut at hour 10, with one hour of grace.
    fn cut() -> Cutoff {
        Cutoff::new(t(10), std::time::Duration::from_secs(3600))
    }

    fn rules(policy: Policy, complete: bool) -> VendorRules {
        let mut v = VendorRules::minimal("v");
        v.policy = policy;
        v.complete = complete;
        v.missing_remote_after = 1;
        // A handful of orders: a few drifts are a large share.
        v.guard.max_drift_pct = 100.0;
        v
    }

    fn remote(order_ref: &str, status: Status) -> RemoteOrder {
        RemoteOrder {
            order_ref: order_ref.into(),
            status: Some(status),
            vendor_status: Some(status.as_str().into()),
            fields: vec![],
        }
    }

    fn delta(order_ref: &str, status: Status, event: i64, recorded: i64) -> Evidence {
        super::super::cutoff::test_evidence(recorded, order_ref, status, t(event), t(recorded))
    }

    /// Both sides as (order, status); our side all at hour 1.
    fn diff(v: &VendorRules, local: &[(&str, Status)], export: &[(&str, Status)]) -> Diff {
        let mut d = Differ::new(v, local.len(), None);
        for (r, s) in local {
            d.add_local(r, Some(*s), t(1), b"{}").unwrap();
        }
        for (r, s) in export {
            d.add_remote(&mut remote(r, *s));
        }
        d.finish(cut()).unwrap()
    }

    struct Run {
        evidence: HashMap<String, Vec<Evidence>>,
        open: OpenDrifts,
        last_good_rows: Option<u64>,
    }

    impl Run {
        fn new() -> Run {
            Run {
                evidence: HashMap::new(),
                open: OpenDrifts::new(),
                last_good_rows: None,
            }
        }

        fn plan(&self, v: &VendorRules, d: Diff, rows: u64) -> RunPlan {
            let quarantined = HashMap::new();
            plan(PlanInput {
                rules: v,
                cut: cut(),
                diff: d,
                key_frame: KeyFrameFacts {
                    rows,
                    complete: true,
                    ..Default::default()
                },
                last_good_rows: self.last_good_rows,
                evidence: &self.evidence,
                quarantined: &quarantined,
                open: &self.open,
                now: t(11),
            })
        }
    }

    #[test]
    fn agreeing_orders_are_not_drift() {
        let v = rules(Policy::Fix, true);
        let d = diff(&v, &[("1", Status::Scheduled)], &[("1", Status::Scheduled)]);
        let p = Run::new().plan(&v, d, 1);
        assert_eq!(p.outcome, Outcome::Ok);
        assert!(p.drifts.is_empty() && p.fixes.is_empty());
        assert_eq!((p.counts.orders_local, p.counts.orders_remote), (1, 1));
    }

    #[test]
    fn a_missing_order_is_not_fixed_unless_the_export_is_complete() {
        let local = [("1", Status::Scheduled), ("2", Status::Scheduled)];
        let export = [("1", Status::Scheduled)];
        let v = rules(Policy::Fix, false);
        let p = Run::new().plan(&v, diff(&v, &local, &export), 1);
        assert_eq!(p.counts.missing_remote, 1);
        assert_eq!(p.drifts_to_record().len(), 1, "still recorded as drift");
        assert!(p.fixes_to_apply().is_empty(), "not complete: flagged only");

        let v = rules(Policy::Fix, true);
        let p = Run::new().plan(&v, diff(&v, &local, &export), 1);
        let [fix] = p.fixes_to_apply() else {
            panic!("one fix expected: {:?}", p.fixes)
        };
        assert_eq!(
            (fix.order_ref.as_str(), fix.status, fix.event_time),
            ("2", Some(Status::Cancelled), t(10))
        );
    }

    #[test]
    fn a_missing_order_waits_for_missing_remote_after_key_frames() {
        let mut v = rules(Policy::Fix, true);
        v.missing_remote_after = 2;
        let local = [("1", Status::Scheduled), ("2", Status::Scheduled)];
        let export = [("1", Status::Scheduled)];
        let mut run = Run::new();
        let p = run.plan(&v, diff(&v, &local, &export), 1);
        assert!(p.fixes.is_empty(), "first key frame without it: flag only");
        run.open
            .insert(("2".into(), DriftKind::MissingRemote, String::new()), 1);
        let p = run.plan(&v, diff(&v, &local, &export), 1);
        assert_eq!(p.fixes.len(), 1, "second key frame in a row: fixed");
        assert!(
            p.drifts[0].existing,
            "the open drift is updated, not reopened"
        );
    }

    #[test]
    fn the_guard_refuses_when_rows_fall_sharply_and_nothing_is_written() {
        let v = rules(Policy::Fix, true);
        let local: Vec<(String, Status)> = (0..10)
            .map(|i| (i.to_string(), Status::Scheduled))
            .collect();
        let local: Vec<(&str, Status)> = local.iter().map(|(r, s)| (r.as_str(), *s)).collect();
        let mut run = Run::new();
        run.last_good_rows = Some(10);
        let p = run.plan(&v, diff(&v, &local, &local[..5]), 5);
        assert_eq!(p.outcome, Outcome::Refused);
        let reason = p.reason.clone().unwrap_or_default();
        assert!(reason.starts_with("row count fell 50.0%"), "{reason}");
        assert_eq!(p.counts.missing_remote, 5, "the summary still counts");
        assert!(p.drifts_to_record().is_empty());
        assert!(p.fixes_to_apply().is_empty());
        assert!(!p.close_unseen(), "a refused key frame closes nothing");
    }

    #[test]
    fn a_delta_after_the_cutoff_is_in_flight_not_known() {
        let c = cut();
        // Recorded by as_of: known.
        assert!(c.knows(&delta("1", Status::Scheduled, 9, 10).delta));
        // In transit: event before as_of, recorded within the grace window.
        assert!(c.knows(&delta("1", Status::Scheduled, 9, 11).delta));
        // Recorded after the grace window: in flight.
        assert!(!c.knows(&delta("1", Status::Scheduled, 9, 12).delta));
        // Happened after as_of: in flight even if recorded within grace.
        assert!(!c.knows(&delta("1", Status::Scheduled, 11, 11).delta));
    }

    #[test]
    fn a_late_email_is_drift_caused_by_lateness_and_the_fix_starts_from_what_was_known() {
        let v = rules(Policy::Fix, true);
        let mut run = Run::new();
        // Told `completed` before as_of but recorded after the grace window.
        run.evidence.insert(
            "1".into(),
            vec![
                delta("1", Status::Scheduled, 1, 1),
                delta("1", Status::Completed, 9, 12),
            ],
        );
        let d = diff(&v, &[("1", Status::Scheduled)], &[("1", Status::Completed)]);
        let p = run.plan(&v, d, 1);
        assert_eq!(p.drifts[0].drift.cause, Cause::LateEmail);
        assert_eq!(p.fixes[0].status, Some(Status::Completed));
        assert_eq!(
            p.fixes[0].event_time,
            t(10),
            "fixes carry the key frame's as_of"
        );
    }

    #[test]
    fn newer_email_makes_the_key_frame_stale_for_that_order_and_fixes_nothing_there() {
        let v = rules(Policy::Fix, true);
        let mut run = Run::new();
        run.evidence
            .insert("1".into(), vec![delta("1", Status::Completed, 12, 12)]);
        let d = diff(
            &v,
            &[("1", Status::Scheduled), ("2", Status::Scheduled)],
            &[("1", Status::Accepted), ("2", Status::Accepted)],
        );
        let p = run.plan(&v, d, 2);
        assert_eq!(p.stale_orders, 1);
        let fixed: Vec<&str> = p.fixes.iter().map(|f| f.order_ref.as_str()).collect();
        assert_eq!(fixed, ["2"]);
        assert!(
            p.reason
                .as_deref()
                .is_some_and(|r| r.contains("stale for 1 order"))
        );
    }

    #[test]
    fn flag_policy_records_drift_and_fixes_nothing() {
        let v = rules(Policy::Flag, true);
        let d = diff(&v, &[("1", Status::Scheduled)], &[("1", Status::Completed)]);
        let p = Run::new().plan(&v, d, 1);
        assert_eq!(p.counts.status_mismatch, 1);
        assert!(p.fixes.is_empty());
    }

    #[test]
    fn unknown_status_words_under_guard_flag_record_drifts_and_fix_nothing() {
        let mut v = rules(Policy::Fix, true);
        v.guard.unknown_status = super::super::settings::UnknownStatus::Flag;
        let mut d = Differ::new(&v, 2, None);
        d.add_local("1", Some(Status::Scheduled), t(1), b"{}")
            .unwrap();
        d.add_local("2", Some(Status::Scheduled), t(1), b"{}")
            .unwrap();
        d.add_remote(&mut remote("1", Status::Completed));
        d.add_remote(&mut RemoteOrder {
            status: None,
            vendor_status: Some("Mystery".into()),
            ..remote("2", Status::Scheduled)
        });
        let p = Run::new().plan(&v, d.finish(cut()).unwrap(), 2);
        assert_eq!(p.outcome, Outcome::Ok);
        assert_eq!(p.unmapped_status, 1);
        assert_eq!(p.drifts_to_record().len(), 1);
        assert!(p.fixes_to_apply().is_empty());
        // Under the default (`refuse`) the same key frame is refused.
        let v = rules(Policy::Fix, true);
        let mut d = Differ::new(&v, 1, None);
        d.add_local("2", Some(Status::Scheduled), t(1), b"{}")
            .unwrap();
        d.add_remote(&mut RemoteOrder {
            status: None,
            vendor_status: Some("Mystery".into()),
            ..remote("2", Status::Scheduled)
        });
        let p = Run::new().plan(&v, d.finish(cut()).unwrap(), 1);
        assert_eq!(p.outcome, Outcome::Refused);
    }

    #[test]
    fn a_key_listed_twice_makes_the_key_frame_unusable() {
        let v = rules(Policy::Flag, true);
        let mut d = Differ::new(&v, 1, None);
        d.add_local("1", Some(Status::Scheduled), t(1), b"{}")
            .unwrap();
        for r in ["1", "1", "9", "9"] {
            d.add_remote(&mut remote(r, Status::Scheduled));
        }
        let e = d.finish(cut()).unwrap_err();
        assert_eq!(e.count, 2);
    }

    fn status() -> impl Strategy<Value = Status> {
        proptest::sample::select(Status::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Our side finds an order whatever order the keys came in (a sorted
        /// run, then repeats and strays) and whatever the hint, before and
        /// after enough out-of-order lookups to hash the run: as a map would.
        #[test]
        fn our_side_finds_every_order_a_map_would(
            run in proptest::collection::btree_set(0u16..400, 0..150),
            strays in proptest::collection::vec((0u16..400, status()), 0..60),
            lookups in proptest::collection::vec((0u16..400, 0usize..260), 0..6000),
        ) {
            let mut side = LocalSide::with_capacity(0, 0);
            let mut model: HashMap<String, Option<Status>> = HashMap::new();
            let mut add = |side: &mut LocalSide, k: u16, s: Option<Status>| {
                let entry = LocalEntry { status: s, event_time: t(1), seen: false };
                side.insert(&k.to_string(), entry, |_| Ok::<_, serde_json::Error>(())).unwrap();
                model.insert(k.to_string(), s);
            };
            // Text order of the decimal keys: what the view's scan gives.
            let mut run: Vec<String> = run.iter().map(u16::to_string).collect();
            run.sort();
            for k in &run {
                add(&mut side, k.parse().unwrap(), None);
            }
            for (k, s) in &strays {
                add(&mut side, *k, Some(*s));
            }
            prop_assert_eq!(side.entries.len(), model.len());
            for (k, hint) in lookups {
                let key = k.to_string();
                let got = side.find(&key, hint).map(|i| (side.key(i).to_string(), side.entries[i].status));
                prop_assert_eq!(got, model.get(&key).map(|s| (key.clone(), *s)));
            }
        }
    }

    /// An export in key order that skips many of our orders (each skip is a
    /// `missing_remote`) is still found by the hint and a short gallop: the
    /// run is never hashed, which for a million orders cost a tenth of the
    /// diff. Walking backwards is what counts as out of order.
    #[test]
    fn a_sorted_export_that_skips_orders_never_hashes_our_side() {
        let n = 3 * MAX_SEARCHES as usize;
        let mut side = LocalSide::with_capacity(0, 0);
        let keys: Vec<String> = (0..n).map(|i| format!("K{i:07}")).collect();
        for k in &keys {
            let entry = LocalEntry {
                status: None,
                event_time: t(1),
                seen: false,
            };
            side.insert(k, entry, |_| Ok::<_, serde_json::Error>(()))
                .unwrap();
        }
        let mut hint = 0;
        // Every other order is missing from the export, and runs of 50 too.
        for (i, k) in keys
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 0 && i % 1000 >= 50)
        {
            assert_eq!(side.find(k, hint), Some(i));
            hint = i + 1;
        }
        assert!(
            side.find("K0000000x", 1).is_none(),
            "a key we lack, in order"
        );
        assert!(!side.run_indexed, "in-order lookups never hash the run");
        for k in keys.iter().rev().take(MAX_SEARCHES as usize + 1) {
            assert!(side.find(k, n).is_some());
        }
        assert!(side.run_indexed, "backward lookups do, past the limit");
    }

    proptest! {
        /// A row read into the buffers of the rows before it (as the export
        /// parser reuses them) is the row read fresh: no key, status or
        /// status word is left over from an earlier row.
        #[test]
        fn a_reused_row_reads_as_a_fresh_one(
            rows in proptest::collection::vec(
                (proptest::option::of("[ A-Z0-9-]{0,6}"), proptest::option::of("[ a-z_]{0,12}")),
                1..40,
            ),
        ) {
            let v = rules(Policy::Flag, true);
            let mut reused = RemoteOrder::default();
            for (key, word) in &rows {
                let get = |c: &str| {
                    let cell = if c == "order_ref" { key } else { word };
                    cell.as_deref().map(std::borrow::Cow::Borrowed)
                };
                let fresh = v.remote_order(get);
                let read = v.remote_order_into(get, &mut reused);
                prop_assert_eq!(read.map(|()| reused.clone()), fresh);
            }
        }
    }

    proptest! {
        /// Export rows compared while our side is still being read (some
        /// waiting for their order, some repeated, some with unknown status
        /// words) give the same diff as rows compared after it, in any
        /// interleaving: the overlap is a speed-up, never a different answer.
        #[test]
        fn early_export_rows_give_the_same_diff_as_late_ones(
            local in proptest::collection::btree_map(0u16..50, status(), 0..30),
            export in proptest::collection::vec((0u16..50, proptest::option::of(status()), 0u8..8), 0..40),
            interleave in proptest::collection::vec(any::<bool>(), 0..80),
        ) {
            let v = rules(Policy::Fix, true);
            let row = |(k, s, w): &(u16, Option<Status>, u8)| RemoteOrder {
                order_ref: k.to_string(),
                status: *s,
                vendor_status: Some(s.map_or_else(|| format!("word{w}"), |s| s.as_str().into())),
                fields: vec![],
            };
            let locals: Vec<(String, Status)> = local.iter().map(|(k, s)| (k.to_string(), *s)).collect();
            let mut late = Differ::new(&v, locals.len(), None);
            for (k, s) in &locals {
                late.add_local(k, Some(*s), t(1), b"{}").unwrap();
            }
            export.iter().for_each(|r| late.add_remote(&mut row(r)));
            let mut early = Differ::new(&v, locals.len(), None);
            let (mut l, mut e) = (locals.iter(), export.iter());
            for take_local in interleave {
                if take_local {
                    if let Some((k, s)) = l.next() {
                        early.add_local(k, Some(*s), t(1), b"{}").unwrap();
                    }
                } else if let Some(r) = e.next() {
                    early.add_remote_early(&mut row(r));
                }
            }
            for (k, s) in l {
                early.add_local(k, Some(*s), t(1), b"{}").unwrap();
            }
            e.for_each(|r| early.add_remote(&mut row(r)));
            prop_assert_eq!(
                format!("{:?}", early.finish(cut())),
                format!("{:?}", late.finish(cut()))
            );
        }
    }

    proptest! {
        /// Whatever the two sides hold, every disagreement is one drift of
        /// the right kind, agreeing orders are none, and under `fix` with a
        /// complete export every drifted order gets exactly one fix.
        #[test]
        fn every_disagreement_is_one_drift_and_one_fix(
            local in proptest::collection::btree_map(0u16..60, status(), 0..40),
            export in proptest::collection::btree_map(0u16..60, status(), 0..40),
        ) {
            let v = rules(Policy::Fix, true);
            let key = |k: &u16| k.to_string();
            let l: Vec<(String, Status)> = local.iter().map(|(k, s)| (key(k), *s)).collect();
            let e: Vec<(String, Status)> = export.iter().map(|(k, s)| (key(k), *s)).collect();
            let l2: Vec<(&str, Status)> = l.iter().map(|(k, s)| (k.as_str(), *s)).collect();
            let e2: Vec<(&str, Status)> = e.iter().map(|(k, s)| (k.as_str(), *s)).collect();
            let mut v2 = v.clone();
            v2.guard.min_rows = 0;
            // The guard's drift share is over max(local, rows), not the
            // union, so disjoint sides can exceed 100%: not under test here.
            v2.guard.max_drift_pct = f64::MAX;
            let p = Run::new().plan(&v2, diff(&v2, &l2, &e2), e.len() as u64);
            let missing_local = export.keys().filter(|k| !local.contains_key(k)).count() as i64;
            let missing_remote = local.keys().filter(|k| !export.contains_key(k)).count() as i64;
            let mismatch = local
                .iter()
                .filter(|(k, s)| export.get(k).is_some_and(|x| x != *s))
                .count() as i64;
            prop_assert_eq!(p.counts.missing_local, missing_local);
            prop_assert_eq!(p.counts.missing_remote, missing_remote);
            prop_assert_eq!(p.counts.status_mismatch, mismatch);
            prop_assert_eq!(p.outcome, Outcome::Ok, "{:?}", p.reason);
            {
                prop_assert_eq!(
                    p.fixes_to_apply().len() as i64,
                    missing_local + missing_remote + mismatch
                );
                for f in p.fixes_to_apply() {
                    let want = export.iter().find(|(k, _)| key(k) == f.order_ref).map(|(_, s)| *s);
                    prop_assert_eq!(f.status, want.or(Some(Status::Cancelled)));
                }
            }
        }
    }
}
