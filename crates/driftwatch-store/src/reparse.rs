//! Reparse: replace what archived messages produced with what the current
//! parsers make of them. Old deltas are kept and marked superseded (the log is
//! never edited); the affected orders are refolded in the same transaction.
//!
//! Each archived message carries a stamp of the rules that classified it
//! ([`RuleHashes`]); a reparse re-reads only messages whose stamp differs from
//! what the current rules would stamp, found from a covering index without
//! touching the raw archive.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::ingest::{Disposition, StoredMessage, stored_from_row};
use super::orders::{DELTA_COLUMNS, append_deltas, delta_from_row, load_orders, save_orders};
use super::{Result, Store, ts};
use crate::model::{Delta, DeltaDraft, DeltaSource, OrderState};
use crate::view;

/// Statements bind at most this many values in an `IN (..)` list.
const IN_CHUNK: usize = 500;

/// Fingerprints of the rules a classification depends on: per vendor for
/// parsed mail (that vendor's rule file and everything shared), and one over
/// all rules for mail no vendor parsed (quarantined or ignored mail may be
/// claimed by any rule file once it changes). Empty = unknown: nothing is
/// stamped and everything is re-examined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleHashes {
    by_vendor: BTreeMap<String, [u8; 32]>,
    all: Option<[u8; 32]>,
}

impl RuleHashes {
    pub fn new(by_vendor: BTreeMap<String, [u8; 32]>, all: [u8; 32]) -> RuleHashes {
        RuleHashes {
            by_vendor,
            all: Some(all),
        }
    }

    /// The stamp for a message classified under these rules. `None` for
    /// skipped mail (only its header is kept: nothing to reparse) and when
    /// the rules are unknown.
    pub fn stamp(&self, disposition: Disposition, vendor: Option<&str>) -> Option<[u8; 32]> {
        match disposition {
            Disposition::Parsed => vendor.and_then(|v| self.by_vendor.get(v)).copied(),
            Disposition::Quarantined | Disposition::Ignored => self.all,
            Disposition::Skipped => None,
        }
    }

    pub fn is_known(&self) -> bool {
        self.all.is_some()
    }
}

/// What the rules make of one message (ingest's `prepare` adds the
/// identity hash and the packed raw mail; reparse needs only this).
#[derive(Debug, Clone)]
pub struct Classification {
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub vendor: Option<String>,
    pub parser: Option<String>,
    pub parser_version: Option<u32>,
    pub deltas: Vec<DeltaDraft>,
}

/// A message's new classification, as a reparse applies it.
#[derive(Debug, Clone)]
pub struct Reparsed {
    pub message: i64,
    /// What the current rules make of it; its deltas only for the orders
    /// not in `keep`.
    pub new: Classification,
    /// Orders (vendor, order ref) whose deltas from this message are the
    /// same under the new rules: they stay in the log as they are, and those
    /// orders are not refolded. Only the rest are superseded and appended
    /// again. A CSV digest of 50 orders with one row read differently
    /// re-emits one delta to the feed, not 50. Empty: replace all.
    pub keep: BTreeSet<(String, String)>,
}

impl Reparsed {
    /// One of the new deltas, not yet in the log, as this message's parser gave it.
    fn delta(&self, d: &DeltaDraft, now: DateTime<Utc>) -> Delta {
        Delta {
            message: Some(self.message),
            parser: self.new.parser.clone(),
            parser_version: self.new.parser_version.map(i64::from),
            ..Delta::unlogged(DeltaSource::Email, d.clone(), now)
        }
    }
}

/// An order whose view a reparse changes: before and after.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrderChange {
    pub vendor: String,
    pub order_ref: String,
    pub before: Option<OrderState>,
    pub after: Option<OrderState>,
}

/// Which archived messages a reparse looks at.
#[derive(Debug, Clone, Default)]
pub struct ReparseScope {
    /// Messages in scope: complete raw mail, parsed, quarantined or ignored,
    /// archived on or after `since`.
    pub total: u64,
    /// Those whose stamp differs from what the current rules stamp, in id
    /// order: the only ones whose raw mail is read again.
    pub to_examine: Vec<i64>,
}

impl Store {
    /// The messages a reparse under `rules` must re-read, from the covering
    /// index `messages_reparse` (no raw mail is read).
    pub async fn reparse_scope(
        &self,
        since: Option<DateTime<Utc>>,
        rules: &RuleHashes,
    ) -> Result<ReparseScope> {
        let rows = sqlx::query(
            "SELECT id, disposition, vendor, rules FROM messages
             WHERE raw_complete = 1 AND disposition IN ('parsed', 'quarantined', 'ignored')
               AND ($1 IS NULL OR archived_at >= $1)
             ORDER BY id",
        )
        .bind(since.map(ts))
        .fetch_all(&self.pool)
        .await?;
        let mut scope = ReparseScope {
            total: rows.len() as u64,
            to_examine: Vec::new(),
        };
        for r in rows {
            let disposition = match r.try_get::<&str, _>(1)? {
                "parsed" => Disposition::Parsed,
                "quarantined" => Disposition::Quarantined,
                _ => Disposition::Ignored,
            };
            let stamp: Option<Vec<u8>> = r.try_get(3)?;
            let want = rules.stamp(disposition, r.try_get::<Option<&str>, _>(2)?);
            if want.is_none() || stamp.as_deref() != want.as_ref().map(|w| &w[..]) {
                scope.to_examine.push(r.try_get(0)?);
            }
        }
        Ok(scope)
    }

