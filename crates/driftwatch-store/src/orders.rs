//! The delta log and the order view derived from it.

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Result, Store, StoreError, parse_enum, parse_ts, ts};
use crate::model::{Delta, DeltaDraft, Fields, OrderState, Status};
use crate::view;

pub(super) const DELTA_COLUMNS: &str = r#"d."offset", d.vendor, d.order_ref, d.source, d.status, d.vendor_status, d.fields,
     d.event_time, d.time_source, d.recorded_at, d.message, d.parser, d.parser_version"#;

pub(super) const ORDER_COLUMNS: &str =
    "vendor, order_ref, status, vendor_status, fields, event_time, last_offset,
     updated_at, delta_count";

/// Which deltas a reader wants.
#[derive(Debug, Clone, Default)]
pub struct DeltaFilter {
    pub vendor: Option<String>,
    pub order_ref: Option<String>,
}

/// Appends deltas to the log (the caller holds the write lock): offsets
/// continue the log in the given order, the record time is rounded to what
/// the store keeps, so a returned delta equals a reloaded one. Multi-row
/// statements: each statement is a round trip to SQLite's worker thread,
/// and thousands of fixes or reparsed messages one by one cost seconds.
pub(super) async fn append_deltas(
    conn: &mut AnyConnection,
    mut deltas: Vec<Delta>,
) -> Result<Vec<Delta>> {
    let mut next: i64 = sqlx::query_scalar(r#"SELECT coalesce(max("offset"), 0) + 1 FROM deltas"#)
        .fetch_one(&mut *conn)
        .await?;
    for d in &mut deltas {
        d.offset = next;
        next += 1;
        d.recorded_at = parse_ts(&ts(d.recorded_at))?;
    }
    insert_deltas(conn, &deltas).await?;
    super::feed::notify_appended(next - 1);
    Ok(deltas)
}

async fn insert_deltas(conn: &mut AnyConnection, deltas: &[Delta]) -> Result<()> {
    for chunk in deltas.chunks(200) {
        let sql = format!(
            r#"INSERT INTO deltas ("offset", vendor, order_ref, source, status, vendor_status, fields, event_time,
                 time_source, recorded_at, message, parser, parser_version)
             VALUES {}"#,
            super::row_placeholders(1, 13, chunk.len())
        );
        let mut q = sqlx::query(super::bulk(conn, sql));
        for d in chunk {
            let fields = serde_json::to_string(&d.draft.fields)
                .map_err(|e| StoreError::Corrupt(format!("fields do not serialise: {e}")))?;
            q = q
                .bind(d.offset)
                .bind(&d.draft.vendor)
                .bind(&d.draft.order_ref)
                .bind(d.source.as_str())
                .bind(d.draft.status.map(Status::as_str))
                .bind(&d.draft.vendor_status)
                .bind(fields)
                .bind(ts(d.draft.event_time))
                .bind(d.draft.time_source.as_str())
                .bind(ts(d.recorded_at))
                .bind(d.message)
                .bind(&d.parser)
                .bind(d.parser_version);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Brings the view up to date with newly appended deltas (already in the
/// log), one load and one save per batch: in-order deltas are applied on top
/// of the stored state; an order that received an out-of-order delta is
/// refolded from its log.
pub(super) async fn update_views(conn: &mut AnyConnection, deltas: &[Delta]) -> Result<()> {
    let mut by_order: std::collections::BTreeMap<(&str, &str), Vec<&Delta>> = Default::default();
    for d in deltas {
        by_order
            .entry((d.draft.vendor.as_str(), d.draft.order_ref.as_str()))
            .or_default()
            .push(d);
    }
    let keys: Vec<(&str, &str)> = by_order.keys().copied().collect();
    let mut current = load_orders(conn, &keys).await?;
    let mut next = Vec::with_capacity(by_order.len());
    for ((vendor, order_ref), mut ds) in by_order {
        ds.sort_by_key(|d| d.offset);
        let mut state = current.remove(&(vendor.to_string(), order_ref.to_string()));
        let mut in_order = true;
        for d in ds {
            match state {
                Some(ref s) if !view::applies_after(s, d) => {
                    in_order = false;
                    break;
                }
                _ => state = Some(view::apply(state.take(), d)),
            }
        }
        if !in_order {
            let mut all = order_deltas_conn(conn, vendor, order_ref).await?;
            state = view::fold(&mut all);
        }
        next.extend(state);
    }
    save_orders(conn, &next).await
}

/// The stored view rows of these orders. One statement per vendor and
/// chunk, `vendor = ? AND order_ref IN (..)`: SQLite searches that by the
/// primary key, while the row-value form `(vendor, order_ref) IN (VALUES ..)`
/// made it scan the whole view for every chunk, which grew with the view and
/// was most of a delta-heavy batch's commit.
pub(super) async fn load_orders(
    conn: &mut AnyConnection,
    keys: &[(&str, &str)],
) -> Result<std::collections::HashMap<(String, String), OrderState>> {
    let mut found = std::collections::HashMap::new();
    for run in keys.chunk_by(|a, b| a.0 == b.0) {
        let vendor = run[0].0;
        for chunk in run.chunks(500) {
            let sql = format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE vendor = $1 AND order_ref IN ({})",
                super::list_placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(super::bulk(conn, sql)).bind(vendor);
            for (_, r) in chunk {
                q = q.bind(*r);
            }
            for row in q.fetch_all(&mut *conn).await? {
                let o = order_from_row(&row)?;
                found.insert((o.vendor.clone(), o.order_ref.clone()), o);
            }
        }
    }
    Ok(found)
}

pub(super) async fn save_orders(conn: &mut AnyConnection, states: &[OrderState]) -> Result<()> {
    for chunk in states.chunks(300) {
        let sql = format!(
            "INSERT INTO orders (vendor, order_ref, status, vendor_status, fields, event_time,
                 last_offset, updated_at, delta_count)
             VALUES {}
             ON CONFLICT (vendor, order_ref) DO UPDATE SET
                 status = excluded.status, vendor_status = excluded.vendor_status,
                 fields = excluded.fields, event_time = excluded.event_time,
                 last_offset = excluded.last_offset, updated_at = excluded.updated_at,
                 delta_count = excluded.delta_count",
            super::row_placeholders(1, 9, chunk.len())
        );
        let mut q = sqlx::query(super::bulk(conn, sql));
        for s in chunk {
            let fields = serde_json::to_string(&s.fields)
                .map_err(|e| StoreError::Corrupt(format!("fields do not serialise: {e}")))?;
            q = q
                .bind(&s.vendor)
                .bind(&s.order_ref)
                .bind(s.status.map(Status::as_str))
                .bind(&s.vendor_status)
                .bind(fields)
                .bind(ts(s.event_time))
                .bind(s.last_offset)
                .bind(ts(s.updated_at))
                .bind(s.delta_count);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub(super) async fn load_order(
    conn: &mut AnyConnection,
    vendor: &str,
    order_ref: &str,
) -> Result<Option<OrderState>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE vendor = $1 AND order_ref = $2"
    )))
    .bind(vendor)
    .bind(order_ref)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(order_from_row).transpose()
}

async fn save_order(conn: &mut AnyConnection, s: &OrderState) -> Result<()> {
    save_orders(conn, std::slice::from_ref(s)).await
}

pub(super) async fn order_deltas_conn(
    conn: &mut AnyConnection,
    vendor: &str,
    order_ref: &str,
) -> Result<Vec<Delta>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"SELECT {DELTA_COLUMNS} FROM deltas d
         WHERE d.vendor = $1 AND d.order_ref = $2
           AND d."offset" NOT IN (SELECT "offset" FROM superseded_deltas)
         ORDER BY d.event_time, d."offset""#
    )))
    .bind(vendor)
    .bind(order_ref)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(delta_from_row).collect()
}

