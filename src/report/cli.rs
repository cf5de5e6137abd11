//! `driftwatch report`: print a day's report, or deliver what is due now.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{NaiveDate, Utc};

use super::config::ReportSettings;
use super::schedule::DeliveryResult;
use crate::config::Config;
use crate::out::{clean, table, write_text};
use crate::outln;
use crate::store::SendState;
use crate::store::Store;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Html,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The day to report on (YYYY-MM-DD, in the report's timezone). Default:
    /// today so far.
    #[arg(long)]
    pub date: Option<NaiveDate>,
    /// Output format: text (the email's text part), html (its HTML part) or
    /// json (the report's data).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Deliver every report due now that is not delivered yet (what `serve`
    /// does at send time), then exit. Exit status 1 if a delivery failed.
    #[arg(long, conflicts_with_all = ["date", "output"])]
    pub send_due: bool,
    /// List the deliveries recorded in the last 14 days (state, attempts,
    /// last error), then exit.
    #[arg(long, conflicts_with_all = ["date", "output", "send_due"])]
    pub history: bool,
    /// With --history: print JSON lines (one delivery per line) instead of a table.
    #[arg(long, requires = "history")]
    pub json: bool,
}

pub async fn report(store: &Store, config: &Config, args: ReportArgs) -> anyhow::Result<ExitCode> {
    if args.send_due {
        return send_due(store, config).await;
    }
    if args.history {
        return history(store, args.json).await;
    }
    let settings = config.report_settings();
    let out = render(store, &settings, args.date, args.format).await?;
    match &args.output {
        Some(path) => crate::private_files::write(path, out.as_bytes())
            .with_context(|| format!("failed to write {}", path.display()))?,
        // JSON escapes control characters itself; text and HTML are ours
        // with vendor strings already cleaned or escaped.
        None => write_text(&out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The report for `date` (default: today in the report's zone) in `format`.
pub async fn render(
    store: &Store,
    settings: &ReportSettings,
    date: Option<NaiveDate>,
    format: Format,
) -> anyhow::Result<String> {
    let now = Utc::now();
    let date = date.unwrap_or_else(|| now.with_timezone(&settings.timezone).date_naive());
    let report = super::build(store, date, settings, now)
        .await
        .context("failed to build the report")?;
    Ok(match format {
        Format::Text => super::render_text(&report),
        Format::Html => super::render_html(&report),
        Format::Json => {
            serde_json::to_string_pretty(&report).context("failed to serialise the report")?
        }
    })
}

async fn send_due(store: &Store, config: &Config) -> anyhow::Result<ExitCode> {
    if config.report.is_none() {
        anyhow::bail!("no [report] table in {}", config.file.display());
    }
    let outcome = super::run_once(store, config.report.as_ref(), Utc::now())
        .await
        .context("failed to deliver due reports")?;
    if outcome.deliveries.is_empty() {
        outln!(
            "nothing due: the report for {} was already delivered everywhere",
            outcome
                .latest_due
                .map(|d| d.to_string())
                .unwrap_or_default()
        )?;
    }
    for d in &outcome.deliveries {
        let channel = clean(&d.channel);
        match &d.result {
            DeliveryResult::Sent { attempt } => {
                outln!("{} -> {channel}: sent (attempt {attempt})", d.date)?
            }
            DeliveryResult::AlreadySent => outln!("{} -> {channel}: already sent", d.date)?,
            DeliveryResult::InFlight => {
                outln!("{} -> {channel}: being sent by another process", d.date)?
            }
            DeliveryResult::Failed { attempt, error } => outln!(
                "{} -> {channel}: FAILED (attempt {attempt}): {}",
                d.date,
                clean(error)
            )?,
        }
    }
    Ok(if outcome.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn history(store: &Store, json: bool) -> anyhow::Result<ExitCode> {
    let since = Utc::now().date_naive() - chrono::Duration::days(14);
    let rows = store
        .report_sends(since)
        .await
        .context("failed to read report_sends")?;
    let state = |s: &SendState| match s {
        SendState::Pending => "pending",
        SendState::Sent => "sent",
        SendState::Failed => "failed",
    };
    if json {
        for r in &rows {
            let line = serde_json::json!({
                "report_date": r.report_date,
                "recipient": r.recipient,
                "state": state(&r.state),
                "attempts": r.attempts,
                "sent_at": r.sent_at,
                "last_error": r.last_error,
                "message_id": r.message_id,
            });
            outln!("{}", serde_json::to_string(&line)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("no report deliveries recorded since {since}")?;
        return Ok(ExitCode::SUCCESS);
    }
    write_text(&table(
        &[
            "DATE",
            "STATE",
            "RECIPIENT",
            "ATTEMPTS",
            "SENT (UTC)",
            "LAST ERROR",
        ],
        rows.iter().map(|r| {
            vec![
                r.report_date.to_string(),
                match r.state {
                    SendState::Failed => "FAILED".to_string(),
                    ref s => state(s).to_string(),
                },
                r.recipient.clone(),
                r.attempts.to_string(),
                r.sent_at
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                r.last_error.clone().unwrap_or_default(),
            ]
        }),
    ))?;
    Ok(ExitCode::SUCCESS)
}
