//! What the host knows of its plugins, as operators see it: events,
//! statuses, the records of where each plugin comes from and of its last
//! failure. The state and types live in [`crate::reload`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::Host;
use crate::error::Error;
use crate::plugin::LoadedPlugin;
use crate::reload::{LastError, PendingUpgrade, PluginEvent, PluginEventKind, PluginState, PluginStatus, Record};

impl Host {
    /// Plugin events (loaded, reloaded, failed, unloaded, drained, disabled,
    /// enabled, approval required) from now on. A receiver that falls more
    /// than [`EVENT_CAPACITY`](crate::reload::EVENT_CAPACITY) events behind misses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<PluginEvent> {
        self.inner.reload.events.subscribe()
    }

    /// Sends an event to subscribers and logs it.
    pub(crate) fn emit(&self, plugin: &str, kind: PluginEventKind) {
        let event = PluginEvent::now(plugin, kind);
        match &event.kind {
            PluginEventKind::Failed { .. } => tracing::error!(plugin, "{event}"),
            PluginEventKind::ApprovalRequired { .. }
            | PluginEventKind::HeldForApproval { .. }
            | PluginEventKind::Quarantined { .. } => {
                tracing::warn!(plugin, "{event}")
            }
            PluginEventKind::Reloaded { permissions, .. } if permissions.escalates() => {
                tracing::warn!(plugin, "{event}")
            }
            _ => tracing::info!(plugin, "{event}"),
        }
        let _ = self.inner.reload.events.send(event);
    }

    /// Every plugin the host knows of: loaded ones, disabled ones, and ones
    /// that failed to load, with version, load time and last error, by name.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let snapshot = self.snapshot();
        let records = self.inner.reload.records.lock().clone();
        let pending = self.inner.reload.pending.lock();
        let mut out: BTreeMap<String, PluginStatus> = BTreeMap::new();
        for p in snapshot.plugins.values() {
            out.insert(
                p.name().to_string(),
                PluginStatus {
                    name: p.name().to_string(),
                    state: PluginState::Active,
                    version: Some(p.manifest.version.clone()),
                    source: Some(p.source_key.clone()),
                    loaded_at: Some(p.loaded_at),
                    load_time: Some(p.load_time),
                    last_error: None,
                    pending: None,
                },
            );
        }
        for (name, r) in records {
            let status = out.entry(name.clone()).or_insert_with(|| PluginStatus {
                name: name.clone(),
                state: if r.disabled { PluginState::Disabled } else { PluginState::Failed },
                version: None,
                source: Some(r.key.clone()),
                loaded_at: None,
                load_time: None,
                last_error: None,
                pending: None,
            });
            status.last_error = r.last_error;
        }
        for (name, p) in pending.iter() {
            let s = out.entry(name.clone()).or_insert_with(|| PluginStatus {
                name: name.clone(),
                state: PluginState::Pending,
                version: None,
                source: Some(p.key.clone()),
                loaded_at: None,
                load_time: None,
                last_error: None,
                pending: None,
            });
            if s.state == PluginState::Failed {
                s.state = PluginState::Pending;
            }
            s.pending =
                Some(PendingUpgrade { version: p.plugin.manifest.version.clone(), permissions: p.permissions.clone() });
        }
        out.into_values().collect()
    }

    /// The status of one plugin (see [`Host::statuses`]).
    pub fn status(&self, name: &str) -> Option<PluginStatus> {
        self.statuses().into_iter().find(|s| s.name == name)
    }

    /// The source key of `name`: loaded, pending, or remembered.
    pub(crate) fn key_of(&self, name: &str) -> Option<PathBuf> {
        if let Some(p) = self.plugin(name) {
            return Some(p.source_key.clone());
        }
        if let Some(p) = self.inner.reload.pending.lock().get(name) {
            return Some(p.key.clone());
        }
        self.inner.reload.records.lock().get(name).map(|r| r.key.clone())
    }

    /// The name to report for the plugin at `key` when its manifest gives none.
    pub(crate) fn name_hint(&self, key: &Path) -> String {
        if let Some(p) = self.loaded_at(key) {
            return p.name().to_string();
        }
        if let Some((name, _)) = self.inner.reload.records.lock().iter().find(|(_, r)| r.key == key) {
            return name.clone();
        }
        key.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| key.display().to_string())
    }

    /// The loaded plugin whose files are at `key`.
    pub(crate) fn loaded_at(&self, key: &Path) -> Option<Arc<LoadedPlugin>> {
        self.snapshot().plugins.values().find(|p| p.source_key == key).cloned()
    }

    /// Records a failure to load the plugin at `key` and reports it.
    pub(crate) fn record_failure(&self, key: &Path, name: Option<&str>, path: &Path, error: &Error) -> String {
        let name = name.map(str::to_string).or_else(|| error_plugin_name(error)).unwrap_or_else(|| self.name_hint(key));
        let serving = self.plugin(&name).map(|p| p.manifest.version.clone());
        let last = LastError { at: SystemTime::now(), path: path.to_path_buf(), message: error.to_string() };
        let mut records = self.inner.reload.records.lock();
        let record = records.entry(name.clone()).or_insert_with(|| Record {
            key: key.to_path_buf(),
            last_error: None,
            disabled: false,
        });
        record.last_error = Some(last);
        drop(records);
        self.emit(&name, PluginEventKind::Failed { path: path.to_path_buf(), error: error.to_string(), serving });
        name
    }

    /// Remembers where `name` comes from; clears its last error.
    pub(super) fn remember(&self, name: &str, key: &Path, disabled: bool) {
        self.inner
            .reload
            .records
            .lock()
            .insert(name.to_string(), Record { key: key.to_path_buf(), last_error: None, disabled });
    }
}

/// The plugin an error names, if it names one.
fn error_plugin_name(e: &Error) -> Option<String> {
    match e {
        Error::Component { plugin, .. } | Error::Init { plugin, .. } | Error::TooManyPlugins { plugin, .. } => {
            Some(plugin.clone())
        }
        Error::Plugin(f) => Some(f.plugin.clone()),
        _ => None,
    }
}
