//! Unloading plugins and what the instance pools hold: the facade over
//! [`LoadedPlugin`](crate::plugin::LoadedPlugin)'s drain and shutdown.

use super::Host;
use crate::error::{Error, Result};
use crate::reload::DRAIN_LIMIT;

impl Host {
    /// Unloads a plugin: new requests no longer see it; then, once the calls
    /// it is running have ended (each ends by its own deadline; at most
    /// [`DRAIN_LIMIT`]), its idle instances get `shutdown`, each within the
    /// plugin's timeout and all within
    /// [`SHUTDOWN_BUDGET`](crate::plugin::SHUTDOWN_BUDGET), on a blocking
    /// thread. A request that still holds the plugin runs its later hooks on
    /// fresh instances that are dropped after the call. A watcher loads it
    /// again when its files change: to keep it off, use [`Host::disable`].
    pub async fn unload(&self, name: &str) -> Result<()> {
        let removed = self.inner.registry.update(|plugins| plugins.remove(name));
        let Some(plugin) = removed else {
            return Err(Error::NotFound(name.to_string()));
        };
        self.inner.reload.records.lock().retain(|n, r| n != name || r.disabled);
        self.emit(name, crate::reload::PluginEventKind::Unloaded { version: plugin.manifest.version.clone() });
        if !plugin.calls_finished(DRAIN_LIMIT).await {
            tracing::warn!(
                plugin = name,
                "calls still running after {DRAIN_LIMIT:?}: shutting down its idle instances"
            );
        }
        plugin.shutdown().await;
        tracing::info!(plugin = name, "plugin unloaded");
        Ok(())
    }

    /// Unloads every plugin.
    pub async fn unload_all(&self) {
        for name in self.snapshot().plugins.keys().cloned().collect::<Vec<_>>() {
            let _ = self.unload(&name).await;
        }
    }

    /// Bytes of linear memory all idle (pooled) instances of this host hold
    /// now; kept under the budget set with
    /// [`HostBuilder::pooled_memory_budget`](crate::HostBuilder::pooled_memory_budget).
    /// Per plugin: [`LoadedPlugin::pooled_bytes`](crate::LoadedPlugin::pooled_bytes).
    pub fn pooled_instance_bytes(&self) -> u64 {
        self.inner.pools.pooled_bytes()
    }
}
