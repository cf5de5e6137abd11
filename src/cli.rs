//! Human-readable output shared by the command line and the demo.
//!
//! Everything printed goes through [`crate::out`]: sanitised, and a closed
//! pipe comes back as an error that ends the command quietly.

use anyhow::Result;

use crate::out::{clean, table, truncate, write_text};
use crate::outln;
use crate::store::Store;

pub fn print_ingest(results: &[(String, String, crate::store::BatchOutcome)]) -> Result<()> {
    for (source, folder, o) in results {
        outln!(
            "{}/{}: fetched {}, archived {} (parsed {}, quarantined {}, ignored {}, skipped {}), duplicates {}, deltas {}",
            clean(source),
            clean(folder),
            o.fetched(),
            o.archived,
            o.parsed,
            o.quarantined,
            o.ignored,
            o.skipped,
            o.duplicates,
            o.deltas
        )?;
    }
    Ok(())
}

/// Widest a vendor-supplied value gets in a table before it is cut with `…`
/// (`orders VENDOR ORDER` and `--json` show it whole).
const CELL_MAX: usize = 60;

pub async fn orders(
    store: &Store,
    vendor: Option<&str>,
    order_ref: Option<&str>,
    json: bool,
) -> Result<()> {
    let all = store.orders(vendor).await?;
    let Some(order_ref) = order_ref else {
        if json {
            outln!("{}", serde_json::to_string_pretty(&all)?)?;
            return Ok(());
        }
        let mut rows = Vec::with_capacity(all.len());
        for o in &all {
            rows.push(vec![
                o.vendor.clone(),
                o.order_ref.clone(),
                o.status.map(|s| s.as_str()).unwrap_or("-").to_string(),
                o.vendor_status.as_deref().unwrap_or("-").to_string(),
                o.event_time.format("%Y-%m-%d %H:%M").to_string(),
                serde_json::to_string(&o.fields)?,
            ]);
        }
        let rows = rows.into_iter().map(|r| {
            r.iter()
                .map(|c| truncate(c, CELL_MAX).into_owned())
                .collect()
        });
        write_text(&table(
            &[
                "VENDOR",
                "ORDER",
                "STATUS",
                "VENDOR STATUS",
                "AS OF (UTC)",
                "FIELDS",
            ],
            rows,
        ))?;
        outln!("{} order(s)", all.len())?;
        return Ok(());
    };
    let matches: Vec<_> = all.iter().filter(|o| o.order_ref == order_ref).collect();
    let order = match matches.as_slice() {
        [] => anyhow::bail!(
            "no order {order_ref}{}",
            vendor
                .map(|v| format!(" at vendor {v}"))
                .unwrap_or_default()
        ),
        [one] => *one,
        _ => anyhow::bail!("order {order_ref} exists at several vendors; add --vendor"),
    };
    let history = store.order_deltas(&order.vendor, &order.order_ref).await?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"order": order, "deltas": history}))?
        )?;
        return Ok(());
    }
    outln!(
        "{} {}: {}",
        clean(&order.vendor),
        clean(&order.order_ref),
        order.status.map(|s| s.as_str()).unwrap_or("-")
    )?;
    outln!("fields: {}", serde_json::to_string(&order.fields)?)?;
    outln!("history (event order):")?;
    write_text(&table(
        &[
            "OFFSET",
            "EVENT TIME (UTC)",
            "TIME FROM",
            "SOURCE",
            "STATUS",
            "VENDOR STATUS",
            "RECORDED (UTC)",
        ],
        history.iter().map(|d| {
            vec![
                format!("#{}", d.offset),
                d.draft.event_time.format("%Y-%m-%d %H:%M").to_string(),
                d.draft.time_source.as_str().to_string(),
                d.source.as_str().to_string(),
                d.draft
                    .status
                    .map(|s| s.as_str())
                    .unwrap_or("-")
                    .to_string(),
                d.draft.vendor_status.as_deref().unwrap_or("").to_string(),
                d.recorded_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ]
        }),
    ))?;
    Ok(())
}
