//! Manifest ∩ policy -> [`Capabilities`]: plain data resolved once per load,
//! applied to every new instance by `Capabilities::wasi_ctx` (crate-private).
//!
//! Deny by default: a plugin whose manifest declares nothing gets clocks and
//! random, a closed stdin, stdout/stderr routed to the log, no arguments, no
//! environment, no files, no sockets and no name lookup.
//!
//! No escalation: no grant makes writable what the loader reads (the plugin
//! roots, the plugin's own manifest and component, the state file, the compile
//! cache, the policy file; see [`LoaderPaths`]); per-plugin data lives under a
//! data root outside every plugin root.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

pub mod approval;
mod diff;

pub use diff::{CapabilityDiff, Grant};

use crate::error::{Error, Result};
use crate::imports::LogWriter;
use crate::imports::resources::PluginResources;
use crate::manifest::{FsAccess, HostPattern, Manifest, MessageAccess};
use crate::policy::Policy;

/// Guest path of a plugin's private data directory (`write_files` / `data-dir`).
pub const DATA_DIR_GUEST_PATH: &str = "/plugin-data";

/// What a plugin is actually granted.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    /// How much of the message text the plugin may see and change.
    pub messages: MessageAccess,
    /// Whether the plugin gets its own kv namespace.
    pub kv: bool,
    /// Outgoing HTTP destinations.
    pub network: Vec<HostPattern>,
    /// Host directories visible to the guest.
    pub preopens: Vec<Preopen>,
    /// Environment variables and their values, read from the host at load.
    #[serde(serialize_with = "env_names_only")]
    pub env: Vec<(String, String)>,
    /// Everything declared but not granted, one human-readable line each.
    pub denied: Vec<String>,
}

fn access_rank(a: MessageAccess) -> u8 {
    match a {
        MessageAccess::None => 0,
        MessageAccess::Read => 1,
        MessageAccess::Write => 2,
    }
}

fn access_name(a: MessageAccess) -> &'static str {
    ["none", "read", "write"][access_rank(a) as usize]
}

/// A host directory visible to the guest.
#[derive(Debug, Clone, Serialize)]
pub struct Preopen {
    /// Canonical host path.
    pub host: PathBuf,
    /// The path the guest sees it at.
    pub guest: String,
    /// Read-only or read-write.
    pub access: FsAccess,
}

fn fs_access(a: FsAccess) -> &'static str {
    match a {
        FsAccess::Read => "read",
        FsAccess::ReadWrite => "read-write",
    }
}

/// Where a plugin lives, and what its host reads: the input of
/// [`Capabilities::resolve`]'s filesystem rules.
#[derive(Debug, Clone, Copy)]
pub struct PluginPlace<'a> {
    /// The directory relative paths in the manifest resolve against.
    pub base_dir: &'a Path,
    /// The plugin's own directory, which it may be granted read-only:
    /// `Some` in the directory form only. In the sidecar and embedded forms
    /// the directory holding the plugin is a shared plugin root, so the
    /// plugin gets no grant there unless the policy allows it (and never a
    /// writable one).
    pub own_dir: Option<&'a Path>,
    /// What the host reads, and where per-plugin data lives.
    pub paths: &'a LoaderPaths,
}

/// Everything the loader reads, which no grant may make writable, and the
/// root of the per-plugin data directories.
///
/// A read-write grant that overlaps (contains, equals or lies inside) any of
/// these is refused, whatever the policy says: a plugin that could write
/// there could install a plugin, rewrite its own manifest or component, or
/// approve itself.
#[derive(Debug, Clone, Default)]
pub struct LoaderPaths {
    /// The host's plugin roots: directories given to `load_dir`, `reload_dir`
    /// or a watcher.
    pub plugin_roots: Vec<PathBuf>,
    /// Other paths the host reads: the plugin's own manifest and component,
    /// the state file, the compile cache, the policy file.
    pub protected: Vec<PathBuf>,
    /// The directory holding one private data directory per plugin.
    pub data_root: Option<PathBuf>,
}

impl LoaderPaths {
    /// Why plugin `plugin` may not write `dir` (canonical), if it may not.
    pub fn write_refusal(&self, plugin: &str, dir: &Path) -> Option<String> {
        let overlaps = |p: &PathBuf| {
            let p = canonical_lenient(p);
            (dir.starts_with(&p) || p.starts_with(dir)).then_some(p)
        };
        if let Some(root) = self.plugin_roots.iter().find_map(overlaps) {
            return Some(format!(
                "refused for plugin `{plugin}`: overlaps the plugin root `{}`; no grant may let a plugin \
                 write what the loader reads (rule: no escalation)",
                root.display()
            ));
        }
        self.protected.iter().find_map(overlaps).map(|p| {
            format!(
                "refused for plugin `{plugin}`: overlaps `{}`, which the host reads; no grant may let a plugin \
                 write what the loader reads (rule: no escalation)",
                p.display()
            )
        })
    }

