//! The error type of the public API.

use std::path::PathBuf;

use crate::manifest::ManifestError;

/// Everything that can go wrong when loading plugins or running hooks.
///
/// Messages are lowercase and name the plugin or file involved, so that an
/// operator can act on them without reading logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `plugin.yaml` (or an embedded manifest) is malformed or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    /// A file could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A plugin source is not a usable WebAssembly component.
    #[error("plugin `{plugin}`: {message}")]
    Component {
        /// The plugin (or file) name.
        plugin: String,
        /// Why the component is unusable.
        message: String,
    },

    /// A plugin's `init` failed, trapped or timed out while loading.
    #[error("plugin `{plugin}`: init failed: {message}")]
    Init {
        /// The plugin's name.
        plugin: String,
        /// The failure, as reported by the call.
        message: String,
    },

    /// Two plugins share a name, or two providers share a provider type.
    #[error("{0}")]
    Conflict(String),

    /// The host refuses to load more plugins than configured.
    #[error("cannot load plugin `{plugin}`: the host already holds its maximum of {max} plugins")]
    TooManyPlugins {
        /// The plugin that was refused.
        plugin: String,
        /// The configured maximum number of plugins.
        max: usize,
    },

    /// No plugin with that name (or provider type) is loaded.
    #[error("no plugin named `{0}` is loaded")]
    NotFound(String),

    /// The plugin exists but does not implement what was asked of it.
    #[error("plugin `{plugin}` does not implement `{hook}`")]
    HookNotImplemented {
        /// The plugin's name.
        plugin: String,
        /// The hook that was asked for.
        hook: String,
    },

    /// A hook call failed (the plugin errored, trapped, timed out or broke a limit).
    #[error(transparent)]
    Plugin(#[from] crate::failure::PluginFailure),

    /// Input given to a developer tool (`plugbox call`) does not fit the hook.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// [`Host::approve`](crate::Host::approve) found no upgrade waiting.
    #[error("plugin `{0}` has no new version waiting for approval")]
    NotPending(String),

    /// A plugin loaded from outside the host's plugin directories cannot be
    /// disabled persistently without a state file.
    #[error(
        "plugin `{0}` is not in a plugin directory of this host: there is no state file to record it in \
         (load its directory, or set `HostBuilder::state_file`)"
    )]
    NoStateFile(String),

    /// The wasmtime engine could not be set up.
    #[error("engine: {0}")]
    Engine(String),

    /// The compile cache directory is refused: compiled code is only loaded
    /// from a directory that only the host's user can write.
    #[error("compile cache `{dir}` {message}")]
    CompileCache {
        /// The cache directory.
        dir: PathBuf,
        /// What is wrong with it and how to fix it.
        message: String,
    },
}

/// Shorthand for results of the public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
