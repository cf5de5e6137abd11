//! `driftwatch reparse`: re-run archived raw mail through the current parsers.
//!
//! Used after fixing a parser for a vendor's new email format: messages the
//! old parser quarantined now yield deltas, and messages it misread yield
//! corrected ones. A message whose result is unchanged is left alone, so a
//! reparse after a version bump that changes nothing writes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::ingest::prepare;
use crate::model::{MessageBody, RawMessage};
use crate::parse::Registry;
use crate::store::{Disposition, OrderChange, Reparsed, Store, StoreError};

#[derive(Debug, Clone, Default)]
pub struct ReparseOptions {
    /// Only changes where the old or the new result belongs to this vendor.
    pub vendor: Option<String>,
    /// Only messages archived at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Show what would change; write nothing.
    pub dry_run: bool,
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
    pub examined: u64,
    pub changed: u64,
    pub per_vendor: BTreeMap<String, VendorCounts>,
    /// Orders whose status or fields differ (would differ, on a dry run).
    pub orders: Vec<OrderChange>,
    pub dry_run: bool,
}

const PAGE: i64 = 500;

pub async fn run(
    store: &Store,
    registry: &Registry,
    opts: &ReparseOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ReparseReport, StoreError> {
    let total = store.reparse_count(opts.since).await?;
    let mut report = ReparseReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut pending: Vec<Reparsed> = Vec::new();
    let mut after = 0;
    loop {
        let page = store.reparse_page(opts.since, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let mut changes = Vec::new();
        for m in page {
            report.examined += 1;
            let old = store.message_deltas(m.id).await?;
            let new = prepare(
                registry,
                RawMessage {
                    location: String::new(),
                    uid: 0,
                    body: MessageBody::Full(m.raw),
                    internal_date: m.internal_date,
                },
            );
            let old_drafts: Vec<_> = old.iter().map(|d| d.draft.clone()).collect();
            let unchanged = new.disposition.as_str() == m.disposition
                && new.reason == m.reason
                && new.deltas == old_drafts;
            if unchanged {
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
                ("quarantined", Disposition::Parsed) => c.newly_parsed += 1,
                ("parsed", Disposition::Quarantined) => c.newly_quarantined += 1,
                _ => {}
            }
            report.changed += 1;
            changes.push(Reparsed {
                message: m.id,
                disposition: new.disposition,
                reason: new.reason,
                vendor: new.vendor,
                parser: new.parser,
                parser_version: new.parser_version,
                deltas: new.deltas,
            });
        }
        if opts.dry_run {
            pending.extend(changes);
        } else if !changes.is_empty() {
            report
                .orders
                .extend(store.simulate_reparse(&changes).await?);
            store.apply_reparse(&changes, "reparse").await?;
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
