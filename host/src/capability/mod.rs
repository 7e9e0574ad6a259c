//! Manifest ∩ policy -> [`Capabilities`]: plain data resolved once per load,
//! applied to every new instance by `Capabilities::wasi_ctx` (crate-private).
//!
//! Deny by default: a plugin whose manifest declares nothing gets clocks and
//! random, a closed stdin, stdout/stderr routed to the log, no arguments, no
//! environment, no files, no sockets and no name lookup.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

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
    /// `plugin_dir` is the directory relative paths resolve against;
    /// `data_root`, if set, holds one private data directory per plugin.
    pub fn resolve(
        manifest: &Manifest,
        plugin_dir: &Path,
        policy: &Policy,
        data_root: Option<&Path>,
    ) -> Result<Capabilities> {
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

        // Filesystem: inside the plugin's own directory, or under a policy root.
        let own_dir = plugin_dir.canonicalize().map_err(|e| Error::io(plugin_dir, e))?;
        let roots: Vec<PathBuf> = std::iter::once(own_dir)
            .chain(policy.filesystem_roots.iter().cloned())
            .chain(plugin_policy.into_iter().flat_map(|p| p.filesystem_roots.iter().cloned()))
            .filter_map(|r| r.canonicalize().ok())
            .collect();
        for grant in &perms.filesystem {
            let host = plugin_dir.join(&grant.host);
            match host.canonicalize() {
                Ok(canonical) if roots.iter().any(|r| canonical.starts_with(r)) => {
                    caps.preopens.push(Preopen { host: canonical, guest: grant.guest.clone(), access: grant.access })
                }
                Ok(canonical) => caps.denied.push(format!(
                    "filesystem `{}` -> `{}`: outside the plugin's directory and not allowed by policy",
                    canonical.display(),
                    grant.guest
                )),
                Err(e) => caps.denied.push(format!("filesystem `{}`: {e}", host.display())),
            }
        }
        if perms.data_dir {
            match data_root {
                Some(root) => {
                    let dir = root.join(name);
                    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                    let host = dir.canonicalize().map_err(|e| Error::io(&dir, e))?;
                    caps.preopens.push(Preopen {
                        host,
                        guest: DATA_DIR_GUEST_PATH.to_string(),
                        access: FsAccess::ReadWrite,
                    });
                }
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
