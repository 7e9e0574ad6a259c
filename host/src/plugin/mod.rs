//! A loaded plugin: manifest, capabilities, and its pool of warm instances.
//! Every hook call goes through `LoadedPlugin::call` (crate-private), which
//! applies the deadline and memory cap, discards an instance that failed, and
//! never spends longer than the call's budget creating an instance.
//!
//! Inside: `instance` (creating, initialising and shutting down instances),
//! `pool` (idle instances, eviction, the host-wide memory budget; see
//! [`PoolOptions`]), `invoke` (one typed call per hook).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::component::InstancePre;

mod deadline;
mod instance;
pub(crate) mod invoke;
mod pool;

use crate::breaker::{Breaker, BreakerConfig, BreakerState};
use crate::capability::Capabilities;
use crate::engine::{CompileSource, EPOCH_TICK, ExecOptions};
pub use crate::failure::{FailureKind, PluginFailure};
use crate::imports::kv::KvNamespace;
use crate::imports::resources::{AfterCall, PluginResources};
use crate::imports::{ContextMap, DeviceReports, StoreState};
pub use crate::loader::{PluginSource, SourceForm};
use crate::manifest::{Hook, Manifest, ResolvedLimits};
use instance::Factory;
pub use instance::HeldInstance;
pub(crate) use instance::{ExportIndices, Live};
pub(crate) use pool::PoolSet;
pub use pool::{DEFAULT_IDLE_TTL, DEFAULT_POOLED_MEMORY_BUDGET, MAX_POOLED_GROWTH, PoolOptions};

/// Time allowed for `init` on an instance created outside a call (at load and
/// by the background warmer). An instance created inside a call gets only
/// what is left of the call's own deadline.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest time `shutdown` of one plugin version may take over all its idle
/// instances together (each also gets at most the plugin's timeout); the
/// instances left when it is spent are dropped without `shutdown`.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(1);

/// First pause before the background warmer tries again after a failed
/// warm-up; it doubles on each further failure up to [`WARM_BACKOFF_MAX`].
const WARM_BACKOFF: Duration = Duration::from_secs(1);
const WARM_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Per-plugin counters, readable at any time.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Hook calls admitted by the circuit breaker.
    pub calls: AtomicU64,
    /// Failed calls other than traps and timeouts (plugin errors, invalid output, busy ...).
    pub errors: AtomicU64,
    /// Calls that trapped, hit the memory cap, ran out of fuel or overflowed the stack.
    pub traps: AtomicU64,
    /// Calls that ran past their deadline.
    pub timeouts: AtomicU64,
    /// Instances created (at load and whenever the pool had none idle).
    pub instances_created: AtomicU64,
    /// Instances thrown away after a failed call.
    pub instances_discarded: AtomicU64,
    /// Sum of call durations, for the mean.
    pub busy_nanos: AtomicU64,
}

/// A point-in-time copy of a plugin's counters ([`LoadedPlugin::stats`]).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Hook calls admitted by the circuit breaker.
    pub calls: u64,
    /// Failed calls other than traps and timeouts (plugin errors, invalid output, busy ...).
    pub errors: u64,
    /// Calls that trapped, hit the memory cap, ran out of fuel or overflowed the stack.
    pub traps: u64,
    /// Calls that ran past their deadline.
    pub timeouts: u64,
    /// Instances created (at load and whenever the pool had none idle).
    pub instances_created: u64,
    /// Instances thrown away after a failed call.
    pub instances_discarded: u64,
    /// Idle instances dropped by the pool's rules: idle too long, grown too
    /// much during a call, or over the host's pooled-memory budget.
    pub instances_evicted: u64,
    /// Warm instances in the pool now.
    pub idle_instances: usize,
    /// Bytes of linear memory the idle instances hold now.
    pub pooled_bytes: u64,
    /// Mean wall-clock duration of a call, in microseconds (0 before the first call).
    pub mean_call_micros: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Log lines (the `log` import, stdout, stderr) dropped by the rate limit
    /// or a full host log queue.
    pub log_lines_dropped: u64,
    /// Where the plugin's circuit breaker stands.
    pub breaker: BreakerState,
}

