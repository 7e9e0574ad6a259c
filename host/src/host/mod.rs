//! [`Host`]: the embedding API. Build one with [`HostBuilder`], load plugins,
//! then call the pipeline methods from any tokio service.

mod devtools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use serde_json::{Map, Value};
use wasmtime::component::Linker;

use crate::bindings::Plugin as PluginWorld;
use crate::breaker::BreakerConfig;
use crate::capability::Capabilities;
use crate::devices::{DeviceOptions, DeviceState};
use crate::engine::{EngineOptions, PlugboxEngine};
use crate::error::{Error, Result};
use crate::imports::kv::{KvNamespace, KvStore, MemoryKv};
use crate::imports::{DeviceReports, StoreState};
use crate::loader::{self, DiscoveryProblem};
use crate::manifest::Hook;
use crate::pipeline::{PipelineConfig, invoke};
use crate::plugin::{ExportIndices, LoadedPlugin, PluginParts, PluginSource};
use crate::policy::Policy;
use crate::registry::{Registry, Snapshot};
use crate::reload::{Discovered, ReloadOptions, ReloadState};

/// Configures and builds a [`Host`].
///
/// Defaults: the compile cache in `~/.cache/plugbox/compiled`, the default
/// [`Policy`] (nothing outside a plugin's own directory, no wildcard network),
/// an in-memory kv store, no data root (plugins asking for a data directory
/// are told so), [`PipelineConfig::default`], the disabled list in each plugin
/// directory's `.plugbox-state.yaml`, and upgrades that gain permissions
/// swapped in without approval (the policy still bounds every grant).
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
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            engine: EngineOptions::default(),
            policy: Policy::default(),
            pipeline: PipelineConfig::default(),
            plugin_config: BTreeMap::new(),
            kv: Arc::new(MemoryKv::new()),
            data_root: None,
            breaker: BreakerConfig::default(),
            devices: DeviceOptions::default(),
            reload: ReloadOptions::default(),
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
    /// Directory holding one private data directory per plugin.
    pub fn data_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_root = Some(dir.into());
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
    /// until [`Host::approve`]; the old version serves meanwhile. Off by
    /// default: the difference is then only reported (event and log).
    pub fn require_approval_for_new_permissions(mut self, require: bool) -> Self {
        self.reload.require_approval = require;
        self
    }
    /// Where the disabled list is kept, for every plugin directory of this host
    /// (default: `.plugbox-state.yaml` inside each plugin directory).
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.reload.state_file = Some(path.into());
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
        Ok(Host {
            inner: Arc::new(HostInner {
                engine,
                linker,
                policy: self.policy,
                pipeline: self.pipeline,
                plugin_config: RwLock::new(self.plugin_config),
                kv: self.kv,
                data_root: self.data_root,
                breaker: self.breaker,
                devices: DeviceReports::default(),
                device_state: DeviceState::new(self.devices),
                interfaces: Default::default(),
                registry: Registry::default(),
                reload: ReloadState::new(self.reload),
            }),
        })
    }
}

pub(crate) struct HostInner {
    pub(crate) engine: PlugboxEngine,
    linker: Linker<StoreState>,
    policy: Policy,
    pub(crate) pipeline: PipelineConfig,
    plugin_config: RwLock<BTreeMap<String, Map<String, Value>>>,
    kv: Arc<dyn KvStore>,
    data_root: Option<PathBuf>,
    breaker: BreakerConfig,
    pub(crate) devices: DeviceReports,
    pub(crate) device_state: DeviceState,
    pub(crate) interfaces: crate::models::endpoints::InterfaceCache,
    pub(crate) registry: Registry,
    pub(crate) reload: ReloadState,
}

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

/// A plugin that did not load, and why.
#[derive(Debug)]
pub struct LoadFailure {
    /// The plugin's file or directory.
    pub path: PathBuf,
    /// Why it did not load.
    pub error: Error,
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Errors that already name their file need no prefix.
        match &self.error {
            Error::Manifest(_) | Error::Io { .. } => write!(f, "{}", self.error),
            e => write!(f, "{}: {e}", self.path.display()),
        }
    }
}

impl Host {
    /// A host with all defaults.
    pub fn new() -> Result<Host> {
        HostBuilder::new().build()
    }

    /// Loads every plugin found under `dir` (recursively). A plugin that fails
    /// is reported in [`LoadReport::failed`] and never stops the others.
    ///
    /// The directory becomes one of the host's plugin directories: plugins its
    /// state file lists as disabled are skipped (see [`Host::disable`]), and
    /// [`Host::reload_dir`] and the watcher keep it in sync later.
    pub async fn load_dir(&self, dir: &Path) -> Result<LoadReport> {
        let _guard = self.inner.reload.sync.lock().await;
        let (sources, problems) = loader::discover(dir)?;
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
        let mut caps =
            Capabilities::resolve(&manifest, &read.base_dir, &self.inner.policy, self.inner.data_root.as_deref())?;
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
        let kv = KvNamespace { store: caps.kv.then(|| self.inner.kv.clone()), namespace: name.clone() };
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
            breaker: self.inner.breaker,
            exec: self.inner.engine.exec,
            fingerprint,
            events: self.inner.reload.sender(),
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

    /// Unloads a plugin: new requests no longer see it; requests already
    /// running finish with it; its idle instances get `shutdown`. A watcher
    /// loads it again when its files change: to keep it off, use
    /// [`Host::disable`].
    pub async fn unload(&self, name: &str) -> Result<()> {
        let removed = self.inner.registry.update(|plugins| plugins.remove(name));
        match removed {
            Some(plugin) => {
                self.inner.reload.records.lock().retain(|n, r| n != name || r.disabled);
                self.emit(name, crate::reload::PluginEventKind::Unloaded { version: plugin.manifest.version.clone() });
                plugin.shutdown().await;
                tracing::info!(plugin = name, "plugin unloaded");
                Ok(())
            }
            None => Err(Error::NotFound(name.to_string())),
        }
    }

    /// Unloads every plugin.
    pub async fn unload_all(&self) {
        for name in self.snapshot().plugins.keys().cloned().collect::<Vec<_>>() {
            let _ = self.unload(&name).await;
        }
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
