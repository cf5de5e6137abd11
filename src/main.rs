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
        /// At most this many deltas (per poll with --follow).
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Keep running and print new deltas as they are committed.
        #[arg(long, short)]
        follow: bool,
    },
    /// Pull vendors' full state (key frames) and reconcile the order view against it.
    Reconcile(driftwatch::reconcile::cli::ReconcileArgs),
    /// List drifts found by reconcile.
    Drifts(driftwatch::reconcile::cli::DriftsArgs),
    /// Print (or send) the daily drift report.
    Report(driftwatch::report::cli::ReportArgs),
    /// Messages set aside for a human: list them, show one, turn one into a parser fixture.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCmd,
    },
    /// Parser tools.
    Parsers {
        #[command(subcommand)]
        command: ParsersCmd,
    },
    /// Re-run archived mail through the current parsers (after fixing a parser).
    Reparse {
        /// Only changes involving this vendor.
        #[arg(long)]
        vendor: Option<String>,
        /// Only mail archived on or after this date (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        /// Show what would change in the order view; write nothing.
        #[arg(long)]
        dry_run: bool,
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

#[derive(Subcommand)]
enum QuarantineCmd {
    /// Newest first, with the reason each was set aside.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One message: headers, reason and the start of its text.
    Show { id: i64 },
    /// Write the raw message into a fixtures folder, ready for `parsers test --update`.
    Export {
        id: i64,
        /// Destination .eml path, e.g. fixtures/acme-appraisal/new-layout.eml
        #[arg(long)]
        to: PathBuf,
    },
}

#[derive(Subcommand)]
enum ParsersCmd {
    /// Run fixture emails through the current parsers and compare with their expected deltas.
    ///
    /// `parsers test` runs every fixture; `parsers test VENDOR` one vendor's;
    /// `parsers test FILE.eml...` the given files. Exit code 1 on any failure.
    Test {
        /// A vendor name and/or .eml files.
        args: Vec<String>,
        /// Record the current output as the expectation (review the diff first).
        #[arg(long)]
        update: bool,
        /// Fixtures directory (default: `fixtures` beside the parsers directory).
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
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
            // The demo prints its own story; logs only for problems.
            init_logging(LogFormat::Text, "warn");
            return demo(&dir).await;
        }
        other => other,
    };
    let config = if matches!(command, Command::Parsers { .. }) && !cli.config.exists() {
        // `parsers test` works in a checkout with no config: ./parsers, ./fixtures.
        Config::defaults_in(Path::new("."))
    } else {
        load_config(&cli.config)?
    };
    init_logging(config.log_format, "info");
    match command {
        Command::CheckConfig => {
            let registry = load_registry(&config)?;
            // Secrets are resolved at use; check now that they can be, so a
            // missing variable shows up here rather than at 3 a.m.
            for m in &config.mailboxes {
                if let driftwatch::config::Mailbox::Imap(s) = m {
                    let secret = match &s.auth {
                        driftwatch::config::ImapAuth::Password(x)
                        | driftwatch::config::ImapAuth::XOAuth2(x) => x,
                    };
                    secret.resolve().with_context(|| {
                        format!("mailbox `{}`: credentials are not available", s.name)
                    })?;
                }
            }
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
            follow,
        } => {
            let store = Store::open(&config.database).await?;
            let filter = DeltaFilter {
                vendor,
                order_ref: None,
            };
            // A reader's cursor is the last offset it printed: restart with
            // `--after <that offset>` and nothing is missed or repeated.
            let mut cursor = after;
            loop {
                let batch = store.deltas_after(cursor, limit, &filter).await?;
                for d in &batch {
                    println!("{}", serde_json::to_string(d)?);
                    cursor = d.offset;
                }
                if !follow {
                    break;
                }
                if batch.is_empty() {
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                        _ = tokio::signal::ctrl_c() => break,
                    }
                }
            }
        }
        Command::Quarantine { command } => {
            let store = Store::open(&config.database).await?;
            return quarantine(&store, command).await;
        }
        Command::Parsers {
            command:
                ParsersCmd::Test {
                    args,
                    update,
                    fixtures,
                },
        } => {
            return parsers_test(&config, args, update, fixtures);
        }
        Command::Reparse {
            vendor,
            since,
            dry_run,
        } => {
            let app = App::build(config).await?;
            return reparse(&app, vendor, since, dry_run).await;
        }
        Command::Rebuild => {
            let store = Store::open(&config.database).await?;
            let n = store.rebuild_view().await?;
            println!("rebuilt {n} orders from the delta log");
        }
        Command::Reconcile(args) => {
            let app = App::build(config).await?;
            let code = driftwatch::reconcile::cli::reconcile(&app, args).await;
            // Closing checkpoints the WAL a big fix wrote, here rather than
            // in whichever command writes next.
            app.store.close().await;
            return code;
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

async fn quarantine(store: &Store, command: QuarantineCmd) -> Result<ExitCode> {
    match command {
        QuarantineCmd::List { limit } => {
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
        QuarantineCmd::Show { id } => {
            let m = store
                .message(id)
                .await?
                .with_context(|| format!("no message #{id}"))?;
            println!(
                "message #{} ({}), archived {}",
                m.id,
                m.disposition,
                m.archived_at.format("%Y-%m-%d %H:%M:%S")
            );
            println!("from:    {}", m.sender.as_deref().unwrap_or("?"));
            println!("subject: {}", m.subject.as_deref().unwrap_or(""));
            println!("vendor:  {}", m.vendor.as_deref().unwrap_or("-"));
            println!("reason:  {}", m.reason.as_deref().unwrap_or("-"));
            let text = driftwatch::parse::Mail::parse(&m.raw, None)
                .map(|mail| mail.text().chars().take(1200).collect::<String>())
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&m.raw[..m.raw.len().min(1200)]).into_owned()
                });
            println!("\n{text}");
        }
        QuarantineCmd::Export { id, to } => {
            let m = store
                .message(id)
                .await?
                .with_context(|| format!("no message #{id}"))?;
            anyhow::ensure!(
                m.raw_complete,
                "message #{id} was over the size limit: only its header was archived"
            );
            anyhow::ensure!(
                !to.exists(),
                "{} already exists; choose another name",
                to.display()
            );
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("failed to create {}", dir.display()))?;
            }
            std::fs::write(&to, &m.raw)
                .with_context(|| format!("failed to write {}", to.display()))?;
            println!("wrote {}", to.display());
            println!(
                "next: fix the vendor's rule file, then `driftwatch parsers test {} --update`, review, commit both files",
                to.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parsers_test(
    config: &Config,
    args: Vec<String>,
    update: bool,
    fixtures: Option<PathBuf>,
) -> Result<ExitCode> {
    use driftwatch::fixtures::{Verdict, discover, run_one};
    let registry = load_registry(config)?;
    let fixtures_dir = fixtures.unwrap_or_else(|| {
        config
            .parsers_dir
            .parent()
            .map(|p| p.join("fixtures"))
            .unwrap_or_else(|| PathBuf::from("fixtures"))
    });
    let (files, names): (Vec<String>, Vec<String>) =
        args.into_iter().partition(|a| a.ends_with(".eml"));
    anyhow::ensure!(
        names.len() <= 1,
        "give at most one vendor name (got {})",
        names.join(", ")
    );
    let vendor = names.first().map(String::as_str);
    let mut paths: Vec<PathBuf> = files.into_iter().map(PathBuf::from).collect();
    if paths.is_empty() {
        paths = discover(&fixtures_dir, vendor)
            .with_context(|| format!("failed to read fixtures in {}", fixtures_dir.display()))?;
    }
    anyhow::ensure!(
        !paths.is_empty(),
        "no fixtures found in {}",
        fixtures_dir.join(vendor.unwrap_or("")).display()
    );
    let (mut passed, mut failed, mut updated) = (0, 0, 0);
    for p in &paths {
        let r = run_one(p, &registry, update);
        match r.verdict {
            Verdict::Pass => passed += 1,
            Verdict::Updated => {
                updated += 1;
                println!(
                    "UPDATED {}",
                    driftwatch::fixtures::expected_path(p).display()
                );
            }
            Verdict::Fail(diff) => {
                failed += 1;
                println!("FAIL {}\n{diff}", p.display());
            }
            Verdict::Missing(actual) => {
                failed += 1;
                println!(
                    "MISSING {}: no expectation yet; the parsers produce:\n{}\n(record it with --update after review)",
                    p.display(),
                    serde_json::to_string_pretty(&actual)?
                );
            }
            Verdict::Broken(msg) => {
                failed += 1;
                println!("ERROR {}: {msg}", p.display());
            }
        }
    }
    println!(
        "parsers: {passed} passed, {failed} failed{}",
        if updated > 0 {
            format!(", {updated} updated")
        } else {
            String::new()
        }
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn reparse(
    app: &App,
    vendor: Option<String>,
    since: Option<chrono::NaiveDate>,
    dry_run: bool,
) -> Result<ExitCode> {
    let opts = driftwatch::reparse::ReparseOptions {
        vendor,
        since: since
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc()),
        dry_run,
        rules: Default::default(),
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} messages  {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    // The rules in force, with their stamps: mail they classified is skipped.
    let (registry, rules) = app.pipeline.rules();
    let opts = driftwatch::reparse::ReparseOptions {
        rules: (*rules).clone(),
        ..opts
    };
    let report = driftwatch::reparse::run(&app.store, &registry, &opts, &progress).await?;
    bar.finish_and_clear();
    let verb = if dry_run { "would change" } else { "changed" };
    println!(
        "examined {} of {} archived messages (the rest were classified by these rules already); {} {verb}",
        report.examined, report.in_scope, report.changed
    );
    for (vendor, c) in &report.per_vendor {
        println!(
            "  {vendor}: {} messages (newly parsed {}, newly quarantined {}), deltas {} -> {}",
            c.changed, c.newly_parsed, c.newly_quarantined, c.deltas_before, c.deltas_after
        );
    }
    println!("orders whose view {verb}: {}", report.orders.len());
    let show = |s: &Option<driftwatch::model::OrderState>| match s {
        Some(s) => format!(
            "{} {}",
            s.status.map(|x| x.as_str()).unwrap_or("-"),
            serde_json::to_string(&s.fields).unwrap_or_default()
        ),
        None => "(absent)".into(),
    };
    for c in report.orders.iter().take(50) {
        println!(
            "  {} {}: {}  ->  {}",
            c.vendor,
            c.order_ref,
            show(&c.before),
            show(&c.after)
        );
    }
    if report.orders.len() > 50 {
        println!("  ... and {} more", report.orders.len() - 50);
    }
    if dry_run {
        println!("dry run: nothing was written");
    }
    Ok(ExitCode::SUCCESS)
}

async fn demo(dir: &Path) -> Result<ExitCode> {
    driftwatch::demo::run(dir).await?;
    Ok(ExitCode::SUCCESS)
}
