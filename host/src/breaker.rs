//! The circuit breaker that quarantines a plugin after repeated failures.
//!
//! After [`BreakerConfig::threshold`] consecutive failed calls, a plugin is
//! quarantined: its hooks are skipped (fail-open) or fail at once
//! (fail-closed) without running, for a back-off that starts at
//! [`BreakerConfig::backoff`] and doubles on every further trip up to
//! [`BreakerConfig::max_backoff`]. When it expires, one call is let through: a
//! success closes the breaker, a failure opens it again for longer.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

/// Circuit breaker settings (the host's, for every plugin).
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that quarantine a plugin (0 disables the breaker).
    pub threshold: u32,
    /// First quarantine period.
    pub backoff: Duration,
    /// Longest quarantine period.
    pub max_backoff: Duration,
}

impl Default for BreakerConfig {
    /// 5 consecutive failures; 10 s back-off, doubling up to 5 minutes.
    fn default() -> Self {
        BreakerConfig { threshold: 5, backoff: Duration::from_secs(10), max_backoff: Duration::from_secs(300) }
    }
}

/// Where a plugin's breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls run normally.
    Closed,
    /// Quarantined: calls are refused for this long yet.
    Open {
        /// Milliseconds left in the quarantine.
        remaining_ms: u64,
    },
    /// The quarantine expired; the next call decides.
    HalfOpen,
}

#[derive(Debug, Default)]
struct Inner {
    consecutive: u32,
    /// The last call succeeded at the wasm level; the counter resets when the
    /// next call starts unless the caller reported a failure meanwhile (an
    /// output the pipeline refused counts as a failure).
    tentative_success: bool,
    open_until: Option<Instant>,
    trips: u32,
}

/// One plugin's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker { config, inner: Mutex::new(Inner::default()) }
    }

    /// `Err(remaining)` while quarantined; otherwise the call may run.
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        let mut s = self.inner.lock();
        if std::mem::take(&mut s.tentative_success) {
            s.consecutive = 0;
            s.trips = 0;
        }
        match s.open_until {
            Some(until) => {
                let now = Instant::now();
                if until > now { Err(until - now) } else { Ok(()) }
            }
            None => Ok(()),
        }
    }

    pub(crate) fn succeeded(&self) {
        let mut s = self.inner.lock();
        s.tentative_success = true;
        s.open_until = None;
    }

    /// Records a failure; returns the quarantine period if this one tripped it.
    pub(crate) fn failed(&self) -> Option<Duration> {
        if self.config.threshold == 0 {
            return None;
        }
        let mut s = self.inner.lock();
        s.tentative_success = false;
        s.consecutive += 1;
        let half_open = s.open_until.is_some_and(|t| t <= Instant::now());
        if s.consecutive >= self.config.threshold || half_open {
            let factor = 2u32.saturating_pow(s.trips.min(16));
            let backoff = self.config.backoff.saturating_mul(factor).min(self.config.max_backoff);
            s.open_until = Some(Instant::now() + backoff);
            s.trips += 1;
            s.consecutive = 0;
            return Some(backoff);
        }
        None
    }

    pub(crate) fn state(&self) -> BreakerState {
        let s = self.inner.lock();
        match s.open_until {
            None => BreakerState::Closed,
            Some(t) => {
                let now = Instant::now();
                if t > now {
                    BreakerState::Open { remaining_ms: (t - now).as_millis() as u64 }
                } else {
                    BreakerState::HalfOpen
                }
            }
        }
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        let s = self.inner.lock();
        if s.tentative_success { 0 } else { s.consecutive }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, ms: u64) -> Breaker {
        Breaker::new(BreakerConfig {
            threshold,
            backoff: Duration::from_millis(ms),
            max_backoff: Duration::from_millis(ms * 3),
        })
    }

    #[test]
    fn trips_after_consecutive_failures_only() {
        let b = breaker(3, 50);
        assert!(b.failed().is_none());
        assert!(b.failed().is_none());
        b.admit().unwrap();
        b.succeeded();
        b.admit().unwrap(); // the success resets the count
        assert!(b.failed().is_none());
        assert!(b.failed().is_none());
        assert_eq!(b.failed(), Some(Duration::from_millis(50)));
        assert!(b.admit().is_err());
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn refused_output_after_wasm_success_still_counts() {
        let b = breaker(2, 50);
        for _ in 0..2 {
            b.admit().unwrap();
            b.succeeded(); // the call returned
            b.failed(); // ...but the pipeline refused its output
        }
        assert!(b.admit().is_err());
    }

    #[test]
    fn half_open_then_backoff_doubles_and_caps() {
        let b = breaker(1, 20);
        assert_eq!(b.failed(), Some(Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.admit().unwrap();
        assert_eq!(b.failed(), Some(Duration::from_millis(40)));
        std::thread::sleep(Duration::from_millis(50));
        b.admit().unwrap();
        assert_eq!(b.failed(), Some(Duration::from_millis(60)), "capped at max_backoff");
        std::thread::sleep(Duration::from_millis(70));
        b.admit().unwrap();
        b.succeeded();
        b.admit().unwrap();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn zero_threshold_disables() {
        let b = breaker(0, 10);
        for _ in 0..100 {
            assert!(b.failed().is_none());
        }
        b.admit().unwrap();
    }
}
