//! Outbound webhooks: alerts sent to subscribers when something happens.
//!
//! Events are written to the store's outbox by the transaction that made
//! the change (a reconcile run, an ingest batch, a format alert); this
//! worker, inside `serve`, only reads them and sends. Each pass moves new
//! events into per-subscription deliveries, claims due ones under a lease
//! (two instances on one database never both send one, unless a lease ran
//! out), signs them with Standard Webhooks (`webhook-id` is the same on
//! every attempt: receivers dedupe by it) and records every attempt.
//! Failures are retried with the one backoff (`crate::backoff`) until
//! `max_attempts`; state lives in the database, so a restart resumes where
//! it stopped. Delivery is at least once.
//!
//! It also notices vendors going silent (open orders, no mail for
//! `silent_after_hours`), the one event with no write of its own to ride on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::config::SubscriptionSettings;
use super::signature::{decode_secret, sign};
use crate::backoff::Backoff;
use crate::store::{Attempt, AttemptOutcome, Claimed, Store, StoreError};

/// How often the worker looks for due deliveries.
const POLL: Duration = Duration::from_millis(500);
/// How often vendors are checked for silence.
const SILENCE_CHECK: Duration = Duration::from_secs(60);
/// Deliveries claimed per pass, and sent at once.
const CLAIM: i64 = 64;
const IN_FLIGHT: usize = 8;
/// Events moved into deliveries per pass.
const ENQUEUE: i64 = 1000;

/// A subscription with its key decoded.
struct Sub {
    settings: SubscriptionSettings,
    key: Vec<u8>,
}

impl std::fmt::Debug for Sub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sub({}, key redacted)", self.settings.name)
    }
}

/// The delivery worker of one instance.
#[derive(Debug)]
pub struct Outbound {
    store: Store,
    subs: HashMap<String, Sub>,
    client: reqwest::Client,
    /// Names this instance's leases (host, process, start time).
    holder: String,
    /// From the report settings: when a vendor counts as silent.
    silent_after_hours: u32,
}

/// What one pass did, for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub enqueued: u64,
    pub delivered: usize,
    pub failed: usize,
}