impl PluginStats {
    fn snapshot(&self, breaker: &Breaker, pool: &pool::Pool) -> StatsSnapshot {
        let calls = self.calls.load(Ordering::Relaxed);
        StatsSnapshot {
            consecutive_failures: breaker.consecutive_failures(),
            log_lines_dropped: 0,
            breaker: breaker.state(),
            calls,
            errors: self.errors.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            instances_created: self.instances_created.load(Ordering::Relaxed),
            instances_discarded: self.instances_discarded.load(Ordering::Relaxed),
            instances_evicted: pool.evicted.load(Ordering::Relaxed),
            idle_instances: pool.idle_count(),
            pooled_bytes: pool.idle_bytes(),
            mean_call_micros: self.busy_nanos.load(Ordering::Relaxed) / calls.max(1) / 1000,
        }
    }
}

/// The future of one hook call, boxed once (see `LoadedPlugin::call`).
pub(crate) type HookFuture<'s, R> = Pin<Box<dyn Future<Output = R> + Send + 's>>;

/// A typed hook invocation: what to call on a [`Live`] instance.
pub(crate) trait Invoke: Send {
    type Output: Send;
    const HOOK: &'static str;
    fn invoke<'a>(self, live: &'a mut Live) -> impl Future<Output = wasmtime::Result<Self::Output>> + Send + 'a
    where
        Self: 'a;
}

/// Everything the host knows about one loaded plugin.
pub struct LoadedPlugin {
    pub(crate) name: Arc<str>,
    pub(crate) manifest: Manifest,
    pub(crate) source: PluginSource,
    /// The normalised path that identifies its files on disk (the hot reload
    /// source key), computed once at load, off the async workers.
    pub(crate) source_key: std::path::PathBuf,
    pub(crate) caps: Capabilities,
    pub(crate) limits: ResolvedLimits,
    pub(crate) provider_type: Option<String>,
    pub(crate) compile_source: CompileSource,
    pub(crate) load_time: Duration,
    pub(crate) loaded_at: SystemTime,
    pub(crate) stats: Arc<PluginStats>,
    /// Log, outgoing HTTP and data-directory state shared by its instances.
    pub(crate) resources: Arc<PluginResources>,
    breaker: Breaker,
    /// SHA-256 of the manifest text and component bytes this version was built from.
    pub(crate) fingerprint: [u8; 32],
    events: tokio::sync::broadcast::Sender<crate::events::PluginEvent>,
    factory: Arc<Factory>,
    pool: Arc<pool::Pool>,
    permits: Semaphore,
}

/// The parts of a plugin that [`LoadedPlugin::new`] assembles.
pub(crate) struct PluginParts {
    pub manifest: Manifest,
    pub source: PluginSource,
    pub source_key: std::path::PathBuf,
    pub caps: Capabilities,
    pub limits: ResolvedLimits,
    pub config_json: String,
    pub compile_source: CompileSource,
    pub pre: InstancePre<StoreState>,
    pub exports: ExportIndices,
    pub kv: KvNamespace,
    pub devices: DeviceReports,
    pub resources: Arc<PluginResources>,
    pub breaker: BreakerConfig,
    pub exec: ExecOptions,
    pub fingerprint: [u8; 32],
    pub events: tokio::sync::broadcast::Sender<crate::events::PluginEvent>,
    /// The host's instance pools (idle TTL, pooled-memory budget).
    pub pools: Arc<PoolSet>,
}

impl LoadedPlugin {
    pub(crate) fn new(p: PluginParts, started: Instant) -> Self {
        let name: Arc<str> = Arc::from(p.manifest.name.as_str());
        let stats = Arc::new(PluginStats::default());
        let factory = Arc::new(Factory {
            name: name.clone(),
            pre: p.pre,
            exports: p.exports,
            caps: p.caps.clone(),
            memory: p.limits.memory,
            fuel: p.limits.fuel,
            config_json: p.config_json,
            kv: p.kv,
            devices: p.devices,
            exec: p.exec,
            network: p.caps.network.clone().into(),
            stats: stats.clone(),
            resources: p.resources.clone(),
        });
        LoadedPlugin {
            permits: Semaphore::new(p.limits.instances as usize),
            pool: pool::Pool::new(&p.pools, p.limits.instances as usize),
            breaker: Breaker::new(p.breaker),
            events: p.events,
            manifest: p.manifest,
            source: p.source,
            source_key: p.source_key,
            caps: p.caps,
            limits: p.limits,
            provider_type: None,
            compile_source: p.compile_source,
            load_time: started.elapsed(),
            loaded_at: SystemTime::now(),
            stats,
            resources: p.resources,
            fingerprint: p.fingerprint,
            factory,
            name,
        }
    }

