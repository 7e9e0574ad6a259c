//! Hot reload: replace, add, remove, disable and enable plugins in a running
//! host without losing a request.
//!
//! Every change goes the same way, whether the [watcher](crate::Watcher), an
//! explicit [`Host::reload_dir`] / [`Host::reload_plugin`] (what `SIGHUP` runs
//! in `plugbox serve`) or [`Host::enable`] triggered it:
//!
//! 1. the plugin's files are read (for the watcher: only once their size and
//!    modification time are stable across two checks; a component or manifest
//!    that does not parse is retried a few times, as it may still be being
//!    written);
//! 2. files whose content did not change (same SHA-256 of manifest text and
//!    component bytes) are left alone;
//! 3. the new version is compiled off the async threads, linked, checked
//!    against its declared hooks and initialised once, exactly as at load;
//! 4. only then is it swapped into the registry, atomically replacing the old
//!    version by name. Requests already running hold the snapshot they started
//!    with and finish on the old version (post hooks included); new requests
//!    see the new one. The old version gets `shutdown` once its last request
//!    is done ([`PluginEventKind::Drained`]).
//!
//! A new version that fails at any step leaves the old one serving; the error
//! is recorded ([`Host::statuses`]) and reported ([`PluginEventKind::Failed`]).
//! When the new version is granted more than the old one (see
//! [`CapabilityDiff`]) the difference is reported, and with
//! [`HostBuilder::require_approval_for_new_permissions`](crate::HostBuilder::require_approval_for_new_permissions)
//! it waits for [`Host::approve`].

mod settle;
mod state;
mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use semver::Version;
use serde::Serialize;
use tokio::sync::broadcast;

pub(crate) use crate::capability::CapabilityDiff;
pub(crate) use crate::events::{PluginEvent, PluginEventKind};
pub use state::{PluginStates, STATE_FILE};

pub(crate) use settle::SettleOptions;
pub use sync::DRAIN_LIMIT;
pub(crate) use sync::{Discovered, SyncOptions};

use crate::error::{Error, Result};
use crate::host::{Host, LoadFailure};
use crate::loader;
use crate::plugin::{LoadedPlugin, PluginSource, SourceForm};

/// How many events a slow subscriber may fall behind before it misses some
/// (it then gets `RecvError::Lagged`).
pub const EVENT_CAPACITY: usize = 1024;

/// Host-wide hot reload settings, set on the [`HostBuilder`](crate::HostBuilder).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReloadOptions {
    pub require_approval: bool,
    pub state_file: Option<PathBuf>,
}

/// Where a plugin stands, as [`Host::statuses`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginState {
    /// Loaded and serving requests.
    Active,
    /// Disabled by an operator: on disk, not loaded.
    Disabled,
    /// Found on disk but could not be loaded, and no version of it serves.
    Failed,
}

/// The last thing that went wrong with a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// When the failure happened.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    /// The file the failed version was read from.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// A new version waiting for [`Host::approve`].
#[derive(Debug, Clone, Serialize)]
pub struct PendingUpgrade {
    /// The version waiting for approval.
    pub version: Version,
    /// How its grants differ from the serving version's.
    pub permissions: CapabilityDiff,
}

/// One plugin as an operator sees it: `plugbox list`, the admin API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PluginStatus {
    /// The plugin's name.
    pub name: String,
    /// Whether it is active, disabled, failed ...
    pub state: PluginState,
    /// The version serving requests (`None` unless active).
    pub version: Option<Version>,
    /// The files the plugin comes from (its directory, or its `.wasm`).
    pub source: Option<PathBuf>,
    /// When the serving version was loaded.
    #[serde(serialize_with = "rfc3339_opt")]
    pub loaded_at: Option<SystemTime>,
    /// How long loading the serving version took.
    pub load_time: Option<Duration>,
    /// The last failure to load a version of it; cleared by a successful load.
    pub last_error: Option<LastError>,
    /// A new version waiting for approval.
    pub pending: Option<PendingUpgrade>,
}

/// What reloading one plugin did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// It was not loaded before and now is.
    Loaded {
        /// The version now serving.
        version: Version,
    },
    /// A new version replaced the old one.
    Reloaded {
        /// The version that was replaced.
        old_version: Version,
        /// The version now serving.
        new_version: Version,
    },
    /// Its files did not change.
    Unchanged,
    /// Its files are gone, so it was unloaded.
    Unloaded,
    /// It is disabled, so it was not loaded (or was unloaded).
    Disabled,
    /// The new version waits for [`Host::approve`]; the old one serves.
    PendingApproval,
}

