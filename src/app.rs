//! The composition root: builds the store, parsers and mail sources from a
//! config, and runs them. `main` and the integration tests both start here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{Config, Mailbox};
use crate::ingest::{ImapSource, MailSource, MaildirSource, Pipeline, run_source};
use crate::parse::Registry;
use crate::store::{BatchOutcome, RuleHashes, Store};

/// How long `serve` waits for tasks to finish their current batch on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Cap for reconnect backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Cheap to clone: the scheduled jobs each hold one.
#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub store: Store,
    pub pipeline: Arc<Pipeline>,
}

fn registry_options(config: &Config) -> crate::parse::RegistryOptions {
    crate::parse::RegistryOptions {
        ignore_senders: config.ingest.ignore_senders.clone(),
        authserv_ids: config.ingest.authserv_ids.clone(),
    }
}

/// Loads the parsers directory, joining every rule-file error into one message.
pub fn load_registry(config: &Config) -> Result<Registry> {
    crate::parse::load_dir(&config.parsers_dir, registry_options(config)).map_err(|errors| {
        anyhow::Error::new(crate::out::ErrorLines {
            head: "invalid parser rule files:".into(),
            lines: errors.iter().map(ToString::to_string).collect(),
        })
    })
}

/// The parsers with the hashes of their rules (`reparse::rule_hashes`),
/// read before and after loading: a file edited meanwhile leaves the hashes
/// unknown, so no message is stamped with rules it was not parsed by.
pub fn load_rules(config: &Config) -> Result<(Registry, RuleHashes)> {
    let options = format!("{:?}", registry_options(config));
    let before = crate::reparse::rule_hashes(&config.parsers_dir, &options);
    let registry = load_registry(config)?;
    let after = crate::reparse::rule_hashes(&config.parsers_dir, &options);
    Ok((
        registry,
        if before == after {
            after
        } else {
            RuleHashes::default()
        },
    ))
}

impl App {
    pub async fn build(config: Config) -> Result<App> {
        let (registry, hashes) = load_rules(&config)?;
        let store = config.database.open().await?;
        let pipeline = Arc::new(Pipeline::new(
            store.clone(),
            registry,
            hashes,
            config.ingest.clone(),
        ));
        Ok(App {
            config,
            store,
            pipeline,
        })
    }

    /// Re-reads the parser rule files; on error the running parsers stay.
    pub fn reload_parsers(&self) -> Result<usize> {
        let (registry, hashes) = load_rules(&self.config)?;
        let n = registry.parsers().len();
        self.pipeline.replace_rules(registry, hashes);
        Ok(n)
    }

    /// Fetches what every mailbox holds now, then returns: `ingest --once`.
    pub async fn ingest_once(&self) -> Result<Vec<(String, String, BatchOutcome)>> {
        let never = CancellationToken::new();
        let mut results = Vec::new();
        for mailbox in &self.config.mailboxes {
            match mailbox {
                Mailbox::Imap(s) => {
                    let s = Arc::new(s.clone());
                    for folder in &s.folders {
                        let held = self.folder_lease(&s.name, folder).await?;
                        let mut src = ImapSource::new(s.clone(), folder.clone());
                        let out = src.sync(&self.pipeline, &never).await;
                        held.release().await?;
                        src.reset().await;
                        let out =
                            out.with_context(|| format!("failed to ingest {}/{folder}", s.name))?;
                        results.push((s.name.clone(), folder.clone(), out));
                    }
                }
                Mailbox::Maildir(s) => {
                    let mut src = MaildirSource::new(s.clone());
                    let held = self.folder_lease(&s.name, src.folder()).await?;
                    let out = src.sync(&self.pipeline, &never).await;
                    held.release().await?;
                    let out = out.with_context(|| {
                        format!("failed to ingest Maildir {}", s.path.display())
                    })?;
                    results.push((s.name.clone(), src.folder().to_string(), out));
                }
            }
        }
        Ok(results)
    }