    /// These messages with their raw mail, in id order.
    pub async fn messages_by_id(&self, ids: &[i64]) -> Result<Vec<StoredMessage>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT id, raw, raw_complete, disposition, reason, vendor, sender, subject, archived_at,
                        internal_date, raw_codec
                 FROM messages WHERE id IN ({}) ORDER BY id",
                super::list_placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(super::bulk_for(self.backend, sql));
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(stored_from_row(&r)?);
            }
        }
        Ok(out)
    }

    /// The deltas each of these messages produced that the view still uses,
    /// in log order: one statement per chunk instead of one per message.
    pub async fn deltas_of_messages(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<Delta>>> {
        let mut out: HashMap<i64, Vec<Delta>> = HashMap::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                r#"SELECT {DELTA_COLUMNS} FROM deltas d
                 WHERE d.message IN ({}) AND d."offset" NOT IN (SELECT "offset" FROM superseded_deltas)
                 ORDER BY d."offset""#,
                super::list_placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(super::bulk_for(self.backend, sql));
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let d = delta_from_row(&r)?;
                if let Some(m) = d.message {
                    out.entry(m).or_default().push(d);
                }
            }
        }
        Ok(out)
    }

    /// Records that these messages were re-examined under the current rules
    /// and their result did not change, so the next reparse skips them.
    pub async fn stamp_rules(&self, stamped: &[(i64, Option<[u8; 32]>)]) -> Result<()> {
        let mut by_stamp: BTreeMap<Option<[u8; 32]>, Vec<i64>> = BTreeMap::new();
        for (id, s) in stamped {
            by_stamp.entry(*s).or_default().push(*id);
        }
        let mut tx = self.write_tx().await?;
        for (stamp, ids) in by_stamp {
            for chunk in ids.chunks(IN_CHUNK) {
                let sql = format!(
                    "UPDATE messages SET rules = $1 WHERE id IN ({})",
                    super::list_placeholders(2, chunk.len())
                );
                let mut q = sqlx::query(super::bulk(&tx, sql)).bind(stamp.map(|s| s.to_vec()));
                for id in chunk {
                    q = q.bind(id);
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// What the view of each affected order would become: nothing is written.
    /// The orders' deltas and views are read a page of orders at a time: a
    /// rule change touching thousands of orders spent its time on two round
    /// trips to SQLite's thread per order, the CPU mostly idle.
    pub async fn simulate_reparse(&self, changes: &[Reparsed]) -> Result<Vec<OrderChange>> {
        let mut conn = self.pool.acquire().await?;
        let now = Utc::now();
        let mut out = Vec::new();
        let (replaced, affected) = replaced_deltas(&mut conn, changes).await?;
        let replaced: HashSet<i64> = replaced.into_iter().collect();
        let affected: Vec<(String, String)> = affected.into_iter().collect();
        // Each order's new deltas, in the order of the changes: looking them
        // up by scanning every change for every order was quadratic.
        let mut new_deltas: HashMap<(&str, &str), Vec<(&Reparsed, &DeltaDraft)>> = HashMap::new();
        for c in changes {
            for d in &c.new.deltas {
                new_deltas
                    .entry((d.vendor.as_str(), d.order_ref.as_str()))
                    .or_default()
                    .push((c, d));
            }
        }
        for page in affected.chunks(ORDER_PAGE) {
            let keys: Vec<(&str, &str)> =
                page.iter().map(|(v, o)| (v.as_str(), o.as_str())).collect();
            let mut logs = page_logs(&mut conn, page).await?;
            let mut views = load_orders(&mut conn, &keys).await?;
            for (vendor, order_ref) in page {
                let key = (vendor.clone(), order_ref.clone());
                let mut ds: Vec<Delta> = logs
                    .remove(&key)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|d| !replaced.contains(&d.offset))
                    .collect();
                // New deltas would get offsets after every existing one.
                let new = new_deltas.get(&(vendor.as_str(), order_ref.as_str()));
                let offsets = i64::MAX / 2 + 1..;
                for (offset, (c, d)) in offsets.zip(new.into_iter().flatten()) {
                    ds.push(Delta {
                        offset,
                        ..c.delta(d, now)
                    });
                }
                let current = views.remove(&key);
                let after = view::fold(&mut ds);
                if !same_view(current.as_ref(), after.as_ref()) {
                    out.push(OrderChange {
                        vendor: vendor.clone(),
                        order_ref: order_ref.clone(),
                        before: current,
                        after,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Applies a batch of reparse results in one transaction; each changed
    /// message gets the stamp of the rules that classified it now (`None`
    /// when those are unknown, so a later reparse looks at it again).
    pub async fn apply_reparse(
        &self,
        changes: &[Reparsed],
        rules: &RuleHashes,
        reason: &str,
    ) -> Result<()> {
        let now = Utc::now();
        let mut tx = self.write_tx().await?;
        let (replaced, affected) = replaced_deltas(&mut tx, changes).await?;
        let mut fresh = Vec::new();
        for chunk in replaced.chunks(IN_CHUNK) {
            let sql = format!(
                r#"INSERT INTO superseded_deltas ("offset", superseded_at, reason)
                 SELECT "offset", $1, $2 FROM deltas WHERE "offset" IN ({})
                 ON CONFLICT DO NOTHING"#,
                super::list_placeholders(3, chunk.len())
            );
            let mut q = sqlx::query(super::bulk(&tx, sql))
                .bind(ts(now))
                .bind(reason);
            for offset in chunk {
                q = q.bind(offset);
            }
            q.execute(&mut *tx).await?;
        }
        for c in changes {
            let n = &c.new;
            fresh.extend(n.deltas.iter().map(|d| c.delta(d, now)));
            sqlx::query(
                "UPDATE messages SET disposition = $1, reason = $2, vendor = $3, parser = $4, parser_version = $5,
                     rules = $6
                 WHERE id = $7",
            )
            .bind(n.disposition.as_str())
            .bind(&n.reason)
            .bind(&n.vendor)
            .bind(&n.parser)
            .bind(n.parser_version.map(i64::from))
            .bind(
                rules
                    .stamp(n.disposition, n.vendor.as_deref())
                    .map(|s| s.to_vec()),
            )
            .bind(c.message)
            .execute(&mut *tx)
            .await?;
        }
        append_deltas(&mut tx, fresh).await?;
        let affected: Vec<(String, String)> = affected.into_iter().collect();
        for page in affected.chunks(ORDER_PAGE) {
            let mut logs = page_logs(&mut tx, page).await?;
            let mut states = Vec::with_capacity(page.len());
            let mut gone = Vec::new();
            for key in page {
                let mut ds = logs.remove(key).unwrap_or_default();
                match view::fold(&mut ds) {
                    Some(s) => states.push(s),
                    None => gone.push(key),
                }
            }
            save_orders(&mut tx, &states).await?;
            for (vendor, order_ref) in gone {
                sqlx::query("DELETE FROM orders WHERE vendor = $1 AND order_ref = $2")
                    .bind(vendor)
                    .bind(order_ref)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Orders read per statement while simulating or applying a reparse.
const ORDER_PAGE: usize = 400;

/// The non-superseded deltas of a page of orders, in event order, by order.
async fn page_logs(
    conn: &mut sqlx::AnyConnection,
    page: &[(String, String)],
) -> Result<HashMap<(String, String), Vec<Delta>>> {
    let mut out = HashMap::new();
    for run in page.chunk_by(|a, b| a.0 == b.0) {
        let vendor = &run[0].0;
        let refs: Vec<String> = run.iter().map(|(_, o)| o.clone()).collect();
        for (order_ref, log) in super::reconcile::deltas_of(conn, vendor, &refs, false).await? {
            out.insert(
                (vendor.clone(), order_ref),
                log.into_iter().map(|e| e.delta).collect(),
            );
        }
    }
    Ok(out)
}

/// The deltas the changes replace (each changed message's current deltas,
/// except those of the orders it keeps), by offset, and the orders touched
/// by those or by the new deltas: the ones to refold.
async fn replaced_deltas(
    conn: &mut sqlx::AnyConnection,
    changes: &[Reparsed],
) -> Result<(Vec<i64>, BTreeSet<(String, String)>)> {
    let keep: HashMap<i64, &BTreeSet<(String, String)>> =
        changes.iter().map(|c| (c.message, &c.keep)).collect();
    let mut offsets = Vec::new();
    let mut orders = BTreeSet::new();
    let ids: Vec<i64> = changes.iter().map(|c| c.message).collect();
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            r#"SELECT "offset", message, vendor, order_ref FROM deltas
             WHERE message IN ({}) AND "offset" NOT IN (SELECT "offset" FROM superseded_deltas)"#,
            super::list_placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (i64, i64, String, String)>(super::bulk(conn, sql));
        for id in chunk {
            q = q.bind(id);
        }
        for (offset, message, vendor, order_ref) in q.fetch_all(&mut *conn).await? {
            let order = (vendor, order_ref);
            if keep.get(&message).is_some_and(|k| k.contains(&order)) {
                continue;
            }
            offsets.push(offset);
            orders.insert(order);
        }
    }
    for c in changes {
        orders.extend(
            c.new
                .deltas
                .iter()
                .map(|d| (d.vendor.clone(), d.order_ref.clone())),
        );
    }
    Ok((offsets, orders))
}

/// Two views are the same for a user when status and fields agree; offsets
/// and recording times necessarily differ after a reparse.
fn same_view(a: Option<&OrderState>, b: Option<&OrderState>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.status == b.status
                && a.vendor_status == b.vendor_status
                && a.fields == b.fields
                && a.event_time == b.event_time
        }
        _ => false,
    }
}
