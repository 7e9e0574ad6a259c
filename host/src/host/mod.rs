//! [`Host`]: the embedding API. Build one with [`HostBuilder`], load plugins,
//! then call the pipeline methods from any tokio service.

mod approval;
mod devtools;
mod disabled;
mod pipeline;
mod reload;
mod status;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use serde_json::{Map, Value};
use wasmtime::component::Linker;

use crate::bindings::Plugin as PluginWorld;
use crate::breaker::BreakerConfig;
use crate::capability::{Capabilities, LoaderPaths, PluginPlace};
use crate::devices::{DeviceOptions, Devices};
use crate::engine::{EngineOptions, PlugboxEngine};
use crate::error::{Error, Result};
use crate::imports::kv::{KvNamespace, KvStore, MemoryKv};
use crate::imports::{DeviceReports, StoreState};
use crate::loader::{self, DiscoveryProblem};
use crate::manifest::Hook;
use crate::pipeline::{PipelineConfig, invoke};
use crate::plugin::{ExportIndices, LoadedPlugin, PluginParts, PluginSource, PoolOptions, PoolSet};
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
        let (sources, problems) = loader::discover(dir)?;
        self.refuse_root_writable_by_plugins(dir)?;
        self.inner.reload.add_root(dir);
        let mut report = LoadReport::default();
        for DiscoveryProblem { path, message } in problems {
            let error =
                Error::Manifest(crate::manifest::ManifestError::Invalid { path: path.clone(), line: None, message });
            report.failed.push(LoadFailure { path, error });
        }
        for source in sources {
            match self.load_discovered(&source).await {
                Ok(Discovered::Loaded(plugin)) => report.loaded.push(plugin.name().to_string()),
                Ok(Discovered::Disabled(name)) => report.disabled.push(name),
                Err(error) => {
                    self.record_failure(&crate::reload::source_key(&source), None, &source.component, &error);
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
        let source = loader::source_for_path(path)?;
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

    /// Everything up to (not including) registration; also what `plugbox check` runs.
    pub(crate) async fn prepare(&self, source: &PluginSource) -> Result<Arc<LoadedPlugin>> {
        let started = Instant::now();
        let read = Self::read(source).await?;
        self.prepare_read(read, started).await
    }

    /// Reads a plugin's manifest and component bytes on a blocking thread.
    pub(crate) async fn read(source: &PluginSource) -> Result<loader::ReadPlugin> {
        let source = source.clone();
        tokio::task::spawn_blocking(move || loader::read_plugin(&source))
            .await
            .map_err(|e| Error::Engine(e.to_string()))?
    }

    /// Compiles (off the async threads), links, checks the exports against the
    /// declared hooks, and initialises one instance of a plugin already read.
    pub(crate) async fn prepare_read(&self, read: loader::ReadPlugin, started: Instant) -> Result<Arc<LoadedPlugin>> {
        let fingerprint = read.fingerprint;
        let manifest = read.manifest;
        let name = manifest.name.as_str().to_string();
        let operator = self.inner.plugin_config.read().get(&name).cloned().unwrap_or_default();
        let config = manifest.resolve_config(&operator)?;
        let (limits, lowered) = self.inner.policy.cap_limits(&name, manifest.limits.resolve());
        let paths = self.loader_paths(&read.source);
        let own_dir = (read.source.form == loader::SourceForm::Directory).then_some(read.base_dir.as_path());
        let place = PluginPlace { base_dir: &read.base_dir, own_dir, paths: &paths };
        let mut caps = Capabilities::resolve(&manifest, &place, &self.inner.policy)?;
        caps.denied.extend(lowered);
        if limits.fuel.is_some() && !self.inner.engine.exec.fuel {
            caps.denied.push("limits.fuel: this host runs without fuel metering (the timeout still applies)".into());
        }
        if manifest.limits.stack.is_some() {
            caps.denied.push(format!(
                "limits.stack: the wasm stack is set host-wide ({} KiB)",
                crate::engine::DEFAULT_MAX_WASM_STACK / 1024
            ));
        }
        for denied in &caps.denied {
            tracing::warn!(plugin = %name, "not granted: {denied}");
        }

        let inner = self.inner.clone();
        let plugin_name = name.clone();
        let wasm = read.wasm;
        let (component, compile_source) =
            tokio::task::spawn_blocking(move || inner.engine.compile(&plugin_name, &wasm))
                .await
                .map_err(|e| Error::Engine(e.to_string()))??;
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| Error::Component {
            plugin: name.clone(),
            message: format!("cannot be linked: {}", crate::engine::first_line(&e)),
        })?;
        let exports = ExportIndices::resolve(&pre, &manifest.hooks)
            .map_err(|message| Error::Component { plugin: name.clone(), message })?;
        let resource_limits = self.inner.policy.resources_for(&name);
        let kv = KvNamespace {
            store: caps.kv.then(|| self.inner.kv.clone()),
            namespace: name.clone(),
            quota: resource_limits.kv,
        };
        let resources = Arc::new(crate::imports::resources::PluginResources::new(
            Arc::from(name.as_str()),
            resource_limits,
            self.inner.outgoing_http.clone(),
            caps.data_dir().map(Path::to_path_buf),
        ));
        let parts = PluginParts {
            config_json: Value::Object(config).to_string(),
            manifest,
            source: read.source,
            caps,
            limits,
            compile_source,
            pre,
            exports,
            kv,
            devices: self.inner.devices.clone(),
            resources,
            breaker: self.inner.breaker,
            exec: self.inner.engine.exec,
            fingerprint,
            events: self.inner.reload.sender(),
            pools: self.inner.pools.clone(),
        };
        let mut plugin = LoadedPlugin::new(parts, started);
        // One instance now: proves it instantiates and initialises, and warms the pool.
        let live = plugin
            .instantiate()
            .await
            .map_err(|f| Error::Init { plugin: name.clone(), message: f.kind.to_string() })?;
        plugin.park(live);
        if plugin.implements(Hook::Provider) {
            let call = invoke::ProviderType { _marker: std::marker::PhantomData };
            let ty = plugin.call(None, plugin.limits.timeout, call).await?;
            plugin.provider_type = Some(ty);
        }
        plugin.load_time = started.elapsed();
        Ok(Arc::new(plugin))
    }

    /// What no grant to the plugin read from `source` may make writable:
    /// the plugin roots, its own files (in the directory form, its whole
    /// directory), the state file, the compile cache and the policy file.
    fn loader_paths(&self, source: &PluginSource) -> LoaderPaths {
        let mut protected: Vec<PathBuf> = source.manifest.iter().cloned().collect();
        protected.push(source.component.clone());
        // The directory form's loader reads the whole directory (it looks for the `.wasm` there).
        if source.form == loader::SourceForm::Directory
            && let Some(dir) = source.manifest.as_ref().and_then(|m| m.parent())
        {
            protected.push(dir.to_path_buf());
        }
        protected.extend(self.inner.reload.options.state_file.clone());
        protected.extend(self.inner.cache_dir.clone());
        protected.extend(self.inner.policy.path.clone());
        LoaderPaths { plugin_roots: self.inner.reload.roots(), protected, data_root: self.inner.data_root.clone() }
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
