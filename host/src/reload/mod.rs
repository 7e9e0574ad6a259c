//! Hot reload: replace, add, remove, disable and enable plugins in a running
//! host without losing a request.
//!
//! Every change goes the same way, whether the [watcher](crate::Watcher), an
//! explicit [`Host::reload_dir`](crate::Host::reload_dir) / [`Host::reload_plugin`](crate::Host::reload_plugin) (what `SIGHUP` runs
//! in `plugbox serve`) or [`Host::enable`](crate::Host::enable) triggered it:
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
//! is recorded ([`Host::statuses`](crate::Host::statuses)) and reported ([`PluginEventKind::Failed`]).
//! When the new version is granted more than the old one (see
//! [`CapabilityDiff`]) it waits for [`Host::approve`](crate::Host::approve) while the old one serves
//! ([`HostBuilder::require_approval_for_new_permissions`](crate::HostBuilder::require_approval_for_new_permissions),
//! on by default), and a plugin that appears at run time waits for it without
//! serving ([`HostBuilder::require_approval_for_new_plugins`](crate::HostBuilder::require_approval_for_new_plugins)),
//! unless the policy's `approval` section approves exactly those grants ahead.

pub(crate) mod settle;
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
pub(crate) use sync::{Discovered, Step, SyncOptions, touches};

use crate::blocking;
use crate::error::{Error, Result};
use crate::loader;
use crate::plugin::{LoadedPlugin, PluginSource, SourceForm};

/// How many events a slow subscriber may fall behind before it misses some
/// (it then gets `RecvError::Lagged`).
pub const EVENT_CAPACITY: usize = 1024;

/// Host-wide hot reload settings, set on the [`HostBuilder`](crate::HostBuilder).
#[derive(Debug, Clone)]
pub(crate) struct ReloadOptions {
    /// Hold new versions that gain grants.
    pub require_approval: bool,
    /// Hold plugins that appear at run time.
    pub require_approval_new: bool,
    pub state_file: Option<PathBuf>,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        ReloadOptions { require_approval: true, require_approval_new: true, state_file: None }
    }
}

/// Where a plugin stands, as [`Host::statuses`](crate::Host::statuses) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginState {
    /// Loaded and serving requests.
    Active,
    /// Disabled by an operator: on disk, not loaded.
    Disabled,
    /// Found on disk but could not be loaded, and no version of it serves.
    Failed,
    /// Appeared at run time and waits for [`Host::approve`](crate::Host::approve); not serving.
    Pending,
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

/// A new version waiting for [`Host::approve`](crate::Host::approve).
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
    /// The new version waits for [`Host::approve`](crate::Host::approve); the old one serves.
    PendingApproval,
}

/// What [`Host::reload_dir`](crate::Host::reload_dir) (or one watcher batch) did.
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
    pub events: broadcast::Sender<PluginEvent>,
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

    /// Makes `root` (canonical: the caller resolves it off the async
    /// workers) one of the host's plugin directories; returns whether it was
    /// not one before (its first load: plugins found then are not held).
    pub(crate) fn add_root(&self, root: PathBuf) -> bool {
        let mut roots = self.roots.write();
        if roots.contains(&root) {
            return false;
        }
        roots.push(root);
        true
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
    /// For synchronous callers; async code uses [`ReloadState::disabled_names`].
    pub(crate) fn disabled_in(&self, path: &Path) -> BTreeSet<String> {
        if let Some(set) = self.disabled.lock().get(path) {
            return set.clone();
        }
        let set = disabled_of(path, PluginStates::load(path));
        self.disabled.lock().insert(path.to_path_buf(), set.clone());
        set
    }

    /// [`ReloadState::disabled_in`], reading the file on the blocking pool.
    pub(crate) async fn disabled_names(&self, path: &Path) -> BTreeSet<String> {
        if let Some(set) = self.disabled.lock().get(path) {
            return set.clone();
        }
        let file = path.to_path_buf();
        let set = disabled_of(path, blocking::run(move || PluginStates::load(&file)).await.and_then(|loaded| loaded));
        self.disabled.lock().entry(path.to_path_buf()).or_insert(set).clone()
    }

    /// Replaces the cached disabled names of `path`; returns the old ones.
    pub(crate) async fn set_disabled_cache(&self, path: &Path, names: BTreeSet<String>) -> BTreeSet<String> {
        let old = self.disabled_names(path).await;
        self.disabled.lock().insert(path.to_path_buf(), names);
        old
    }

    pub(crate) async fn is_disabled(&self, name: &str, key: &Path) -> bool {
        match self.state_path(Some(key)) {
            Some(p) => self.disabled_names(&p).await.contains(name),
            None => false,
        }
    }

    /// Whether `path` is a state file of this host; `configured` is the
    /// [`HostBuilder::state_file`](crate::HostBuilder::state_file) normalised
    /// (see [`normalize`]) by the caller, off the async workers.
    pub(crate) fn is_state_file(&self, path: &Path, configured: Option<&Path>) -> bool {
        match configured {
            Some(p) => p == path,
            None => {
                path.file_name().is_some_and(|n| n == STATE_FILE)
                    && self.roots.read().iter().any(|r| path.parent() == Some(r))
            }
        }
    }
}

/// The disabled names of a state file just read; an unreadable file is
/// ignored (and said so).
fn disabled_of(path: &Path, loaded: Result<PluginStates>) -> BTreeSet<String> {
    match loaded {
        Ok(s) => s.disabled,
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring the state file: {e}");
            BTreeSet::new()
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
