//! `driftwatch reparse`: re-run archived raw mail through the current parsers.
//!
//! Used after fixing a parser for a vendor's new email format: messages the
//! old parser quarantined (or a rule ignored) now yield deltas, and messages
//! it misread yield corrected ones. A message whose result is unchanged is
//! left alone, so a reparse after a version bump that changes nothing writes
//! nothing.
//!
//! Reparse is cheap when little changed: every archived message is stamped
//! with a hash of the rules that classified it ([`rule_hashes`]), and only
//! messages whose stamp differs from the current rules' are read and parsed
//! again (on every core, a page at a time, old deltas loaded per page).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::ingest::classify;
use crate::model::{Delta, DeltaDraft};
use crate::parse::Mail;
use crate::parse::Registry;
use crate::store::{
    Classification, Disposition, OrderChange, Reparsed, RuleHashes, Store, StoreError,
};

#[derive(Debug, Clone, Default)]
pub struct ReparseOptions {
    /// Only changes where the old or the new result belongs to this vendor.
    pub vendor: Option<String>,
    /// Only messages archived at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Show what would change; write nothing.
    pub dry_run: bool,
    /// The hashes of the rules in `registry` (from [`rule_hashes`], loaded
    /// with it): messages stamped with these are skipped unread. Unknown
    /// (the default) re-reads every message.
    pub rules: RuleHashes,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VendorCounts {
    pub changed: u64,
    pub newly_parsed: u64,
    pub newly_quarantined: u64,
    pub deltas_before: u64,
    pub deltas_after: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReparseReport {
    /// Messages in scope: parsed, quarantined and ignored mail with its raw text.
    pub in_scope: u64,
    /// Those read and parsed again (the rest were classified by these rules already).
    pub examined: u64,
    pub changed: u64,
    pub per_vendor: BTreeMap<String, VendorCounts>,
    /// Orders whose status or fields differ (would differ, on a dry run).
    pub orders: Vec<OrderChange>,
    pub dry_run: bool,
}

const PAGE: usize = 500;

pub async fn run(
    store: &Store,
    registry: &Registry,
    opts: &ReparseOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ReparseReport, StoreError> {
    let scope = store.reparse_scope(opts.since, &opts.rules).await?;
    let total = scope.to_examine.len() as u64;
    let mut report = ReparseReport {
        dry_run: opts.dry_run,
        in_scope: scope.total,
        ..Default::default()
    };
    let mut pending: Vec<Reparsed> = Vec::new();
    for ids in scope.to_examine.chunks(PAGE) {
        let page = store.messages_by_id(ids).await?;
        let mut old_deltas = store.deltas_of_messages(ids).await?;
        let fresh = parse_page(registry, &page).await?;
        let mut changes = Vec::new();
        let mut unchanged = Vec::new();
        for (m, new) in page.iter().zip(fresh) {
            report.examined += 1;
            let old = old_deltas.remove(&m.id).unwrap_or_default();
            let (keep, every_order) = unchanged_orders(&old, &new.deltas);
            let same =
                new.disposition.as_str() == m.disposition && new.reason == m.reason && every_order;
            if same {
                unchanged.push((
                    m.id,
                    opts.rules.stamp(new.disposition, new.vendor.as_deref()),
                ));
                continue;
            }
            let vendors = [m.vendor.clone(), new.vendor.clone()];
            if let Some(v) = &opts.vendor
                && !vendors.iter().any(|x| x.as_deref() == Some(v.as_str()))
            {
                continue;
            }
            let key = new
                .vendor
                .clone()
                .or(m.vendor.clone())
                .unwrap_or_else(|| "(no vendor)".into());
            let c = report.per_vendor.entry(key).or_default();
            c.changed += 1;
            c.deltas_before += old.len() as u64;
            c.deltas_after += new.deltas.len() as u64;
            match (m.disposition.as_str(), new.disposition) {
                ("quarantined" | "ignored", Disposition::Parsed) => c.newly_parsed += 1,
                ("parsed", Disposition::Quarantined) => c.newly_quarantined += 1,
                _ => {}
            }
            report.changed += 1;
            changes.push(reparsed(m.id, new, keep));
        }
        if opts.dry_run {
            pending.extend(changes);
        } else {
            if !changes.is_empty() {
                report
                    .orders
                    .extend(store.simulate_reparse(&changes).await?);
                store
                    .apply_reparse(&changes, &opts.rules, "reparse")
                    .await?;
            }
            if opts.rules.is_known() && !unchanged.is_empty() {
                store.stamp_rules(&unchanged).await?;
            }
        }
        progress(report.examined, total);
    }
    if opts.dry_run {
        report.orders = store.simulate_reparse(&pending).await?;
    } else {
        // An order touched on several pages: keep its first `before` and last `after`.
        let mut merged: BTreeMap<(String, String), OrderChange> = BTreeMap::new();
        for c in std::mem::take(&mut report.orders) {
            merged
                .entry((c.vendor.clone(), c.order_ref.clone()))
                .and_modify(|m| m.after = c.after.clone())
                .or_insert(c);
        }
        report.orders = merged.into_values().collect();
    }
    Ok(report)
}

/// A message's new classification, as the store applies it: the deltas of
/// the orders in `keep` stay as they are in the log.
fn reparsed(message: i64, mut new: Classification, keep: BTreeSet<(String, String)>) -> Reparsed {
    if !keep.is_empty() {
        new.deltas
            .retain(|d| !keep.contains(&(d.vendor.clone(), d.order_ref.clone())));
    }
    Reparsed { message, new, keep }
}

/// The orders whose deltas from one message are the same (the same drafts
/// in the same order) in its current log and under the new rules, and
/// whether that is every order the message speaks of, before or now.
fn unchanged_orders(old: &[Delta], new: &[DeltaDraft]) -> (BTreeSet<(String, String)>, bool) {
    type Drafts<'a> = (Vec<&'a DeltaDraft>, Vec<&'a DeltaDraft>);
    let mut by_order: BTreeMap<(&str, &str), Drafts<'_>> = BTreeMap::new();
    for d in old {
        let key = (d.draft.vendor.as_str(), d.draft.order_ref.as_str());
        by_order.entry(key).or_default().0.push(&d.draft);
    }
    for d in new {
        let key = (d.vendor.as_str(), d.order_ref.as_str());
        by_order.entry(key).or_default().1.push(d);
    }
    let mut keep = BTreeSet::new();
    let mut every = true;
    for ((vendor, order_ref), (before, now)) in by_order {
        if before == now {
            keep.insert((vendor.to_string(), order_ref.to_string()));
        } else {
            every = false;
        }
    }
    (keep, every)
}

/// What releasing one message gave.
#[derive(Debug, Clone)]
pub struct Released {
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub vendor: Option<String>,
    pub deltas: usize,
}

/// Re-reads one archived message through `registry` (the current rules) and
/// applies the result as `reparse` does: the dashboard's "release" of a
/// quarantined message once its rule is fixed. `None` when there is no such
/// message; a message the current rules still quarantine stays quarantined.
pub async fn release(
    store: &Store,
    registry: &Registry,
    rules: &RuleHashes,
    id: i64,
) -> Result<Option<Released>, StoreError> {
    let page = store.messages_by_id(&[id]).await?;
    let Some(m) = page.first() else {
        return Ok(None);
    };
    let Some(new) = parse_page(registry, &page).await?.pop() else {
        return Ok(None);
    };
    let released = Released {
        disposition: new.disposition,
        reason: new.reason.clone(),
        vendor: new.vendor.clone().or(m.vendor.clone()),
        deltas: new.deltas.len(),
    };
    if new.disposition.as_str() != m.disposition || new.reason != m.reason {
        store
            .apply_reparse(&[reparsed(m.id, new, BTreeSet::new())], rules, "released")
            .await?;
    }
    Ok(Some(released))
}

/// Classifies a page of archived messages on every core, in order.
async fn parse_page(
    registry: &Registry,
    page: &[crate::store::StoredMessage],
) -> Result<Vec<Classification>, StoreError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let per_task = page.len().div_ceil(cores).max(1);
    std::thread::scope(|s| {
        let tasks: Vec<_> = page
            .chunks(per_task)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|m| classify(registry, Mail::parse(&m.raw, m.internal_date).as_ref()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(page.len());
        for t in tasks {
            out.extend(
                t.join()
                    .map_err(|_| StoreError::Corrupt("parser thread panicked".into()))?,
            );
        }
        Ok(out)
    })
}

/// Stamps for the rules in `dir` under these registry options (their `Debug`
/// text): per vendor, a hash of driftwatch's version, the options, that
/// vendor's rule file and the `[match]` table and name of every rule file (a
/// file claiming a sender can take another vendor's mail); plus one over every
/// file, for mail no vendor parsed. Unknown (empty) when a file cannot be
/// read, or changes while it is read (compare two reads around loading the
/// registry).
pub fn rule_hashes(dir: &Path, options: &str) -> RuleHashes {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return RuleHashes::default();
    };
    let mut files: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut shared = Sha256::new();
    shared.update(concat!("driftwatch ", env!("CARGO_PKG_VERSION"), "\0"));
    shared.update(options.as_bytes());
    let mut all = shared.clone();
    let mut per_file = Vec::new();
    for f in &files {
        let Ok(bytes) = std::fs::read(f) else {
            return RuleHashes::default();
        };
        let Ok(table) = std::str::from_utf8(&bytes)
            .map_err(|_| ())
            .and_then(|t| t.parse::<toml::Table>().map_err(|_| ()))
        else {
            return RuleHashes::default();
        };
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        shared.update(format!("\0{name:?}\0{:?}", table.get("match")).as_bytes());
        all.update(format!("\0{name:?}\0").as_bytes());
        all.update(&bytes);
        if let Some(vendor) = table.get("vendor").and_then(|v| v.as_str()) {
            per_file.push((vendor.to_string(), bytes));
        }
    }
    let by_vendor = per_file
        .into_iter()
        .map(|(vendor, bytes)| {
            let mut h = shared.clone();
            h.update(b"\0file\0");
            h.update(&bytes);
            (vendor, h.finalize().into())
        })
        .collect();
    RuleHashes::new(by_vendor, all.finalize().into())
}
