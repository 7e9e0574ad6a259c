//! The circuit breaker that quarantines a plugin after repeated failures.
//!
//! After [`BreakerConfig::threshold`] consecutive failed calls, a plugin is
//! quarantined: its hooks are skipped (fail-open) or fail at once
//! (fail-closed) without running, for a back-off that starts at
//! [`BreakerConfig::backoff`] and doubles on every further trip up to
//! [`BreakerConfig::max_backoff`]. When it expires, one call is let through: a
//! success closes the breaker, a failure opens it again for longer.
//!
//! Under concurrent calls: every call is admitted with a [`Ticket`] that
//! carries the breaker's generation (bumped on every trip). A verdict from a
//! call admitted before the last trip was already judged by that trip and is
//! not counted again, so 64 calls failing at once trip the breaker once, not
//! twelve times with a back-off doubled each time. Half-open lets exactly one
//! probe through; the others are refused until it has its verdict (a probe
//! whose call was dropped before a verdict frees the slot for the next call).

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
    /// Bumped on every trip: verdicts of calls admitted before it are stale.
    generation: u64,
    /// The half-open probe is running.
    probing: bool,
}

/// One admitted call's claim on its breaker's verdict: exactly one of
/// [`succeeded`](Ticket::succeeded) or [`failed`](Ticket::failed), or dropped
/// (the call was abandoned: no verdict, and a probe's slot is freed).
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    breaker: &'a Breaker,
    generation: u64,
    probe: bool,
    judged: bool,
}

impl Ticket<'_> {
    /// The call succeeded.
    pub(crate) fn succeeded(mut self) {
        self.judged = true;
        let mut s = self.breaker.inner.lock();
        if self.probe {
            s.probing = false;
            s.open_until = None;
            s.tentative_success = true;
        } else if self.generation == s.generation && s.open_until.is_none() {
            s.tentative_success = true;
        }
    }

    /// The call failed; returns the quarantine period if this failure tripped the breaker.
    pub(crate) fn failed(mut self) -> Option<Duration> {
        self.judged = true;
        let b = self.breaker;
        let mut s = b.inner.lock();
        if self.probe {
            s.probing = false;
        } else if b.config.threshold == 0 || self.generation != s.generation || s.open_until.is_some() {
            // Disabled, or admitted before the last trip: that trip already judged it.
            return None;
        }
        s.tentative_success = false;
        s.consecutive += 1;
        if self.probe || s.consecutive >= b.config.threshold {
            let factor = 2u32.saturating_pow(s.trips.min(16));
            let backoff = b.config.backoff.saturating_mul(factor).min(b.config.max_backoff);
            s.open_until = Some(Instant::now() + backoff);
            s.trips += 1;
            s.consecutive = 0;
            s.generation += 1;
            return Some(backoff);
        }
        None
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.judged {
            self.breaker.inner.lock().probing = false;
        }
    }
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

    /// `Err(remaining)` while quarantined (zero while the half-open probe
    /// runs); otherwise the call may run, and its verdict goes to the ticket.
    pub(crate) fn admit(&self) -> Result<Ticket<'_>, Duration> {
        let mut s = self.inner.lock();
        if std::mem::take(&mut s.tentative_success) {
            s.consecutive = 0;
            s.trips = 0;
        }
        let probe = match s.open_until {
            Some(until) => {
                let now = Instant::now();
                if until > now {
                    return Err(until - now);
                }
                if s.probing {
                    return Err(Duration::ZERO);
                }
                s.probing = true;
                true
            }
            None => false,
        };
        Ok(Ticket { breaker: self, generation: s.generation, probe, judged: false })
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

    /// One call that fails.
    fn fail(b: &Breaker) -> Option<Duration> {
        b.admit().unwrap().failed()
    }

    #[test]
    fn trips_after_consecutive_failures_only() {
        let b = breaker(3, 50);
        assert!(fail(&b).is_none());
        assert!(fail(&b).is_none());
        b.admit().unwrap().succeeded();
        b.admit().unwrap().succeeded(); // the success resets the count
        assert!(fail(&b).is_none());
        assert!(fail(&b).is_none());
        assert_eq!(fail(&b), Some(Duration::from_millis(50)));
        assert!(b.admit().is_err());
        assert!(matches!(b.state(), BreakerState::Open { .. }));
    }

    #[test]
    fn half_open_then_backoff_doubles_and_caps() {
        let b = breaker(1, 20);
        assert_eq!(fail(&b), Some(Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(fail(&b), Some(Duration::from_millis(40)));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(fail(&b), Some(Duration::from_millis(60)), "capped at max_backoff");
        std::thread::sleep(Duration::from_millis(70));
        b.admit().unwrap().succeeded();
        b.admit().unwrap().succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn zero_threshold_disables() {
        let b = breaker(0, 10);
        for _ in 0..100 {
            assert!(fail(&b).is_none());
        }
        b.admit().unwrap();
    }

    /// 64 calls admitted at once, all failing: one trip, one back-off.
    #[test]
    fn concurrent_failures_trip_once() {
        let b = breaker(5, 1000);
        let tickets: Vec<_> = (0..64).map(|_| b.admit().unwrap()).collect();
        let trips: Vec<_> = tickets.into_iter().filter_map(Ticket::failed).collect();
        assert_eq!(trips, [Duration::from_millis(1000)]);
        assert_eq!(b.inner.lock().trips, 1);
    }

    /// A success admitted before a trip does not close the breaker.
    #[test]
    fn a_stale_success_does_not_close_an_open_breaker() {
        let b = breaker(1, 1000);
        let slow = b.admit().unwrap();
        assert!(fail(&b).is_some());
        slow.succeeded();
        assert!(b.admit().is_err());
    }

    /// Half-open lets one probe through; the rest wait for its verdict; a
    /// dropped probe frees the slot.
    #[test]
    fn half_open_admits_exactly_one_probe() {
        let b = breaker(1, 10);
        assert!(fail(&b).is_some());
        std::thread::sleep(Duration::from_millis(20));
        let probe = b.admit().unwrap();
        for _ in 0..63 {
            assert_eq!(b.admit().unwrap_err(), Duration::ZERO);
        }
        drop(probe);
        let probe = b.admit().unwrap();
        assert!(b.admit().is_err());
        probe.succeeded();
        b.admit().unwrap().succeeded();
        b.admit().unwrap().succeeded();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
