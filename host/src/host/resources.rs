//! The host-resources room of the facade: removing what a plugin leaves
//! behind (its kv namespace and data directory).
//!
//! [`Host::unload`] keeps a plugin's data: loading it again finds its kv keys
//! and files. [`Host::uninstall`] removes them. Hot reload drops a plugin's kv
//! namespace when its files are removed from a plugin directory (the data
//! directory is left for the operator).

use std::path::PathBuf;

use super::Host;
use crate::error::{Error, Result};
use crate::manifest::PluginName;

impl Host {
    /// Uninstalls a plugin: unloads it if it is loaded (as [`Host::unload`]),
    /// then removes its kv namespace and its data directory. Works for a
    /// plugin that is no longer loaded too (to clean up after one whose files
    /// are gone). Fails only when `name` is not a valid plugin name or the data
    /// directory cannot be removed.
    pub async fn uninstall(&self, name: &str) -> Result<()> {
        let valid: PluginName = name.parse().map_err(|_: String| Error::NotFound(name.to_string()))?;
        let data_dir = self.data_dir_of(valid.as_str());
        if self.plugin(name).is_some() {
            self.unload(name).await?;
        }
        self.drop_kv(name).await;
        if let Some(dir) = data_dir {
            let shown = dir.clone();
            let removed = crate::blocking::run(move || match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await?;
            removed.map_err(|e| Error::io(&shown, e))?;
        }
        tracing::info!(plugin = name, "plugin uninstalled: kv namespace and data directory removed");
        Ok(())
    }

    /// The plugin's data directory: the one it was granted if it is loaded,
    /// else where the data root keeps it.
    fn data_dir_of(&self, name: &str) -> Option<PathBuf> {
        if let Some(p) = self.plugin(name)
            && let Some(dir) = p.capabilities().data_dir()
        {
            return Some(dir.to_path_buf());
        }
        self.inner.data_root.as_ref().map(|root| root.join(name))
    }

    /// Removes `name`'s kv namespace; a backend failure is logged.
    pub(crate) async fn drop_kv(&self, name: &str) {
        if let Err(e) = self.inner.kv.drop_namespace(name).await {
            tracing::warn!(plugin = name, "cannot remove the kv namespace: {e}");
        }
    }

    /// Removes `name`'s kv namespace in the background (hot reload found its
    /// files removed).
    pub(crate) fn forget_kv(&self, name: &str) {
        let host = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            host.drop_kv(&name).await;
            tracing::info!(plugin = name, "plugin files removed: kv namespace dropped");
        });
    }
}
