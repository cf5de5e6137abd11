//! `driftwatch reconcile` and `driftwatch drifts`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Cause, DriftKind, Outcome, RunOptions, RunSummary};
use crate::config::Config;
use crate::out::{clean, exit, table, truncate, write_text};
use crate::outln;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The vendor to reconcile (as named in [[vendor]]).
    #[arg(long)]
    pub vendor: String,
    /// Reconcile from this export file instead of the configured source.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Show what would change; write nothing (no run row, no drifts, no fixes).
    #[arg(long)]
    pub dry_run: bool,
    /// When another run of this vendor holds its lease (e.g. `serve`'s
    /// schedule), wait up to this many seconds for it instead of giving up.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub wait: u64,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DriftsArgs {
    /// Only this vendor's drifts.
    #[arg(long)]
    pub vendor: Option<String>,
    /// Only drifts still open.
    #[arg(long)]
    pub open: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn reconcile(
    store: &Store,
    config: &Config,
    args: ReconcileArgs,
) -> anyhow::Result<ExitCode> {
    let summary = super::run_once(
        store,
        config,
        &args.vendor,
        RunOptions {
            file: args.file,
            dry_run: args.dry_run,
            now: None,
            lease_wait: std::time::Duration::from_secs(args.wait),
        },
    )
    .await;
    // Busy is not a failure of the export: its own exit code (EX_TEMPFAIL).
    if let Err(e @ super::ReconcileError::Busy { .. }) = &summary {
        eprintln!("driftwatch: {}", clean(&e.to_string()));
        return Ok(ExitCode::from(exit::BUSY));
    }
    let summary =
        summary.with_context(|| format!("reconcile of vendor `{}` failed", args.vendor))?;
    if args.json {
        outln!("{}", serde_json::to_string(&summary_json(&summary))?)?;
    } else {
        write_text(&render_summary(&summary))?;
    }
    Ok(match summary.outcome {
        Outcome::Refused => ExitCode::from(exit::REFUSED),
        _ => ExitCode::SUCCESS,
    })
}

/// The summary for scripts (`reconcile --json`): the same facts as
/// [`render_summary`], values as real JSON.
pub fn summary_json(s: &RunSummary) -> serde_json::Value {
    let by_cause: Vec<serde_json::Value> = s
        .by_cause
        .iter()
        .map(|((kind, cause), n)| serde_json::json!({"kind": kind, "cause": cause, "count": n}))
        .collect();
    serde_json::json!({
        "vendor": s.vendor,
        "dry_run": s.dry_run,
        "outcome": s.outcome,
        "reason": s.reason,
        "run_id": s.run_id,
        "source": s.source,
        "as_of": s.as_of,
        "policy": format!("{:?}", s.policy).to_lowercase(),
        "orders_remote": s.counts.orders_remote,
        "orders_local": s.counts.orders_local,
        "unmapped_status": s.unmapped_status,
        "drifts": s.drifts(),
        "by_cause": by_cause,
        "email_reliability": s.reliability(),
        "fixes": s.fixes,
        "fixed": s.fixed,
        "closed": s.closed,
        "sample": s.sample,
        "elapsed_ms": u64::try_from(s.elapsed.as_millis()).unwrap_or(u64::MAX),
    })
}

