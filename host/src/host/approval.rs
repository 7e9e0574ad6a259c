//! Approval: plugins that appeared at run time and new versions that gain
//! grants wait here for the operator (or the policy's `approval` section, or
//! an approval recorded in the state file) before they serve.

use std::path::Path;
use std::sync::Arc;

use super::Host;
use crate::blocking;
use crate::capability::{Capabilities, approval};
use crate::error::{Error, Result};
use crate::plugin::LoadedPlugin;
use crate::reload::{
    CapabilityDiff, Pending, PendingUpgrade, PluginEventKind, PluginStates, ReloadOutcome, SyncOptions,
};

impl Host {
    /// The plugins and upgrades waiting for approval: plugin name and what the
    /// new version gains (for a plugin that appeared at run time: everything
    /// it would be granted).
    pub fn pending_approvals(&self) -> Vec<(String, PendingUpgrade)> {
        self.inner
            .reload
            .pending
            .lock()
            .iter()
            .map(|(n, p)| {
                (
                    n.clone(),
                    PendingUpgrade { version: p.plugin.manifest.version.clone(), permissions: p.permissions.clone() },
                )
            })
            .collect()
    }

    /// Swaps in the new version of `name` that waits for approval because it
    /// is granted more than the version it replaces, or loads the plugin
    /// `name` that appeared at run time and waits for approval.
    pub async fn approve(&self, name: &str) -> Result<ReloadOutcome> {
        let _guard = self.inner.reload.sync.lock().await;
        let pending =
            self.inner.reload.pending.lock().remove(name).ok_or_else(|| Error::NotPending(name.to_string()))?;
        tracing::info!(plugin = name, "approved: {}", pending.permissions);
        self.swap_approved(pending).await
    }

    /// Holds `plugin`, which appeared at run time, for approval, unless this
    /// load was asked for (first load of the directory, enable), the host does
    /// not require it, the policy approves all its grants ahead, or the state
    /// file approves these exact files. Returns the outcome when held.
    pub(super) async fn hold_new(
        &self,
        key: &Path,
        plugin: &Arc<LoadedPlugin>,
        opts: &SyncOptions,
    ) -> Option<ReloadOutcome> {
        let name = plugin.name();
        if opts.initial || opts.enabling.as_deref() == Some(name) || !self.inner.reload.options.require_approval_new {
            return None;
        }
        let permissions = CapabilityDiff::between(&Capabilities::none(), &plugin.caps);
        // The policy's directories are canonicalised: on the blocking pool.
        let (inner, plugin_name, added) = (self.inner.clone(), name.to_string(), permissions.added.clone());
        let approved = blocking::run(move || approval::approves_new(&inner.policy.approval, &plugin_name, &added));
        if approved.await.unwrap_or(false) || self.consume_approval(name, key, &plugin.fingerprint).await {
            return None;
        }
        let version = plugin.manifest.version.clone();
        self.hold(name, Pending { plugin: plugin.clone(), key: key.to_path_buf(), permissions: permissions.clone() });
        self.emit(name, PluginEventKind::HeldForApproval { version, source: key.to_path_buf(), permissions });
        Some(ReloadOutcome::PendingApproval)
    }

    /// Keeps `pending` waiting for approval (in place of an older one waiting).
    pub(super) fn hold(&self, name: &str, pending: Pending) {
        let previous = self.inner.reload.pending.lock().insert(name.to_string(), pending);
        if let Some(p) = previous {
            self.retire(p.plugin);
        }
    }

    /// Whether the state file holds an approval of exactly these files
    /// (`plugbox approve`); if so, it is used up.
    pub(super) async fn consume_approval(&self, name: &str, key: &Path, fingerprint: &[u8; 32]) -> bool {
        let Some(path) = self.inner.reload.state_path(Some(key)) else { return false };
        let (file, plugin, wanted) = (path.clone(), name.to_string(), hex::encode(fingerprint));
        let updated = blocking::run(move || {
            let mut used = false;
            let result = PluginStates::update(&file, |s| {
                if s.approved.get(&plugin) == Some(&wanted) {
                    s.approved.remove(&plugin);
                    used = true;
                }
            });
            (used, result)
        })
        .await;
        let (used, result) = match updated {
            Ok((used, result)) => (used, result.map(|_| ())),
            Err(e) => (false, Err(e)),
        };
        if let Err(e) = result {
            tracing::warn!(plugin = name, "cannot update the state file: {e}");
        }
        if used {
            tracing::info!(plugin = name, "approved ahead in `{}`", path.display());
        }
        used
    }

    /// Swaps in an approved upgrade.
    pub(crate) async fn swap_approved(&self, pending: Pending) -> Result<ReloadOutcome> {
        let name = pending.plugin.name().to_string();
        let old = self.plugin(&name);
        let mut replacing = if old.is_some() { vec![name.clone()] } else { Vec::new() };
        if let Some(renamed) = self.loaded_at(&pending.key).filter(|p| p.name() != name) {
            replacing.push(renamed.name().to_string()); // its files now name it `name`
        }
        match self.install(&pending.plugin, &replacing) {
            Ok(removed) => {
                for r in removed {
                    self.retire(r);
                }
                let new_version = pending.plugin.manifest.version.clone();
                Ok(match old {
                    Some(old) => ReloadOutcome::Reloaded { old_version: old.manifest.version.clone(), new_version },
                    None => ReloadOutcome::Loaded { version: new_version },
                })
            }
            Err(e) => {
                self.record_failure(&pending.key, Some(&name), &pending.plugin.source.component, &e);
                self.retire(pending.plugin);
                Err(e)
            }
        }
    }
}