    /// The plugin's name (from its manifest).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The parsed manifest this version was loaded from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// Where the plugin's files were found.
    pub fn source(&self) -> &PluginSource {
        &self.source
    }
    /// What the plugin is allowed to do, resolved from its manifest permissions.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    /// The plugin's resource limits, with host defaults filled in.
    pub fn limits(&self) -> &ResolvedLimits {
        &self.limits
    }
    /// The provider type the plugin announced at load; `None` unless it implements the `provider` hook.
    pub fn provider_type(&self) -> Option<&str> {
        self.provider_type.as_deref()
    }
    /// Whether the component was compiled at load or read from the compilation cache.
    pub fn compile_source(&self) -> CompileSource {
        self.compile_source
    }
    /// Time from reading the files to the first initialised instance.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
    /// When this version was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }
    /// A point-in-time copy of the plugin's counters and breaker state.
    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            log_lines_dropped: self.resources.log_dropped(),
            ..self.stats.snapshot(&self.breaker, &self.pool)
        }
    }
    /// The bounds on host resources (kv, log, outgoing HTTP, data directory) that apply to this plugin.
    pub fn resource_limits(&self) -> &crate::ResourceLimits {
        &self.resources.limits
    }

    /// Records a failure the caller detected in a hook's answer (an error it
    /// returned, an output the host refused); feeds the circuit breaker.
    fn record_failure(&self, ticket: crate::breaker::Ticket<'_>, f: &PluginFailure) {
        if let Some(backoff) = ticket.failed() {
            let reason = format!("quarantined for {backoff:?} after repeated failures (last: {})", f.kind);
            tracing::error!(plugin = %self.name, "{reason}");
            let kind = crate::events::PluginEventKind::Quarantined { reason };
            let _ = self.events.send(crate::events::PluginEvent::now(self.name.to_string(), kind));
        }
    }
    /// The one on-error decision every chain makes after this plugin failed:
    /// `true` when the failure must end the caller's operation (the plugin is
    /// `fail-closed`, or the host propagates every plugin error), `false` when
    /// the chain goes on without this plugin.
    pub(crate) fn fails_closed(&self, propagate_all: bool) -> bool {
        propagate_all || self.manifest.on_error == crate::manifest::OnError::FailClosed
    }
    /// Whether the manifest declares `hook`.
    pub fn implements(&self, hook: Hook) -> bool {
        self.manifest.hooks.contains(&hook)
    }
    /// Hex SHA-256 of the manifest text and component bytes this version was
    /// built from (hot reload skips files whose fingerprint did not change).
    pub fn fingerprint(&self) -> String {
        hex::encode(self.fingerprint)
    }
    /// Whether its instances got `shutdown`: the plugin was unloaded, or
    /// replaced (or removed by hot reload) and drained.
    pub fn is_shut_down(&self) -> bool {
        self.pool.is_shut_down()
    }
    /// Number of warm instances waiting in the pool.
    pub fn idle_instances(&self) -> usize {
        self.pool.idle_count()
    }
    /// Bytes of linear memory the plugin's idle instances hold (what counts
    /// against the host's pooled-memory budget).
    pub fn pooled_bytes(&self) -> u64 {
        self.pool.idle_bytes()
    }

    fn failure(&self, hook: &'static str, kind: FailureKind) -> PluginFailure {
        PluginFailure { plugin: self.name.to_string(), hook, kind }
    }

    /// Creates, instantiates and initialises a fresh instance within [`INIT_TIMEOUT`]
    /// (at load: proves the plugin initialises), on a blocking thread.
    pub(crate) async fn instantiate(&self) -> Result<Live, PluginFailure> {
        let alive = self.pool.reserve();
        self.factory.instantiate_off_workers(INIT_TIMEOUT, alive).await.map_err(|kind| self.failure("init", kind))
    }

    /// Creates, instantiates and initialises a fresh instance on the calling
    /// task, then drops it: what a call pays when no warm instance is
    /// available (diagnostics, benches). Instances made at load and by the
    /// background warmer are made the same way on a blocking thread instead.
    pub async fn instantiate_fresh(&self) -> Result<(), PluginFailure> {
        let alive = self.pool.reserve();
        self.factory.instantiate(INIT_TIMEOUT, alive).await.map(drop).map_err(|kind| self.failure("init", kind))
    }

    /// Like [`instantiate_fresh`](Self::instantiate_fresh), but returns the
    /// instance, held outside the pool until dropped (it counts against the
    /// engine's instance slots, not against `limits.instances`): benches
    /// measure what an idle instance costs with it.
    #[doc(hidden)]
    pub async fn instantiate_held(&self) -> Result<HeldInstance, PluginFailure> {
        let alive = self.pool.reserve();
        self.factory.instantiate(INIT_TIMEOUT, alive).await.map(HeldInstance).map_err(|kind| self.failure("init", kind))
    }

    /// Puts a healthy instance back into the pool (used at load); dropped
    /// instead if a pool rule says so or the plugin was shut down.
    pub(crate) fn park(&self, live: Live) {
        self.pool.park(live);
    }

    /// Starts creating one instance in the background (on a blocking thread,
    /// within [`INIT_TIMEOUT`]) unless one is already being made, the plugin
    /// has as many instances as it may, or the last warm-up failed recently.
    fn warm(&self) {
        let pool = &self.pool;
        if pool.is_shut_down() || pool.alive() >= pool.max() {
            return;
        }
        if pool.warm_after.lock().is_some_and(|(after, _)| after > Instant::now()) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        if pool.warming.swap(true, Ordering::AcqRel) {
            return;
        }
        let (factory, pool) = (self.factory.clone(), self.pool.clone());
        let token = pool.reserve();
        tokio::task::spawn_blocking(move || {
            let made = handle.block_on(factory.instantiate(INIT_TIMEOUT, token));
            match made {
                Ok(live) => {
                    *pool.warm_after.lock() = None;
                    pool.park(live);
                }
                Err(kind) => {
                    let mut after = pool.warm_after.lock();
                    let pause = after.map_or(WARM_BACKOFF, |(_, p)| (p * 2).min(WARM_BACKOFF_MAX));
                    *after = Some((Instant::now() + pause, pause));
                    tracing::warn!(plugin = %factory.name, "warming an instance failed ({kind}); next try in {pause:?}");
                }
            }
            pool.warming.store(false, Ordering::Release);
        });
    }

    /// Runs one hook on a pooled instance within `timeout`.
    ///
    /// `context` is the request's shared map, visible to the `context` import
    /// for the duration of the call. An instance that trapped, timed out or hit
    /// a limit is dropped; the next call gets a fresh one.
    pub(crate) fn call<'s, I: Invoke + 's>(
        &'s self,
        context: Option<&'s ContextMap>,
        timeout: Duration,
        invoke: I,
    ) -> HookFuture<'s, Result<I::Output, PluginFailure>> {
        self.call_checked(context, timeout, invoke, Ok)
    }

    /// Like [`call`](Self::call), with the hook's answer checked by `check`
    /// before the call is judged: one verdict per call, so stats and the
    /// circuit breaker count an answer the host refuses (bad output, a change
    /// without permission, an error the plugin returned) exactly once.
    pub(crate) fn call_checked<'s, I: Invoke + 's, T: Send + 's>(
        &'s self,
        context: Option<&'s ContextMap>,
        timeout: Duration,
        invoke: I,
        check: impl FnOnce(I::Output) -> Result<T, FailureKind> + Send + 's,
    ) -> HookFuture<'s, Result<T, PluginFailure>> {
        self.run(Instant::now(), context, timeout, invoke, check, |result, _| result)
    }

    /// Like [`call_checked`](Self::call_checked), for a call whose caller
    /// already read the clock at `started` (a pipeline that records how long
    /// each hook took): the answer comes with the call's duration, measured
    /// once for the plugin's stats and the caller's trace.
    pub(crate) fn call_timed<'s, I: Invoke + 's, T: Send + 's>(
        &'s self,
        started: Instant,
        context: Option<&'s ContextMap>,
        timeout: Duration,
        invoke: I,
        check: impl FnOnce(I::Output) -> Result<T, FailureKind> + Send + 's,
    ) -> HookFuture<'s, (Result<T, PluginFailure>, Duration)> {
        self.run(started, context, timeout, invoke, check, |result, took| (result, took))
    }

    /// One hook call, start to verdict, as one future boxed once: the
    /// breaker admits it; a permit and a warm instance are taken without
    /// waiting when both are free (the slow path, boxed apart, waits for a
    /// permit and makes an instance within the call's budget); the call runs
    /// until the epoch deadline traps spinning guest code, and a timer
    /// ([`deadline::Within`]) is armed only if the call waits in a host
    /// import; then the after-call checks, the pool, and one verdict for the
    /// breaker and the stats. The clock is read at `started` and once at the
    /// end (plus once when the instance is parked). The `plugbox.hook`
    /// tracing span is made only when a subscriber wants it.
    fn run<'s, I: Invoke + 's, T: Send + 's, R: 's>(
        &'s self,
        started: Instant,
        context: Option<&'s ContextMap>,
        timeout: Duration,
        invoke: I,
        check: impl FnOnce(I::Output) -> Result<T, FailureKind> + Send + 's,
        finish: impl FnOnce(Result<T, PluginFailure>, Duration) -> R + Send + 's,
    ) -> HookFuture<'s, R> {
        let run = async move {
            let ticket = match self.breaker.admit() {
                Ok(ticket) => ticket,
                Err(left) => {
                    return finish(Err(self.failure(I::HOOK, FailureKind::Quarantined(left))), started.elapsed());
                }
            };
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let result: Result<I::Output, PluginFailure> = 'call: {
                let _call = self.pool.call_started();
                let permit = self.permits.try_acquire().ok();
                let idle = if permit.is_some() { self.pool.take() } else { None };
                let (_permit, mut live, remaining) = match (permit, idle) {
                    (Some(permit), Some(live)) => (permit, live, timeout),
                    (permit, _) => match Box::pin(self.checkout(I::HOOK, timeout, started, permit)).await {
                        Ok((permit, live)) => {
                            let remaining = timeout.saturating_sub(started.elapsed());
                            if remaining.is_zero() {
                                self.park(live);
                                break 'call Err(self.failure(I::HOOK, FailureKind::Timeout(timeout)));
                            }
                            (permit, live, remaining)
                        }
                        Err(f) => break 'call Err(f),
                    },
                };
                live.store.data_mut().context = context.cloned();
                self.factory.arm(&mut live.store, remaining);
                let outcome = {
                    let mut call = std::pin::pin!(invoke.invoke(&mut live));
                    deadline::Within::new(call.as_mut(), started + timeout + EPOCH_TICK * 2).await
                };
                live.store.data_mut().context = None;
                let after = self.after_call(&mut live).await;
                let discard = || self.stats.instances_discarded.fetch_add(1, Ordering::Relaxed);
                match (outcome, after) {
                    (Some(Ok(value)), AfterCall::Park) => {
                        self.park(live);
                        Ok(value)
                    }
                    (Some(Ok(value)), AfterCall::Discard) => {
                        discard();
                        Ok(value)
                    }
                    (Some(Ok(_)), AfterCall::Fail(why)) => {
                        discard();
                        Err(self.failure(I::HOOK, FailureKind::ResourceLimit(why)))
                    }
                    (Some(Err(e)), _) => {
                        discard();
                        let kind = instance::classify(&e, live.store.data(), self.limits.memory, timeout);
                        Err(self.failure(I::HOOK, kind))
                    }
                    (None, _) => {
                        discard();
                        Err(self.failure(I::HOOK, FailureKind::Timeout(timeout)))
                    }
                }
            };
            let result = result.and_then(|out| check(out).map_err(|kind| self.failure(I::HOOK, kind)));
            let took = self.judge(ticket, I::HOOK, started, &result);
            finish(result, took)
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            let span = tracing::debug_span!("plugbox.hook", plugin = %self.name, hook = I::HOOK);
            Box::pin(run.instrument(span))
        } else {
            Box::pin(run)
        }
    }

    /// The verdict on one admitted call: the breaker's, the stats counters,
    /// the debug log. Returns the call's duration (the one clock read after
    /// the call).
    fn judge<T>(
        &self,
        ticket: crate::breaker::Ticket<'_>,
        hook: &'static str,
        started: Instant,
        result: &Result<T, PluginFailure>,
    ) -> Duration {
        match result {
            Ok(_) => ticket.succeeded(),
            Err(f) => self.record_failure(ticket, f),
        }
        let took = started.elapsed();
        self.stats.busy_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        if let Err(f) = result {
            let counter = match f.kind {
                FailureKind::Timeout(_) => &self.stats.timeouts,
                FailureKind::Trap(_)
                | FailureKind::MemoryLimit(_)
                | FailureKind::StackOverflow
                | FailureKind::FuelExhausted => &self.stats.traps,
                _ => &self.stats.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(plugin = %self.name, hook, "{}", f.kind);
        }
        took
    }

    /// A permit and an instance (pooled, or made within what is left of
    /// `timeout` since `started`) for one call or one session: the path a
    /// call takes when it could not get both at once. `permit` is the one
    /// the caller already got, if any; otherwise it waits for one at most
    /// `timeout`.
    async fn checkout<'p>(
        &'p self,
        hook: &'static str,
        timeout: Duration,
        started: Instant,
        permit: Option<tokio::sync::SemaphorePermit<'p>>,
    ) -> Result<(tokio::sync::SemaphorePermit<'p>, Live), PluginFailure> {
        let permit = match permit {
            Some(p) => p,
            None => match tokio::time::timeout(timeout, self.permits.acquire()).await {
                Ok(Ok(p)) => p,
                _ => return Err(self.failure(hook, FailureKind::Busy(self.limits.instances))),
            },
        };
        if let Some(live) = self.pool.take() {
            return Ok((permit, live));
        }
        // No warm instance: make one within what is left of this call's
        // budget, and have the pool warmed off the request path.
        let alive = self.pool.reserve();
        self.warm();
        let budget = timeout.saturating_sub(started.elapsed());
        if budget.is_zero() {
            return Err(self.failure(hook, FailureKind::Timeout(timeout)));
        }
        match self.factory.instantiate(budget, alive).await {
            Ok(live) => Ok((permit, live)),
            Err(kind) => {
                self.stats.instances_discarded.fetch_add(1, Ordering::Relaxed);
                let kind = match kind {
                    FailureKind::Timeout(_) => FailureKind::Timeout(timeout),
                    FailureKind::Error(m) => FailureKind::Error(format!("init failed: {m}")),
                    other => other,
                };
                Err(self.failure(hook, kind))
            }
        }
    }

    /// Checks an instance out of the pool for a [`Session`] of several calls
    /// (a provider stream, whose guest resource lives in that instance). The
    /// instance stays with the session until it is closed or dropped;
    /// `timeout` bounds getting it. Each call of the session takes one of the
    /// plugin's `instances` permits while it runs (not in between, so the
    /// plugin's own hooks can run on the chunks of its stream).
    pub(crate) async fn session(
        self: &Arc<Self>,
        hook: &'static str,
        timeout: Duration,
    ) -> Result<Session, PluginFailure> {
        let started = Instant::now();
        let call = self.pool.call_started();
        let (_permit, live) = self.checkout(hook, timeout, started, None).await?;
        Ok(Session { plugin: self.clone(), live: Some(live), _call: call })
    }

    /// The resource checks after a call (see `PluginResources::after_call`):
    /// outgoing HTTP still owned by the instance, the data directory's quota.
    /// When the data directory switched between read-write and read-only,
    /// the idle instances (opened the old way) are dropped.
    async fn after_call(&self, live: &mut Live) -> AfterCall {
        let mut pool_stale = false;
        let verdict = self.resources.after_call(&self.name, &mut live.store.data_mut().table, &mut pool_stale).await;
        if !pool_stale {
            return verdict;
        }
        let stale = self.pool.clear();
        self.stats.instances_discarded.fetch_add(stale as u64, Ordering::Relaxed);
        match verdict {
            AfterCall::Park => AfterCall::Discard, // this instance was opened the old way too
            other => other,
        }
    }

    /// Shuts this version down: no instance is pooled any more, and its idle
    /// instances get `shutdown`, each within the plugin's timeout and all
    /// within [`SHUTDOWN_BUDGET`], on a blocking thread. Calls still running
    /// finish; their instances are dropped afterwards, and a later call
    /// (from a request that still holds this version) runs on a fresh
    /// instance that is dropped after it.
    pub(crate) async fn shutdown(&self) {
        let instances = self.pool.close();
        self.factory.shutdown_all(instances, self.limits.timeout, SHUTDOWN_BUDGET).await;
    }

    /// Waits until no call of this version runs, at most `limit`; `true` when none does.
    pub(crate) async fn calls_finished(&self, limit: Duration) -> bool {
        self.pool.calls_finished(limit).await
    }

    /// Waits until nothing but `self` holds this version any more (every
    /// request that started with it finished), at most `limit`, then shuts it
    /// down. Waits on a notification sent when the last other holder lets go;
    /// `true` when that happened within `limit`.
    pub(crate) async fn drain(self: Arc<Self>, limit: Duration) -> bool {
        let pool = self.pool.clone();
        let factory = self.factory.clone();
        let timeout = self.limits.timeout;
        drop(self);
        let drained = tokio::time::timeout(limit, pool.released.notified()).await.is_ok();
        let instances = pool.close();
        factory.shutdown_all(instances, timeout, SHUTDOWN_BUDGET).await;
        drained
    }
}

