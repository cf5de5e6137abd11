//! One reconcile run: key frame → diff against the view as of `as_of` →
//! attribution → guard → one transaction of drifts and fixes.
//!
//! Memory: the local side is a compact map (order key → status and the
//! mapped fields, normalised); the export is streamed row by row against it.
//! Only drifted orders keep their full remote row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::time::Instant;

use chrono::{DateTime, Utc};
use hashbrown::hash_table::{Entry, HashTable};
use tracing::{debug, info, warn};

use super::attribute::{self, Facts, Target};
use super::config::{Policy, VendorSettings};
use super::drift::{Cause, Drift, DriftKind, Outcome};
use super::guard::{self, GuardInput};
use super::mapping::{self, Norm, RemoteOrder};
use super::source::{self, Body, Export, KeyFrameError};
use super::{ReconcileError, RunOptions, RunSummary};
use crate::model::{DeltaDraft, Fields, Status, TimeSource};
use crate::store::{
    Cutoff, Evidence, Fence, KeyFrameRef, NewDrift, NewKeyFrame, RunCounts, RunRecord, Store,
    StoreError,
};
use crate::view;

/// Our side of the diff, for a million orders in a handful of allocations:
/// keys packed in one string, entries and normalised fields in flat vectors,
/// and a hash table of indexes into them. A map of boxed keys spent most of
/// the diff in malloc and in following a pointer per lookup.
struct LocalSide {
    keys: String,
    key_ends: Vec<usize>,
    entries: Vec<LocalEntry>,
    /// `width` normalised fields per entry, in the order of `mapping.fields`.
    fields: Vec<Option<Norm>>,
    width: usize,
    index: HashTable<usize>,
    /// Keys come from our view and the vendor's export, not from an
    /// anonymous attacker: a fast fixed hash buys speed and loses nothing.
    hasher: foldhash::fast::FixedState,
}

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
            index: HashTable::with_capacity(orders),
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
    /// Exports are often in key order, as our view is, and then a key
    /// comparison replaces a hash lookup that would miss the cache.
    fn find(&self, key: &str, hint: usize) -> Option<usize> {
        if hint < self.entries.len() && self.key(hint) == key {
            return Some(hint);
        }
        let (keys, ends) = (&self.keys, &self.key_ends);
        self.index
            .find(self.hasher.hash_one(key), |&i| key_at(keys, ends, i) == key)
            .copied()
    }

    /// Adds an order; `fields` appends its normalised fields. The view holds
    /// each key once, so a repeat replaces.
    fn insert<E>(
        &mut self,
        key: &str,
        entry: LocalEntry,
        fields: impl FnOnce(&mut Vec<Option<Norm>>) -> Result<(), E>,
    ) -> Result<(), E> {
        let h = self.hasher.hash_one(key);
        let LocalSide {
            keys,
            key_ends,
            entries,
            fields: all,
            width,
            index,
            hasher,
        } = self;
        let at = match index.entry(
            h,
            |&i| key_at(keys, key_ends, i) == key,
            |&i| hasher.hash_one(key_at(keys, key_ends, i)),
        ) {
            Entry::Occupied(o) => {
                let i = *o.get();
                let mut new = Vec::with_capacity(*width);
                fields(&mut new)?;
                all.splice(i * *width..(i + 1) * *width, new);
                entries[i] = entry;
                return Ok(());
            }
            Entry::Vacant(v) => v,
        };
        fields(all)?;
        at.insert(entries.len());
        keys.push_str(key);
        key_ends.push(keys.len());
        entries.push(entry);
        Ok(())
    }
}

fn key_at<'a>(keys: &'a str, ends: &[usize], i: usize) -> &'a str {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &keys[start..ends[i]]
}

/// A drift before attribution.
struct Found {
    kind: DriftKind,
    field: Option<usize>,
    local: Option<serde_json::Value>,
    remote: Option<serde_json::Value>,
}

/// One order with at least one drift.
struct DriftedOrder {
    order_ref: String,
    /// The vendor's row; `None` for `missing_remote`.
    remote: Option<RemoteOrder>,
    local_status: Option<Status>,
    found: Vec<Found>,
}

