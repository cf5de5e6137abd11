//! One reconcile run: read (the last key frame, the view as of `as_of`, the
//! export's rows, the evidence for drifted orders) → `plan` (core, pure) →
//! one write of the plan.
//!
//! Memory: our side is core's compact `Differ`; the export is streamed row by
//! row against it. Only drifted orders keep their full remote row.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use driftwatch_core::reconcile::plan::{self, Diff, Differ, KeyFrameFacts, PlanInput, RunPlan};
use tracing::{debug, info, warn};

use super::config::VendorSettings;
use super::drift::Outcome;
use super::mapping::RemoteOrder;
use super::source::{self, Body, Export, KeyFrameError};
use super::{ReconcileError, RunOptions, RunSummary};
use crate::model::Status;
use crate::store::{
    Cutoff, Fence, KeyFrameRef, NewDrift, NewKeyFrame, RunRecord, RunWritten, Store, StoreError,
};

pub use driftwatch_core::reconcile::plan::CauseCounts;

/// Export rows per batch handed from the parsing thread to the diff.
/// Batches of 2048 and eight of them in flight on each side: with 1024 and
/// four on ours, the three threads (on two cores) waited on each other at
/// each handoff, and the diff took ~12% longer; 4096 gained nothing more and
/// took ~8 MB more memory.
const REMOTE_BATCH: usize = 2048;
/// Batches in flight between the two.
const REMOTE_QUEUE: usize = 8;
/// Orders of our view per batch handed from the view's reader to the diff,
/// and batches in flight between them.
const LOCAL_BATCH: usize = 2048;
const LOCAL_QUEUE: usize = 8;
/// Export rows that may wait for our side of their order while the view is
/// read; past this the parser pauses until the view is whole, so an export
/// in another order than the view costs overlap, not memory.
const MAX_PENDING: usize = 50_000;

/// One order of our view as of the cutoff, owned, on its way to the diff.
#[derive(Default)]
struct LocalRow {
    order_ref: String,
    status: Option<Status>,
    event_time: DateTime<Utc>,
    fields_json: Vec<u8>,
}

