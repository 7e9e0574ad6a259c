//! A loaded plugin: manifest, capabilities, `InstancePre`, and its pool of warm
//! instances. Every hook call goes through `LoadedPlugin::call` (crate-private), which applies
//! the deadline and memory cap and discards an instance that failed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::component::InstancePre;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use crate::bindings::{
    device_hooks, device_probe, endpoint, lifecycle, provider, request_hooks, stream_hooks, tool_hooks,
};
use crate::breaker::{Breaker, BreakerConfig, BreakerState};
use crate::capability::Capabilities;
use crate::engine::{CompileSource, EPOCH_TICK, ExecOptions};
pub use crate::failure::{FailureKind, PluginFailure};
use crate::imports::kv::KvNamespace;
use crate::imports::{ContextMap, DeviceReports, StoreState};
pub use crate::loader::{PluginSource, SourceForm};
use crate::manifest::{Hook, Manifest, ResolvedLimits};

/// Time allowed for `init` on a fresh instance (on top of nothing: it is not
/// counted against the hook's own deadline when instances are made at load).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Mean wall-clock duration of a call, in microseconds (0 before the first call).
    pub mean_call_micros: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Where the plugin's circuit breaker stands.
    pub breaker: BreakerState,
}

impl PluginStats {
    fn snapshot(&self, breaker: &Breaker) -> StatsSnapshot {
        let calls = self.calls.load(Ordering::Relaxed);
        StatsSnapshot {
            consecutive_failures: breaker.consecutive_failures(),
            breaker: breaker.state(),
            calls,
            errors: self.errors.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            instances_created: self.instances_created.load(Ordering::Relaxed),
            instances_discarded: self.instances_discarded.load(Ordering::Relaxed),
            mean_call_micros: self.busy_nanos.load(Ordering::Relaxed) / calls.max(1) / 1000,
        }
    }
}

/// Export indices of the interfaces this plugin's hooks need, resolved once.
#[derive(Default)]
pub(crate) struct ExportIndices {
    lifecycle: Option<lifecycle::GuestIndices>,
    request: Option<request_hooks::GuestIndices>,
    stream: Option<stream_hooks::GuestIndices>,
    tool: Option<tool_hooks::GuestIndices>,
    provider: Option<provider::GuestIndices>,
    device_hooks: Option<device_hooks::GuestIndices>,
    device_probe: Option<device_probe::GuestIndices>,
    endpoint: Option<endpoint::GuestIndices>,
}

/// The WIT interface name a hook's interface is exported under.
pub(crate) fn interface_export_name(interface: &str) -> String {
    format!("plugbox:plugin/{interface}@{}", crate::WIT_VERSION)
}

impl ExportIndices {
    /// Resolves the exports for `hooks`; a missing interface is an error naming it.
    pub(crate) fn resolve(pre: &InstancePre<StoreState>, hooks: &[Hook]) -> Result<Self, String> {
        fn need<I>(r: wasmtime::Result<I>, hook: &Hook) -> Result<Option<I>, String> {
            r.map(Some).map_err(|e| {
                format!(
                    "declares hook `{}` but its component does not export `{}` ({})",
                    hook.as_str(),
                    interface_export_name(hook.interface()),
                    crate::engine::first_line(&e)
                )
            })
        }
        let mut x = ExportIndices {
            // Lifecycle is optional: a component without it needs no init.
            lifecycle: lifecycle::GuestIndices::new(pre).ok(),
            ..Default::default()
        };
        for hook in hooks {
            match hook {
                Hook::PreRequest | Hook::PostResponse if x.request.is_none() => {
                    x.request = need(request_hooks::GuestIndices::new(pre), hook)?
                }
                Hook::OnChunk | Hook::OnStreamEnd if x.stream.is_none() => {
                    x.stream = need(stream_hooks::GuestIndices::new(pre), hook)?
                }
                Hook::OnToolCall => x.tool = need(tool_hooks::GuestIndices::new(pre), hook)?,
                Hook::Provider => x.provider = need(provider::GuestIndices::new(pre), hook)?,
                Hook::OnDeviceProbe => x.device_hooks = need(device_hooks::GuestIndices::new(pre), hook)?,
                Hook::DeviceProbe => x.device_probe = need(device_probe::GuestIndices::new(pre), hook)?,
                Hook::Endpoint => x.endpoint = need(endpoint::GuestIndices::new(pre), hook)?,
                _ => {}
            }
        }
        Ok(x)
    }
}

