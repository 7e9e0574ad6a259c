//! The reload room's facade: the `Host` methods of hot reload (status,
//! events, reload, approve, enable/disable, the sync of plugin directories)
//! and of the watcher. The state and types they use live in
//! [`crate::reload`] and [`crate::watch`], which do not depend on `Host`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::broadcast;

use super::Host;
use crate::capability::{Capabilities, approval};
use crate::error::{Error, Result};
use crate::loader::{self, DiscoveryProblem};
use crate::plugin::{LoadedPlugin, PluginSource};
use crate::reload::{
    CapabilityDiff, DRAIN_LIMIT, Discovered, LastError, LoadFailure, Pending, PendingUpgrade, PluginEvent,
    PluginEventKind, PluginState, PluginStates, PluginStatus, Record, ReloadOutcome, ReloadReport, Step, SyncOptions,
    normalize, settle, source_at_key, source_key, touches,
};
use crate::watch::{Batch, WatchOptions, Watcher};

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
                    source: Some(source_key(&p.source)),
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

    /// Re-reads a plugin directory and applies what changed: new plugins are
    /// loaded (or held for approval, see
    /// [`HostBuilder::require_approval_for_new_plugins`](crate::HostBuilder::require_approval_for_new_plugins)),
    /// changed ones reloaded (validate, then swap), removed ones unloaded. Unchanged plugins are left alone. What `SIGHUP` does in
    /// `plugbox serve`; also for hosts that run without a watcher.
    ///
    /// The directory's state file is read again too, so disable, enable and
    /// approve done by another process (`plugbox disable` ...) take effect.
    pub async fn reload_dir(&self, dir: &Path) -> Result<ReloadReport> {
        let _guard = self.inner.reload.sync.lock().await;
        self.refuse_root_writable_by_plugins(dir)?;
        let initial = self.inner.reload.add_root(dir);
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        if let Some(state) = self.inner.reload.state_path(Some(&root)) {
            self.apply_state_file(&state).await;
        }
        self.sync_root(&root, None, &SyncOptions { initial, ..Default::default() }).await
    }

    /// Refuses `dir` as a new plugin root when a loaded (or pending) plugin
    /// holds a read-write grant that overlaps it: grants are checked against
    /// the roots known at load, so a root added later is checked against the
    /// grants already made.
    pub(crate) fn refuse_root_writable_by_plugins(&self, dir: &Path) -> Result<()> {
        let root = crate::capability::canonical_lenient(dir);
        if self.inner.reload.roots().contains(&root) {
            return Ok(());
        }
        let pending: Vec<Arc<LoadedPlugin>> =
            self.inner.reload.pending.lock().values().map(|p| p.plugin.clone()).collect();
        for plugin in self.snapshot().plugins.values().chain(pending.iter()) {
            let writable = plugin.caps.preopens.iter().filter(|p| p.access == crate::manifest::FsAccess::ReadWrite);
            for p in writable {
                if p.host.starts_with(&root) || root.starts_with(&p.host) {
                    return Err(Error::Component {
                        plugin: plugin.name().to_string(),
                        message: format!(
                            "may write `{}`, which overlaps `{}`: refusing it as a plugin directory \
                             (rule: no escalation)",
                            p.host.display(),
                            root.display()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Reloads every plugin directory of this host (see [`Host::reload_dir`]).
    pub async fn reload_all(&self) -> Result<ReloadReport> {
        let mut report = ReloadReport::default();
        for root in self.inner.reload.roots() {
            let r = self.reload_dir(&root).await?;
            report.changes.extend(r.changes);
            report.failed.extend(r.failed);
        }
        Ok(report)
    }

    /// Reloads one plugin from its files now, even if they did not change.
    /// On failure the old version keeps serving and the error is returned
    /// (and recorded, and sent as an event).
    pub async fn reload_plugin(&self, name: &str) -> Result<ReloadOutcome> {
        let _guard = self.inner.reload.sync.lock().await;
        let key = self.key_of(name).ok_or_else(|| Error::NotFound(name.to_string()))?;
        let source = source_at_key(&key);
        let opts = SyncOptions { force: true, ..Default::default() };
        self.sync_key(&key, source.as_ref(), &opts).await
    }

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

    /// Disables `name`: it is unloaded (requests already running finish on
    /// it) and stays unloaded, across restarts, until [`Host::enable`]. The
    /// flag is stored in the state file of the plugin's directory.
    pub async fn disable(&self, name: &str) -> Result<()> {
        let _guard = self.inner.reload.sync.lock().await;
        let path = self.state_file_for(name)?;
        PluginStates::update(&path, |s| {
            s.disabled.insert(name.to_string());
        })?;
        let mut names = self.inner.reload.disabled_in(&path);
        names.insert(name.to_string());
        self.inner.reload.set_disabled_cache(&path, names);
        self.apply_disabled(name);
        Ok(())
    }

    /// Enables `name` again and loads it from its files.
    pub async fn enable(&self, name: &str) -> Result<Option<ReloadOutcome>> {
        let _guard = self.inner.reload.sync.lock().await;
        let path = self.state_file_for(name)?;
        PluginStates::update(&path, |s| {
            s.disabled.remove(name);
        })?;
        let mut names = self.inner.reload.disabled_in(&path);
        names.remove(name);
        self.inner.reload.set_disabled_cache(&path, names);
        self.apply_enabled(name).await
    }

    /// Whether `name` is disabled.
    pub fn is_disabled(&self, name: &str) -> bool {
        let key = self.key_of(name);
        self.inner.reload.state_path(key.as_deref()).is_some_and(|p| self.inner.reload.disabled_in(&p).contains(name))
    }

    fn state_file_for(&self, name: &str) -> Result<PathBuf> {
        let key = self.key_of(name);
        self.inner.reload.state_path(key.as_deref()).ok_or_else(|| match key {
            Some(_) => Error::NoStateFile(name.to_string()),
            None => Error::NotFound(name.to_string()),
        })
    }

    /// The source key of `name`: loaded, pending, or remembered.
    pub(crate) fn key_of(&self, name: &str) -> Option<PathBuf> {
        if let Some(p) = self.plugin(name) {
            return Some(source_key(&p.source));
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
        self.snapshot().plugins.values().find(|p| source_key(&p.source) == key).cloned()
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

impl Host {
    /// Loads one plugin found by `load_dir`, unless it is disabled.
    pub(crate) async fn load_discovered(&self, source: &PluginSource) -> Result<Discovered> {
        let started = Instant::now();
        let key = source_key(source);
        let read = Self::read(source).await?;
        let name = read.manifest.name.as_str().to_string();
        if self.inner.reload.is_disabled(&name, &key) {
            self.remember(&name, &key, true);
            tracing::info!(plugin = %name, "disabled: not loading it");
            return Ok(Discovered::Disabled(name));
        }
        let plugin = self.prepare_read(read, started).await?;
        if let Err(e) = self.install(&plugin, &[]) {
            plugin.shutdown().await;
            return Err(e);
        }
        Ok(Discovered::Loaded(plugin))
    }

    /// Registers `plugin` in place of the plugins named in `replacing`
    /// (atomically, with the name, provider-type and count checks), records
    /// it and reports it. Returns the plugins it replaced.
    pub(crate) fn install(&self, plugin: &Arc<LoadedPlugin>, replacing: &[String]) -> Result<Vec<Arc<LoadedPlugin>>> {
        let max = self.inner.pipeline.max_plugins;
        let removed = self.inner.registry.update(|plugins| {
            crate::registry::check_admission(plugins, plugin, replacing, max)?;
            let removed: Vec<_> = replacing.iter().filter_map(|n| plugins.remove(n)).collect();
            plugins.insert(plugin.name().to_string(), plugin.clone());
            Ok::<_, Error>(removed)
        })?;
        let name = plugin.name();
        self.remember(name, &source_key(&plugin.source), false);
        let version = plugin.manifest.version.clone();
        tracing::info!(
            plugin = name,
            version = %version,
            load_ms = plugin.load_time.as_secs_f64() * 1000.0,
            source = ?plugin.compile_source,
            "plugin loaded"
        );
        match removed.iter().find(|old| old.name() == name) {
            Some(old) => self.emit(
                name,
                PluginEventKind::Reloaded {
                    old_version: old.manifest.version.clone(),
                    new_version: version,
                    permissions: CapabilityDiff::between(&old.caps, &plugin.caps),
                },
            ),
            None => self.emit(name, PluginEventKind::Loaded { version, source: source_key(&plugin.source) }),
        }
        for old in removed.iter().filter(|old| old.name() != name) {
            self.emit(old.name(), PluginEventKind::Unloaded { version: old.manifest.version.clone() });
        }
        Ok(removed)
    }

    /// Remembers where `name` comes from; clears its last error.
    fn remember(&self, name: &str, key: &Path, disabled: bool) {
        self.inner
            .reload
            .records
            .lock()
            .insert(name.to_string(), Record { key: key.to_path_buf(), last_error: None, disabled });
    }

    /// Shuts `plugin` down once no request holds it any more (or after
    /// [`DRAIN_LIMIT`]), in the background, then reports it drained.
    pub(crate) fn retire(&self, plugin: Arc<LoadedPlugin>) {
        let host = Arc::downgrade(&self.inner);
        let (name, version) = (plugin.name().to_string(), plugin.manifest.version.clone());
        tokio::spawn(async move {
            if !plugin.drain(DRAIN_LIMIT).await {
                tracing::warn!(plugin = %name, "still in use after {DRAIN_LIMIT:?}: shut down its idle instances");
            }
            if let Some(inner) = host.upgrade() {
                Host { inner }.emit(&name, PluginEventKind::Drained { version });
            }
        });
    }

    /// Unloads `name` for good (disabled, or its files are gone): new requests
    /// no longer see it, running ones finish, then it is shut down.
    fn retire_by_name(&self, name: &str) -> bool {
        let removed = self.inner.registry.update(|plugins| plugins.remove(name));
        if let Some(p) = self.inner.reload.pending.lock().remove(name) {
            self.retire(p.plugin);
        }
        match removed {
            Some(p) => {
                self.emit(name, PluginEventKind::Unloaded { version: p.manifest.version.clone() });
                self.retire(p);
                true
            }
            None => false,
        }
    }

    /// Re-reads the plugins under `root` whose files any of `touched` concerns
    /// (all of them when `None`) and applies what changed.
    pub(crate) async fn sync_root(
        &self,
        root: &Path,
        touched: Option<&[PathBuf]>,
        base: &SyncOptions,
    ) -> Result<ReloadReport> {
        let mut report = ReloadReport::default();
        let (sources, problems) = match loader::discover(root) {
            Ok(found) => found,
            Err(_) if !root.exists() => (Vec::new(), Vec::new()), // the whole directory went away
            Err(e) => return Err(e),
        };
        let present: BTreeMap<PathBuf, PluginSource> = sources.into_iter().map(|s| (source_key(&s), s)).collect();
        let mut known: BTreeSet<PathBuf> = present.keys().cloned().collect();
        known.extend(self.snapshot().plugins.values().map(|p| source_key(&p.source)));
        known.extend(self.inner.reload.records.lock().values().map(|r| r.key.clone()));
        known.extend(self.inner.reload.pending.lock().values().map(|p| p.key.clone()));
        let affected: Vec<PathBuf> = known
            .into_iter()
            .filter(|k| k.starts_with(root) && self.inner.reload.root_of(k).as_deref() == Some(root))
            .filter(|k| touched.is_none_or(|paths| paths.iter().any(|p| touches(p, k))))
            .collect();
        let mut opts = base.clone();
        opts.vacated = affected.iter().filter(|k| !present.contains_key(*k)).cloned().collect();
        // Present files first, removals after: a plugin whose files moved
        // (same name, new place) replaces its old version in one swap instead
        // of being unloaded and loaded again.
        let order = affected
            .iter()
            .filter(|k| present.contains_key(*k))
            .chain(affected.iter().filter(|k| !present.contains_key(*k)));
        for key in order {
            let source = present.get(key);
            let before = self.name_after(key);
            match self.sync_key(key, source, &opts).await {
                Ok(ReloadOutcome::Unchanged) if source.is_none() => {} // nothing was loaded from there
                Ok(outcome) => {
                    let name = self.name_after(key).or(before).unwrap_or_else(|| self.name_hint(key));
                    report.changes.push((name, outcome));
                }
                Err(error) => {
                    let path = source.map(|s| s.component.clone()).unwrap_or_else(|| key.clone());
                    report.failed.push(LoadFailure { path, error });
                }
            }
        }
        for DiscoveryProblem { path, message } in problems {
            if touched.is_some_and(|paths| !paths.contains(&normalize(&path))) {
                continue;
            }
            let error =
                Error::Manifest(crate::manifest::ManifestError::Invalid { path: path.clone(), line: None, message });
            report.failed.push(LoadFailure { path, error });
        }
        Ok(report)
    }

    /// The plugin name now associated with `key`, if any.
    fn name_after(&self, key: &Path) -> Option<String> {
        if let Some(p) = self.loaded_at(key) {
            return Some(p.name().to_string());
        }
        self.inner.reload.records.lock().iter().find(|(_, r)| r.key == key).map(|(n, _)| n.clone())
    }

    /// Brings the plugin at `key` in line with its files: `source` is what is
    /// there now (`None`: nothing any more).
    #[tracing::instrument(name = "plugbox.reload", skip_all, fields(path = %key.display()))]
    pub(crate) async fn sync_key(
        &self,
        key: &Path,
        source: Option<&PluginSource>,
        opts: &SyncOptions,
    ) -> Result<ReloadOutcome> {
        let current = self.loaded_at(key);
        let Some(source) = source else {
            return Ok(self.remove_key(key, current));
        };
        let mut attempt = 0;
        let mut restarts = 0;
        let mut last_stamp = None;
        loop {
            let stamp = match &opts.settle {
                Some(s) => Some(settle::wait_stable(source, s).await),
                None => None,
            };
            if stamp != last_stamp {
                attempt = 0; // the files changed since the last try: they were still being written
            }
            last_stamp = stamp.clone();
            let mut name = None;
            match self.build(key, source, current.as_ref(), opts, &mut name).await {
                Ok(Step::Done(outcome)) => return Ok(outcome),
                Ok(Step::Built(plugin)) => {
                    if let Some(s) = &stamp
                        && settle::stamp(source) != *s
                        && restarts < 20
                    {
                        // Changed while we read and built it: build the final state instead.
                        restarts += 1;
                        plugin.shutdown().await;
                        continue;
                    }
                    return self.swap_in(key, plugin, current, opts).await;
                }
                Err(e) => match &opts.settle {
                    Some(s) if settle::maybe_partial(&e) && attempt < s.retries => {
                        attempt += 1;
                        tracing::debug!(path = %key.display(), attempt, "not loadable yet, may still be being written: {e}");
                        tokio::time::sleep(s.interval * 2u32.pow(attempt)).await;
                    }
                    _ => {
                        self.record_failure(key, name.as_deref(), &source.component, &e);
                        return Err(e);
                    }
                },
            }
        }
    }

    /// Reads the files at `key` and, unless nothing is to be done, prepares
    /// the new version (compiled, linked, checked, initialised).
    async fn build(
        &self,
        key: &Path,
        source: &PluginSource,
        current: Option<&Arc<LoadedPlugin>>,
        opts: &SyncOptions,
        name_out: &mut Option<String>,
    ) -> Result<Step> {
        let started = Instant::now();
        let read = Self::read(source).await?;
        let name = read.manifest.name.as_str().to_string();
        *name_out = Some(name.clone());
        if self.inner.reload.is_disabled(&name, key) {
            if let Some(cur) = current {
                self.retire_by_name(cur.name());
            }
            self.remember(&name, key, true);
            return Ok(Step::Done(ReloadOutcome::Disabled));
        }
        if !opts.force {
            if let Some(cur) = current
                && cur.name() == name
                && cur.fingerprint == read.fingerprint
            {
                // Back to the serving version: an upgrade waiting for approval is moot.
                if let Some(p) = self.inner.reload.pending.lock().remove(&name) {
                    self.retire(p.plugin);
                }
                return Ok(Step::Done(ReloadOutcome::Unchanged));
            }
            if self.inner.reload.pending.lock().get(&name).is_some_and(|p| p.plugin.fingerprint == read.fingerprint) {
                return Ok(Step::Done(ReloadOutcome::PendingApproval));
            }
        }
        Ok(Step::Built(self.prepare_read(read, started).await?))
    }

    /// Swaps a prepared new version in (or holds it for approval).
    async fn swap_in(
        &self,
        key: &Path,
        plugin: Arc<LoadedPlugin>,
        current: Option<Arc<LoadedPlugin>>,
        opts: &SyncOptions,
    ) -> Result<ReloadOutcome> {
        let name = plugin.name().to_string();
        let mut replacing = Vec::new();
        let existing = self.plugin(&name);
        if let Some(ex) = &existing {
            let ex_key = source_key(&ex.source);
            if ex_key == key || opts.vacated.contains(&ex_key) || !ex_key.exists() {
                replacing.push(name.clone());
            }
        }
        if let Some(cur) = &current
            && cur.name() != name
        {
            replacing.push(cur.name().to_string()); // the manifest renamed the plugin
        }
        let old = existing.filter(|_| replacing.contains(&name));
        let fresh = old.is_none() && current.is_none();
        if fresh {
            if let Some(outcome) = self.hold_new(key, &plugin, opts) {
                return Ok(outcome);
            }
        } else if let Some(base) = old.as_ref().or(current.as_ref()) {
            // An upgrade, or the same files under a new name: compared with what served.
            let mut permissions = CapabilityDiff::between(&base.caps, &plugin.caps);
            if base.name() != name {
                // A new name is a new identity (kv namespace, data directory, policy section).
                let to = name.clone();
                permissions.added.insert(0, crate::capability::Grant::Name { from: base.name().to_string(), to });
            }
            let uncovered = approval::uncovered(&self.inner.policy.approval, &name, &permissions.added);
            if self.inner.reload.options.require_approval
                && !uncovered.is_empty()
                && !self.consume_approval(&name, key, &plugin.fingerprint)
            {
                let (old_version, new_version) = (base.manifest.version.clone(), plugin.manifest.version.clone());
                self.hold(&name, Pending { plugin, key: key.to_path_buf(), permissions: permissions.clone() });
                self.emit(&name, PluginEventKind::ApprovalRequired { old_version, new_version, permissions });
                return Ok(ReloadOutcome::PendingApproval);
            }
        }
        match self.install(&plugin, &replacing) {
            Ok(removed) => {
                if let Some(p) = self.inner.reload.pending.lock().remove(&name) {
                    self.retire(p.plugin);
                }
                for r in removed {
                    self.retire(r);
                }
                Ok(match old {
                    Some(old) => ReloadOutcome::Reloaded {
                        old_version: old.manifest.version.clone(),
                        new_version: plugin.manifest.version.clone(),
                    },
                    None => ReloadOutcome::Loaded { version: plugin.manifest.version.clone() },
                })
            }
            Err(e) => {
                plugin.shutdown().await;
                self.record_failure(key, Some(&name), &plugin.source.component, &e);
                Err(e)
            }
        }
    }

    /// Holds `plugin`, which appeared at run time, for approval, unless this
    /// load was asked for (first load of the directory, enable), the host does
    /// not require it, the policy approves all its grants ahead, or the state
    /// file approves these exact files. Returns the outcome when held.
    fn hold_new(&self, key: &Path, plugin: &Arc<LoadedPlugin>, opts: &SyncOptions) -> Option<ReloadOutcome> {
        let name = plugin.name();
        if opts.initial || opts.enabling.as_deref() == Some(name) || !self.inner.reload.options.require_approval_new {
            return None;
        }
        let permissions = CapabilityDiff::between(&Capabilities::none(), &plugin.caps);
        if approval::approves_new(&self.inner.policy.approval, name, &permissions.added)
            || self.consume_approval(name, key, &plugin.fingerprint)
        {
            return None;
        }
        let version = plugin.manifest.version.clone();
        self.hold(name, Pending { plugin: plugin.clone(), key: key.to_path_buf(), permissions: permissions.clone() });
        self.emit(name, PluginEventKind::HeldForApproval { version, source: key.to_path_buf(), permissions });
        Some(ReloadOutcome::PendingApproval)
    }

    /// Keeps `pending` waiting for approval (in place of an older one waiting).
    fn hold(&self, name: &str, pending: Pending) {
        let previous = self.inner.reload.pending.lock().insert(name.to_string(), pending);
        if let Some(p) = previous {
            self.retire(p.plugin);
        }
    }

    /// Whether the state file holds an approval of exactly these files
    /// (`plugbox approve`); if so, it is used up.
    fn consume_approval(&self, name: &str, key: &Path, fingerprint: &[u8; 32]) -> bool {
        let Some(path) = self.inner.reload.state_path(Some(key)) else { return false };
        let wanted = hex::encode(fingerprint);
        let mut used = false;
        let result = PluginStates::update(&path, |s| {
            if s.approved.get(name) == Some(&wanted) {
                s.approved.remove(name);
                used = true;
            }
        });
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

    /// The files at `key` are gone: unload what was loaded from them, forget
    /// failures recorded for them.
    fn remove_key(&self, key: &Path, current: Option<Arc<LoadedPlugin>>) -> ReloadOutcome {
        let stale: Vec<String> =
            self.inner.reload.pending.lock().iter().filter(|(_, p)| p.key == key).map(|(n, _)| n.clone()).collect();
        for name in stale {
            if let Some(p) = self.inner.reload.pending.lock().remove(&name) {
                self.retire(p.plugin);
            }
        }
        self.inner.reload.records.lock().retain(|_, r| r.key != key);
        match current {
            Some(p) => {
                self.retire_by_name(p.name());
                // Files removed: the plugin is gone, and so are its kv keys.
                self.forget_kv(p.name());
                ReloadOutcome::Unloaded
            }
            None => ReloadOutcome::Unchanged,
        }
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
                let source = source_at_key(&key);
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
        let states = match PluginStates::load(path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("ignoring the changed state file: {e}");
                return;
            }
        };
        let now = states.disabled;
        let before = self.inner.reload.set_disabled_cache(path, now.clone());
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
            if hex::encode(fp) == fingerprint && self.consume_approval(&name, &key, &fp) {
                let Some(pending) = self.inner.reload.pending.lock().remove(&name) else { continue };
                if let Err(e) = self.swap_approved(pending).await {
                    tracing::warn!(plugin = %name, "approved, but cannot swap it in: {e}");
                }
            }
        }
    }
}

impl Host {
    /// Loads the plugins of `dir` and keeps the host in line with it as files
    /// change, with [`WatchOptions::default`]. See [`crate::watch`].
    pub async fn watch(&self, dir: &Path) -> Result<Watcher> {
        Watcher::start(self, dir, WatchOptions::default()).await
    }

    /// Applies one batch of a watcher: changed state files, then the plugins
    /// the changed paths concern.
    async fn apply_watch_batch(&self, batch: Batch, sync: &SyncOptions) {
        let _guard = self.inner.reload.sync.lock().await;
        for file in &batch.state_files {
            self.apply_state_file(file).await;
        }
        if batch.touched.as_ref().is_some_and(|t| t.is_empty()) {
            return;
        }
        let root = &batch.root;
        match self.sync_root(root, batch.touched.as_deref(), sync).await {
            Ok(report) => {
                for (name, outcome) in &report.changes {
                    tracing::debug!(plugin = %name, ?outcome, "watch");
                }
                for f in report.failed.iter().filter(|f| matches!(f.error, Error::Manifest(_))) {
                    tracing::debug!("{f}");
                }
            }
            Err(e) => tracing::warn!(dir = %root.display(), "cannot rescan: {e}"),
        }
    }
}

impl Watcher {
    /// Starts watching `dir` (recursively), then loads or reloads what is in
    /// it, so no change made meanwhile is missed. Plugins already loaded from
    /// `dir` whose files did not change are left alone.
    pub async fn start(host: &Host, dir: &Path, options: WatchOptions) -> Result<Watcher> {
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let (watching, queue) = Watcher::begin(&root, options)?;
        let initial = host.reload_dir(&root).await?;
        let sync = crate::watch::sync_options(&options);
        let state_host = host.clone();
        let apply_host = host.clone();
        Ok(Watcher::spawn(
            root,
            watching,
            queue,
            initial,
            move |p| state_host.inner.reload.is_state_file(p),
            move |batch| {
                let (host, sync) = (apply_host.clone(), sync.clone());
                async move { host.apply_watch_batch(batch, &sync).await }
            },
        ))
    }
}
