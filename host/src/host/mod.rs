//! [`Host`]: the embedding API. Build one with [`HostBuilder`], load plugins,
//! then call the pipeline methods from any tokio service.

mod approval;
mod devtools;
mod disabled;
mod pipeline;
mod prepare;
mod reload;
mod status;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Map, Value};
use wasmtime::component::Linker;

use crate::bindings::Plugin as PluginWorld;
use crate::blocking;
use crate::breaker::BreakerConfig;
use crate::devices::{DeviceOptions, Devices};
use crate::engine::{EngineOptions, PlugboxEngine};
use crate::error::{Error, Result};
use crate::imports::kv::{KvStore, MemoryKv};
use crate::imports::{DeviceReports, StoreState};
use crate::loader::{self, DiscoveryProblem};
use crate::manifest::Hook;
use crate::pipeline::PipelineConfig;
use crate::plugin::{LoadedPlugin, PluginSource, PoolOptions, PoolSet};
use crate::policy::Policy;
use crate::registry::{Registry, Snapshot};
pub use crate::reload::LoadFailure;
use crate::reload::{Discovered, ReloadOptions, ReloadState};

mod devices;
mod interfaces;
mod plugins;

/// Configures and builds a [`Host`].
///
/// Defaults: the compile cache in `~/.cache/plugbox/compiled`, the default
/// [`Policy`] (nothing outside a plugin's own directory, no wildcard network),
/// an in-memory kv store, per-plugin data directories under
/// `$XDG_DATA_HOME/plugbox/data` (else `~/.local/share/plugbox/data`),
/// [`PipelineConfig::default`], the disabled list in each plugin directory's
/// `.plugbox-state.yaml`, and approval required both for plugins that appear
/// at run time and for new versions that gain grants (unless the policy's
/// `approval` section approves them ahead).
pub struct HostBuilder {
    engine: EngineOptions,
    policy: Policy,
    pipeline: PipelineConfig,
    plugin_config: BTreeMap<String, Map<String, Value>>,
    kv: Arc<dyn KvStore>,
    data_root: Option<PathBuf>,
    breaker: BreakerConfig,
    devices: DeviceOptions,
    reload: ReloadOptions,
    pool: PoolOptions,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            engine: EngineOptions::default(),
            policy: Policy::default(),
            pipeline: PipelineConfig::default(),
            plugin_config: BTreeMap::new(),
            kv: Arc::new(MemoryKv::new()),
            data_root: crate::capability::default_data_root(),
            breaker: BreakerConfig::default(),
            devices: DeviceOptions::default(),
            reload: ReloadOptions::default(),
            pool: PoolOptions::default(),
        }
    }
}