/// The readable summary `driftwatch reconcile` prints.
pub fn render_summary(s: &RunSummary) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "reconcile {}{}: {}",
        s.vendor,
        if s.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        },
        match s.outcome {
            Outcome::Ok => "ok",
            Outcome::Unchanged =>
                "unchanged (same export as the last trusted key frame; not diffed again)",
            Outcome::Refused => "REFUSED by the guard: nothing recorded or fixed",
            Outcome::Failed => "failed",
        }
    );
    let _ = writeln!(o, "  source  {}", clean(&s.source));
    if let Some(t) = s.as_of {
        let _ = writeln!(o, "  as of   {}", t.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    if let Some(r) = &s.reason {
        let _ = writeln!(o, "  reason  {}", clean(r));
    }
    if s.outcome == Outcome::Unchanged {
        let _ = writeln!(
            o,
            "  closed  {} drift(s) a later email agreed with",
            s.closed
        );
        let _ = writeln!(o, "  took    {:.0?}", s.elapsed);
        return o;
    }
    let c = &s.counts;
    let _ = writeln!(
        o,
        "  orders  {} in the export, {} in our view as of then",
        c.orders_remote, c.orders_local
    );
    if s.unmapped_status > 0 {
        let _ = writeln!(
            o,
            "  note    {} row(s) have a status word not in the status map; their status was not compared",
            s.unmapped_status
        );
    }
    let _ = writeln!(o, "\n  {:<17} {:>7}  by cause", "drift", "count");
    for kind in DriftKind::ALL {
        let n = s
            .by_cause
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, n)| n)
            .sum::<u64>();
        let causes = Cause::ALL
            .iter()
            .filter_map(|c| s.by_cause.get(&(kind, *c)).map(|n| format!("{c} {n}")))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(o, "  {:<17} {:>7}  {}", kind.as_str(), n, causes);
    }
    let _ = writeln!(o, "  {:<17} {:>7}", "total", s.drifts());
    if let Some(r) = s.reliability() {
        let _ = writeln!(
            o,
            "\n  email reliability: {:.1}% of changes since the last key frame were told by email",
            r * 100.0
        );
    }
    let _ = writeln!(o);
    match (s.policy, s.outcome, s.dry_run) {
        (super::Policy::Flag, _, _) => {
            let _ = writeln!(
                o,
                "  policy flag: drifts recorded, nothing changed in the view"
            );
        }
        (super::Policy::Fix, Outcome::Refused, _) => {
            let _ = writeln!(o, "  policy fix: {} fix(es) NOT applied (refused)", s.fixes);
        }
        (super::Policy::Fix, _, true) => {
            let _ = writeln!(
                o,
                "  policy fix: would append {} reconcile delta(s)",
                s.fixes
            );
        }
        (super::Policy::Fix, _, false) => {
            let _ = writeln!(
                o,
                "  policy fix: appended {} reconcile delta(s), {} drift(s) closed as fixed",
                s.fixes, s.fixed
            );
        }
    }
    if !s.dry_run && s.outcome == Outcome::Ok {
        let _ = writeln!(
            o,
            "  closed  {} earlier drift(s) this key frame agrees with",
            s.closed
        );
    }
    if !s.sample.is_empty() {
        let rows = s.sample.iter().map(|d| {
            vec![
                d.order_ref.clone(),
                d.kind.as_str().to_string(),
                d.field.clone().unwrap_or_else(|| "-".into()),
                show_value(d.local_value.as_ref()),
                show_value(d.remote_value.as_ref()),
                d.cause.as_str().to_string(),
            ]
        });
        let _ = writeln!(o);
        for line in table(
            &["order", "kind", "field", "ours", "vendor's", "cause"],
            rows,
        )
        .lines()
        {
            let _ = writeln!(o, "  {line}");
        }
        if s.drifts() as usize > s.sample.len() {
            let _ = writeln!(
                o,
                "  … {} more (driftwatch drifts --open)",
                s.drifts() as usize - s.sample.len()
            );
        }
    }
    let _ = writeln!(o, "  took    {:.0?}", s.elapsed);
    o
}

pub async fn drifts(store: &Store, args: DriftsArgs) -> anyhow::Result<ExitCode> {
    let rows = store
        .drifts(args.vendor.as_deref(), args.open)
        .await
        .context("failed to read drifts")?;
    if args.json {
        for r in &rows {
            // The store keeps values as JSON text; emit them as JSON values,
            // not as strings holding JSON.
            let mut v = serde_json::to_value(r)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("local_value".into(), stored_value(r.local_value.as_deref()));
                obj.insert(
                    "remote_value".into(),
                    stored_value(r.remote_value.as_deref()),
                );
            }
            outln!("{}", serde_json::to_string(&v)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("no {}drifts", if args.open { "open " } else { "" })?;
        return Ok(ExitCode::SUCCESS);
    }
    let body = table(
        &[
            "vendor", "order", "kind", "field", "ours", "vendor's", "cause", "opened", "state",
        ],
        rows.iter().map(|r| {
            let state = match (&r.closed_at, &r.closed_reason) {
                (None, _) => format!("open (seen {}x)", r.seen_count),
                (Some(t), reason) => format!(
                    "closed {} {}",
                    t.format("%Y-%m-%d %H:%M"),
                    reason.as_deref().unwrap_or("")
                ),
            };
            vec![
                r.vendor.clone(),
                r.order_ref.clone(),
                r.kind.as_str().to_string(),
                r.field.clone().unwrap_or_else(|| "-".into()),
                show_value(Some(&stored_value(r.local_value.as_deref()))),
                show_value(Some(&stored_value(r.remote_value.as_deref()))),
                r.cause.as_str().to_string(),
                r.opened_at.format("%Y-%m-%d %H:%M").to_string(),
                state,
            ]
        }),
    );
    write_text(&body)?;
    Ok(ExitCode::SUCCESS)
}

/// A drift value as the store keeps it (JSON text) turned back into JSON;
/// `null` when absent. Text that is not JSON stays a string rather than
/// being dropped.
fn stored_value(v: Option<&str>) -> serde_json::Value {
    match v {
        None => serde_json::Value::Null,
        Some(j) => serde_json::from_str(j).unwrap_or_else(|_| serde_json::Value::String(j.into())),
    }
}

/// A value in a table cell: strings bare, other JSON as JSON, `-` when
/// absent; one line, cut to 40 characters (`--json` has it whole).
fn show_value(v: Option<&serde_json::Value>) -> String {
    let s = match v {
        None | Some(serde_json::Value::Null) => "-".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    truncate(&clean(&s), 40).into_owned()
}
