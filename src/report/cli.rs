//! `driftwatch report`.

use std::process::ExitCode;

use crate::app::App;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {}

pub async fn report(app: &App, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let _ = (app, args);
    anyhow::bail!("report is not implemented yet")
}