/// Diffs the export against the view as of `cut`, on three threads: the
/// view is read here, the export is parsed on the blocking pool, and the
/// diff runs on a third, fed by both over bounded channels. With the diff
/// on the view's thread, that thread was two thirds of the work and the
/// parser waited for it. Export rows are compared as they arrive
/// ([`Differ::add_remote_early`]).
async fn diff(
    store: &Store,
    v: &VendorSettings,
    export: Export,
    cut: Cutoff,
    last_good: Option<(i64, DateTime<Utc>)>,
) -> Result<(Diff, source::RowsRead, Export), ReconcileError> {
    // Our side is sized from the last good key frame's row count: counting
    // a million orders first cost 40-70 ms. It is capacity only: past it
    // our side's arrays double, which costs address space, not memory
    // (pages never written are never mapped).
    let expected = last_good.map_or(0, |g| g.0.max(0) as usize);
    let changed_since = last_good.map(|g| g.1);
    let mut differ = Differ::new(v.rules.clone(), expected, changed_since);
    // Each batch comes with its greatest key, found on the parser's thread.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Vec<RemoteOrder>)>(REMOTE_QUEUE);
    // Compared batches go back to their producer, which reads new rows into
    // their buffers: rows are allocated and freed on one thread, and about
    // as many as are in flight.
    let (spent_tx, spent_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<RemoteOrder>>();
    let (local_tx, local_rx) = std::sync::mpsc::sync_channel::<Vec<LocalRow>>(LOCAL_QUEUE);
    let (local_spent_tx, local_spent_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<LocalRow>>();
    // Set when the export turns out unusable (cut, malformed): the view's
    // reader stops at its next batch instead of reading a million orders
    // for a run that has already failed.
    let export_failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed = export_failed.clone();
    let settings = v.clone();
    let parser = tokio::task::spawn_blocking(move || {
        let mut spares = Spares::new(spent_rx);
        let mut batch = Vec::with_capacity(REMOTE_BATCH);
        let mut open = true;
        let read = source::for_each_row(&export, &settings, &mut |r: &mut RemoteOrder| {
            let mut row = spares.take();
            std::mem::swap(&mut row, r);
            batch.push(row);
            if batch.len() == REMOTE_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(REMOTE_BATCH));
                // The diff gave up (its view read failed): parse to the end unsent.
                open = open && tx.blocking_send((greatest_key(&full), full)).is_ok();
                if !open {
                    batch.clear();
                }
            }
        });
        if open && !batch.is_empty() {
            let _ = tx.blocking_send((greatest_key(&batch), batch));
        }
        failed.store(read.is_err(), std::sync::atomic::Ordering::Relaxed);
        (read, export)
    });
    let vendor = v.name.clone();
    let differ = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        // A batch of the export is compared once the view has passed its
        // last key, so with both sides in key order its orders are all
        // there: none wait. (Touched orders come after the scan, out of
        // order; theirs wait, or come last.)
        let mut held: Option<(String, Vec<RemoteOrder>)> = None;
        for rows in local_rx {
            for o in &rows {
                differ
                    .add_local(&o.order_ref, o.status, o.event_time, &o.fields_json)
                    .map_err(|e| {
                        StoreError::Corrupt(format!("order `{}` fields: {e}", o.order_ref))
                    })?;
            }
            let at = rows.last().map_or("", |o| o.order_ref.as_str());
            while differ.pending() < MAX_PENDING {
                if held.is_none() {
                    held = rx.try_recv().ok();
                }
                match held.take() {
                    Some((last, mut remote)) if last.as_str() <= at => {
                        remote.iter_mut().for_each(|r| differ.add_remote_early(r));
                        let _ = spent_tx.send(remote);
                    }
                    other => {
                        held = other;
                        break;
                    }
                }
            }
            let _ = local_spent_tx.send(rows);
        }
        debug!(vendor = %vendor, local_orders = differ.local_orders(), early_pending = differ.pending(), "view as of loaded");
        // Our side is whole: the rest of the export, then the end of the diff.
        if let Some((_, mut remote)) = held {
            remote.iter_mut().for_each(|r| differ.add_remote(r));
        }
        while let Some((_, mut remote)) = rx.blocking_recv() {
            remote.iter_mut().for_each(|r| differ.add_remote(r));
            let _ = spent_tx.send(remote);
        }
        Ok(differ)
    });
    let mut batch: Vec<LocalRow> = Vec::with_capacity(LOCAL_BATCH);
    let mut spares = Spares::new(local_spent_rx);
    let gone = || StoreError::Corrupt("the diff stopped".into());
    let scanned = store
        .view_as_of(&v.name, cut, |o| {
            // Heard of only after the cutoff: not ours as of then. If the
            // vendor lists it, that is `missing_local` (cause: late_email).
            let Some(k) = o.known else { return Ok(()) };
            let mut row = spares.take();
            row.order_ref.clear();
            row.order_ref.push_str(o.order_ref);
            row.fields_json.clear();
            row.fields_json.extend_from_slice(k.fields_json);
            (row.status, row.event_time) = (k.status, k.event_time);
            batch.push(row);
            if batch.len() == LOCAL_BATCH {
                if export_failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(gone());
                }
                let full = std::mem::replace(&mut batch, Vec::with_capacity(LOCAL_BATCH));
                local_tx.send(full).map_err(|_| gone())?;
            }
            Ok(())
        })
        .await;
    if scanned.is_ok() && !batch.is_empty() {
        let _ = local_tx.send(batch);
    }
    drop(local_tx);
    let differ = differ
        .await
        .map_err(|e| ReconcileError::Task(e.to_string()))?;
    // The diff's own error, or else the export's, explains a scan that
    // stopped because of it.
    let differ = match (differ, scanned) {
        (Err(e), _) => {
            // The parser stops on its own once its channel is gone.
            let _ = parser.await;
            return Err(e.into());
        }
        (Ok(_), Err(e)) => {
            let (read, _) = parser
                .await
                .map_err(|e| ReconcileError::Task(e.to_string()))?;
            read?;
            return Err(e.into());
        }
        (Ok(d), Ok(())) => d,
    };
    let (read, export) = parser
        .await
        .map_err(|e| ReconcileError::Task(e.to_string()))?;
    let read = read?;
    let d = differ
        .finish(cut)
        .map_err(|e| KeyFrameError::DuplicateKeys {
            count: e.count,
            examples: e.examples,
        })?;
    Ok((d, read, export))
}