/// One warm instance: its store and the typed exports, used by one call at a time.
pub(crate) struct Live {
    pub(crate) store: Store<StoreState>,
    pub(crate) lifecycle: Option<lifecycle::Guest>,
    pub(crate) request: Option<request_hooks::Guest>,
    pub(crate) stream: Option<stream_hooks::Guest>,
    pub(crate) tool: Option<tool_hooks::Guest>,
    pub(crate) provider: Option<provider::Guest>,
    pub(crate) device_hooks: Option<device_hooks::Guest>,
    pub(crate) device_probe: Option<device_probe::Guest>,
    pub(crate) endpoint: Option<endpoint::Guest>,
}

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
    pub(crate) caps: Capabilities,
    pub(crate) limits: ResolvedLimits,
    /// Effective config (manifest defaults + operator values), JSON.
    pub(crate) config_json: String,
    pub(crate) provider_type: Option<String>,
    pub(crate) compile_source: CompileSource,
    pub(crate) load_time: Duration,
    pub(crate) loaded_at: SystemTime,
    pub(crate) stats: PluginStats,
    pub(crate) pre: InstancePre<StoreState>,
    pub(crate) exports: ExportIndices,
    pub(crate) kv: KvNamespace,
    pub(crate) devices: DeviceReports,
    breaker: Breaker,
    exec: ExecOptions,
    /// The network grant, shared by every instance's `wasi:http` hooks.
    network: Arc<[crate::manifest::HostPattern]>,
    /// SHA-256 of the manifest text and component bytes this version was built from.
    pub(crate) fingerprint: [u8; 32],
    shut_down: std::sync::atomic::AtomicBool,
    events: tokio::sync::broadcast::Sender<crate::events::PluginEvent>,
    idle: Mutex<Vec<Live>>,
    permits: Semaphore,
}

/// The parts of a plugin that [`LoadedPlugin::new`] assembles.
pub(crate) struct PluginParts {
    pub manifest: Manifest,
    pub source: PluginSource,
    pub caps: Capabilities,
    pub limits: ResolvedLimits,
    pub config_json: String,
    pub compile_source: CompileSource,
    pub pre: InstancePre<StoreState>,
    pub exports: ExportIndices,
    pub kv: KvNamespace,
    pub devices: DeviceReports,
    pub breaker: BreakerConfig,
    pub exec: ExecOptions,
    pub fingerprint: [u8; 32],
    pub events: tokio::sync::broadcast::Sender<crate::events::PluginEvent>,
}

