//! Disabling and enabling plugins: the flag kept in a plugin directory's
//! state file, applied at once and when another process changes the file.

use std::path::{Path, PathBuf};

use super::Host;
use crate::blocking;
use crate::error::{Error, Result};
use crate::reload::{PluginEventKind, PluginStates, ReloadOutcome, SyncOptions, source_at_key};

impl Host {
    /// Disables `name`: it is unloaded (requests already running finish on
    /// it) and stays unloaded, across restarts, until [`Host::enable`]. The
    /// flag is stored in the state file of the plugin's directory.
    pub async fn disable(&self, name: &str) -> Result<()> {
        let _guard = self.inner.reload.sync.lock().await;
        let path = self.state_file_for(name)?;
        let (file, plugin) = (path.clone(), name.to_string());
        blocking::run(move || {
            PluginStates::update(&file, |s| {
                s.disabled.insert(plugin);
            })
        })
        .await??;
        let mut names = self.inner.reload.disabled_names(&path).await;
        names.insert(name.to_string());
        self.inner.reload.set_disabled_cache(&path, names).await;
        self.apply_disabled(name);
        Ok(())
    }

    /// Enables `name` again and loads it from its files.
    pub async fn enable(&self, name: &str) -> Result<Option<ReloadOutcome>> {
        let _guard = self.inner.reload.sync.lock().await;
        let path = self.state_file_for(name)?;
        let (file, plugin) = (path.clone(), name.to_string());
        blocking::run(move || {
            PluginStates::update(&file, |s| {
                s.disabled.remove(&plugin);
            })
        })
        .await??;
        let mut names = self.inner.reload.disabled_names(&path).await;
        names.remove(name);
        self.inner.reload.set_disabled_cache(&path, names).await;
        self.apply_enabled(name).await
    }

    /// Whether `name` is disabled. Synchronous: it reads the state file only
    /// if no async method of the host has read it yet.
    pub fn is_disabled(&self, name: &str) -> bool {
        let key = self.key_of(name);
        self.inner.reload.state_path(key.as_deref()).is_some_and(|p| self.inner.reload.disabled_in(&p).contains(name))
    }

    pub(super) fn state_file_for(&self, name: &str) -> Result<PathBuf> {
        let key = self.key_of(name);
        self.inner.reload.state_path(key.as_deref()).ok_or_else(|| match key {
            Some(_) => Error::NoStateFile(name.to_string()),
            None => Error::NotFound(name.to_string()),
        })
    }

    /// `name` was just disabled: unload it.
    pub(crate) fn apply_disabled(&self, name: &str) {
        let key = self.key_of(name);
        self.retire_by_name(name);
        if let Some(key) = key {
            self.remember(name, &key, true);
        }
        self.emit(name, PluginEventKind::Disabled);
    }

    /// `name` was just enabled: load it from its files.
    pub(crate) async fn apply_enabled(&self, name: &str) -> Result<Option<ReloadOutcome>> {
        self.emit(name, PluginEventKind::Enabled);
        let enabling = SyncOptions { enabling: Some(name.to_string()), ..Default::default() };
        let key = self.key_of(name);
        if let Some(r) = self.inner.reload.records.lock().get_mut(name) {
            r.disabled = false;
        }
        match key {
            Some(key) => {
                let at = key.clone();
                let source = blocking::run(move || source_at_key(&at)).await?;
                self.sync_key(&key, source.as_ref(), &enabling).await.map(Some)
            }
            None => {
                // Never seen under this name: look through the plugin directories.
                for root in self.inner.reload.roots() {
                    let report = self.sync_root(&root, None, &enabling).await?;
                    if let Some((_, o)) = report.changes.into_iter().find(|(n, _)| n == name) {
                        return Ok(Some(o));
                    }
                }
                Ok(None)
            }
        }
    }

    /// A state file changed on disk (e.g. `plugbox disable` while the host
    /// runs): apply the difference.
    pub(crate) async fn apply_state_file(&self, path: &Path) {
        let file = path.to_path_buf();
        let states = match blocking::run(move || PluginStates::load(&file)).await.and_then(|loaded| loaded) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("ignoring the changed state file: {e}");
                return;
            }
        };
        let now = states.disabled;
        let before = self.inner.reload.set_disabled_cache(path, now.clone()).await;
        for name in now.difference(&before) {
            self.apply_disabled(name);
        }
        for name in before.difference(&now) {
            if let Err(e) = self.apply_enabled(name).await {
                tracing::warn!(plugin = %name, "enabled, but cannot load it: {e}");
            }
        }
        // Approvals of upgrades waiting here.
        for (name, fingerprint) in states.approved {
            let waiting = self.inner.reload.pending.lock().get(&name).map(|p| (p.key.clone(), p.plugin.fingerprint));
            let Some((key, fp)) = waiting else { continue };
            if hex::encode(fp) == fingerprint && self.consume_approval(&name, &key, &fp).await {
                let Some(pending) = self.inner.reload.pending.lock().remove(&name) else { continue };
                if let Err(e) = self.swap_approved(pending).await {
                    tracing::warn!(plugin = %name, "approved, but cannot swap it in: {e}");
                }
            }
        }
    }
}