impl Outbound {
    /// Resolves every subscription's secret: a missing or malformed one
    /// stops `serve` with the subscription's name, never the value.
    pub async fn build(
        store: Store,
        settings: &[SubscriptionSettings],
        silent_after_hours: u32,
    ) -> anyhow::Result<Outbound> {
        let mut subs = HashMap::new();
        for s in settings {
            let v = s.secret.resolve().await.map_err(|e| {
                anyhow::anyhow!(
                    "secret of subscription `{}` ({:?}) is not available: {e}",
                    s.name,
                    s.secret
                )
            })?;
            let key = decode_secret(&v)
                .map_err(|e| anyhow::anyhow!("secret of subscription `{}` {e}", s.name))?;
            subs.insert(
                s.name.clone(),
                Sub {
                    settings: s.clone(),
                    key,
                },
            );
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("driftwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the webhook HTTP client: {e}"))?;
        static BUILT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let holder = format!(
            "{}:{}:{}:{}",
            std::env::var("HOSTNAME").unwrap_or_default(),
            std::process::id(),
            Utc::now().timestamp_micros(),
            BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        Ok(Outbound {
            store,
            subs,
            client,
            holder,
            silent_after_hours,
        })
    }

    /// Sends until `shutdown`; a delivery in flight finishes (bounded by
    /// its timeout) and is recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.subs.is_empty() {
            return;
        }
        info!(subscriptions = self.subs.len(), "outbound webhooks started");
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Silence is checked after the first pass, which starts a new
        // subscription's cursor: a vendor already silent at start is reported.
        let mut last_silence: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            match self.run_once(Utc::now()).await {
                Ok(p) if p != Pass::default() => {
                    debug!(
                        enqueued = p.enqueued,
                        delivered = p.delivered,
                        failed = p.failed,
                        "outbound pass"
                    )
                }
                Ok(_) => {}
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "outbound webhooks: database busy; will retry")
                }
                Err(e) => error!(error = %e, "outbound webhooks: pass failed; will retry"),
            }
            if last_silence.is_none_or(|t| t.elapsed() >= SILENCE_CHECK) {
                last_silence = Some(Instant::now());
                if let Err(e) = self.check_silence(Utc::now()).await {
                    warn!(error = %e, "outbound webhooks: cannot check vendors for silence; will retry");
                }
            }
        }
        info!("outbound webhooks stopped");
    }

    /// One pass: new events into deliveries, then every due delivery sent once.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<Pass, StoreError> {
        let wanted: Vec<_> = self
            .subs
            .values()
            .map(|s| (s.settings.name.clone(), s.settings.events.clone()))
            .collect();
        let enqueued = self.store.outbox_enqueue(&wanted, now, ENQUEUE).await?;
        let names: Vec<String> = self.subs.keys().cloned().collect();
        let lease = self
            .subs
            .values()
            .map(|s| s.settings.timeout)
            .max()
            .unwrap_or(Duration::from_secs(10))
            * 4;
        let claimed = self
            .store
            .outbox_claim(
                &names,
                &self.holder,
                now,
                chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5)),
                CLAIM,
            )
            .await?;
        let results: Vec<Result<bool, StoreError>> = futures_util::stream::iter(claimed)
            .map(|c| self.deliver(c))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut pass = Pass {
            enqueued,
            ..Pass::default()
        };
        for r in results {
            if r? {
                pass.delivered += 1;
            } else {
                pass.failed += 1;
            }
        }
        Ok(pass)
    }

    /// Sends one delivery and records the attempt; true when delivered.
    async fn deliver(&self, c: Claimed) -> Result<bool, StoreError> {
        let Some(sub) = self.subs.get(&c.subscription) else {
            return Ok(false);
        };
        let s = &sub.settings;
        let id = webhook_id(&c.subscription, c.event);
        let body = body(&c);
        let started = Instant::now();
        let attempted_at = Utc::now();
        let timestamp = attempted_at.timestamp();
        let sent = self
            .client
            .post(s.url.clone())
            .timeout(s.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign(&sub.key, &id, timestamp, body.as_bytes()),
            )
            .body(body)
            .send()
            .await;
        let (status_code, error) = match sent {
            Ok(res) => {
                let code = res.status();
                let err = (!code.is_success()).then(|| format!("HTTP {}", code.as_u16()));
                (Some(code.as_u16()), err)
            }
            // Without the URL: a subscriber's URL may carry a token.
            Err(e) => (None, Some(e.without_url().to_string())),
        };
        let attempts = c.attempts + 1;
        let outcome = if error.is_none() {
            AttemptOutcome::Delivered
        } else if attempts >= i64::from(s.max_attempts) {
            AttemptOutcome::Dead
        } else {
            let wait = retry_delay(s, attempts);
            AttemptOutcome::Retry {
                retry_at: attempted_at
                    + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1)),
            }
        };
        match (&outcome, &error) {
            (AttemptOutcome::Delivered, _) => {
                debug!(subscription = %c.subscription, event = c.event, webhook_id = %id, "alert delivered")
            }
            (AttemptOutcome::Dead, Some(e)) => {
                error!(subscription = %c.subscription, event = c.event, webhook_id = %id, attempts, error = %e, "alert not delivered after the last attempt; giving up")
            }
            (_, e) => {
                warn!(subscription = %c.subscription, event = c.event, webhook_id = %id, attempts, error = e.as_deref().unwrap_or(""), "alert delivery failed; will retry")
            }
        }
        self.store
            .outbox_finish(
                &self.holder,
                &Attempt {
                    subscription: c.subscription.clone(),
                    event: c.event,
                    attempted_at,
                    duration_ms: started.elapsed().as_millis() as i64,
                    status_code,
                    error,
                    outcome,
                },
            )
            .await?;
        Ok(outcome == AttemptOutcome::Delivered)
    }

    /// Records `vendor.silent` for each vendor silent now (once per
    /// silence: the store keys it by the vendor's last mail), unless its
    /// silence alert is muted in the dashboard.
    pub async fn check_silence(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let cutoff = now - chrono::Duration::hours(i64::from(self.silent_after_hours));
        let muted = self.store.muted_vendors(now).await?;
        for v in self.store.vendor_summaries().await? {
            if v.is_silent(cutoff) && !muted.contains(&v.vendor) {
                self.store
                    .record_silence(&v.vendor, v.last_mail_at, self.silent_after_hours, now)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The same on every attempt of one event to one subscription, so the
/// receiver can drop a repeat.
pub fn webhook_id(subscription: &str, event: i64) -> String {
    format!("msg_{subscription}_{event}")
}

/// The Standard Webhooks payload: `type`, `timestamp` (when it happened),
/// `data` (as written then). The same bytes on every attempt.
fn body(c: &Claimed) -> String {
    format!(
        r#"{{"type":"{}","timestamp":"{}","data":{}}}"#,
        c.kind.as_str(),
        c.occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        c.payload
    )
}

/// The wait after the `failures`-th failed attempt.
fn retry_delay(s: &SubscriptionSettings, failures: i64) -> Duration {
    let mut b = Backoff::new(s.retry_initial, s.retry_max);
    let mut d = s.retry_initial;
    for _ in 0..failures.clamp(1, 64) {
        d = b.next_delay();
    }
    d
}
