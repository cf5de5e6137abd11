//! The command line: parses arguments, sets up logging, loads config, calls the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use driftwatch::app::{App, load_registry};
use driftwatch::config::{Config, LogFormat};
use driftwatch::out::{clean, exit};
use driftwatch::outln;
use driftwatch::store::{DeltaFilter, Store};

#[derive(Parser)]
#[command(
    name = "driftwatch",
    version,
    about = "Keeps a local view of vendor orders true from vendor status emails and periodic full-state exports.",
    after_help = "Exit codes: 0 done (also when stdout is closed early, as by `| head`), \
1 failed, 2 usage error, 3 refused by the reconcile guard."
)]
pub struct Cli {
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
        /// Only deltas about this vendor's orders.
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
    /// Webhooks received by the HTTP API (list them, replay one through the current mapping) and alert deliveries sent.
    Hooks {
        #[command(subcommand)]
        command: HooksCmd,
    },
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
    /// Copy a whole store into another (e.g. SQLite to PostgreSQL), verify it, and exit.
    ///
    /// Copies the archive, the delta log, the view, checkpoints, key frames,
    /// runs, drifts, format alerts, webhooks and the report ledger, then
    /// checks every table's row count and SHA-256 on both sides. Safe to run
    /// again after an interruption: it resumes where it stopped. Stop
    /// `serve` first.
    MigrateStore {
        /// The store to copy: `sqlite:PATH` (or a plain path) or a postgres:// URL.
        #[arg(long)]
        from: String,
        /// The store to fill: a postgres:// URL (or `sqlite:PATH`); created tables, empty or a resumed copy.
        #[arg(long)]
        to: String,
        /// Environment variable holding the PostgreSQL side's password.
        #[arg(long, conflicts_with = "password_file")]
        password_env: Option<String>,
        /// File holding the PostgreSQL side's password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Validate the config file and parser rule files, then exit.
    CheckConfig,
    /// Run the built-in demo: writes a demo config, Maildir and parsers to DIR, ingests, prints the orders.
    ///
    /// Files you edited in DIR (the config, parser rule files) are kept, never
    /// overwritten: delete one to get the shipped version back.
    Demo {
        /// Where to write the demo (created if missing).
        #[arg(long, default_value = "driftwatch-demo")]
        dir: PathBuf,
    },
    /// Print a shell completion script for SHELL to stdout.
    ///
    /// bash: `driftwatch completions bash > /etc/bash_completion.d/driftwatch`;
    /// zsh: `driftwatch completions zsh > "${fpath[1]}/_driftwatch"`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `driftwatch man > driftwatch.1`.
    Man,
}

#[derive(Subcommand)]
enum QuarantineCmd {
    /// Newest first, with the reason each was set aside.
    List {
        /// At most this many messages.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON lines (one message per line) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One message: headers, reason and the start of its text.
    Show {
        /// The message id (the `#` column of `quarantine list`).
        id: i64,
    },
    /// Write the raw message into the fixtures folder, ready for `parsers test --update`.
    ///
    /// A relative `--to` is relative to the fixtures folder `parsers test`
    /// reads (`fixtures/` beside the parsers directory), so the two agree
    /// wherever you run them from.
    Export {
        /// The message id (the `#` column of `quarantine list`).
        id: i64,
        /// Destination .eml, e.g. acme-appraisal/new-layout.eml (relative to the fixtures folder).
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
    /// Show what the patterns see in one email: decoded subject, text, HTML
    /// as text, attachments; each rule file's checks and pattern matches; the
    /// deltas it would give.
    Explain {
        /// The email to explain, as a raw `.eml` file.
        file: PathBuf,
        /// Examine only this vendor's rule file (and show its extraction).
        #[arg(long)]
        vendor: Option<String>,
    },
}

/// Logs to stderr. Whatever `DRIFTWATCH_LOG` says, secrets stay out: the
/// mail crates' wire traces are capped and resolved secrets are scrubbed
/// from every line (see `driftwatch::logging`).
fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(driftwatch::out::stderr_colour())
        .with_writer(driftwatch::logging::RedactingStderr);
    let cap = driftwatch::logging::wire_trace_cap();
    match format {
        LogFormat::Json => builder.json().finish().with(cap).init(),
        LogFormat::Text => builder.finish().with(cap).init(),
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
        // `driftwatch orders | head -1`: the reader has what it wanted.
        Err(e) if driftwatch::out::is_closed_pipe(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {}", driftwatch::out::error_text(&e));
            ExitCode::from(exit::FAILED)
        }
    }
}

/// `migrate-store`: opens both stores (applying migrations to the target),
/// copies and verifies, printing one line per table.
async fn migrate_store(
    from: &str,
    to: &str,
    password: Option<driftwatch::config::Secret>,
) -> Result<ExitCode> {
    use driftwatch::store::{Backend, Location};
    let open = |text: &str, what: &'static str| {
        let text = text.strip_prefix("sqlite:").unwrap_or(text).to_string();
        let password = password.clone();
        async move {
            let cwd = std::env::current_dir().context("current directory")?;
            let location =
                Location::parse(&text, &cwd).map_err(|e| anyhow::anyhow!("--{what}: {e}"))?;
            let location = match (location, password) {
                (Location::Postgres { url, .. }, Some(secret)) => Location::Postgres {
                    url,
                    password: Some(secret.resolve().await.context("the PostgreSQL password")?),
                },
                (l, _) => l,
            };
            if let Location::Sqlite(path) = &location
                && what == "from"
                && !path.exists()
            {
                anyhow::bail!("--from: no such database file {}", path.display());
            }
            Store::connect(&location)
                .await
                .with_context(|| format!("--{what}: cannot open {}", location.describe()))
        }
    };
    let source = open(from, "from").await?;
    let target = open(to, "to").await?;
    if source.backend() == Backend::Postgres && target.backend() == Backend::Postgres {
        warn!("copying between two PostgreSQL databases: pg_dump does this faster");
    }
    let tables = source
        .copy_into(&target, |table, n| {
            tracing::debug!(table, rows = n, "copied");
        })
        .await
        .context("migrate-store")?;
    let rows: Vec<Vec<String>> = tables
        .iter()
        .map(|t| {
            vec![
                t.table.clone(),
                t.rows.to_string(),
                t.copied.to_string(),
                t.sha256[..16].to_string(),
            ]
        })
        .collect();
    driftwatch::out::write_text(&driftwatch::out::table(
        &["table", "rows", "copied now", "sha256 (both sides)"],
        rows,
    ))?;
    outln!("verified: every table has the same rows and content on both sides")?;
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let command = match cli.command {
        Command::Demo { dir } => {
            // The demo prints its own story; logs only for problems.
            init_logging(LogFormat::Text, "warn");
            return demo(&dir).await;
        }
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "driftwatch", &mut buf);
            driftwatch::out::write_text(&String::from_utf8_lossy(&buf))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
            driftwatch::out::write_text(&String::from_utf8_lossy(&buf))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::MigrateStore {
            from,
            to,
            password_env,
            password_file,
        } => {
            init_logging(LogFormat::Text, "warn");
            let secret = match (password_env, password_file) {
                (Some(v), _) => Some(driftwatch::config::Secret::Env(v)),
                (None, Some(p)) => Some(driftwatch::config::Secret::File(p)),
                (None, None) => None,
            };
            return migrate_store(&from, &to, secret).await;
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
            for warning in registry.shadowed_forwarders() {
                eprintln!("warning: {}", clean(&warning));
            }
            // Secrets are resolved at use; check now that they can be, so a
            // missing variable shows up here rather than at 3 a.m.
            for m in &config.mailboxes {
                if let driftwatch::config::Mailbox::Imap(s) = m {
                    let secret = match &s.auth {
                        driftwatch::config::ImapAuth::Password(x)
                        | driftwatch::config::ImapAuth::XOAuth2(x) => x,
                    };
                    secret.resolve().await.with_context(|| {
                        format!("mailbox `{}`: credentials are not available", s.name)
                    })?;
                }
            }
            outln!(
                "{}: ok ({} mailbox(es), {} parser(s), database {})",
                config.file.display(),
                config.mailboxes.len(),
                registry.parsers().len(),
                config.database.describe()
            )?;
        }
        Command::Migrate => {
            config.database.open().await?;
            outln!("database {} is up to date", config.database.describe())?;
        }
        Command::Serve | Command::Ingest { once: false } => {
            let app = App::build(config).await?;
            serve(&app).await?;
        }
        Command::Ingest { once: true } => {
            let app = App::build(config).await?;
            driftwatch::cli::print_ingest(&app.ingest_once().await?)?;
        }
        Command::Orders {
            vendor,
            order_ref,
            json,
        } => {
            let store = config.database.open().await?;
            driftwatch::cli::orders(&store, vendor.as_deref(), order_ref.as_deref(), json).await?;
        }
        Command::Tail {
            after,
            vendor,
            limit,
            follow,
        } => {
            let store = config.database.open().await?;
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
                    outln!("{}", serde_json::to_string(d)?)?;
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
        Command::Hooks { command } => {
            let store = config.database.open().await?;
            return hooks(&store, &config, command).await;
        }
        Command::Quarantine { command } => {
            let store = config.database.open().await?;
            return quarantine(&store, &config, command).await;
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
        Command::Parsers {
            command: ParsersCmd::Explain { file, vendor },
        } => {
            let raw =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            // Through out!, not print!: `explain FILE | head -1` closes the
            // pipe early, which ends the command quietly (exit 0).
            driftwatch::out!(
                "{}",
                driftwatch::parse::explain(&raw, &load_registry(&config)?, vendor.as_deref())
            )?;
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
            let store = config.database.open().await?;
            let n = store.rebuild_view().await?;
            outln!("rebuilt {n} orders from the delta log")?;
        }
        Command::Reconcile(args) => {
            let app = App::build(config).await?;
            let code = driftwatch::reconcile::cli::reconcile(&app.store, &app.config, args).await;
            // Closing checkpoints the WAL a big fix wrote, here rather than
            // in whichever command writes next.
            app.store.close().await;
            return code;
        }
        Command::Drifts(args) => {
            let app = App::build(config).await?;
            return driftwatch::reconcile::cli::drifts(&app.store, args).await;
        }
        Command::Report(args) => {
            let app = App::build(config).await?;
            return driftwatch::report::cli::report(&app.store, &app.config, args).await;
        }
        Command::Demo { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::MigrateStore { .. } => {}
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

#[derive(Subcommand)]
enum HooksCmd {
    /// Stored webhooks, newest first.
    List {
        /// Show at most this many webhooks.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Parse a quarantined webhook again with the vendor's current mapping and apply it.
    Replay {
        /// The webhook's number, as `hooks list` shows it.
        id: i64,
    },
    /// Outbound alert deliveries: each attempt and its answer, newest first.
    Deliveries {
        /// Show at most this many attempts.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only this subscription's attempts.
        #[arg(long)]
        subscription: Option<String>,
    },
}

async fn hooks(store: &Store, config: &Config, command: HooksCmd) -> Result<ExitCode> {
    match command {
        HooksCmd::List { limit } => {
            let rows = store.webhooks(limit).await?;
            if rows.is_empty() {
                outln!("no webhooks received")?;
                return Ok(ExitCode::SUCCESS);
            }
            let table = driftwatch::out::table(
                &[
                    "#",
                    "RECEIVED (UTC)",
                    "VENDOR",
                    "WEBHOOK-ID",
                    "DISPOSITION",
                    "DELTAS",
                    "REASON",
                ],
                rows.iter().map(|w| {
                    vec![
                        w.id.to_string(),
                        w.received_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        cell(&w.vendor),
                        cell(&w.webhook_id),
                        w.disposition.to_string(),
                        w.deltas.to_string(),
                        cell(w.reason.as_deref().unwrap_or("")),
                    ]
                }),
            );
            driftwatch::out::write_text(&table)?;
            Ok(ExitCode::SUCCESS)
        }
        HooksCmd::Deliveries {
            limit,
            subscription,
        } => {
            let rows = store
                .outbox_attempts(subscription.as_deref(), limit)
                .await?;
            if rows.is_empty() {
                outln!("no alert deliveries attempted")?;
                return Ok(ExitCode::SUCCESS);
            }
            let table = driftwatch::out::table(
                &[
                    "ATTEMPTED (UTC)",
                    "SUBSCRIPTION",
                    "WEBHOOK-ID",
                    "EVENT",
                    "VENDOR",
                    "TRY",
                    "ANSWER",
                    "MS",
                    "OUTCOME",
                ],
                rows.iter().map(|a| {
                    let answer = match (a.status_code, &a.error) {
                        (Some(c), _) => c.to_string(),
                        (None, Some(e)) => cell(e),
                        (None, None) => String::new(),
                    };
                    vec![
                        a.attempted_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        cell(&a.subscription),
                        driftwatch::http::outbound::webhook_id(&a.subscription, a.event),
                        a.event_type.clone(),
                        cell(a.vendor.as_deref().unwrap_or("")),
                        a.attempt.to_string(),
                        answer,
                        a.duration_ms.to_string(),
                        a.outcome.clone(),
                    ]
                }),
            );
            driftwatch::out::write_text(&table)?;
            Ok(ExitCode::SUCCESS)
        }
        HooksCmd::Replay { id } => {
            match driftwatch::http::hooks::replay(store, config, id).await? {
                Ok(offsets) => {
                    outln!(
                        "webhook {id} applied: {} delta(s) at offsets {offsets:?}",
                        offsets.len()
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(reason) => {
                    eprintln!(
                        "webhook {id} still does not parse: {}",
                        driftwatch::out::clean(&reason.to_string())
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

async fn quarantine(store: &Store, config: &Config, command: QuarantineCmd) -> Result<ExitCode> {
    match command {
        QuarantineCmd::List { limit, json } => {
            let rows = store.quarantined(limit).await?;
            if json {
                for q in &rows {
                    outln!("{}", serde_json::to_string(q)?)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            if rows.is_empty() {
                outln!("quarantine is empty")?;
                return Ok(ExitCode::SUCCESS);
            }
            let table = driftwatch::out::table(
                &["#", "ARCHIVED (UTC)", "FROM", "SUBJECT", "REASON"],
                rows.iter().map(|q| {
                    vec![
                        q.id.to_string(),
                        q.archived_at.format("%Y-%m-%d %H:%M").to_string(),
                        cell(q.sender.as_deref().unwrap_or("?")),
                        cell(q.subject.as_deref().unwrap_or("")),
                        cell(q.reason.as_deref().unwrap_or("")),
                    ]
                }),
            );
            driftwatch::out::write_text(&table)?;
        }
        QuarantineCmd::Show { id } => {
            let m = store
                .message(id)
                .await?
                .with_context(|| format!("no message #{id}"))?;
            outln!(
                "message #{} ({}), archived {}",
                m.id,
                m.disposition,
                m.archived_at.format("%Y-%m-%d %H:%M:%S")
            )?;
            outln!("from:    {}", clean(m.sender.as_deref().unwrap_or("?")))?;
            outln!("subject: {}", clean(m.subject.as_deref().unwrap_or("")))?;
            outln!("vendor:  {}", clean(m.vendor.as_deref().unwrap_or("-")))?;
            outln!("reason:  {}", clean(m.reason.as_deref().unwrap_or("-")))?;
            let text = driftwatch::parse::Mail::parse(&m.raw, None)
                .map(|mail| mail.text().chars().take(1200).collect::<String>())
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&m.raw[..m.raw.len().min(1200)]).into_owned()
                });
            // The body keeps its line breaks; write_text replaces every other
            // control character.
            outln!("\n{text}")?;
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
                to.extension().is_some_and(|e| e == "eml"),
                "--to must name a .eml file (parsers test reads only those)"
            );
            let fixtures = driftwatch::fixtures::fixtures_dir(&config.parsers_dir);
            let to = fixtures.join(&to);
            anyhow::ensure!(
                !to.exists(),
                "{} already exists; choose another name",
                to.display()
            );
            if let Some(dir) = to.parent() {
                driftwatch::private_files::create_dir(dir)
                    .with_context(|| format!("failed to create {}", dir.display()))?;
            }
            driftwatch::private_files::write(&to, &m.raw)
                .with_context(|| format!("failed to write {}", to.display()))?;
            outln!("wrote {}", to.display())?;
            outln!(
                "next: fix the vendor's rule file, then `driftwatch -c {} parsers test {} --update`, review, commit both files",
                config.file.display(),
                to.display()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A table cell from outside: one line, at most 80 characters.
fn cell(s: &str) -> String {
    driftwatch::out::truncate(&clean(s), 80).into_owned()
}

fn parsers_test(
    config: &Config,
    args: Vec<String>,
    update: bool,
    fixtures: Option<PathBuf>,
) -> Result<ExitCode> {
    use driftwatch::fixtures::{Verdict, discover, run_one};
    // A fixture says what the parsers make of a message, the same in every
    // deployment: `ignore_senders` is this deployment's mailbox filter (our
    // own domain), not part of a parser, so fixtures run without it.
    let mut config = config.clone();
    config.ingest.ignore_senders.clear();
    let registry = load_registry(&config)?;
    let fixtures_dir =
        fixtures.unwrap_or_else(|| driftwatch::fixtures::fixtures_dir(&config.parsers_dir));
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
                outln!(
                    "UPDATED {}",
                    driftwatch::fixtures::expected_path(p).display()
                )?;
            }
            Verdict::Fail(diff) => {
                failed += 1;
                outln!("FAIL {}\n{diff}", p.display())?;
            }
            Verdict::Missing(actual) => {
                failed += 1;
                outln!(
                    "MISSING {}: no expectation yet; the parsers produce:\n{}\n(record it with --update after review)",
                    p.display(),
                    serde_json::to_string_pretty(&actual)?
                )?;
            }
            Verdict::Broken(msg) => {
                failed += 1;
                outln!("ERROR {}: {msg}", p.display())?;
            }
        }
    }
    outln!(
        "parsers: {passed} passed, {failed} failed{}",
        if updated > 0 {
            format!(", {updated} updated")
        } else {
            String::new()
        }
    )?;
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
    outln!(
        "examined {} of {} archived messages (the rest were classified by these rules already); {} {verb}",
        report.examined,
        report.in_scope,
        report.changed
    )?;
    for (vendor, c) in &report.per_vendor {
        outln!(
            "  {}: {} messages (newly parsed {}, newly quarantined {}), deltas {} -> {}",
            clean(vendor),
            c.changed,
            c.newly_parsed,
            c.newly_quarantined,
            c.deltas_before,
            c.deltas_after
        )?;
    }
    outln!("orders whose view {verb}: {}", report.orders.len())?;
    let show = |s: &Option<driftwatch::model::OrderState>| match s {
        Some(s) => format!(
            "{} {}",
            s.status.map(|x| x.as_str()).unwrap_or("-"),
            serde_json::to_string(&s.fields).unwrap_or_default()
        ),
        None => "(absent)".into(),
    };
    for c in report.orders.iter().take(50) {
        outln!(
            "  {} {}: {}  ->  {}",
            clean(&c.vendor),
            clean(&c.order_ref),
            clean(&show(&c.before)),
            clean(&show(&c.after))
        )?;
    }
    if report.orders.len() > 50 {
        outln!("  ... and {} more", report.orders.len() - 50)?;
    }
    if dry_run {
        outln!("dry run: nothing was written")?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn demo(dir: &Path) -> Result<ExitCode> {
    driftwatch::demo::run(dir).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand says what it does, and every option and argument
    /// says what it is for (`--help` is the manual most people read).
    #[test]
    fn every_command_option_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{p} (the command itself)"));
                }
                walk(sub, &p, missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "driftwatch", &mut missing);
        assert!(
            missing.is_empty(),
            "no help text for:\n{}",
            missing.join("\n")
        );
    }
}
