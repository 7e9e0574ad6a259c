//! [`PluginEvent`]: what happened to which plugin, and when. Subscribe with
//! [`Host::subscribe`](crate::Host::subscribe).

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use semver::Version;
use serde::Serialize;

use crate::capability::CapabilityDiff;

/// Something that happened to a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginEvent {
    /// The plugin's name (from its manifest; when the manifest cannot be read,
    /// the name of the plugin loaded from the same files, else the file or
    /// directory name).
    pub plugin: String,
    /// When it happened.
    #[serde(with = "humantime_serde_compat")]
    pub at: SystemTime,
    /// What happened.
    pub kind: PluginEventKind,
}

/// The kinds of [`PluginEvent`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
#[non_exhaustive]
pub enum PluginEventKind {
    /// A plugin that was not loaded now serves requests.
    Loaded {
        /// The version now serving.
        version: Version,
        /// The files it was loaded from (its directory, or its `.wasm`).
        source: PathBuf,
    },
    /// A new version replaced the old one atomically; `permissions` is how the
    /// new version's grants differ from the old one's.
    Reloaded {
        /// The version that was replaced.
        old_version: Version,
        /// The version now serving.
        new_version: Version,
        /// How the new version's grants differ from the old one's.
        permissions: CapabilityDiff,
    },
    /// A plugin (or a new version of one) could not be loaded. `serving` is the
    /// version that keeps serving, if any.
    Failed {
        /// The file or directory that failed to load.
        path: PathBuf,
        /// Why it failed.
        error: String,
        /// The version that keeps serving; `None` when none does.
        serving: Option<Version>,
    },
    /// The plugin no longer serves new requests (its files were removed, it
    /// was disabled, or [`Host::unload`](crate::Host::unload) was called).
    Unloaded {
        /// The version that stopped serving.
        version: Version,
    },
    /// A replaced or unloaded version finished its last request and its
    /// instances got `shutdown`.
    Drained {
        /// The version that drained.
        version: Version,
    },
    /// The plugin was disabled (it stays on disk and is not loaded).
    Disabled,
    /// The plugin was enabled again.
    Enabled,
    /// A new version asks for more than the old one had and the host requires
    /// approval: it waits for [`Host::approve`](crate::Host::approve) while the
    /// old version keeps serving.
    ApprovalRequired {
        /// The version that keeps serving meanwhile.
        old_version: Version,
        /// The version waiting for approval.
        new_version: Version,
        /// How the new version's grants differ from the old one's (`added` is not empty).
        permissions: CapabilityDiff,
    },
    /// A plugin appeared at run time (hot reload, `reload_dir`) and the host
    /// holds it for approval: it does not serve until
    /// [`Host::approve`](crate::Host::approve) (or `plugbox approve`).
    HeldForApproval {
        /// The version waiting for approval.
        version: Version,
        /// The files it was found at (its directory, or its `.wasm`).
        source: PathBuf,
        /// Everything it would be granted (`added`).
        permissions: CapabilityDiff,
    },
    /// The circuit breaker stopped calling the plugin after repeated failures;
    /// it is retried after the back-off named in `reason`.
    Quarantined {
        /// Human-readable reason, including the back-off and the last failure.
        reason: String,
    },
}

impl PluginEvent {
    pub(crate) fn now(plugin: impl Into<String>, kind: PluginEventKind) -> Self {
        PluginEvent { plugin: plugin.into(), at: SystemTime::now(), kind }
    }
}

impl fmt::Display for PluginEvent {
    /// One line, e.g. `reloaded `rate-limit` 1.0.0 -> 1.1.0 (no permission changes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.plugin;
        match &self.kind {
            PluginEventKind::Loaded { version, source } => {
                write!(f, "loaded `{p}` {version} from `{}`", source.display())
            }
            PluginEventKind::Reloaded { old_version, new_version, permissions } => {
                write!(f, "reloaded `{p}` {old_version} -> {new_version} ({permissions})")
            }
            PluginEventKind::Failed { path, error, serving } => {
                write!(f, "failed `{p}` from `{}`: {error}", path.display())?;
                match serving {
                    Some(v) => write!(f, " (version {v} keeps serving)"),
                    None => Ok(()),
                }
            }
            PluginEventKind::Unloaded { version } => write!(f, "unloaded `{p}` {version}"),
            PluginEventKind::Drained { version } => write!(f, "drained `{p}` {version} (shut down)"),
            PluginEventKind::Disabled => write!(f, "disabled `{p}`"),
            PluginEventKind::Enabled => write!(f, "enabled `{p}`"),
            PluginEventKind::ApprovalRequired { old_version, new_version, permissions } => write!(
                f,
                "approval required for `{p}` {old_version} -> {new_version} ({permissions}); {old_version} keeps serving"
            ),
            PluginEventKind::HeldForApproval { version, source, permissions } => write!(
                f,
                "held `{p}` {version} from `{}` for approval ({permissions}); it does not serve until approved",
                source.display()
            ),
            PluginEventKind::Quarantined { reason } => write!(f, "quarantined `{p}`: {reason}"),
        }
    }
}

/// `SystemTime` as RFC 3339 text in JSON.
mod humantime_serde_compat {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }
}
