//! Rate limits: one token bucket per bearer token (by name) and one per
//! vendor on webhook intake. Over the limit is `429` with `Retry-After`, so
//! a well-behaved client waits instead of hammering, and one noisy caller
//! cannot starve the others of the one database writer.
//!
//! Buckets are in memory, per instance: several instances behind one load
//! balancer each allow the configured rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::config::RateLimit;
use super::problem::Problem;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by caller.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    /// What the caller is, for the problem's detail ("token", "vendor").
    what: &'static str,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(limit: RateLimit, what: &'static str) -> Limiter {
        Limiter {
            limit,
            what,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket, or says how long until one is there.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means a panic elsewhere mid-update of plain numbers.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let burst = f64::from(self.limit.burst);
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.limit.per_sec;
        b.tokens = (b.tokens + refill).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - b.tokens) / self.limit.per_sec,
            ))
        }
    }

    /// [`Limiter::take`] as the API answers it: `429` with `Retry-After`
    /// (whole seconds, rounded up).
    pub fn check(&self, key: &str) -> Result<(), Problem> {
        self.take(key, Instant::now()).map_err(|wait| {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!(
                    "this {} is over its limit of {} requests/s (burst {}); retry after {secs} s",
                    self.what, self.limit.per_sec, self.limit.burst
                ),
            )
            .retry_after(secs.max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_steady_rate() {
        let l = Limiter::new(
            RateLimit {
                per_sec: 10.0,
                burst: 3,
            },
            "token",
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("a", t0).is_ok());
        }
        let wait = l.take("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        // Another caller has its own bucket.
        assert!(l.take("b", t0).is_ok());
        assert!(l.take("a", t0 + Duration::from_millis(100)).is_ok());
        assert!(l.take("a", t0 + Duration::from_millis(100)).is_err());
    }
}
