//! The one retry delay used everywhere driftwatch waits after a failure:
//! reconnecting a mail source, retrying a report delivery, retrying an
//! export page.
//!
//! Exponential (doubling from `initial`), jittered, and never past `max`: the
//! jitter takes up to a quarter *off* the delay instead of adding to it, so
//! the cap is a real cap, and many instances behind one server still spread
//! out instead of reconnecting in lockstep. Callers [`Backoff::reset`] it when
//! the thing that failed works again.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// The delay before jitter for the next failure.
    current: Duration,
    /// Failures since the last reset (1 after the first).
    failures: u32,
    /// State of a small xorshift generator, seeded per instance so two
    /// sources started in the same nanosecond still jitter differently.
    rng: u64,
}

impl Backoff {
    /// `max` below `initial` is raised to `initial`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        // RandomState is seeded from the OS per process and varies per
        // instance: enough randomness for jitter without an RNG crate.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            | 1;
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
            failures: 0,
            rng: seed,
        }
    }

    /// The delay to wait after one more failure: `initial · 2^(n-1)` capped
    /// at `max`, minus up to 25% jitter. Never more than `max`.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        self.failures = self.failures.saturating_add(1);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let quarter_pct = (self.rng % 1000) as f64 / 4000.0;
        base - base.mul_f64(quarter_pct)
    }

    /// The delay after a failure that waiting will not fix: straight to
    /// `max` (jitter included), so a person has time to act and the server
    /// is not hammered meanwhile. Counts as a failure.
    pub fn longest_delay(&mut self) -> Duration {
        self.current = self.max;
        self.next_delay()
    }

    /// Back to `initial`: the failing step worked again.
    pub fn reset(&mut self) {
        self.current = self.initial;
        self.failures = 0;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Sleeps [`Self::next_delay`], or less if `shutdown` fires first.
    /// Returns the delay chosen (for the log line).
    pub async fn sleep(&mut self, shutdown: &CancellationToken) -> Duration {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    fn within(got: Duration, base_ms: u64) -> bool {
        let ms = got.as_millis() as u64;
        ms <= base_ms && ms >= base_ms - base_ms / 4
    }

    #[test]
    fn delays_double_up_to_the_cap_and_never_pass_it() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let got: Vec<Duration> = (0..40).map(|_| b.next_delay()).collect();
        for (d, base) in got.iter().zip([1000, 2000, 4000, 8000, 8000, 8000]) {
            assert!(within(*d, base), "{got:?}");
        }
        assert!(got.iter().all(|d| *d <= Duration::from_secs(8)), "{got:?}");
    }

    #[test]
    fn reset_starts_small_again() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.failures(), 10);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(within(b.next_delay(), 500));
    }

    #[test]
    fn jitter_spreads_instances_apart() {
        let delays: Vec<Duration> = (0..8)
            .map(|_| Backoff::new(Duration::from_secs(10), Duration::from_secs(60)).next_delay())
            .collect();
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "{delays:?}");
    }

    #[test]
    fn a_cap_below_the_first_delay_is_the_first_delay() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert!(within(b.next_delay(), 5000));
        assert!(within(b.next_delay(), 5000));
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_follow_the_schedule_in_virtual_time() {
        let never = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let start = tokio::time::Instant::now();
        let mut total = Duration::ZERO;
        for _ in 0..10 {
            total += b.sleep(&never).await;
        }
        // The timer wheel works in whole milliseconds.
        let slept = start.elapsed();
        assert!(
            slept >= total && slept <= total + Duration::from_millis(10),
            "{slept:?} {total:?}"
        );
        // 1+2+4+8+16+32+60+60+60+60 = 303 s before jitter; jitter only shortens.
        assert!(
            total <= Duration::from_secs(303) && total >= Duration::from_secs(227),
            "{total:?}"
        );

        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let before = tokio::time::Instant::now();
        b.sleep(&shutdown).await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
