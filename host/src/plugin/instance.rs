//! Instances of one plugin version: how they are created and initialised
//! ([`Factory`]) within a deadline, what a warm one holds ([`Live`]), how
//! `shutdown` is run on them, and how a wasmtime error becomes a
//! [`FailureKind`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};

use super::PluginStats;
use super::pool::AliveToken;
use crate::bindings::{
    device_hooks, device_probe, endpoint, lifecycle, provider, request_hooks, stream_hooks, tool_hooks,
};
use crate::capability::Capabilities;
use crate::engine::{EPOCH_TICK, ExecOptions};
use crate::failure::FailureKind;
use crate::imports::kv::KvNamespace;
use crate::imports::limiter::InstanceLimiter;
use crate::imports::resources::PluginResources;
use crate::imports::{DeviceReports, StoreState};
use crate::manifest::Hook;

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

/// The typed exports of one instance.
struct Guests {
    lifecycle: Option<lifecycle::Guest>,
    request: Option<request_hooks::Guest>,
    stream: Option<stream_hooks::Guest>,
    tool: Option<tool_hooks::Guest>,
    provider: Option<provider::Guest>,
    device_hooks: Option<device_hooks::Guest>,
    device_probe: Option<device_probe::Guest>,
    endpoint: Option<endpoint::Guest>,
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
    /// Linear memory right after `init`.
    pub(crate) init_bytes: usize,
    _alive: AliveToken,
}

impl Live {
    /// Linear memory the instance holds now.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes()
    }
    pub(crate) fn plugin(&self) -> &str {
        &self.store.data().plugin
    }
}