impl LoadedPlugin {
    pub(crate) fn new(p: PluginParts, started: Instant) -> Self {
        LoadedPlugin {
            name: Arc::from(p.manifest.name.as_str()),
            permits: Semaphore::new(p.limits.instances as usize),
            network: p.caps.network.clone().into(),
            breaker: Breaker::new(p.breaker),
            events: p.events,
            exec: p.exec,
            manifest: p.manifest,
            source: p.source,
            caps: p.caps,
            limits: p.limits,
            config_json: p.config_json,
            provider_type: None,
            compile_source: p.compile_source,
            load_time: started.elapsed(),
            loaded_at: SystemTime::now(),
            stats: PluginStats::default(),
            pre: p.pre,
            exports: p.exports,
            kv: p.kv,
            devices: p.devices,
            fingerprint: p.fingerprint,
            shut_down: Default::default(),
            idle: Mutex::new(Vec::new()),
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
        self.stats.snapshot(&self.breaker)
    }

    /// Records a failure the caller detected in a hook's answer (an error it
    /// returned, an output the host refused); feeds the circuit breaker.
    pub(crate) fn record_failure(&self, f: &PluginFailure) {
        if let Some(backoff) = self.breaker.failed() {
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
    #[allow(dead_code)] // a seam for the sandbox work: remove once its users are merged
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
        self.shut_down.load(Ordering::Acquire)
    }
    /// Number of warm instances waiting in the pool.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().len()
    }

    fn failure(&self, hook: &'static str, kind: FailureKind) -> PluginFailure {
        PluginFailure { plugin: self.name.to_string(), hook, kind }
    }

    /// Creates, instantiates and initialises a fresh instance.
    pub(crate) async fn instantiate(&self) -> Result<Live, PluginFailure> {
        let hook = "init";
        let wasi = self.caps.wasi_ctx(&self.name).map_err(|e| self.failure(hook, FailureKind::Error(e.to_string())))?;
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.limits.memory).unwrap_or(usize::MAX))
            .trap_on_grow_failure(true)
            .build();
        let state = StoreState {
            plugin: self.name.clone(),
            wasi,
            table: Default::default(),
            limits,
            kv: self.kv.clone(),
            devices: self.devices.clone(),
            context: None,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            net: crate::imports::http::NetHooks { plugin: self.name.clone(), allowed: self.network.clone() },
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        self.arm(&mut store, INIT_TIMEOUT);
        self.stats.instances_created.fetch_add(1, Ordering::Relaxed);
        let fut = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let x = &self.exports;
            let mut live = Live {
                lifecycle: x.lifecycle.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                request: x.request.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                stream: x.stream.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                tool: x.tool.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                provider: x.provider.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                device_hooks: x.device_hooks.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                device_probe: x.device_probe.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                endpoint: x.endpoint.as_ref().map(|i| i.load(&mut store, &instance)).transpose()?,
                store,
            };
            let init = match &live.lifecycle {
                Some(l) => l.call_init(&mut live.store, &self.config_json).await?,
                None => Ok(()),
            };
            wasmtime::Result::Ok((live, init))
        };
        match tokio::time::timeout(INIT_TIMEOUT + Duration::from_millis(100), fut).await {
            Ok(Ok((live, Ok(())))) => Ok(live),
            Ok(Ok((_, Err(message)))) => Err(self.failure(hook, FailureKind::Error(message))),
            Ok(Err(e)) => Err(self.failure(hook, classify(&e, self.limits.memory, INIT_TIMEOUT))),
            Err(_) => Err(self.failure(hook, FailureKind::Timeout(INIT_TIMEOUT))),
        }
    }

    /// Creates, instantiates and initialises a fresh instance, then drops it:
    /// what a call costs when no warm instance is available (diagnostics, benches).
    pub async fn instantiate_fresh(&self) -> Result<(), PluginFailure> {
        self.instantiate().await.map(drop)
    }

    /// Puts a healthy instance back into the pool (used at load).
    pub(crate) fn park(&self, live: Live) {
        self.idle.lock().push(live);
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
    ) -> Pin<Box<dyn Future<Output = Result<I::Output, PluginFailure>> + Send + 's>> {
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
    ) -> Pin<Box<dyn Future<Output = Result<T, PluginFailure>> + Send + 's>> {
        // Boxed: keeps callers' futures `Send` (and small) whatever `I` is.
        let span = tracing::debug_span!("plugbox.hook", plugin = %self.name, hook = I::HOOK);
        Box::pin(
            async move {
                let started = Instant::now();
                if let Err(left) = self.breaker.admit() {
                    return Err(self.failure(I::HOOK, FailureKind::Quarantined(left)));
                }
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                let result = self
                    .call_inner(context, timeout, invoke, started)
                    .await
                    .and_then(|out| check(out).map_err(|kind| self.failure(I::HOOK, kind)));
                match &result {
                    Ok(_) => self.breaker.succeeded(),
                    Err(f) => self.record_failure(f),
                }
                self.stats.busy_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if let Err(f) = &result {
                    let counter = match f.kind {
                        FailureKind::Timeout(_) => &self.stats.timeouts,
                        FailureKind::Trap(_)
                        | FailureKind::MemoryLimit(_)
                        | FailureKind::StackOverflow
                        | FailureKind::FuelExhausted => &self.stats.traps,
                        _ => &self.stats.errors,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(plugin = %self.name, hook = I::HOOK, "{}", f.kind);
                }
                result
            }
            .instrument(span),
        )
    }

    async fn call_inner<I: Invoke>(
        &self,
        context: Option<&ContextMap>,
        timeout: Duration,
        invoke: I,
        started: Instant,
    ) -> Result<I::Output, PluginFailure> {
        let _permit = match tokio::time::timeout(timeout, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            _ => return Err(self.failure(I::HOOK, FailureKind::Busy(self.limits.instances))),
        };
        let pooled = self.idle.lock().pop();
        let mut live = match pooled {
            Some(live) => live,
            None => self.instantiate().await?,
        };
        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            self.park(live);
            return Err(self.failure(I::HOOK, FailureKind::Timeout(timeout)));
        }
        live.store.data_mut().context = context.cloned();
        self.arm(&mut live.store, remaining);
        // The epoch deadline stops wasm code; the outer timeout also covers time
        // spent awaiting in host imports.
        let outcome = tokio::time::timeout(remaining + EPOCH_TICK * 2, invoke.invoke(&mut live)).await;
        match outcome {
            Ok(Ok(value)) => {
                live.store.data_mut().context = None;
                self.park(live);
                Ok(value)
            }
            Ok(Err(e)) => {
                self.stats.instances_discarded.fetch_add(1, Ordering::Relaxed);
                Err(self.failure(I::HOOK, classify(&e, self.limits.memory, timeout)))
            }
            Err(_) => {
                self.stats.instances_discarded.fetch_add(1, Ordering::Relaxed);
                Err(self.failure(I::HOOK, FailureKind::Timeout(timeout)))
            }
        }
    }

    /// Calls `shutdown` on every idle instance and empties the pool.
    pub(crate) async fn shutdown(&self) {
        self.shut_down.store(true, Ordering::Release);
        let instances: Vec<Live> = std::mem::take(&mut *self.idle.lock());
        for mut live in instances {
            if let Some(l) = live.lifecycle.take() {
                self.arm(&mut live.store, self.limits.timeout);
                let call = l.call_shutdown(&mut live.store);
                if let Ok(Err(e)) | Err(e) = tokio::time::timeout(self.limits.timeout, call)
                    .await
                    .map_err(|_| wasmtime::format_err!("timed out"))
                {
                    tracing::warn!(plugin = %self.name, "shutdown failed: {}", crate::engine::first_line(&e));
                }
            }
        }
    }
}

