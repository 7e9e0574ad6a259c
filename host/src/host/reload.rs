//! The reload room's facade: bringing the registry in line with the plugin
//! directories (reload a directory, one plugin, or all; load, swap in,
//! retire). The state and types these methods use live in
//! [`crate::reload`], which does not depend on `Host`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::Host;
use crate::blocking;
use crate::capability::approval;
use crate::error::{Error, Result};
use crate::loader::{self, DiscoveryProblem};
use crate::plugin::{LoadedPlugin, PluginSource};
use crate::reload::{
    CapabilityDiff, DRAIN_LIMIT, Discovered, LoadFailure, Pending, PluginEventKind, ReloadOutcome, ReloadReport, Step,
    SyncOptions, normalize, settle, source_at_key, source_key, touches,
};

impl Host {
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
        let owned = dir.to_path_buf();
        let (lenient, canonical) =
            blocking::run(move || (crate::capability::canonical_lenient(&owned), owned.canonicalize())).await?;
        self.refuse_root_writable_by_plugins(&lenient)?;
        let initial = self.inner.reload.add_root(lenient);
        let root = canonical.map_err(|e| Error::io(dir, e))?;
        if let Some(state) = self.inner.reload.state_path(Some(&root)) {
            self.apply_state_file(&state).await;
        }
        self.sync_root(&root, None, &SyncOptions { initial, ..Default::default() }).await
    }

    /// Refuses `root` (canonical) as a new plugin root when a loaded (or
    /// pending) plugin holds a read-write grant that overlaps it: grants are
    /// checked against the roots known at load, so a root added later is
    /// checked against the grants already made.
    pub(crate) fn refuse_root_writable_by_plugins(&self, root: &Path) -> Result<()> {
        let root = root.to_path_buf();
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
        let at = key.clone();
        let source = blocking::run(move || source_at_key(&at)).await?;
        let opts = SyncOptions { force: true, ..Default::default() };
        self.sync_key(&key, source.as_ref(), &opts).await
    }

    /// Loads one plugin found by `load_dir` (at source key `key`), unless it is disabled.
    pub(crate) async fn load_discovered(&self, key: &Path, source: &PluginSource) -> Result<Discovered> {
        let started = Instant::now();
        let read = Self::read(source).await?;
        let name = read.manifest.name.as_str().to_string();
        if self.inner.reload.is_disabled(&name, key).await {
            self.remember(&name, key, true);
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
        self.remember(name, &plugin.source_key, false);
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
            None => self.emit(name, PluginEventKind::Loaded { version, source: plugin.source_key.clone() }),
        }
        for old in removed.iter().filter(|old| old.name() != name) {
            self.emit(old.name(), PluginEventKind::Unloaded { version: old.manifest.version.clone() });
        }
        Ok(removed)
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
    pub(super) fn retire_by_name(&self, name: &str) -> bool {
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
        let owned = root.to_path_buf();
        let (present, problems) = blocking::run(move || scan(&owned)).await??;
        let mut known: BTreeSet<PathBuf> = present.keys().cloned().collect();
        known.extend(self.snapshot().plugins.values().map(|p| p.source_key.clone()));
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
        for (normalized, DiscoveryProblem { path, message }) in problems {
            if touched.is_some_and(|paths| !paths.contains(&normalized)) {
                continue;
            }
            let error =
                Error::Manifest(crate::manifest::ManifestError::Invalid { path: path.clone(), line: None, message });
            report.failed.push(LoadFailure { path, error });
        }
        Ok(report)
    }

    /// The plugin name now associated with `key`, if any.
    pub(super) fn name_after(&self, key: &Path) -> Option<String> {
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
                        && settle::stamp(source).await != *s
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
    pub(super) async fn build(
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
        if self.inner.reload.is_disabled(&name, key).await {
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
    pub(super) async fn swap_in(
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
            let ex_key = ex.source_key.clone();
            let same_files = ex_key == key || opts.vacated.contains(&ex_key);
            if same_files || blocking::run(move || !ex_key.exists()).await? {
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
            if let Some(outcome) = self.hold_new(key, &plugin, opts).await {
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
            // The policy's directories are canonicalised: on the blocking pool.
            let (inner, plugin_name, added) = (self.inner.clone(), name.clone(), permissions.added.clone());
            let covered =
                blocking::run(move || approval::uncovered(&inner.policy.approval, &plugin_name, &added).is_empty())
                    .await?;
            if self.inner.reload.options.require_approval
                && !covered
                && !self.consume_approval(&name, key, &plugin.fingerprint).await
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

    /// The files at `key` are gone: unload what was loaded from them, forget
    /// failures recorded for them.
    pub(super) fn remove_key(&self, key: &Path, current: Option<Arc<LoadedPlugin>>) -> ReloadOutcome {
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
}

/// The plugins under a root by source key, and what could not be understood
/// (each with its normalised path).
type Scan = (BTreeMap<PathBuf, PluginSource>, Vec<(PathBuf, DiscoveryProblem)>);

/// Discovers what is under `root` (on the blocking pool: see [`Scan`]).
fn scan(root: &Path) -> Result<Scan> {
    let (sources, problems) = match loader::discover(root) {
        Ok(found) => found,
        Err(_) if !root.exists() => (Vec::new(), Vec::new()), // the whole directory went away
        Err(e) => return Err(e),
    };
    let present = sources.into_iter().map(|s| (source_key(&s), s)).collect();
    let problems = problems.into_iter().map(|p| (normalize(&p.path), p)).collect();
    Ok((present, problems))
}
