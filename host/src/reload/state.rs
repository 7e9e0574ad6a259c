//! The persisted part of hot reload: which plugins an operator disabled, and
//! upgrades approved from another process.
//!
//! Stored as YAML in `<plugin dir>/.plugbox-state.yaml` (discovery ignores
//! hidden files), or in the file given to
//! [`HostBuilder::state_file`](crate::HostBuilder::state_file). Written
//! atomically (temp file + rename), so a running host watching the directory
//! never reads half of it, and `plugbox disable` can change a running host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The state file name inside a plugin directory.
pub const STATE_FILE: &str = ".plugbox-state.yaml";

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginStates {
    /// Plugins that stay on disk but are not loaded.
    #[serde(default)]
    pub disabled: BTreeSet<String>,
    /// Upgrades an operator approved ahead of the host (`plugbox approve`):
    /// plugin name -> fingerprint of the exact files approved (see
    /// [`LoadedPlugin::fingerprint`](crate::LoadedPlugin::fingerprint)). Used
    /// up when the host swaps that version in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approved: BTreeMap<String, String>,
}

impl PluginStates {
    /// The state file of plugin directory `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads `path`; a missing file is the empty state.
    pub fn load(path: &Path) -> Result<PluginStates> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(PluginStates::default()),
            Ok(text) => serde_norway::from_str(&text)
                .map_err(|e| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PluginStates::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes `path` atomically (a hidden temp file beside it, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = format!(
            "# Written by plugbox (`plugbox disable` / `plugbox enable`, or the embedding API).\n{}",
            serde_norway::to_string(self).map_err(|e| Error::Engine(e.to_string()))?
        );
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(STATE_FILE);
        let tmp = dir.join(format!(".{}.{}.tmp", name.trim_start_matches('.'), std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Loads `path`, applies `change`, and saves it if anything changed.
    /// Returns whether it changed.
    pub fn update(path: &Path, change: impl FnOnce(&mut PluginStates)) -> Result<bool> {
        let mut states = PluginStates::load(path)?;
        let before = states.clone();
        change(&mut states);
        if states == before {
            return Ok(false);
        }
        states.save(path)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_is_empty() {
        let dir = std::env::temp_dir().join(format!("plugbox-state-test-{}", std::process::id()));
        let path = PluginStates::path_in(&dir);
        let _ = std::fs::remove_file(&path);
        assert_eq!(PluginStates::load(&path).unwrap(), PluginStates::default());
        assert!(
            PluginStates::update(&path, |s| {
                s.disabled.insert("a".into());
            })
            .unwrap()
        );
        assert!(
            !PluginStates::update(&path, |s| {
                s.disabled.insert("a".into());
            })
            .unwrap()
        );
        assert_eq!(PluginStates::load(&path).unwrap().disabled.into_iter().collect::<Vec<_>>(), ["a"]);
        std::fs::write(&path, "disabled: [a]\nbogus: 1\n").unwrap();
        assert!(PluginStates::load(&path).is_err(), "unknown fields are errors");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
