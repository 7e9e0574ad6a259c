//! The types of bringing the registry in line with the files (the `Host`
//! methods doing it live in the host facade): how a change is applied, and
//! which file events concern which plugin.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::ReloadOutcome;
use super::settle::SettleOptions;
use crate::plugin::LoadedPlugin;

/// How long a replaced version may keep serving requests that started on it
/// before its idle instances are shut down anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// How a change is applied.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncOptions {
    /// Wait for files to settle and retry parse failures (the watcher).
    pub settle: Option<SettleOptions>,
    /// Reload even if the files did not change.
    pub force: bool,
    /// Keys whose files are gone in the same batch: a plugin of the same name
    /// appearing elsewhere replaces the one loaded from there (a rename).
    pub vacated: BTreeSet<PathBuf>,
    /// The first load of a plugin directory: plugins found are not held for approval.
    pub initial: bool,
    /// An operator enables this plugin: it is not held for approval as new.
    pub enabling: Option<String>,
}

/// What reading a plugin's files led to.
pub(crate) enum Step {
    Done(ReloadOutcome),
    Built(Arc<LoadedPlugin>),
}

/// What `Host::load_dir` did with one discovered plugin.
pub(crate) enum Discovered {
    Loaded(Arc<LoadedPlugin>),
    Disabled(String),
}

/// Whether a file event at `path` concerns the plugin at `key`.
pub(crate) fn touches(path: &Path, key: &Path) -> bool {
    if key.starts_with(path) {
        return true; // the plugin's files, or a directory holding them, moved or were removed
    }
    if path.starts_with(key) {
        // Inside a plugin directory only manifests and components matter (not
        // files a plugin writes into a granted directory of its own).
        return matches!(path.extension().and_then(|e| e.to_str()), Some("wasm" | "yaml" | "yml"));
    }
    key.extension().is_some_and(|e| e == "wasm") && ["yaml", "yml"].iter().any(|ext| path == key.with_extension(ext))
}

#[cfg(test)]
mod tests {
    use super::touches;
    use std::path::Path;

    #[test]
    fn file_events_map_to_the_plugin_they_concern() {
        let dir_plugin = Path::new("/p/rate-limit");
        let sidecar = Path::new("/p/group/logging.wasm");
        let t = |path: &str, key: &Path| touches(Path::new(path), key);
        // Directory form: manifests and components anywhere inside it.
        assert!(t("/p/rate-limit/plugin.yaml", dir_plugin));
        assert!(t("/p/rate-limit/rate_limit.wasm", dir_plugin));
        assert!(t("/p/rate-limit/sub/x.wasm", dir_plugin));
        assert!(!t("/p/rate-limit/data/counters.json", dir_plugin), "a plugin's own data is not a change");
        // The directory itself, or one holding it, moved or removed.
        assert!(t("/p/rate-limit", dir_plugin));
        assert!(t("/p/group", sidecar));
        // Sidecar form: the .wasm and its .yaml/.yml.
        assert!(t("/p/group/logging.wasm", sidecar));
        assert!(t("/p/group/logging.yaml", sidecar));
        assert!(t("/p/group/logging.yml", sidecar));
        assert!(!t("/p/group/other.yaml", sidecar));
        assert!(!t("/p/rate-limit-2/plugin.yaml", dir_plugin));
    }
}