    /// The folder's ingest lease for `ingest --once`: waits (bounded) for a
    /// `serve` that is syncing the same folder, then refuses.
    async fn folder_lease(&self, mailbox: &str, folder: &str) -> Result<crate::store::Held> {
        crate::ingest::lease_folder(&self.pipeline, mailbox, folder, crate::store::LEASE_TTL)
            .await?
            .with_context(|| format!("another process kept syncing {mailbox}/{folder}; try again"))
    }

    /// Runs every mail source until `shutdown`, then waits (bounded) for each
    /// to finish the batch it is committing.
    pub async fn serve(&self, shutdown: CancellationToken) -> Result<()> {
        // Bound first: a taken port or a missing token stops `serve` before anything runs.
        let http = match self.config.http.clone() {
            Some(h) => Some(
                crate::http::Server::bind(
                    self.store.clone(),
                    self.config.clone(),
                    h,
                    shutdown.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for mailbox in &self.config.mailboxes {
            match mailbox {
                Mailbox::Imap(s) => {
                    let s = Arc::new(s.clone());
                    for folder in &s.folders {
                        let src = ImapSource::new(s.clone(), folder.clone());
                        let (p, t) = (self.pipeline.clone(), shutdown.clone());
                        tasks.spawn(async move { run_source(src, &p, t, MAX_BACKOFF).await });
                    }
                }
                Mailbox::Maildir(s) => {
                    let src = MaildirSource::new(s.clone());
                    let (p, t) = (self.pipeline.clone(), shutdown.clone());
                    tasks.spawn(async move { run_source(src, &p, t, MAX_BACKOFF).await });
                }
            }
        }
        tasks.spawn(watch_parsers(self.clone(), shutdown.clone()));
        tasks.spawn(crate::reconcile::run_scheduler(
            self.store.clone(),
            self.config.vendors.clone(),
            crate::reconcile::work_dir(&self.config),
            shutdown.clone(),
        ));
        // A vendor whose key frames come by mail runs when its report is archived.
        tasks.spawn(crate::reconcile::mail_source::run_on_mail(
            self.store.clone(),
            self.config.vendors.clone(),
            crate::reconcile::work_dir(&self.config),
            self.pipeline.subscribe(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::report::run_scheduler(
            self.store.clone(),
            self.config.report.clone(),
            shutdown.clone(),
        ));
        if let Some(server) = http {
            tasks.spawn(server.run());
        }
        info!(tasks = tasks.len(), "driftwatch serving");
        shutdown.cancelled().await;
        info!("shutting down: letting sources finish their current batch");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(r) = tasks.join_next().await {
                if let Err(e) = r {
                    error!(error = %e, "a source task panicked");
                }
            }
        })
        .await;
        if drained.is_err() {
            // Uncommitted batches roll back and are fetched again next start.
            error!("sources did not stop within {SHUTDOWN_GRACE:?}; abandoning them");
            tasks.abort_all();
        }
        self.store.close().await;
        Ok(())
    }
}

/// How often the parsers directory is checked for edits.
const PARSER_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Reloads the parsers when a rule file is added, removed or edited, so a
/// fixed parser takes effect without a restart (SIGHUP does the same at once).
/// A broken edit is logged and the running parsers stay.
async fn watch_parsers(app: App, shutdown: CancellationToken) {
    let mut last = parsers_fingerprint(&app.config.parsers_dir);
    let mut tick = tokio::time::interval(PARSER_WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = parsers_fingerprint(&app.config.parsers_dir);
        if now == last {
            continue;
        }
        last = now;
        match app.reload_parsers() {
            Ok(n) => info!(parsers = n, "parser rule files changed; reloaded"),
            Err(e) => {
                error!(error = %format!("{e:#}"), "parser rule files changed but do not load; keeping the running parsers")
            }
        }
    }
}

fn parsers_fingerprint(
    dir: &std::path::Path,
) -> Vec<(std::path::PathBuf, Option<std::time::SystemTime>, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.modified().ok(), m.len()))
        })
        .collect();
    v.sort();
    v
}