impl HostBuilder {
    /// A builder with the defaults listed above.
    pub fn new() -> Self {
        Self::default()
    }
    /// Where compiled components are cached; `None` turns the cache off.
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.engine.cache_dir = dir;
        self
    }
    /// The operator policy that bounds every grant.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }
    /// Hook timeouts, error propagation, maximum plugin count.
    pub fn pipeline(mut self, config: PipelineConfig) -> Self {
        self.pipeline = config;
        self
    }
    /// Operator values for a plugin's `config` (merged over the manifest's defaults).
    pub fn plugin_config(mut self, plugin: impl Into<String>, values: Map<String, Value>) -> Self {
        self.plugin_config.insert(plugin.into(), values);
        self
    }
    /// The backend of the `kv` capability (in-memory by default).
    pub fn kv_store(mut self, kv: Arc<dyn KvStore>) -> Self {
        self.kv = kv;
        self
    }
    /// Uses a fresh in-memory kv store whose namespaces together hold at most
    /// `bytes` (keys, values and 64 bytes per entry; default 256 MiB, see
    /// [`MemoryKv`]), in place of any store set before. Each plugin's own
    /// quota (`resources.kv` in the policy) still applies within it.
    pub fn kv_memory_limit(mut self, bytes: u64) -> Self {
        self.kv = Arc::new(MemoryKv::with_limit(bytes));
        self
    }
    /// When a failing plugin is quarantined, and for how long.
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }
    /// Enables fuel metering: a manifest's `limits.fuel` becomes a
    /// deterministic per-call instruction budget. Off by default (it costs
    /// every call some speed); without it `limits.fuel` is reported as not granted.
    pub fn fuel(mut self, enabled: bool) -> Self {
        self.engine.fuel = enabled;
        self
    }
    /// Engine settings (cache directory, stack size, fuel, epochs).
    pub fn engine_options(mut self, options: EngineOptions) -> Self {
        self.engine = options;
        self
    }
    /// Directory holding one private data directory per plugin (`data-dir`,
    /// `write_files`), one subdirectory per plugin, created 0700. It must lie
    /// outside every plugin root: a data directory inside one is refused.
    /// Default: `$XDG_DATA_HOME/plugbox/data`, else `~/.local/share/plugbox/data`.
    pub fn data_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_root = Some(dir.into());
        self
    }
    /// No data root: plugins asking for a data directory are told so.
    pub fn without_data_root(mut self) -> Self {
        self.data_root = None;
        self
    }

    /// How devices are probed: built-in probes, the GPU backend, the cache
    /// interval (default 2 s; see [`crate::devices`]).
    pub fn devices(mut self, options: DeviceOptions) -> Self {
        self.devices = options;
        self
    }
    /// How long a device probe result is reused: longer makes probing under
    /// load cheaper, shorter makes free-memory figures fresher.
    pub fn device_cache_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.devices.cache_ttl = ttl;
        self
    }
    /// Keep a new version of a plugin that is granted more than the version it
    /// replaces (see [`CapabilityDiff`](crate::reload::CapabilityDiff)) pending
    /// until [`Host::approve`]; the old version serves meanwhile. On by
    /// default; grants the policy's `approval` section names are approved
    /// ahead. Off: the difference is only reported (event and log).
    pub fn require_approval_for_new_permissions(mut self, require: bool) -> Self {
        self.reload.require_approval = require;
        self
    }
    /// Keep a plugin that appears at run time (found by hot reload or
    /// [`Host::reload_dir`] in a plugin directory already loaded) pending until
    /// [`Host::approve`]; it does not serve meanwhile. On by default; a plugin
    /// whose grants the policy's `approval` section covers is loaded at once.
    /// Plugins found by the first load of a directory, and plugins loaded
    /// explicitly ([`Host::load_dir`], [`Host::load_plugin`], [`Host::enable`]),
    /// are not held.
    pub fn require_approval_for_new_plugins(mut self, require: bool) -> Self {
        self.reload.require_approval_new = require;
        self
    }
    /// Where the disabled list is kept, for every plugin directory of this host
    /// (default: `.plugbox-state.yaml` inside each plugin directory).
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.reload.state_file = Some(path.into());
        self
    }

    /// How idle instances are kept: the idle time after which one is dropped
    /// and the host-wide budget for their linear memory (see [`PoolOptions`]).
    pub fn instance_pool(mut self, options: PoolOptions) -> Self {
        self.pool = options;
        self
    }
    /// Drops an instance idle for longer than `ttl` (default 30 s).
    pub fn idle_instance_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.pool.idle_ttl = ttl;
        self
    }
    /// Most bytes of linear memory all idle instances of this host may hold
    /// together (default 256 MiB); over it the oldest idle ones are dropped.
    pub fn pooled_memory_budget(mut self, bytes: u64) -> Self {
        self.pool.memory_budget = bytes;
        self
    }

    /// Creates the engine and linker and returns the host, with no plugins loaded
    /// yet; fails when the wasmtime engine or linker cannot be set up.
    pub fn build(self) -> Result<Host> {
        let engine = PlugboxEngine::new(&self.engine)?;
        let mut linker: Linker<StoreState> = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| Error::Engine(format!("{e:#}")))?;
        // Outgoing HTTP: every request is checked against the plugin's grant.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        PluginWorld::add_to_linker::<_, wasmtime::component::HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        let host_http =
            self.policy.resources.http.host_concurrent.unwrap_or(crate::HttpLimits::DEFAULT.host_concurrent);
        let outgoing_http = Arc::new(tokio::sync::Semaphore::new(host_http as usize));
        let propagate_all = self.pipeline.propagate_plugin_errors;
        let devices = DeviceReports::default();
        Ok(Host {
            inner: Arc::new(HostInner {
                engine,
                linker,
                policy: self.policy,
                pipeline: self.pipeline,
                plugin_config: RwLock::new(self.plugin_config),
                kv: self.kv,
                outgoing_http,
                data_root: self.data_root,
                cache_dir: self.engine.cache_dir.clone(),
                breaker: self.breaker,
                devices: devices.clone(),
                device_state: Devices::new(self.devices, propagate_all, devices),
                interfaces: crate::models::endpoints::Interfaces::new(propagate_all),
                registry: Registry::default(),
                reload: ReloadState::new(self.reload),
                pools: PoolSet::new(self.pool),
            }),
        })
    }
}

pub(crate) struct HostInner {
    pub(crate) engine: PlugboxEngine,
    linker: Linker<StoreState>,
    pub(crate) policy: Policy,
    pub(crate) pipeline: PipelineConfig,
    plugin_config: RwLock<BTreeMap<String, Map<String, Value>>>,
    pub(crate) kv: Arc<dyn KvStore>,
    /// Host-wide permits for outgoing HTTP requests (`resources.http.host-concurrent`).
    outgoing_http: Arc<tokio::sync::Semaphore>,
    pub(crate) data_root: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    breaker: BreakerConfig,
    pub(crate) devices: DeviceReports,
    pub(crate) device_state: Devices,
    pub(crate) interfaces: crate::models::endpoints::Interfaces,
    pub(crate) registry: Registry,
    pub(crate) reload: ReloadState,
    pub(crate) pools: Arc<PoolSet>,
}

