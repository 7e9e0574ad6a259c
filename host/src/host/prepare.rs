//! Preparing a plugin: reading its files, resolving its grants against the
//! policy, compiling, linking, checking its exports and initialising one
//! instance; everything before it is registered.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::Host;
use crate::blocking;
use crate::capability::{Capabilities, LoaderPaths, PluginPlace};
use crate::error::{Error, Result};
use crate::imports::kv::KvNamespace;
use crate::loader;
use crate::manifest::Hook;
use crate::pipeline::invoke;
use crate::plugin::{ExportIndices, LoadedPlugin, PluginParts, PluginSource};

impl Host {
    /// Everything up to (not including) registration; also what `plugbox check` runs.
    pub(crate) async fn prepare(&self, source: &PluginSource) -> Result<Arc<LoadedPlugin>> {
        let started = Instant::now();
        let read = Self::read(source).await?;
        self.prepare_read(read, started).await
    }

    /// Reads a plugin's manifest and component bytes on a blocking thread.
    pub(crate) async fn read(source: &PluginSource) -> Result<loader::ReadPlugin> {
        let source = source.clone();
        blocking::run(move || loader::read_plugin(&source)).await?
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
        // Resolving grants canonicalises paths and creates the data directory:
        // on the blocking pool, as is the source key.
        let (inner, source, base_dir) = (self.inner.clone(), read.source, read.base_dir);
        let (manifest, source, source_key, caps) = blocking::run(move || {
            let own_dir = (source.form == loader::SourceForm::Directory).then_some(base_dir.as_path());
            let place = PluginPlace { base_dir: &base_dir, own_dir, paths: &paths };
            let caps = Capabilities::resolve(&manifest, &place, &inner.policy);
            let source_key = crate::reload::source_key(&source);
            (manifest, source, source_key, caps)
        })
        .await?;
        let mut caps = caps?;
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
        let (component, compile_source) = blocking::run(move || inner.engine.compile(&plugin_name, &wasm)).await??;
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
            source,
            source_key,
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
            let call = invoke::ProviderType {};
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
}