    /// Why plugin `plugin` may not be granted `dir` (canonical) at all, read
    /// or write: it overlaps the data root, which holds every plugin's private
    /// data directory (a plugin sees its own only at `/plugin-data`).
    pub fn data_root_refusal(&self, plugin: &str, dir: &Path) -> Option<String> {
        let root = canonical_lenient(self.data_root.as_ref()?);
        (dir.starts_with(&root) || root.starts_with(dir)).then(|| {
            format!(
                "refused for plugin `{plugin}`: overlaps the data root `{}`, which holds every plugin's private \
                 data; a plugin sees its own data directory only at `{DATA_DIR_GUEST_PATH}` (rule: private data)",
                root.display()
            )
        })
    }

    /// Creates (0700) and returns the data directory of `plugin` under
    /// `root`, or says why it is refused.
    fn data_dir(&self, plugin: &str, root: &Path) -> std::result::Result<PathBuf, String> {
        let canonical_root = canonical_lenient(root);
        if let Some(r) = self.write_refusal(plugin, &canonical_root) {
            return Err(format!("the data root `{}`: {r}", root.display()));
        }
        let dir = root.join(plugin);
        create_private_dir(root).map_err(|e| format!("cannot create `{}`: {e}", root.display()))?;
        create_private_dir(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        // A symbolic link planted in place of the directory would aim the
        // grant elsewhere: the data directory must be a real directory of the root.
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
        let canonical = dir.canonicalize().map_err(|e| format!("`{}`: {e}", dir.display()))?;
        let canonical_root = root.canonicalize().map_err(|e| format!("`{}`: {e}", root.display()))?;
        if !meta.is_dir() || canonical.parent() != Some(canonical_root.as_path()) {
            return Err(format!(
                "`{}` is not a directory of the data root `{}`; refused for plugin `{plugin}`",
                dir.display(),
                canonical_root.display()
            ));
        }
        Ok(canonical)
    }
}

/// `$XDG_DATA_HOME/plugbox/data`, or `~/.local/share/plugbox/data`: the
/// default root of the per-plugin data directories (created 0700 when a
/// plugin first needs it).
pub fn default_data_root() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share")))?;
    Some(base.join("plugbox").join("data"))
}

/// Creates `dir` (and missing parents) with mode 0700 where supported.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// `path` with symlinks resolved as far as it exists; the missing rest appended.
pub(crate) fn canonical_lenient(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = path.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return rest.iter().rev().fold(c, |acc: PathBuf, part| acc.join(part));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return path,
        }
    }
}

fn env_names_only<S: serde::Serializer>(env: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(env.iter().map(|(k, _)| k))
}

impl Capabilities {
    /// Nothing at all: what a plugin gets before its manifest is considered.
    pub fn none() -> Self {
        Capabilities {
            messages: MessageAccess::None,
            kv: false,
            network: Vec::new(),
            preopens: Vec::new(),
            env: Vec::new(),
            denied: Vec::new(),
        }
    }

