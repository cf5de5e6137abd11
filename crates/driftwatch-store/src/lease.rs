//! Leases: one writer at a time for a named piece of work, across processes.
//!
//! Reconcile runs of one vendor (`reconcile:<vendor>`) and ingest of one
//! mailbox folder (`ingest:<mailbox>/<folder>`) each take a lease before they
//! read what they will write from. A lease has a holder, an expiry and a
//! fencing token that grows with every grant. Holding a lease is not enough
//! to write: the write transaction itself checks the token ([`fence`]), so a
//! holder that stalled (a paused VM, a long GC of the disk) past its expiry
//! and lost the lease to someone else cannot commit stale work.
//!
//! The SQL is plain (`INSERT … ON CONFLICT … DO UPDATE … WHERE`, `RETURNING`)
//! so the PostgreSQL store reuses the table and statements; times are our
//! fixed-width text, compared as text. Never: hold a lease across an await
//! that waits on another lease (no lock ordering is needed because no code
//! holds two).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Result, Store, StoreError, parse_ts, ts};

/// How long a grant lasts without renewal. Short, so a crashed holder on
/// another host blocks the work for seconds, not minutes.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often a held lease is renewed: well inside the TTL.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a waiter asks again.
const POLL: Duration = Duration::from_millis(200);

/// Proof of holding a lease, checked inside a write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub name: String,
    pub holder: String,
    pub token: i64,
}

/// Who holds a lease someone else wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

