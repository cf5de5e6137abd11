//! `driftwatch reconcile` and `driftwatch drifts`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Cause, DriftKind, Outcome, RunOptions, RunSummary};
use crate::app::App;

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
}

#[derive(Debug, clap::Args)]
pub struct DriftsArgs {
    #[arg(long)]
    pub vendor: Option<String>,
    /// Only drifts still open.
    #[arg(long)]
    pub open: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn reconcile(app: &App, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let summary = super::run_once(
        app,
        &args.vendor,
        RunOptions {
            file: args.file,
            dry_run: args.dry_run,
            now: None,
            lease_wait: std::time::Duration::from_secs(args.wait),
        },
    )
    .await;
    // Busy is not a failure of the export: its own exit code (75, EX_TEMPFAIL).
    if let Err(e @ super::ReconcileError::Busy { .. }) = &summary {
        eprintln!("driftwatch: {e}");
        return Ok(ExitCode::from(75));
    }
    let summary =
        summary.with_context(|| format!("reconcile of vendor `{}` failed", args.vendor))?;
    print!("{}", render_summary(&summary));
    Ok(match summary.outcome {
        Outcome::Refused => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
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
    let _ = writeln!(o, "  source  {}", s.source);
    if let Some(t) = s.as_of {
        let _ = writeln!(o, "  as of   {}", t.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    if let Some(r) = &s.reason {
        let _ = writeln!(o, "  reason  {r}");
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
        let _ = writeln!(
            o,
            "\n  {:<14} {:<16} {:<14} {:<22} {:<22} cause",
            "order", "kind", "field", "ours", "vendor's"
        );
        for d in &s.sample {
            let show = |v: &Option<serde_json::Value>| match v {
                None => "-".to_string(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            };
            let _ = writeln!(
                o,
                "  {:<14} {:<16} {:<14} {:<22} {:<22} {}",
                d.order_ref,
                d.kind.as_str(),
                d.field.as_deref().unwrap_or("-"),
                show(&d.local_value),
                show(&d.remote_value),
                d.cause
            );
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

pub async fn drifts(app: &App, args: DriftsArgs) -> anyhow::Result<ExitCode> {
    let rows = app
        .store
        .drifts(args.vendor.as_deref(), args.open)
        .await
        .context("failed to read drifts")?;
    if args.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no {}drifts", if args.open { "open " } else { "" });
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<12} {:<16} {:<12} {:<18} {:<18} {:<17} {:<17} state",
        "vendor", "order", "kind", "field", "ours", "vendor's", "cause", "opened"
    );
    // Values are stored as JSON; show strings bare.
    let show = |v: &Option<String>| match v.as_deref() {
        None => "-".to_string(),
        Some(j) => match serde_json::from_str::<serde_json::Value>(j) {
            Ok(serde_json::Value::String(s)) => s,
            _ => j.to_string(),
        },
    };
    for r in rows {
        let state = match (&r.closed_at, &r.closed_reason) {
            (None, _) => format!("open (seen {}x)", r.seen_count),
            (Some(t), reason) => format!(
                "closed {} {}",
                t.format("%Y-%m-%d %H:%M"),
                reason.as_deref().unwrap_or("")
            ),
        };
        println!(
            "{:<16} {:<12} {:<16} {:<12} {:<18} {:<18} {:<17} {:<17} {}",
            r.vendor,
            r.order_ref,
            r.kind.as_str(),
            r.field.as_deref().unwrap_or("-"),
            show(&r.local_value),
            show(&r.remote_value),
            r.cause.as_str(),
            r.opened_at.format("%Y-%m-%d %H:%M"),
            state
        );
    }
    Ok(ExitCode::SUCCESS)
}