    /// Resolves what `manifest` declares against `policy`.
    ///
    /// `place` says where the plugin lives (the directory relative paths
    /// resolve against, and its own directory in the directory form) and what
    /// the host reads (its plugin roots, state file, compile cache, policy
    /// file): no grant may make any of these writable (see [`LoaderPaths`]).
    pub fn resolve(manifest: &Manifest, place: &PluginPlace<'_>, policy: &Policy) -> Result<Capabilities> {
        let name = manifest.name.as_str();
        let perms = &manifest.permissions;
        let plugin_policy = policy.for_plugin(name);
        let mut caps = Capabilities::none();
        caps.messages = perms.messages;
        caps.kv = perms.kv;
        if let Some(max) = plugin_policy.and_then(|p| p.messages)
            && access_rank(caps.messages) > access_rank(max)
        {
            caps.denied.push(format!(
                "messages `{}`: policy allows at most `{}`",
                access_name(caps.messages),
                access_name(max)
            ));
            caps.messages = max;
        }
        if caps.kv && plugin_policy.and_then(|p| p.kv) == Some(false) {
            caps.denied.push("kv: refused by policy".into());
            caps.kv = false;
        }

        // Filesystem: read-only inside the plugin's own directory (directory
        // form only), or under a policy root; never writable where the loader reads.
        let own_dir = match place.own_dir {
            Some(dir) => Some(dir.canonicalize().map_err(|e| Error::io(dir, e))?),
            None => None,
        };
        let policy_roots: Vec<PathBuf> = policy
            .filesystem_roots
            .iter()
            .chain(plugin_policy.into_iter().flat_map(|p| p.filesystem_roots.iter()))
            .filter_map(|r| r.canonicalize().ok())
            .collect();
        for grant in &perms.filesystem {
            let host = place.base_dir.join(&grant.host);
            let canonical = match host.canonicalize() {
                Ok(c) => c,
                Err(e) => {
                    caps.denied.push(format!("filesystem `{}`: {e}", host.display()));
                    continue;
                }
            };
            let show =
                format!("filesystem `{}` -> `{}` ({})", canonical.display(), grant.guest, fs_access(grant.access));
            if grant.guest == DATA_DIR_GUEST_PATH {
                caps.denied.push(format!("{show}: `{DATA_DIR_GUEST_PATH}` is reserved for the data directory"));
                continue;
            }
            if let Some(refusal) = place.paths.data_root_refusal(name, &canonical) {
                caps.denied.push(format!("{show}: {refusal}"));
                continue;
            }
            let in_policy = policy_roots.iter().any(|r| canonical.starts_with(r));
            let in_own = own_dir.as_ref().is_some_and(|d| canonical.starts_with(d));
            if !in_policy && !in_own {
                caps.denied.push(format!("{show}: outside the plugin's directory and not allowed by policy"));
                continue;
            }
            if grant.access == FsAccess::ReadWrite {
                if let Some(refusal) = place.paths.write_refusal(name, &canonical) {
                    caps.denied.push(format!("{show}: {refusal}"));
                    continue;
                }
                if !in_policy {
                    caps.denied.push(format!(
                        "{show}: refused for plugin `{name}`: a plugin's own directory is read-only at most \
                         (rule: no escalation); ask for `data-dir` to get a writable directory"
                    ));
                    continue;
                }
            }
            caps.preopens.push(Preopen { host: canonical, guest: grant.guest.clone(), access: grant.access });
        }
        if perms.data_dir {
            match &place.paths.data_root {
                Some(root) => match place.paths.data_dir(name, root) {
                    Ok(host) => caps.preopens.push(Preopen {
                        host,
                        guest: DATA_DIR_GUEST_PATH.to_string(),
                        access: FsAccess::ReadWrite,
                    }),
                    Err(refusal) => caps.denied.push(format!("data directory: {refusal}")),
                },
                None => caps.denied.push("data directory: this host has no data root".to_string()),
            }
        }

        // Environment: only the named variables, with the host's values.
        for var in &perms.env {
            match std::env::var(var.as_str()) {
                Ok(value) => caps.env.push((var.as_str().to_string(), value)),
                Err(_) => caps.denied.push(format!("env `{}`: not set on the host", var.as_str())),
            }
        }

        // Network: exact hosts as declared; wildcards need policy.
        let approved: &[HostPattern] = plugin_policy.map(|p| p.network.as_slice()).unwrap_or(&[]);
        for pattern in &perms.network {
            if !pattern.has_wildcard() || policy.allow_wildcard_network || approved.contains(pattern) {
                caps.network.push(pattern.clone());
            } else {
                caps.denied.push(format!("network `{pattern}`: wildcard patterns need operator policy"));
            }
        }
        if plugin_policy.and_then(|p| p.network_allowed) == Some(false) && !caps.network.is_empty() {
            for pattern in caps.network.drain(..) {
                caps.denied.push(format!("network `{pattern}`: refused by policy"));
            }
        }
        if perms.network_from_policy && plugin_policy.and_then(|p| p.network_allowed) != Some(false) {
            if approved.is_empty() {
                caps.denied.push("network_access: the operator's policy lists no hosts for this plugin".into());
            }
            for pattern in approved {
                if !caps.network.contains(pattern) {
                    caps.network.push(pattern.clone());
                }
            }
        }
        Ok(caps)
    }

    /// The host path of the plugin's data directory, if it was granted one.
    pub fn data_dir(&self) -> Option<&Path> {
        self.preopens.iter().find(|p| p.guest == DATA_DIR_GUEST_PATH).map(|p| p.host.as_path())
    }

    /// Builds the WASI context of one instance. This is the only place grants
    /// become WASI capabilities. stdout/stderr go to the plugin's bounded log;
    /// the data directory is read-only while it is over its disk quota.
    pub(crate) fn wasi_ctx(&self, plugin: &Arc<str>, resources: &PluginResources) -> Result<WasiCtx> {
        let mut b = WasiCtxBuilder::new();
        let max_line = resources.limits.log.max_line;
        let data_read_only = resources.data_read_only();
        b.stdout(LogWriter::new(resources.log.clone(), "stdout", max_line))
            .stderr(LogWriter::new(resources.log.clone(), "stderr", max_line))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (k, v) in &self.env {
            b.env(k, v);
        }
        for p in &self.preopens {
            let perms = match p.access {
                FsAccess::Read => FsPerms::ReadOnly,
                FsAccess::ReadWrite if data_read_only && p.guest == DATA_DIR_GUEST_PATH => FsPerms::ReadOnly,
                FsAccess::ReadWrite => FsPerms::ReadWrite,
            };
            b.preopened_dir(&p.host, &p.guest, perms).map_err(|e| Error::Component {
                plugin: plugin.to_string(),
                message: format!("cannot open `{}` for the guest: {e}", p.host.display()),
            })?;
        }
        Ok(b.build())
    }
}
