//! The command line: parses arguments, sets up logging, loads config, calls the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use driftwatch::app::{App, load_registry};
use driftwatch::config::{Config, LogFormat};
use driftwatch::store::{DeltaFilter, Store};

#[derive(Parser)]
#[command(
    name = "driftwatch",
    version,
    about = "Keeps a local view of vendor orders true from vendor status emails and periodic full-state exports."
)]
struct Cli {
    /// Config file (TOML). Relative paths inside it are relative to the file.
    #[arg(
        long,
        short,
        global = true,
        env = "DRIFTWATCH_CONFIG",
        default_value = "driftwatch.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: poll every mailbox (IDLE where possible) until SIGINT/SIGTERM. SIGHUP reloads parsers.
    Serve,
    /// Fetch mail and ingest it.
    Ingest {
        /// Fetch what is there now, then exit (without it, keep polling like `serve`).
        #[arg(long)]
        once: bool,
    },
    /// List orders, or show one order with its delta history.
    Orders {
        /// Only this vendor.
        #[arg(long)]
        vendor: Option<String>,
        /// Show this order (needs --vendor when several vendors share the reference).
        order_ref: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print deltas from the log after an offset, like a log consumer.
    Tail {
        /// Start after this offset (0 = from the beginning).
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Pull vendors' full state (key frames) and reconcile the order view against it.
    Reconcile(driftwatch::reconcile::cli::ReconcileArgs),
    /// List drifts found by reconcile.
    Drifts(driftwatch::reconcile::cli::DriftsArgs),
    /// Print (or send) the daily drift report.
    Report(driftwatch::report::cli::ReportArgs),
    /// Show quarantined messages with the reason each was set aside.
    Quarantine {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Recompute the order view from the delta log.
    Rebuild,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the config file and parser rule files, then exit.
    CheckConfig,
    /// Run the built-in demo: writes a demo config, Maildir and parsers to DIR, ingests, prints the orders.
    Demo {
        #[arg(long, default_value = "driftwatch-demo")]
        dir: PathBuf,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn load_config(path: &Path) -> Result<Config> {
    // ConfigError's Display already names file, line and key: no extra context needed.
    Ok(Config::load(path)?)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let command = match cli.command {
        Command::Demo { dir } => {
            init_logging(LogFormat::Text);
            return demo(&dir).await;
        }
        other => other,
    };
    let config = load_config(&cli.config)?;
    init_logging(config.log_format);
    match command {
        Command::CheckConfig => {
            let registry = load_registry(&config)?;
            println!(
                "{}: ok ({} mailbox(es), {} parser(s), database {})",
                config.file.display(),
                config.mailboxes.len(),
                registry.parsers().len(),
                config.database.display()
            );
        }
        Command::Migrate => {
            Store::open(&config.database).await?;
            println!("database {} is up to date", config.database.display());
        }
        Command::Serve | Command::Ingest { once: false } => {
            let app = App::build(config).await?;
            serve(&app).await?;
        }
        Command::Ingest { once: true } => {
            let app = App::build(config).await?;
            driftwatch::cli::print_ingest(&app.ingest_once().await?);
        }
        Command::Orders {
            vendor,
            order_ref,
            json,
        } => {
            let store = Store::open(&config.database).await?;
            driftwatch::cli::orders(&store, vendor.as_deref(), order_ref.as_deref(), json).await?;
        }
        Command::Tail {
            after,
            vendor,
            limit,
        } => {
            let store = Store::open(&config.database).await?;
            let filter = DeltaFilter {
                vendor,
                order_ref: None,
            };
            for d in store.deltas_after(after, limit, &filter).await? {
                println!("{}", serde_json::to_string(&d)?);
            }
        }
        Command::Quarantine { limit } => {
            let store = Store::open(&config.database).await?;
            let rows = store.quarantined(limit).await?;
            if rows.is_empty() {
                println!("quarantine is empty");
            }
            for q in rows {
                println!(
                    "#{:<6} {}  from {}  \"{}\"\n        {}",
                    q.id,
                    q.archived_at.format("%Y-%m-%d %H:%M"),
                    q.sender.as_deref().unwrap_or("?"),
                    q.subject.as_deref().unwrap_or(""),
                    q.reason.as_deref().unwrap_or("")
                );
            }
        }
        Command::Rebuild => {
            let store = Store::open(&config.database).await?;
            let n = store.rebuild_view().await?;
            println!("rebuilt {n} orders from the delta log");
        }
        Command::Reconcile(args) => {
            let app = App::build(config).await?;
            return driftwatch::reconcile::cli::reconcile(&app, args).await;
        }
        Command::Drifts(args) => {
            let app = App::build(config).await?;
            return driftwatch::reconcile::cli::drifts(&app, args).await;
        }
        Command::Report(args) => {
            let app = App::build(config).await?;
            return driftwatch::report::cli::report(&app, args).await;
        }
        Command::Demo { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(app: &App) -> Result<()> {
    let shutdown = CancellationToken::new();
    let signals = {
        let shutdown = shutdown.clone();
        async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("failed to install SIGTERM handler")?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
                _ = term.recv() => info!("SIGTERM received"),
            }
            shutdown.cancel();
            anyhow::Ok(())
        }
    };
    let reload = async {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("failed to install SIGHUP handler")?;
        while hup.recv().await.is_some() {
            match app.reload_parsers() {
                Ok(n) => info!(parsers = n, "parsers reloaded"),
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "parser reload failed; keeping the running parsers")
                }
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = app.serve(shutdown.clone()) => r,
        r = async { tokio::try_join!(signals, reload).map(|_| ()) } => {
            r?;
            Ok(())
        }
    }
}

async fn demo(dir: &Path) -> Result<ExitCode> {
    driftwatch::demo::run(dir).await?;
    Ok(ExitCode::SUCCESS)
}
