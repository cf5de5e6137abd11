//! `driftwatch report`: print a day's report, or deliver what is due now.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{NaiveDate, Utc};

use super::config::ReportSettings;
use super::schedule::DeliveryResult;
use crate::app::App;
use crate::store::SendState;

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
}

pub async fn report(app: &App, args: ReportArgs) -> anyhow::Result<ExitCode> {
    if args.send_due {
        return send_due(app).await;
    }
    if args.history {
        return history(app).await;
    }
    let settings = app.config.report.clone().unwrap_or_default();
    let out = render(app, &settings, args.date, args.format).await?;
    match &args.output {
        Some(path) => crate::private_files::write(path, out.as_bytes())
            .with_context(|| format!("failed to write {}", path.display()))?,
        None => print!("{out}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The report for `date` (default: today in the report's zone) in `format`.
pub async fn render(
    app: &App,
    settings: &ReportSettings,
    date: Option<NaiveDate>,
    format: Format,
) -> anyhow::Result<String> {
    let now = Utc::now();
    let date = date.unwrap_or_else(|| now.with_timezone(&settings.timezone).date_naive());
    let report = super::build(&app.store, date, settings, now)
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

async fn send_due(app: &App) -> anyhow::Result<ExitCode> {
    if app.config.report.is_none() {
        anyhow::bail!("no [report] table in {}", app.config.file.display());
    }
    let outcome = super::run_once(app, Utc::now())
        .await
        .context("failed to deliver due reports")?;
    if outcome.deliveries.is_empty() {
        println!(
            "nothing due: the report for {} was already delivered everywhere",
            outcome
                .latest_due
                .map(|d| d.to_string())
                .unwrap_or_default()
        );
    }
    for d in &outcome.deliveries {
        match &d.result {
            DeliveryResult::Sent { attempt } => {
                println!("{} -> {}: sent (attempt {attempt})", d.date, d.channel)
            }
            DeliveryResult::AlreadySent => {
                println!("{} -> {}: already sent", d.date, d.channel)
            }
            DeliveryResult::InFlight => {
                println!("{} -> {}: being sent by another process", d.date, d.channel)
            }
            DeliveryResult::Failed { attempt, error } => {
                println!(
                    "{} -> {}: FAILED (attempt {attempt}): {error}",
                    d.date, d.channel
                )
            }
        }
    }
    Ok(if outcome.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn history(app: &App) -> anyhow::Result<ExitCode> {
    let since = Utc::now().date_naive() - chrono::Duration::days(14);
    let rows = app
        .store
        .report_sends(since)
        .await
        .context("failed to read report_sends")?;
    if rows.is_empty() {
        println!("no report deliveries recorded since {since}");
    }
    for r in rows {
        let state = match r.state {
            SendState::Pending => "pending",
            SendState::Sent => "sent",
            SendState::Failed => "FAILED",
        };
        let when = r
            .sent_at
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        println!(
            "{}  {:<8} {:<40} attempts {:<3} {when}{}",
            r.report_date,
            state,
            r.recipient,
            r.attempts,
            r.last_error
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
