//! The pools of warm instances: one [`Pool`] per loaded plugin version, all of
//! a host's pools in one [`PoolSet`] that holds the host-wide rules.
//!
//! Rules (see [`PoolOptions`] for the defaults and how to change them):
//! - an instance idle longer than [`PoolOptions::idle_ttl`] is dropped;
//! - an instance whose linear memory grew past [`outgrew`] during its calls
//!   is dropped after its call instead of pooled;
//! - the linear memory of all pooled instances of a host stays under
//!   [`PoolOptions::memory_budget`]: over it, idle instances are dropped,
//!   oldest first, whatever plugin they belong to;
//! - a pool never holds more instances than the plugin's `limits.instances`,
//!   and nothing after its plugin version was shut down.
//!
//! Dropped idle instances do not get `shutdown`: that is called when a plugin
//! version is unloaded or replaced.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Live;

/// Settings of a host's instance pools.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// An instance idle in a pool for longer than this is dropped (default 30 s).
    pub idle_ttl: Duration,
    /// Most bytes of linear memory all pooled (idle) instances of the host may
    /// hold together (default 256 MiB); over it, the oldest idle instances are
    /// dropped.
    pub memory_budget: u64,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions { idle_ttl: DEFAULT_IDLE_TTL, memory_budget: DEFAULT_POOLED_MEMORY_BUDGET }
    }
}

/// Default of [`PoolOptions::idle_ttl`].
pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(30);

/// Default of [`PoolOptions::memory_budget`].
pub const DEFAULT_POOLED_MEMORY_BUDGET: u64 = 256 * 1024 * 1024;

/// An instance whose linear memory grew by more than this over its size after
/// `init`, and to more than twice that size, is dropped after its call.
pub const MAX_POOLED_GROWTH: usize = 8 * 1024 * 1024;

/// Whether an instance that had `initial` bytes of linear memory after `init`
/// and has `now` bytes grew too much to be pooled: more than twice its initial
/// size *and* more than [`MAX_POOLED_GROWTH`] above it.
pub fn outgrew(initial: usize, now: usize) -> bool {
    now > initial.saturating_mul(2) && now > initial.saturating_add(MAX_POOLED_GROWTH)
}

/// One idle instance.
struct Idle {
    live: Live,
    since: Instant,
    bytes: u64,
}

#[derive(Default)]
struct PoolState {
    idle: VecDeque<Idle>,
    shut_down: bool,
}

/// Counts the instances of a plugin version that exist (idle, in a call, or
/// being created): taken before an instance is created, given back when it is
/// dropped.
pub(crate) struct AliveToken(Arc<AtomicUsize>);

impl Drop for AliveToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One plugin version's warm instances.
pub(crate) struct Pool {
    set: Arc<PoolSet>,
    /// `limits.instances`: most instances at once.
    max: usize,
    state: Mutex<PoolState>,
    /// Linear memory of the idle instances.
    bytes: AtomicU64,
    alive: Arc<AtomicUsize>,
    /// Instances dropped by the rules above (idle TTL, growth, budget).
    pub(crate) evicted: AtomicU64,
    /// A background warmer is running.
    pub(crate) warming: AtomicBool,
    /// No background warming before this (after a warm-up failed).
    pub(crate) warm_after: Mutex<Option<(Instant, Duration)>>,
    /// Calls running now; `calls_done` is notified when it drops to zero.
    calls: AtomicUsize,
    calls_done: Notify,
    /// Notified (one permit) when the `LoadedPlugin` owning this pool is dropped.
    pub(crate) released: Notify,
}

