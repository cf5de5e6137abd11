//! Human-readable output shared by the command line and the demo.

use anyhow::Result;

use crate::store::Store;

pub fn print_ingest(results: &[(String, String, crate::store::BatchOutcome)]) {
    for (source, folder, o) in results {
        println!(
            "{source}/{folder}: fetched {}, archived {} (parsed {}, quarantined {}, ignored {}, skipped {}), duplicates {}, deltas {}",
            o.fetched(),
            o.archived,
            o.parsed,
            o.quarantined,
            o.ignored,
            o.skipped,
            o.duplicates,
            o.deltas
        );
    }
}

pub async fn orders(
    store: &Store,
    vendor: Option<&str>,
    order_ref: Option<&str>,
    json: bool,
) -> Result<()> {
    let all = store.orders(vendor).await?;
    let Some(order_ref) = order_ref else {
        if json {
            println!("{}", serde_json::to_string_pretty(&all)?);
            return Ok(());
        }
        println!(
            "{:<18} {:<14} {:<12} {:<26} {:<21} FIELDS",
            "VENDOR", "ORDER", "STATUS", "VENDOR STATUS", "AS OF (UTC)"
        );
        for o in &all {
            println!(
                "{:<18} {:<14} {:<12} {:<26} {:<21} {}",
                o.vendor,
                o.order_ref,
                o.status.map(|s| s.as_str()).unwrap_or("-"),
                o.vendor_status.as_deref().unwrap_or("-"),
                o.event_time.format("%Y-%m-%d %H:%M"),
                serde_json::to_string(&o.fields)?
            );
        }
        println!("{} order(s)", all.len());
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
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"order": order, "deltas": history}))?
        );
        return Ok(());
    }
    println!(
        "{} {}: {}",
        order.vendor,
        order.order_ref,
        order.status.map(|s| s.as_str()).unwrap_or("-")
    );
    println!("fields: {}", serde_json::to_string(&order.fields)?);
    println!("history (event order):");
    for d in history {
        println!(
            "  #{:<6} {} ({})  {:<8} {:<12} {}  recorded {}",
            d.offset,
            d.draft.event_time.format("%Y-%m-%d %H:%M"),
            d.draft.time_source.as_str(),
            d.source.as_str(),
            d.draft.status.map(|s| s.as_str()).unwrap_or("-"),
            d.draft.vendor_status.as_deref().unwrap_or(""),
            d.recorded_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(())
}