/// A row's columns by position, for the one delta decoder both drivers'
/// rows go through: sqlx's, and rusqlite's where SQLite is read in place.
pub(super) trait Columns {
    fn text(&self, i: usize) -> Result<Option<&str>>;
    fn int(&self, i: usize) -> Result<Option<i64>>;
}

impl Columns for AnyRow {
    fn text(&self, i: usize) -> Result<Option<&str>> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<Option<&str>> {
        let v = self.get_ref(i)?;
        v.as_str_or_null()
            .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
    }
    fn int(&self, i: usize) -> Result<Option<i64>> {
        let v = self.get_ref(i)?;
        v.as_i64_or_null()
            .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
    }
}

/// Decodes the columns of [`DELTA_COLUMNS`], in that order.
pub(super) fn delta_from_row(r: &impl Columns) -> Result<Delta> {
    let text = |i: usize, what: &str| {
        r.text(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("delta {what} is NULL")))
    };
    let fields: Fields = serde_json::from_str(text(6, "fields")?)
        .map_err(|e| StoreError::Corrupt(format!("delta fields: {e}")))?;
    Ok(Delta {
        offset: r
            .int(0)?
            .ok_or_else(|| StoreError::Corrupt("delta offset is NULL".into()))?,
        source: parse_enum("delta source", text(3, "source")?)?,
        draft: DeltaDraft {
            vendor: text(1, "vendor")?.to_string(),
            order_ref: text(2, "order_ref")?.to_string(),
            status: r
                .text(4)?
                .map(|s| parse_enum::<Status>("status", s))
                .transpose()?,
            vendor_status: r.text(5)?.map(str::to_string),
            fields,
            event_time: parse_ts(text(7, "event_time")?)?,
            time_source: parse_enum("time source", text(8, "time_source")?)?,
        },
        recorded_at: parse_ts(text(9, "recorded_at")?)?,
        message: r.int(10)?,
        parser: r.text(11)?.map(str::to_string),
        parser_version: r.int(12)?,
    })
}