impl Pool {
    pub(crate) fn new(set: &Arc<PoolSet>, max: usize) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            set: set.clone(),
            max: max.max(1),
            state: Mutex::default(),
            bytes: AtomicU64::new(0),
            alive: Arc::default(),
            evicted: AtomicU64::new(0),
            warming: AtomicBool::new(false),
            warm_after: Mutex::new(None),
            calls: AtomicUsize::new(0),
            calls_done: Notify::new(),
            released: Notify::new(),
        });
        set.register(&pool);
        pool
    }

    /// Counts one more instance (before creating it).
    pub(crate) fn reserve(&self) -> AliveToken {
        self.alive.fetch_add(1, Ordering::AcqRel);
        AliveToken(self.alive.clone())
    }

    /// Instances of this version that exist now.
    pub(crate) fn alive(&self) -> usize {
        self.alive.load(Ordering::Acquire)
    }

    /// Most instances at once.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The most recently parked idle instance.
    pub(crate) fn take(&self) -> Option<Live> {
        let idle = self.state.lock().idle.pop_back()?;
        self.uncount(idle.bytes);
        Some(idle.live)
    }

    /// Puts an instance back after a successful call, unless a rule says to drop it.
    pub(crate) fn park(&self, live: Live) {
        let bytes = live.memory_bytes();
        if outgrew(live.init_bytes, bytes) {
            tracing::debug!(plugin = %live.plugin(), bytes, "instance grew too much to be pooled: dropped");
            self.evicted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let refused = {
            let mut st = self.state.lock();
            if st.shut_down || self.alive() > self.max || st.idle.len() >= self.max {
                Some(live)
            } else {
                st.idle.push_back(Idle { live, since: Instant::now(), bytes: bytes as u64 });
                self.bytes.fetch_add(bytes as u64, Ordering::AcqRel);
                self.set.total.fetch_add(bytes as u64, Ordering::AcqRel);
                None
            }
        };
        drop(refused);
        self.set.enforce_budget();
    }

    /// Marks the pool shut down (nothing is parked any more) and hands out
    /// its idle instances.
    pub(crate) fn close(&self) -> Vec<Live> {
        let taken: Vec<Idle> = {
            let mut st = self.state.lock();
            st.shut_down = true;
            st.idle.drain(..).collect()
        };
        taken
            .into_iter()
            .map(|i| {
                self.uncount(i.bytes);
                i.live
            })
            .collect()
    }

    /// Drops every idle instance (they were opened with grants that no longer
    /// apply); the pool stays open. Returns how many were dropped.
    pub(crate) fn clear(&self) -> usize {
        let taken: Vec<Idle> = std::mem::take(&mut self.state.lock().idle).into_iter().collect();
        for i in &taken {
            self.uncount(i.bytes);
        }
        taken.len()
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.state.lock().shut_down
    }

    /// Idle instances now.
    pub(crate) fn idle_count(&self) -> usize {
        self.state.lock().idle.len()
    }

    /// Linear memory of the idle instances.
    pub(crate) fn idle_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    fn uncount(&self, bytes: u64) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.set.total.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// When the oldest idle instance was parked.
    fn oldest(&self) -> Option<Instant> {
        self.state.lock().idle.front().map(|i| i.since)
    }

    /// Drops the oldest idle instance if it was parked at `since` (or earlier).
    fn evict_oldest(&self, since: Instant) -> Option<Live> {
        let idle = {
            let mut st = self.state.lock();
            if st.idle.front().is_none_or(|i| i.since > since) {
                return None;
            }
            st.idle.pop_front()?
        };
        self.uncount(idle.bytes);
        self.evicted.fetch_add(1, Ordering::Relaxed);
        Some(idle.live)
    }

    /// Drops the instances idle since before `cutoff`.
    fn expire(&self, cutoff: Instant) {
        let mut dropped = Vec::new();
        while let Some(live) = self.evict_oldest(cutoff) {
            dropped.push(live);
        }
        if !dropped.is_empty() {
            tracing::debug!(plugin = %dropped[0].plugin(), count = dropped.len(), "idle instances expired");
        }
    }

    /// A call starts: counted until the guard drops.
    pub(crate) fn call_started(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    /// Waits until no call runs (or `limit` passes); `true` if none runs.
    pub(crate) async fn calls_finished(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.calls_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.calls.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.calls.load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// Counts a running call (see [`Pool::call_started`]).
pub(crate) struct CallGuard(Arc<Pool>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.0.calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.calls_done.notify_waiters();
        }
    }
}

/// All pools of one host: the idle TTL and the host-wide memory budget.
pub(crate) struct PoolSet {
    options: PoolOptions,
    pools: Mutex<Vec<Weak<Pool>>>,
    /// Linear memory of every idle instance of the host.
    total: AtomicU64,
    sweeper: AtomicBool,
}

impl PoolSet {
    pub(crate) fn new(options: PoolOptions) -> Arc<PoolSet> {
        Arc::new(PoolSet {
            options,
            pools: Mutex::default(),
            total: AtomicU64::new(0),
            sweeper: AtomicBool::new(false),
        })
    }

    /// Bytes of linear memory held by idle instances, host-wide.
    pub(crate) fn pooled_bytes(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    fn register(self: &Arc<Self>, pool: &Arc<Pool>) {
        let mut pools = self.pools.lock();
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
        drop(pools);
        self.start_sweeper();
    }

    fn live_pools(&self) -> Vec<Arc<Pool>> {
        self.pools.lock().iter().filter_map(Weak::upgrade).collect()
    }

    /// Drops idle instances, oldest first across the host, until the pooled
    /// memory is within the budget.
    fn enforce_budget(&self) {
        while self.pooled_bytes() > self.options.memory_budget {
            let pools = self.live_pools();
            let oldest = pools.iter().filter_map(|p| p.oldest().map(|t| (t, p))).min_by_key(|(t, _)| *t);
            let Some((since, pool)) = oldest else { return };
            if let Some(live) = pool.evict_oldest(since) {
                tracing::debug!(plugin = %live.plugin(), "pooled instance memory over the host budget: oldest idle instance dropped");
            }
        }
    }

    /// Drops instances idle for longer than the TTL.
    fn sweep(&self) {
        let Some(cutoff) = Instant::now().checked_sub(self.options.idle_ttl) else { return };
        for pool in self.live_pools() {
            pool.expire(cutoff);
        }
    }

    /// Starts the task that expires idle instances (once, when a runtime is
    /// there); it ends when the host is dropped.
    fn start_sweeper(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        if self.sweeper.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = (self.options.idle_ttl / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        handle.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(set) => set.sweep(),
                    None => break,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_rule() {
        const MIB: usize = 1 << 20;
        assert!(!outgrew(2 * MIB, 9 * MIB), "within 8 MiB of the start");
        assert!(outgrew(2 * MIB, 11 * MIB));
        assert!(!outgrew(20 * MIB, 39 * MIB), "less than twice");
        assert!(outgrew(20 * MIB, 41 * MIB));
        assert!(outgrew(MIB, 101 * MIB));
    }
}
