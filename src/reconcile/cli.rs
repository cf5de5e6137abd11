//! `driftwatch reconcile` and `driftwatch drifts`.

use std::process::ExitCode;

use crate::app::App;

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The vendor to reconcile (as named in [[vendor]]).
    #[arg(long)]
    pub vendor: String,
}

#[derive(Debug, clap::Args)]
pub struct DriftsArgs {
    #[arg(long)]
    pub vendor: Option<String>,
}

pub async fn reconcile(app: &App, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let _ = app;
    anyhow::bail!("reconcile is not implemented yet (vendor {})", args.vendor)
}

pub async fn drifts(app: &App, args: DriftsArgs) -> anyhow::Result<ExitCode> {
    let _ = (app, args);
    anyhow::bail!("drifts is not implemented yet")
}