pub(super) fn order_from_row(r: &AnyRow) -> Result<OrderState> {
    let fields: Fields = serde_json::from_str(r.try_get::<&str, _>(4)?)
        .map_err(|e| StoreError::Corrupt(format!("order fields: {e}")))?;
    Ok(OrderState {
        vendor: r.try_get(0)?,
        order_ref: r.try_get(1)?,
        status: r
            .try_get::<Option<&str>, _>(2)?
            .map(|s| parse_enum::<Status>("status", s))
            .transpose()?,
        vendor_status: r.try_get(3)?,
        fields,
        event_time: parse_ts(r.try_get::<&str, _>(5)?)?,
        last_offset: r.try_get(6)?,
        updated_at: parse_ts(r.try_get::<&str, _>(7)?)?,
        delta_count: r.try_get(8)?,
    })
}

impl Store {
    pub async fn orders(&self, vendor: Option<&str>) -> Result<Vec<OrderState>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE ($1 IS NULL OR vendor = $1)
             ORDER BY vendor, order_ref"
        )))
        .bind(vendor)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(order_from_row).collect()
    }

    pub async fn order(&self, vendor: &str, order_ref: &str) -> Result<Option<OrderState>> {
        let mut conn = self.pool.acquire().await?;
        load_order(&mut conn, vendor, order_ref).await
    }

    /// The order's history in event order, superseded deltas excluded.
    pub async fn order_deltas(&self, vendor: &str, order_ref: &str) -> Result<Vec<Delta>> {
        let mut conn = self.pool.acquire().await?;
        order_deltas_conn(&mut conn, vendor, order_ref).await
    }

    /// Deltas after `offset`, in log order: the cursor API readers resume from.
    pub async fn deltas_after(
        &self,
        offset: i64,
        limit: i64,
        filter: &DeltaFilter,
    ) -> Result<Vec<Delta>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"SELECT {DELTA_COLUMNS} FROM deltas d
             WHERE d."offset" > $1 AND ($2 IS NULL OR d.vendor = $2) AND ($3 IS NULL OR d.order_ref = $3)
             ORDER BY d."offset" LIMIT $4"#
        )))
        .bind(offset)
        .bind(&filter.vendor)
        .bind(&filter.order_ref)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delta_from_row).collect()
    }

    /// Recomputes the whole order view from the delta log in one transaction,
    /// a chunk of orders at a time so memory stays flat on a large log.
    pub async fn rebuild_view(&self) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM orders").execute(&mut *tx).await?;
        let mut count = 0u64;
        let mut after = (String::new(), String::new());
        loop {
            let chunk = next_chunk(&mut tx, &after.0, &after.1).await?;
            let Some(last) = chunk.last() else { break };
            after = (last.vendor.clone(), last.order_ref.clone());
            for s in &chunk {
                save_order(&mut tx, s).await?;
                count += 1;
            }
        }
        tx.commit().await?;
        Ok(count)
    }
}

/// Folds the next chunk of complete orders after (vendor, order_ref), in key order.
async fn next_chunk(
    conn: &mut AnyConnection,
    after_vendor: &str,
    after_ref: &str,
) -> Result<Vec<OrderState>> {
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"SELECT {DELTA_COLUMNS} FROM deltas d
         WHERE (d.vendor, d.order_ref) > ($1, $2)
           AND d."offset" NOT IN (SELECT "offset" FROM superseded_deltas)
         ORDER BY d.vendor, d.order_ref, d.event_time, d."offset""#
    )))
    .bind(after_vendor)
    .bind(after_ref)
    .fetch(&mut *conn);
    let mut states = Vec::new();
    let mut current: Option<OrderState> = None;
    while let Some(row) = rows.try_next().await? {
        let d = delta_from_row(&row)?;
        current = match current {
            Some(s) if s.vendor == d.draft.vendor && s.order_ref == d.draft.order_ref => {
                Some(view::apply(Some(s), &d))
            }
            other => {
                if let Some(s) = other {
                    states.push(s);
                    if states.len() >= 1024 {
                        // `current` is incomplete; drop it, the next chunk restarts at it.
                        return Ok(states);
                    }
                }
                Some(view::apply(None, &d))
            }
        };
    }
    states.extend(current);
    Ok(states)
}