/// What [`Host::reload_dir`] (or one watcher batch) did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Each plugin looked at, and what happened to it.
    pub changes: Vec<(String, ReloadOutcome)>,
    /// Plugins (or stray files) that could not be loaded. A plugin listed here
    /// whose old version was serving still serves it.
    pub failed: Vec<LoadFailure>,
}

impl ReloadReport {
    /// Names of the plugins whose outcome matches `pred`.
    pub fn names(&self, pred: impl Fn(&ReloadOutcome) -> bool) -> Vec<&str> {
        self.changes.iter().filter(|(_, o)| pred(o)).map(|(n, _)| n.as_str()).collect()
    }
}

/// What the host remembers about a plugin besides the registry.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The plugin's source key (see [`source_key`]).
    pub key: PathBuf,
    pub last_error: Option<LastError>,
    pub disabled: bool,
}

/// A prepared new version waiting for approval.
pub(crate) struct Pending {
    pub plugin: Arc<LoadedPlugin>,
    pub key: PathBuf,
    pub permissions: CapabilityDiff,
}

/// Hot reload state of one host (lives in `HostInner`).
pub(crate) struct ReloadState {
    pub options: ReloadOptions,
    events: broadcast::Sender<PluginEvent>,
    /// The plugin directories of this host, canonical.
    roots: RwLock<Vec<PathBuf>>,
    /// By plugin name.
    pub records: Mutex<BTreeMap<String, Record>>,
    /// By plugin name.
    pub pending: Mutex<BTreeMap<String, Pending>>,
    /// Disabled names, by state file (a cache of the files).
    disabled: Mutex<BTreeMap<PathBuf, BTreeSet<String>>>,
    /// Serialises changes: watcher batches, explicit reloads, enable/disable, approve.
    pub sync: tokio::sync::Mutex<()>,
}

impl ReloadState {
    /// A handle plugins use to report their own events (quarantine).
    pub(crate) fn sender(&self) -> broadcast::Sender<PluginEvent> {
        self.events.clone()
    }

    pub(crate) fn new(options: ReloadOptions) -> Self {
        ReloadState {
            options,
            events: broadcast::channel(EVENT_CAPACITY).0,
            roots: Default::default(),
            records: Default::default(),
            pending: Default::default(),
            disabled: Default::default(),
            sync: Default::default(),
        }
    }

    /// Makes `dir` one of the host's plugin directories.
    pub(crate) fn add_root(&self, dir: &Path) {
        let root = dir.canonicalize().unwrap_or_else(|_| absolute(dir));
        let mut roots = self.roots.write();
        if !roots.contains(&root) {
            roots.push(root);
        }
    }

    /// The plugin directory `key` lies in (the deepest, if they nest).
    pub(crate) fn root_of(&self, key: &Path) -> Option<PathBuf> {
        self.roots.read().iter().filter(|r| key.starts_with(r)).max_by_key(|r| r.as_os_str().len()).cloned()
    }

    pub(crate) fn roots(&self) -> Vec<PathBuf> {
        self.roots.read().clone()
    }

    /// The state file that holds the disabled flag of the plugin at `key`.
    pub(crate) fn state_path(&self, key: Option<&Path>) -> Option<PathBuf> {
        if let Some(path) = &self.options.state_file {
            return Some(path.clone());
        }
        match key.and_then(|k| self.root_of(k)) {
            Some(root) => Some(PluginStates::path_in(&root)),
            None => {
                let roots = self.roots.read();
                (roots.len() == 1).then(|| PluginStates::path_in(&roots[0]))
            }
        }
    }

    /// The disabled names of state file `path` (read once, then cached).
    pub(crate) fn disabled_in(&self, path: &Path) -> BTreeSet<String> {
        if let Some(set) = self.disabled.lock().get(path) {
            return set.clone();
        }
        let set = match PluginStates::load(path) {
            Ok(s) => s.disabled,
            Err(e) => {
                tracing::warn!("ignoring the state file: {e}");
                BTreeSet::new()
            }
        };
        self.disabled.lock().insert(path.to_path_buf(), set.clone());
        set
    }

    /// Replaces the cached disabled names of `path`; returns the old ones.
    pub(crate) fn set_disabled_cache(&self, path: &Path, names: BTreeSet<String>) -> BTreeSet<String> {
        let old = self.disabled_in(path);
        self.disabled.lock().insert(path.to_path_buf(), names);
        old
    }