/// A unique holder name per grant: host, boot and process (so a holder that
/// died on this machine is recognised at once), and a counter (so two tasks
/// of one process are different holders).
fn new_holder() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let host = read("/proc/sys/kernel/hostname");
    let boot = read("/proc/sys/kernel/random/boot_id");
    format!(
        "{}/{}/{}/{}",
        if host.is_empty() { "host" } else { &host },
        boot,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// True when `holder` names a process on this boot of this machine that no
/// longer runs: its lease can be taken at once instead of after the TTL (a
/// SIGKILLed `reconcile` must not block the next one for half a minute).
/// Fencing keeps this safe even if the answer were wrong.
fn holder_is_dead(holder: &str) -> bool {
    let mut parts = holder.split('/');
    let (Some(_host), Some(boot), Some(pid)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let our_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    if boot.is_empty() || boot != our_boot.trim() || pid.parse::<u32>().is_err() {
        return false;
    }
    if pid == std::process::id().to_string() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie has exited; only its parent has not reaped it yet.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

impl Store {
    /// Grants `name` to a new holder for `ttl` if it is free, expired, or
    /// held by a process of this machine that has died; otherwise says who
    /// holds it.
    pub async fn try_acquire_lease(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<std::result::Result<Fence, LeaseHolder>> {
        let holder = new_holder();
        let now = Utc::now();
        let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
        let mut tx = self.write_tx().await?;
        let current = sqlx::query("SELECT holder, expires_at FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(r) = &current {
            let (h, exp): (String, &str) = (r.try_get(0)?, r.try_get(1)?);
            let exp = parse_ts(exp)?;
            if exp > now && !holder_is_dead(&h) {
                return Ok(Err(LeaseHolder {
                    holder: h,
                    expires_at: exp,
                }));
            }
        }
        let token: i64 = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, token, expires_at) VALUES ($1, $2, 1, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                 token = leases.token + 1, expires_at = excluded.expires_at
             RETURNING token",
        )
        .bind(name)
        .bind(&holder)
        .bind(ts(expires))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        debug!(lease = name, holder, token, "lease acquired");
        Ok(Ok(Fence {
            name: name.to_string(),
            holder,
            token,
        }))
    }

    /// Extends a held lease; `false` when it was lost (expired and taken).
    pub async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool> {
        let now = Utc::now();
        let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
        let n = sqlx::query(
            "UPDATE leases SET expires_at = $1 WHERE name = $2 AND holder = $3 AND token = $4",
        )
        .bind(ts(expires))
        .bind(&fence.name)
        .bind(&fence.holder)
        .bind(fence.token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Gives a lease back, so the next holder need not wait for it to expire.
    pub async fn release_lease(&self, fence: &Fence) -> Result<()> {
        sqlx::query(
            "UPDATE leases SET expires_at = $1 WHERE name = $2 AND holder = $3 AND token = $4",
        )
        .bind(ts(DateTime::<Utc>::UNIX_EPOCH))
        .bind(&fence.name)
        .bind(&fence.holder)
        .bind(fence.token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes `name`, renewing it in the background until the returned
    /// [`Held`] is released or dropped. Waits up to `wait` for a busy lease;
    /// `Err(holder)` when it is still held then.
    pub async fn hold_lease(
        &self,
        name: &str,
        wait: Duration,
    ) -> Result<std::result::Result<Held, LeaseHolder>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.try_acquire_lease(name, LEASE_TTL).await? {
                Ok(fence) => return Ok(Ok(Held::start(self.clone(), fence))),
                Err(h) if tokio::time::Instant::now() + POLL > deadline => return Ok(Err(h)),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// Checks, inside a write transaction, that `fence` still holds its lease.
/// With `BEGIN IMMEDIATE` (SQLite) the transaction already owns the write
/// lock, so no grant can slip in between this check and the commit; on
/// PostgreSQL the same statement takes `FOR UPDATE`.
pub(crate) async fn fence(conn: &mut sqlx::AnyConnection, fence: &Fence) -> Result<()> {
    let ok: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > $4",
    )
    .bind(&fence.name)
    .bind(&fence.holder)
    .bind(fence.token)
    .bind(ts(Utc::now()))
    .fetch_optional(conn)
    .await?;
    match ok {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost(fence.name.clone())),
    }
}

/// A lease held and kept alive by a background renewal.
#[derive(Debug)]
pub struct Held {
    store: Store,
    fence: Arc<Fence>,
    renew: Option<JoinHandle<()>>,
}

impl Held {
    fn start(store: Store, fence: Fence) -> Held {
        let fence = Arc::new(fence);
        let (s, f) = (store.clone(), fence.clone());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match s.renew_lease(&f, LEASE_TTL).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(lease = %f.name, "lease lost; this holder's writes will be refused");
                        return;
                    }
                    Err(e) => warn!(lease = %f.name, error = %e, "lease renewal failed; retrying"),
                }
            }
        });
        Held {
            store,
            fence,
            renew: Some(renew),
        }
    }

    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Stops renewing and gives the lease back.
    pub async fn release(mut self) -> Result<()> {
        if let Some(r) = self.renew.take() {
            r.abort();
        }
        self.store.release_lease(&self.fence).await
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(r) = self.renew.take() {
            r.abort();
            // Dropped without `release` (an error path): give it back anyway.
            let (s, f) = (self.store.clone(), self.fence.clone());
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = s.release_lease(&f).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_or_foreign_holder_is_not_dead() {
        let me = new_holder();
        assert!(!holder_is_dead(&me));
        assert!(!holder_is_dead("otherhost/other-boot/1/0"));
        assert!(!holder_is_dead("garbage"));
    }

    #[tokio::test]
    async fn second_holder_is_refused_until_release_and_old_token_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let a = store
            .try_acquire_lease("reconcile:v", LEASE_TTL)
            .await
            .unwrap()
            .unwrap();
        let b = store
            .try_acquire_lease("reconcile:v", LEASE_TTL)
            .await
            .unwrap();
        assert_eq!(b.unwrap_err().holder, a.holder);
        // Expired: the next grant gets a higher token and the old one is fenced off.
        assert!(store.renew_lease(&a, Duration::ZERO).await.unwrap());
        let c = store
            .try_acquire_lease("reconcile:v", LEASE_TTL)
            .await
            .unwrap()
            .unwrap();
        assert!(c.token > a.token);
        assert!(!store.renew_lease(&a, LEASE_TTL).await.unwrap());
        let mut conn = store.pool.acquire().await.unwrap();
        assert!(matches!(
            fence(&mut conn, &a).await,
            Err(StoreError::LeaseLost(_))
        ));
        fence(&mut conn, &c).await.unwrap();
        drop(conn);
        store.release_lease(&c).await.unwrap();
        assert!(
            store
                .try_acquire_lease("reconcile:v", LEASE_TTL)
                .await
                .unwrap()
                .is_ok()
        );
    }
}