/// An initialised instance held outside its plugin's pool until dropped: what
/// `benches/idle.rs` holds a thousand of to measure what an idle instance
/// costs. It serves no calls.
pub struct HeldInstance(#[allow(dead_code)] pub(crate) Live);

/// What creating an instance of one plugin version needs; shared with the
/// background warmer, so it lives apart from the plugin itself.
pub(crate) struct Factory {
    pub(crate) name: Arc<str>,
    pub(crate) pre: InstancePre<StoreState>,
    pub(crate) exports: ExportIndices,
    pub(crate) caps: Capabilities,
    pub(crate) memory: u64,
    pub(crate) fuel: Option<u64>,
    pub(crate) config_json: String,
    pub(crate) kv: KvNamespace,
    pub(crate) devices: DeviceReports,
    pub(crate) exec: ExecOptions,
    /// The network grant, shared by every instance's `wasi:http` hooks.
    pub(crate) network: Arc<[crate::manifest::HostPattern]>,
    pub(crate) stats: Arc<PluginStats>,
    /// Log, outgoing HTTP and data-directory state shared by its instances.
    pub(crate) resources: Arc<PluginResources>,
}

impl Factory {
    /// The store of a new instance.
    fn store(&self) -> Result<Store<StoreState>, FailureKind> {
        let wasi = self.caps.wasi_ctx(&self.name, &self.resources).map_err(|e| FailureKind::Error(e.to_string()))?;
        let state = StoreState {
            plugin: self.name.clone(),
            wasi,
            table: Default::default(),
            limiter: InstanceLimiter::new(self.memory),
            kv: self.kv.clone(),
            log: self.resources.log.clone(),
            devices: self.devices.clone(),
            context: None,
            llm: Default::default(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            net: crate::imports::http::NetHooks {
                plugin: self.name.clone(),
                allowed: self.network.clone(),
                permits: self.resources.http.clone(),
            },
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        Ok(store)
    }

    /// Creates, instantiates and initialises a fresh instance; instantiation
    /// and `init` together end by `budget` (epoch deadline inside wasm, a
    /// timer around everything).
    pub(crate) async fn instantiate(&self, budget: Duration, alive: AliveToken) -> Result<Live, FailureKind> {
        let mut store = self.store()?;
        self.arm(&mut store, budget);
        self.stats.instances_created.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = {
            let store = &mut store;
            let fut = async {
                let instance = self.pre.instantiate_async(&mut *store).await?;
                let x = &self.exports;
                let guests = Guests {
                    lifecycle: x.lifecycle.as_ref().map(|i| i.load(&mut *store, &instance)).transpose()?,
                    request: x.request.as_ref().map(|i| i.load(&mut *store, &instance)).transpose()?,
                    stream: x.stream.as_ref().map(|i| i.load(&mut *store, &instance)).transpose()?,
                    tool: x.tool.as_ref().map(|i| i.load(&mut *store, &instance)).transpose()?,
                    provider: x.provider.as_ref().map(|i| i.load(&mut *store, &instance)).transpose()?,
                    device_hooks: x.device_hooks.as_ref().map(|i| i.load(&mut *store, &instance)).transpose()?,
                    device_probe: x.device_probe.as_ref().map(|i| i.load(&mut *store, &instance)).transpose()?,
                    endpoint: x.endpoint.as_ref().map(|i| i.load(&mut *store, &instance)).transpose()?,
                };
                let init = match &guests.lifecycle {
                    Some(l) => l.call_init(&mut *store, &self.config_json).await?,
                    None => Ok(()),
                };
                wasmtime::Result::Ok((guests, init))
            };
            tokio::time::timeout(budget + EPOCH_TICK * 2, fut).await
        };
        match outcome {
            Ok(Ok((g, Ok(())))) => {
                let init_bytes = store.data().limiter.memory_bytes();
                Ok(Live {
                    store,
                    lifecycle: g.lifecycle,
                    request: g.request,
                    stream: g.stream,
                    tool: g.tool,
                    provider: g.provider,
                    device_hooks: g.device_hooks,
                    device_probe: g.device_probe,
                    endpoint: g.endpoint,
                    init_bytes,
                    _alive: alive,
                })
            }
            Ok(Ok((_, Err(message)))) => Err(FailureKind::Error(message)),
            Ok(Err(e)) => Err(classify(&e, store.data(), self.memory, budget)),
            Err(_) => {
                tracing::debug!(plugin = %self.name, "init ran past {budget:?} (after {:?})", started.elapsed());
                Err(FailureKind::Timeout(budget))
            }
        }
    }

    /// [`instantiate`](Self::instantiate) on a blocking thread, for the
    /// budgets longer than a hook's (the init timeout: at load, on reload, when
    /// warming the pool). Guest code that spins in `init` holds that thread,
    /// never an async worker, so loading or hot-reloading a plugin whose
    /// `init` takes seconds cannot stall the requests served meanwhile.
    pub(crate) async fn instantiate_off_workers(
        self: &Arc<Self>,
        budget: Duration,
        alive: AliveToken,
    ) -> Result<Live, FailureKind> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return self.instantiate(budget, alive).await;
        };
        let factory = self.clone();
        let job = tokio::task::spawn_blocking(move || handle.block_on(factory.instantiate(budget, alive)));
        job.await.unwrap_or_else(|e| Err(FailureKind::Error(format!("init thread failed: {e}"))))
    }

    /// Sets the wall-clock deadline (epochs) and the fuel budget of the next call.
    pub(crate) fn arm(&self, store: &mut Store<StoreState>, budget: Duration) {
        if self.exec.epochs {
            let ticks = budget.as_micros().div_ceil(EPOCH_TICK.as_micros()).max(1) as u64 + 1;
            store.set_epoch_deadline(ticks);
        }
        if self.exec.fuel {
            let _ = store.set_fuel(self.fuel.unwrap_or(u64::MAX));
        }
    }

    /// Calls `shutdown` on each of `instances`, each within `per_instance`
    /// and all within `total`; the instances left when `total` is spent are
    /// dropped without it. Runs on a blocking thread (guest code never runs
    /// on the async workers here), and returns when done.
    pub(crate) async fn shutdown_all(self: &Arc<Self>, instances: Vec<Live>, per_instance: Duration, total: Duration) {
        if instances.iter().all(|l| l.lifecycle.is_none()) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let factory = self.clone();
        let job = tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                let deadline = Instant::now() + total;
                let count = instances.len();
                for (done, mut live) in instances.into_iter().enumerate() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        tracing::warn!(
                            plugin = %factory.name,
                            "shutdown of {} idle instances skipped: the {total:?} budget is spent",
                            count - done
                        );
                        return;
                    }
                    let Some(l) = live.lifecycle.take() else { continue };
                    let budget = per_instance.min(left);
                    factory.arm(&mut live.store, budget);
                    let call = l.call_shutdown(&mut live.store);
                    match tokio::time::timeout(budget + EPOCH_TICK * 2, call).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(plugin = %factory.name, "shutdown failed: {}", crate::engine::first_line(&e))
                        }
                        Err(_) => tracing::warn!(plugin = %factory.name, "shutdown timed out after {budget:?}"),
                    }
                }
            })
        });
        if let Err(e) = job.await {
            tracing::warn!(plugin = %self.name, "shutdown thread failed: {e}");
        }
    }
}

/// Maps a wasmtime error to a [`FailureKind`]; the memory cap is known from
/// the instance's limiter, not from the error's text.
pub(crate) fn classify(e: &wasmtime::Error, state: &StoreState, memory_cap: u64, timeout: Duration) -> FailureKind {
    if state.limiter.memory_hit() {
        return FailureKind::MemoryLimit(memory_cap);
    }
    let trap = e.downcast_ref::<Trap>().copied().or_else(|| e.chain().find_map(|c| c.downcast_ref::<Trap>().copied()));
    match trap {
        Some(Trap::Interrupt) => return FailureKind::Timeout(timeout),
        Some(Trap::StackOverflow) => return FailureKind::StackOverflow,
        Some(Trap::OutOfFuel) => return FailureKind::FuelExhausted,
        _ => {}
    }
    let text = format!("{e:#}");
    // The root cause says what happened ("wasm `unreachable` instruction
    // executed"); the backtrace that wraps it belongs in debug logs.
    tracing::debug!("guest trap: {text}");
    if state.limiter.table_hit() {
        return FailureKind::Trap(format!("table grew past {} elements", crate::imports::limiter::MAX_TABLE_ELEMENTS));
    }
    let root = e.root_cause().to_string();
    FailureKind::Trap(root.lines().next().unwrap_or_default().to_string())
}