    pub(crate) fn is_disabled(&self, name: &str, key: &Path) -> bool {
        self.state_path(Some(key)).is_some_and(|p| self.disabled_in(&p).contains(name))
    }

    /// Whether `path` is a state file of this host.
    pub(crate) fn is_state_file(&self, path: &Path) -> bool {
        match &self.options.state_file {
            Some(p) => normalize(p) == path,
            None => {
                path.file_name().is_some_and(|n| n == STATE_FILE)
                    && self.roots.read().iter().any(|r| path.parent() == Some(r))
            }
        }
    }
}

/// `path` made absolute with its parent directory canonical (symlinks in the
/// directories resolved, the last component kept), so that paths from
/// discovery, from file events and from loaded plugins compare equal.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return absolute(path),
    };
    match (parent.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => absolute(path),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The path that identifies a plugin on disk, whichever form it has: its
/// directory (directory form), or its `.wasm` (sidecar and embedded forms; a
/// sidecar's `.yaml` maps to the `.wasm` beside it). Normalised.
pub fn source_key(source: &PluginSource) -> PathBuf {
    let key = match (source.form, &source.manifest) {
        (SourceForm::Directory, Some(m)) => {
            m.parent().map(Path::to_path_buf).unwrap_or_else(|| source.component.clone())
        }
        (SourceForm::Sidecar, Some(m)) => m.with_extension("wasm"),
        _ => source.component.clone(),
    };
    normalize(&key)
}

/// Reads the plugin at `path` (a plugin directory, manifest or `.wasm`) and
/// returns its name, version and fingerprint: what `plugbox approve` records.
pub fn fingerprint_of(path: &Path) -> Result<(String, Version, String)> {
    let source = loader::source_for_path(path)?;
    let read = loader::read_plugin(&source)?;
    Ok((read.manifest.name.as_str().to_string(), read.manifest.version, hex::encode(read.fingerprint)))
}

/// The plugin source at `key`, if its files are there.
pub(crate) fn source_at_key(key: &Path) -> Option<PluginSource> {
    if key.is_dir() {
        return key.join(loader::MANIFEST_FILE).is_file().then(|| loader::source_for_path(key).ok()).flatten();
    }
    if key.extension().is_some_and(|e| e == "wasm") && key.is_file() {
        return loader::source_for_path(key).ok();
    }
    None
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

impl Host {
    /// Plugin events (loaded, reloaded, failed, unloaded, drained, disabled,
    /// enabled, approval required) from now on. A receiver that falls more
    /// than [`EVENT_CAPACITY`] events behind misses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<PluginEvent> {
        self.inner.reload.events.subscribe()
    }

    /// Sends an event to subscribers and logs it.
    pub(crate) fn emit(&self, plugin: &str, kind: PluginEventKind) {
        let event = PluginEvent::now(plugin, kind);
        match &event.kind {
            PluginEventKind::Failed { .. } => tracing::error!(plugin, "{event}"),
            PluginEventKind::ApprovalRequired { .. } | PluginEventKind::Quarantined { .. } => {
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
            if let Some(s) = out.get_mut(name) {
                s.pending = Some(PendingUpgrade {
                    version: p.plugin.manifest.version.clone(),
                    permissions: p.permissions.clone(),
                });
            }
        }
        out.into_values().collect()
    }

    /// The status of one plugin (see [`Host::statuses`]).
    pub fn status(&self, name: &str) -> Option<PluginStatus> {
        self.statuses().into_iter().find(|s| s.name == name)
    }

    /// Re-reads a plugin directory and applies what changed: new plugins are
    /// loaded, changed ones reloaded (validate, then swap), removed ones
    /// unloaded. Unchanged plugins are left alone. What `SIGHUP` does in
    /// `plugbox serve`; also for hosts that run without a watcher.
    ///
    /// The directory's state file is read again too, so disable, enable and
    /// approve done by another process (`plugbox disable` ...) take effect.
    pub async fn reload_dir(&self, dir: &Path) -> Result<ReloadReport> {
        let _guard = self.inner.reload.sync.lock().await;
        self.inner.reload.add_root(dir);
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        if let Some(state) = self.inner.reload.state_path(Some(&root)) {
            self.apply_state_file(&state).await;
        }
        self.sync_root(&root, None, &SyncOptions::default()).await
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

    /// The upgrades waiting for approval: plugin name and what the new version gains.
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
    /// is granted more than the version it replaces.
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