/// What the diff found, before anything is written.
struct Diff {
    rows: u64,
    local_orders: u64,
    unmapped_status: u64,
    /// A few of the unmapped status words, for the reason and the report.
    unknown_words: Vec<String>,
    bad_rows: source::RowErrors,
    /// Drifted orders with their remote row (None for missing_remote) and drifts.
    orders: Vec<DriftedOrder>,
    email_told: u64,
}

fn status_json(s: Option<Status>) -> Option<serde_json::Value> {
    s.map(|s| serde_json::Value::String(s.as_str().to_string()))
}

async fn diff(
    store: &Store,
    v: &VendorSettings,
    export: &Export,
    cut: Cutoff,
    changed_since: Option<DateTime<Utc>>,
) -> Result<Diff, ReconcileError> {
    let expected = store.order_count(&v.name).await? as usize;
    let mut local = LocalSide::with_capacity(expected, v.mapping.fields.len());
    store
        .view_as_of(&v.name, cut, |o| match o.known {
            // Heard of only after the cutoff: not ours as of then. If the
            // vendor lists it, that is `missing_local` (cause: late_email).
            None => Ok(()),
            Some(k) => local
                .insert(
                    o.order_ref,
                    LocalEntry {
                        status: k.status,
                        event_time: k.event_time,
                        seen: false,
                    },
                    |out| mapping::local_fields(&v.mapping.fields, k.fields_json, out),
                )
                .map_err(|e| StoreError::Corrupt(format!("order `{}` fields: {e}", o.order_ref))),
        })
        .await?;
    let local_orders = local.entries.len() as u64;
    debug!(vendor = %v.name, local_orders, "view as of loaded");

    let mut orders = Vec::new();
    let mut missing_seen: HashSet<String, foldhash::fast::FixedState> = HashSet::default();
    let mut dups: Vec<String> = Vec::new();
    let mut unmapped_status = 0u64;
    let mut unknown_words: Vec<String> = Vec::new();
    let mut email_told = 0u64;
    let mut hint = 0;
    let read = source::for_each_row(export, v, &mut |r: RemoteOrder| {
        if r.status.is_none()
            && let Some(w) = &r.vendor_status
        {
            unmapped_status += 1;
            if unknown_words.len() < 5 && !unknown_words.contains(w) {
                unknown_words.push(w.clone());
            }
        }
        match local.find(&r.order_ref, hint) {
            Some(i) if local.entries[i].seen => dups.push(r.order_ref),
            Some(i) => {
                hint = i + 1;
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
                for (i, (f, l)) in v.mapping.fields.iter().zip(local.fields(i)).enumerate() {
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
                    if changed_since.is_some_and(|t| e.event_time > t) {
                        email_told += 1;
                    }
                } else {
                    orders.push(DriftedOrder {
                        order_ref: r.order_ref.clone(),
                        remote: Some(r),
                        local_status: e.status,
                        found,
                    });
                }
            }
            None => {
                if !missing_seen.insert(r.order_ref.clone()) {
                    dups.push(r.order_ref);
                } else {
                    let remote = status_json(r.status)
                        .or_else(|| r.vendor_status.clone().map(serde_json::Value::String));
                    orders.push(DriftedOrder {
                        order_ref: r.order_ref.clone(),
                        remote: Some(r),
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
    })?;
    if !dups.is_empty() {
        dups.sort();
        dups.dedup();
        return Err(KeyFrameError::DuplicateKeys {
            count: dups.len() as u64,
            examples: dups
                .iter()
                .take(5)
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
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
        rows: read.rows,
        local_orders,
        unmapped_status,
        unknown_words,
        bad_rows: read.bad,
        orders,
        email_told,
    })
}

/// Splits a subject into words, so `48213` matches "Order 48213 - Delivered"
/// but not "Order 482130".
fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
        .filter(|t| !t.is_empty())
}

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

/// Reconciles one export that has been fetched.
pub(super) async fn reconcile_export(
    store: &Store,
    v: &VendorSettings,
    mut export: Export,
    opts: &RunOptions,
    started_at: DateTime<Utc>,
    fence: Option<Fence>,
) -> Result<RunSummary, ReconcileError> {
    let clock = Instant::now();
    let now = || opts.now.unwrap_or_else(Utc::now);
    let prev = store.last_key_frame(&v.name).await?;
    let mut summary = RunSummary::new(v, opts, &export.meta.source);

    // Same bytes as the last key frame a run trusted (or a 304): nothing to diff.
    let same = matches!(export.body, Body::NotModified)
        || prev
            .as_ref()
            .is_some_and(|p| p.content_hash == export.meta.content_hash);
    if let Some(p) = prev
        .as_ref()
        .filter(|p| same && matches!(p.outcome, Some(Outcome::Ok) | Some(Outcome::Unchanged)))
    {
        summary.outcome = Outcome::Unchanged;
        summary.as_of = Some(p.as_of);
        summary.reason = age_note(v, p.as_of, now());
        let close = agreed_by_delta(store, v).await?;
        summary.closed = close.len() as i64;
        if !opts.dry_run {
            let w = store
                .record_run(&RunRecord {
                    vendor: v.name.clone(),
                    policy: v.policy.as_str(),
                    source: Some(export.meta.source.clone()),
                    started_at,
                    finished_at: now(),
                    outcome: Outcome::Unchanged,
                    reason: summary.reason.clone(),
                    key_frame: KeyFrameRef::Existing(p.id),
                    counts: RunCounts {
                        orders_remote: p.row_count,
                        ..Default::default()
                    },
                    drifts: vec![],
                    close_unseen: false,
                    close_agreed: close,
                    fixes: vec![],
                    fence: fence.clone(),
                })
                .await?;
            summary.run_id = Some(w.run_id);
            summary.closed = w.closed;
        }
        summary.elapsed = clock.elapsed();
        return Ok(summary);
    }
    if matches!(export.body, Body::NotModified) {
        // 304 but we have no trusted key frame for it: nothing to compare.
        return Err(ReconcileError::KeyFrame(KeyFrameError::Json(
            "the server answered 304 Not Modified but no trusted key frame is stored".into(),
        )));
    }

    let as_of = source::resolve_as_of(&mut export, v)?;
    summary.as_of = Some(as_of);
    let cut = Cutoff {
        as_of,
        grace_end: as_of + chrono::Duration::from_std(v.grace).unwrap_or(chrono::Duration::zero()),
    };
    let last_good = store.last_good_key_frame(&v.name).await?;
    let d = diff(store, v, &export, cut, last_good.map(|g| g.1)).await?;
    debug!(vendor = %v.name, rows = d.rows, elapsed_ms = clock.elapsed().as_millis() as u64, "diffed");

    // Evidence for attribution and the state fixes start from.
    let refs: Vec<String> = d.orders.iter().map(|o| o.order_ref.clone()).collect();
    let evidence = store.reconcile_evidence(&v.name, &refs).await?;
    let mut quarantined: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    if !refs.is_empty() {
        let wanted: HashSet<&str> = refs.iter().map(String::as_str).collect();
        for (subject, at) in store.quarantined_subjects(&v.name).await? {
            for t in tokens(&subject) {
                if wanted.contains(t) {
                    quarantined.entry(t.to_string()).or_default().push(at);
                }
            }
        }
    }
    let open = store.open_drift_counts(&v.name).await?;
    debug!(vendor = %v.name, orders = refs.len(), elapsed_ms = clock.elapsed().as_millis() as u64, "evidence loaded");

    let empty: Vec<Evidence> = Vec::new();
    let mut stale: Vec<String> = Vec::new();
    let mut drifts: Vec<Drift> = Vec::new();
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
            drifts.push(Drift {
                order_ref: order_ref.clone(),
                kind: f.kind,
                field: field.map(|fm| fm.name.clone()),
                local_value: f.local.clone(),
                remote_value: f.remote.clone(),
                cause,
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
            let mut known: Vec<_> = ev
                .iter()
                .filter(|e| !e.superseded && cut.knows(&e.delta))
                .map(|e| e.delta.clone())
                .collect();
            let base = view::fold(&mut known);
            let mut fields = base.as_ref().map(|s| s.fields.clone()).unwrap_or_default();
            let draft = match remote {
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
                        order_ref: order_ref.clone(),
                        status: if keep_local { *local_status } else { r.status },
                        vendor_status: if keep_local {
                            base.as_ref().and_then(|s| s.vendor_status.clone())
                        } else {
                            r.vendor_status.clone()
                        },
                        fields,
                        event_time: as_of,
                        time_source: TimeSource::Vendor,
                    })
                }
                None if !v.complete => None,
                None => {
                    // Gone from the vendor: acted on only after N key frames in
                    // a row, and only from an export stated complete for its scope.
                    let seen = open
                        .get(&(order_ref.clone(), DriftKind::MissingRemote, String::new()))
                        .copied()
                        .unwrap_or(0)
                        + 1;
                    (seen >= i64::from(v.missing_remote_after)).then(|| DeltaDraft {
                        vendor: v.name.clone(),
                        order_ref: order_ref.clone(),
                        status: Some(Status::Cancelled),
                        vendor_status: Some("absent from vendor export".into()),
                        fields,
                        event_time: as_of,
                        time_source: TimeSource::Vendor,
                    })
                }
            };
            fixes.extend(draft);
        }
    }

    let mut counts = RunCounts {
        orders_remote: d.rows as i64,
        orders_local: d.local_orders as i64,
        email_told: d.email_told as i64,
        ..Default::default()
    };
    for dr in &drifts {
        match dr.kind {
            DriftKind::MissingLocal => counts.missing_local += 1,
            DriftKind::MissingRemote => counts.missing_remote += 1,
            DriftKind::StatusMismatch => counts.status_mismatch += 1,
            DriftKind::FieldMismatch => counts.field_mismatch += 1,
        }
        *summary.by_cause.entry((dr.kind, dr.cause)).or_default() += 1;
    }
    counts.key_frame_changes = if last_good.is_some() {
        counts.email_told + d.orders.len() as i64
    } else {
        0
    };
    summary.unmapped_status = d.unmapped_status;
    summary.fixes = fixes.len() as i64;

    debug!(vendor = %v.name, elapsed_ms = clock.elapsed().as_millis() as u64, "attributed");
    let refusal = guard::check(
        &v.guard,
        &GuardInput {
            rows: d.rows,
            complete: export.meta.complete,
            incomplete_reason: export.meta.incomplete_reason.clone(),
            last_good_rows: last_good.map(|g| g.0.max(0) as u64),
            local_orders: d.local_orders,
            drifted_orders: d.orders.len() as u64,
            fixes: fixes.len() as u64,
            row_errors: d.bad_rows.count,
            row_error_examples: d.bad_rows.examples.clone(),
            unknown_status: d.unmapped_status,
            unknown_words: d.unknown_words.clone(),
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
        summary.fixes = 0;
    }
    if !stale.is_empty() {
        notes.push(format!(
            "stale for {} order(s): the vendor emailed about them after this key frame (as of {}), so it was not applied to them (e.g. {})",
            stale.len(),
            as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            stale.iter().take(3).map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    notes.extend(age_note(v, as_of, now()));
    summary.stale_orders = stale.len() as u64;
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    let outcome = if refusal.is_some() {
        Outcome::Refused
    } else {
        Outcome::Ok
    };
    summary.outcome = outcome;
    summary.reason = refusal.clone().or(note.clone());
    summary.counts = counts.clone();
    summary.sample = drifts.iter().take(20).cloned().collect();
    if let Some(r) = &refusal {
        warn!(vendor = %v.name, reason = %r, "reconcile refused: nothing recorded or fixed");
    }
    if !opts.dry_run {
        let refused = refusal.is_some();
        let w = store
            .record_run(&RunRecord {
                vendor: v.name.clone(),
                policy: v.policy.as_str(),
                source: Some(export.meta.source.clone()),
                started_at,
                finished_at: now(),
                outcome,
                reason: refusal.or(note),
                key_frame: KeyFrameRef::New(NewKeyFrame {
                    source: export.meta.source.clone(),
                    as_of,
                    fetched_at: export.meta.fetched_at,
                    content_hash: export.meta.content_hash,
                    row_count: d.rows as i64,
                    complete: export.meta.complete,
                    etag: export.meta.etag.clone(),
                    last_modified: export.meta.last_modified.clone(),
                }),
                counts,
                drifts: if refused {
                    vec![]
                } else {
                    drifts
                        .iter()
                        .map(|d| NewDrift {
                            existing: open.contains_key(&(
                                d.order_ref.clone(),
                                d.kind,
                                d.field.clone().unwrap_or_default(),
                            )),
                            order_ref: d.order_ref.clone(),
                            kind: d.kind,
                            field: d.field.clone(),
                            local_value: json_text(&d.local_value),
                            remote_value: json_text(&d.remote_value),
                            cause: d.cause,
                        })
                        .collect()
                },
                close_unseen: !refused,
                close_agreed: vec![],
                fixes: if refused { vec![] } else { fixes },
                fence,
            })
            .await?;
        summary.run_id = Some(w.run_id);
        summary.fixed = w.fixed;
        summary.closed = w.closed;
    }
    summary.elapsed = clock.elapsed();
    info!(
        vendor = %v.name, outcome = outcome.as_str(), rows = d.rows,
        drifts = drifts.len(), fixed = summary.fixed, dry_run = opts.dry_run,
        elapsed_ms = summary.elapsed.as_millis() as u64, "reconcile run"
    );
    Ok(summary)
}

/// A warning when the key frame is older than the vendor's `stale_after_hours`:
/// its export has stopped moving, and the report says so.
fn age_note(v: &VendorSettings, as_of: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
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

/// Open drifts a later delta has settled: the view now says what the vendor said.
async fn agreed_by_delta(store: &Store, v: &VendorSettings) -> Result<Vec<i64>, ReconcileError> {
    let mut out = Vec::new();
    for x in store.open_drifts_with_newer_view(&v.name).await? {
        let remote: Option<serde_json::Value> = x
            .drift
            .remote_value
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok());
        let agrees = match x.drift.kind {
            DriftKind::MissingLocal => true,
            DriftKind::MissingRemote => false,
            DriftKind::StatusMismatch => {
                remote.as_ref().and_then(|r| r.as_str()) == x.status.map(Status::as_str)
            }
            DriftKind::FieldMismatch => {
                match v
                    .mapping
                    .fields
                    .iter()
                    .find(|f| Some(&f.name) == x.drift.field.as_ref())
                {
                    Some(f) => f.agrees(
                        f.parse_local(x.fields.get(&f.name)).as_ref(),
                        f.parse_local(remote.as_ref()).as_ref(),
                    ),
                    None => false,
                }
            }
        };
        if agrees {
            out.push(x.drift.id);
        }
    }
    Ok(out)
}

/// Records a failed run (unless dry) and passes the error on.
pub(super) async fn finish(
    store: &Store,
    v: &VendorSettings,
    export: Result<Option<Export>, source::FetchError>,
    opts: &RunOptions,
    started_at: DateTime<Utc>,
    fence: Option<Fence>,
) -> Result<RunSummary, ReconcileError> {
    let source_name = match &export {
        Ok(Some(e)) => Some(e.meta.source.clone()),
        _ => None,
    };
    let result = match export {
        Ok(Some(e)) => reconcile_export(store, v, e, opts, started_at, fence.clone()).await,
        Ok(None) => Err(ReconcileError::NoExport(v.name.clone())),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = &result
        && !opts.dry_run
        && matches!(e, ReconcileError::Fetch(_) | ReconcileError::KeyFrame(_))
    {
        warn!(vendor = %v.name, error = %e, "reconcile failed");
        store
            .record_run(&RunRecord {
                vendor: v.name.clone(),
                policy: v.policy.as_str(),
                source: source_name,
                started_at,
                finished_at: opts.now.unwrap_or_else(Utc::now),
                outcome: Outcome::Failed,
                reason: Some(e.to_string()),
                key_frame: KeyFrameRef::None,
                counts: RunCounts::default(),
                drifts: vec![],
                close_unseen: false,
                close_agreed: vec![],
                fixes: vec![],
                fence,
            })
            .await?;
    }
    result
}

/// Counts by kind and cause, for the summary.
pub type CauseCounts = BTreeMap<(DriftKind, Cause), u64>;