/// Rows handed back by their consumer, for their producer to read new rows
/// into: a million rows are not each allocated on one thread and freed on
/// another. (tokio's channel, unlike std's, is `Sync`, so the async view
/// scan's closure can hold it.)
struct Spares<T> {
    rows: Vec<T>,
    spent: tokio::sync::mpsc::UnboundedReceiver<Vec<T>>,
}

impl<T: Default> Spares<T> {
    fn new(spent: tokio::sync::mpsc::UnboundedReceiver<Vec<T>>) -> Spares<T> {
        Spares {
            rows: Vec::new(),
            spent,
        }
    }

    /// A row to fill: a spent one when any came back, else a new one.
    fn take(&mut self) -> T {
        if self.rows.is_empty()
            && let Ok(spent) = self.spent.try_recv()
        {
            self.rows = spent;
        }
        self.rows.pop().unwrap_or_default()
    }
}

fn greatest_key(rows: &[RemoteOrder]) -> String {
    let last = rows.iter().map(|r| r.order_ref.as_str()).max();
    last.unwrap_or_default().to_string()
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

/// Reconciles one export that has been fetched: reads, plans, writes once.
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

    // Same bytes as the last key frame a run trusted (or a 304): nothing to diff.
    let same = matches!(export.body, Body::NotModified)
        || prev
            .as_ref()
            .is_some_and(|p| p.content_hash == export.meta.content_hash);
    let trusted = prev
        .as_ref()
        .filter(|p| same && matches!(p.outcome, Some(Outcome::Ok) | Some(Outcome::Unchanged)));
    let (plan, key_frame, as_of) = match trusted {
        Some(p) => {
            let close = agreed_by_delta(store, v).await?;
            let reason = plan::age_note(v, p.as_of, now());
            (
                RunPlan::unchanged(p.row_count, close, reason),
                KeyFrameRef::Existing(p.id),
                p.as_of,
            )
        }
        None if matches!(export.body, Body::NotModified) => {
            // 304 but we have no trusted key frame for it: nothing to compare.
            return Err(ReconcileError::KeyFrame(KeyFrameError::Json(
                "the server answered 304 Not Modified but no trusted key frame is stored".into(),
            )));
        }
        None => {
            let as_of = source::resolve_as_of(&mut export, v)?;
            refuse_future(as_of, now())?;
            let plan;
            (plan, export) = plan_key_frame(store, v, export, as_of, now(), &clock).await?;
            let m = &export.meta;
            let key_frame = KeyFrameRef::New(NewKeyFrame {
                source: m.source.clone(),
                as_of,
                fetched_at: m.fetched_at,
                content_hash: m.content_hash,
                row_count: plan.counts.orders_remote,
                complete: m.complete,
                etag: m.etag.clone(),
                last_modified: m.last_modified.clone(),
            });
            (plan, key_frame, as_of)
        }
    };
    if plan.outcome == Outcome::Refused {
        warn!(vendor = %v.name, reason = plan.reason.as_deref().unwrap_or_default(), "reconcile refused: nothing recorded or fixed");
    }
    let mut summary = RunSummary::new(v, opts, &export.meta.source);
    summary.as_of = Some(as_of);
    summary.outcome = plan.outcome;
    summary.reason = plan.reason.clone();
    summary.counts = plan.counts.clone();
    summary.by_cause = plan.by_cause.clone();
    summary.unmapped_status = plan.unmapped_status;
    summary.stale_orders = plan.stale_orders;
    summary.fixes = plan.fixes.len() as i64;
    summary.closed = plan.close_agreed.len() as i64;
    summary.sample = plan
        .drifts
        .iter()
        .take(20)
        .map(|d| d.drift.clone())
        .collect();
    if !opts.dry_run {
        let source = Some(export.meta.source.clone());
        let w = write(store, v, source, started_at, now(), &plan, key_frame, fence).await?;
        summary.run_id = Some(w.run_id);
        summary.fixed = w.fixed;
        summary.closed = w.closed;
    }
    summary.elapsed = clock.elapsed();
    info!(
        vendor = %v.name, outcome = plan.outcome.as_str(), rows = plan.counts.orders_remote,
        drifts = plan.drifts.len(), fixed = summary.fixed, dry_run = opts.dry_run,
        elapsed_ms = summary.elapsed.as_millis() as u64, "reconcile run"
    );
    Ok(summary)
}