/// An instance checked out for several calls in a row (see
/// [`LoadedPlugin::session`]). Each call is judged like any other; a call
/// that fails discards the instance, and later calls fail at once. Closing
/// the session runs the after-call checks and parks a healthy instance;
/// dropping it unclosed drops the instance.
pub(crate) struct Session {
    plugin: Arc<LoadedPlugin>,
    live: Option<Live>,
    _call: pool::CallGuard,
}

impl Session {
    /// The plugin the session runs on.
    pub(crate) fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    /// Runs `invoke` on the session's instance within `timeout`, its answer
    /// checked by `check` (as [`LoadedPlugin::call_checked`] does).
    pub(crate) fn call_checked<'s, I: Invoke + 's, T: Send + 's>(
        &'s mut self,
        context: Option<&'s ContextMap>,
        timeout: Duration,
        invoke: I,
        check: impl FnOnce(I::Output) -> Result<T, FailureKind> + Send + 's,
    ) -> HookFuture<'s, Result<T, PluginFailure>> {
        let plugin = &self.plugin;
        let started = Instant::now();
        let live = &mut self.live;
        Box::pin(async move {
            let ticket = match plugin.breaker.admit() {
                Ok(ticket) => ticket,
                Err(left) => return Err(plugin.failure(I::HOOK, FailureKind::Quarantined(left))),
            };
            plugin.stats.calls.fetch_add(1, Ordering::Relaxed);
            let result = 'call: {
                let _permit = match plugin.permits.try_acquire() {
                    Ok(p) => p,
                    Err(_) => match tokio::time::timeout(timeout, plugin.permits.acquire()).await {
                        Ok(Ok(p)) => p,
                        _ => break 'call Err(plugin.failure(I::HOOK, FailureKind::Busy(plugin.limits.instances))),
                    },
                };
                let Some(l) = live.as_mut() else {
                    let why = "the instance of this stream failed in an earlier call".to_string();
                    break 'call Err(plugin.failure(I::HOOK, FailureKind::Error(why)));
                };
                l.store.data_mut().context = context.cloned();
                plugin.factory.arm(&mut l.store, timeout);
                let outcome = {
                    let mut call = std::pin::pin!(invoke.invoke(l));
                    deadline::Within::new(call.as_mut(), started + timeout + EPOCH_TICK * 2).await
                };
                l.store.data_mut().context = None;
                let kind = match outcome {
                    Some(Ok(value)) => break 'call check(value).map_err(|kind| plugin.failure(I::HOOK, kind)),
                    Some(Err(e)) => instance::classify(&e, l.store.data(), plugin.limits.memory, timeout),
                    None => FailureKind::Timeout(timeout),
                };
                *live = None;
                plugin.stats.instances_discarded.fetch_add(1, Ordering::Relaxed);
                Err(plugin.failure(I::HOOK, kind))
            };
            plugin.judge(ticket, I::HOOK, started, &result);
            result
        })
    }

    /// Ends the session: the after-call checks, then a healthy instance goes
    /// back to the pool.
    pub(crate) async fn close(mut self) {
        if let Some(mut live) = self.live.take() {
            match self.plugin.after_call(&mut live).await {
                AfterCall::Park => self.plugin.park(live),
                _ => {
                    self.plugin.stats.instances_discarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.live.take().is_some() {
            self.plugin.stats.instances_discarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        // Wakes `drain` (the permit is kept if it is not waiting yet).
        self.pool.released.notify_one();
    }
}
