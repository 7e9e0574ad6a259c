//! The operator's policy: the upper bound on what plugins may be granted.
//!
//! Effective capabilities are `declared ∩ allowed` (see [`crate::capability`]).
//! With the default policy a plugin may get: message access and kv as declared,
//! filesystem access inside its own directory, its private data directory, the
//! environment variables it names, and network access to exact hosts it names.
//! Filesystem access elsewhere and wildcard network patterns need the policy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::manifest::HostPattern;

/// Operator policy, usually read from a YAML file (`plugbox --policy FILE`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// Host directories, besides each plugin's own directory, under which
    /// filesystem grants may be made.
    #[serde(default)]
    pub filesystem_roots: Vec<PathBuf>,
    /// Whether network patterns with a wildcard (`*.example.com`, `*`) may be granted.
    #[serde(default)]
    pub allow_wildcard_network: bool,
    /// Per-plugin settings, by plugin name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginPolicy>,
}

/// What the operator decides for one plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginPolicy {
    /// Hosts granted to a plugin that declares the seed's `network_access`
    /// permission; also pre-approves these patterns (wildcards included).
    #[serde(default)]
    pub network: Vec<HostPattern>,
    /// Extra filesystem roots for this plugin only.
    #[serde(default)]
    pub filesystem_roots: Vec<PathBuf>,
}

impl Policy {
    /// Reads a policy file; unknown fields are errors.
    pub fn from_path(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_norway::from_str(&text).map_err(|e| {
            let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            Error::Manifest(crate::manifest::ManifestError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.to_string(),
            })
        })
    }

    pub(crate) fn for_plugin(&self, name: &str) -> Option<&PluginPolicy> {
        self.plugins.get(name)
    }
}