mod resources;

/// A plugin host. Cheap to clone; all clones share the same plugins.
///
/// Its async methods never block the runtime's workers: compiling, guest
/// `shutdown` and every file-system call (discovering and reading plugins,
/// resolving grants and creating data directories, canonicalising paths, the
/// state file, setting up a watch) run on tokio's blocking pool, so they may
/// be called from a current-thread runtime next to latency-sensitive tasks.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

/// What [`Host::load_dir`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Names of the plugins now loaded from this directory.
    pub loaded: Vec<String>,
    /// One entry per plugin (or stray file) that could not be loaded.
    pub failed: Vec<LoadFailure>,
    /// Plugins found but not loaded because an operator disabled them.
    pub disabled: Vec<String>,
}

impl Host {
    /// A host with all defaults.
    pub fn new() -> Result<Host> {
        HostBuilder::new().build()
    }

    /// Loads every plugin found under `dir` (recursively). A plugin that fails
    /// is reported in [`LoadReport::failed`] and never stops the others.
    ///
    /// Fails, adding nothing, when a loaded plugin may write inside or around
    /// `dir` (no grant may let a plugin write a plugin root).
    ///
    /// The directory becomes one of the host's plugin directories: plugins its
    /// state file lists as disabled are skipped (see [`Host::disable`]), and
    /// [`Host::reload_dir`] and the watcher keep it in sync later.
    pub async fn load_dir(&self, dir: &Path) -> Result<LoadReport> {
        let _guard = self.inner.reload.sync.lock().await;
        let owned = dir.to_path_buf();
        let (found, root) = blocking::run(move || {
            let found = loader::discover(&owned).map(|(sources, problems)| {
                let keyed: Vec<(PathBuf, PluginSource)> =
                    sources.into_iter().map(|s| (crate::reload::source_key(&s), s)).collect();
                (keyed, problems)
            });
            (found, crate::capability::canonical_lenient(&owned))
        })
        .await?;
        let (sources, problems) = found?;
        self.refuse_root_writable_by_plugins(&root)?;
        self.inner.reload.add_root(root);
        let mut report = LoadReport::default();
        for DiscoveryProblem { path, message } in problems {
            let error =
                Error::Manifest(crate::manifest::ManifestError::Invalid { path: path.clone(), line: None, message });
            report.failed.push(LoadFailure { path, error });
        }
        for (key, source) in sources {
            match self.load_discovered(&key, &source).await {
                Ok(Discovered::Loaded(plugin)) => report.loaded.push(plugin.name().to_string()),
                Ok(Discovered::Disabled(name)) => report.disabled.push(name),
                Err(error) => {
                    self.record_failure(&key, None, &source.component, &error);
                    report.failed.push(LoadFailure { path: source.component.clone(), error })
                }
            }
        }
        for f in &report.failed {
            tracing::error!("cannot load plugin: {f}");
        }
        Ok(report)
    }

    /// Loads one plugin from a plugin directory, a manifest file or a `.wasm`.
    pub async fn load_plugin(&self, path: &Path) -> Result<Arc<LoadedPlugin>> {
        let path = path.to_path_buf();
        let source = blocking::run(move || loader::source_for_path(&path)).await??;
        self.load_source(&source).await
    }

    /// Reads, compiles, validates and initialises a plugin, then registers it.
    #[tracing::instrument(name = "plugbox.load", skip_all, fields(path = %source.component.display()))]
    pub(crate) async fn load_source(&self, source: &PluginSource) -> Result<Arc<LoadedPlugin>> {
        let plugin = self.prepare(source).await?;
        if let Err(e) = self.install(&plugin, &[]) {
            plugin.shutdown().await;
            return Err(e);
        }
        Ok(plugin)
    }

    /// The plugin named `name`, if loaded.
    pub fn plugin(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.snapshot().plugins.get(name).cloned()
    }

    /// All loaded plugins, by name.
    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        self.snapshot().plugins.values().cloned().collect()
    }

    /// The provider plugin for `provider_type`, if loaded.
    pub fn provider(&self, provider_type: &str) -> Option<Arc<LoadedPlugin>> {
        self.snapshot().providers.get(provider_type).cloned()
    }

    /// Plugins implementing `hook`, in the order the host calls them.
    pub fn plugins_implementing(&self, hook: Hook) -> Vec<Arc<LoadedPlugin>> {
        self.snapshot().chain(hook)
    }

    /// The current immutable view of the loaded plugins.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.registry.snapshot()
    }

    /// The kv backend (for operators and tests: e.g. to inspect a namespace).
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.inner.kv
    }
}