impl LoadedPlugin {
    /// Sets the wall-clock deadline (epochs) and the fuel budget of the next call.
    fn arm(&self, store: &mut Store<StoreState>, budget: Duration) {
        if self.exec.epochs {
            let ticks = budget.as_micros().div_ceil(EPOCH_TICK.as_micros()).max(1) as u64 + 1;
            store.set_epoch_deadline(ticks);
        }
        if self.exec.fuel {
            let _ = store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX));
        }
    }
}

/// Maps a wasmtime error to a [`FailureKind`].
fn classify(e: &wasmtime::Error, memory_cap: u64, timeout: Duration) -> FailureKind {
    let trap = e.downcast_ref::<Trap>().copied().or_else(|| e.chain().find_map(|c| c.downcast_ref::<Trap>().copied()));
    match trap {
        Some(Trap::Interrupt) => return FailureKind::Timeout(timeout),
        Some(Trap::StackOverflow) => return FailureKind::StackOverflow,
        Some(Trap::OutOfFuel) => return FailureKind::FuelExhausted,
        _ => {}
    }
    let text = format!("{e:#}");
    if text.contains("forcing trap when growing memory") {
        return FailureKind::MemoryLimit(memory_cap);
    }
    // The root cause says what happened ("wasm `unreachable` instruction
    // executed"); the backtrace that wraps it belongs in debug logs.
    tracing::debug!("guest trap: {text}");
    let root = e.root_cause().to_string();
    FailureKind::Trap(root.lines().next().unwrap_or_default().to_string())
}