/// How far a source's clock may run ahead of ours (a file server's mtime,
/// an HTTP `Last-Modified`) before its key frame is refused.
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// A key frame dated after now is refused: a fix carries the key frame's
/// time, so one dated ahead (a local time read as UTC, a wrong clock, a
/// touched file) would outrank every genuine email until that date.
fn refuse_future(as_of: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), KeyFrameError> {
    if as_of > now + CLOCK_SKEW {
        return Err(KeyFrameError::AsOf(format!(
            "{} is later than now ({}): the source's clock or the time it states is wrong, and a key frame dated ahead would outrank later email",
            as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )));
    }
    Ok(())
}

/// Reads what a new key frame is judged on and hands it to [`plan::plan`].
async fn plan_key_frame(
    store: &Store,
    v: &VendorSettings,
    export: Export,
    as_of: DateTime<Utc>,
    now: DateTime<Utc>,
    clock: &Instant,
) -> Result<(RunPlan, Export), ReconcileError> {
    let cut = Cutoff::new(as_of, v.grace);
    let last_good = store.last_good_key_frame(&v.name).await?;
    let (d, read, export) = diff(store, v, export, cut, last_good).await?;
    debug!(vendor = %v.name, rows = read.rows, elapsed_ms = clock.elapsed().as_millis() as u64, "diffed");

    // Evidence for attribution and the state fixes start from.
    let refs = d.order_refs();
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
    let plan = plan::plan(PlanInput {
        rules: v,
        cut,
        diff: d,
        key_frame: KeyFrameFacts {
            rows: read.rows,
            complete: export.meta.complete,
            incomplete_reason: export.meta.incomplete_reason.clone(),
            row_errors: read.bad.count,
            row_error_examples: read.bad.examples,
        },
        last_good_rows: last_good.map(|g| g.0.max(0) as u64),
        evidence: &evidence,
        quarantined: &quarantined,
        open: &open,
        now,
    });
    debug!(vendor = %v.name, elapsed_ms = clock.elapsed().as_millis() as u64, "planned");
    Ok((plan, export))
}

/// The one write of a run: its plan as one `record_run` transaction.
#[allow(clippy::too_many_arguments)]
async fn write(
    store: &Store,
    v: &VendorSettings,
    source: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    plan: &RunPlan,
    key_frame: KeyFrameRef,
    fence: Option<Fence>,
) -> Result<RunWritten, StoreError> {
    store
        .record_run(&RunRecord {
            vendor: v.name.clone(),
            policy: v.policy.as_str(),
            source,
            started_at,
            finished_at,
            outcome: plan.outcome,
            reason: plan.reason.clone(),
            key_frame,
            counts: plan.counts.clone(),
            drifts: plan
                .drifts_to_record()
                .iter()
                .map(|p| NewDrift {
                    existing: p.existing,
                    order_ref: p.drift.order_ref.clone(),
                    kind: p.drift.kind,
                    field: p.drift.field.clone(),
                    local_value: json_text(&p.drift.local_value),
                    remote_value: json_text(&p.drift.remote_value),
                    cause: p.drift.cause,
                })
                .collect(),
            close_unseen: plan.close_unseen(),
            close_agreed: plan.close_agreed.clone(),
            fixes: plan.fixes_to_apply().to_vec(),
            fence,
        })
        .await
}

/// Open drifts a later delta has settled: the view now says what the vendor said.
async fn agreed_by_delta(store: &Store, v: &VendorSettings) -> Result<Vec<i64>, ReconcileError> {
    Ok(store
        .open_drifts_with_newer_view(&v.name)
        .await?
        .into_iter()
        .filter(|x| {
            plan::view_agrees(
                v,
                x.drift.kind,
                x.drift.field.as_deref(),
                x.drift.remote_value.as_deref(),
                x.status,
                &x.fields,
            )
        })
        .map(|x| x.drift.id)
        .collect())
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
        let finished_at = opts.now.unwrap_or_else(Utc::now);
        let plan = RunPlan::failed(e.to_string());
        write(
            store,
            v,
            source_name,
            started_at,
            finished_at,
            &plan,
            KeyFrameRef::None,
            fence,
        )
        .await?;
    }
    result
}
