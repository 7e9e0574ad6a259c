//! The operator's policy: the upper bound on what plugins may be granted.
//!
//! Effective capabilities are `declared ∩ allowed` (see [`crate::capability`]).
//! With the default policy a plugin may get: message access and kv as declared,
//! read-only filesystem access inside its own directory (directory form only),
//! its private data directory, the environment variables it names, and network
//! access to exact hosts it names. Filesystem access elsewhere and wildcard
//! network patterns need the policy; no policy makes a plugin root, the state
//! file, the compile cache or the policy file writable. The `approval` section
//! approves grants ahead for plugins that appear at run time and for upgrades.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::imports::resources::ResourceLimits;
use crate::manifest::{HostPattern, Limits, MessageAccess, ResolvedLimits};

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
    /// Upper bounds on what a manifest's `limits` may ask for (same syntax
    /// as the manifest's `limits`). Unset bounds default to
    /// [`Policy::DEFAULT_CAPS`]: 256 MiB memory, 10 s timeout, 32 instances,
    /// 16 MiB output.
    #[serde(default)]
    pub limits: Limits,
    /// Host resources every plugin gets (kv quota, log rate, outgoing HTTP,
    /// data-directory quota); unset values keep [`ResourceLimits::DEFAULT`].
    /// A plugin's own `resources` section overrides these.
    #[serde(default)]
    pub resources: ResourcePolicy,
    /// Per-plugin settings, by plugin name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginPolicy>,
    /// Which plugins that appear at run time, and which gained grants, load
    /// without waiting for the operator (see [`ApprovalPolicy`]).
    #[serde(default)]
    pub approval: ApprovalPolicy,
    /// The file this policy was read from (set by [`Policy::from_path`]); no
    /// grant may make it writable.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// The `approval` section: grants the operator approves ahead.
///
/// A plugin that appears at run time (hot reload, `reload_dir`) and a new
/// version that gains grants are held until [`Host::approve`](crate::Host::approve)
/// unless an entry here covers them: a new plugin is loaded when an entry for
/// its name, or the `"*"` entry, exists and covers every grant it gets; a new
/// version is swapped in when those entries cover every grant it gains.
/// Anything beyond them is held.
///
/// ```yaml
/// approval:
///   auto-approve:
///     "*": { messages: read }
///     redactor: { messages: write, kv: true, env: [REDACT_KEY], network: ["api.example.com:443"] }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApprovalPolicy {
    /// By plugin name, or `"*"` for every plugin: the grants approved ahead.
    #[serde(default)]
    pub auto_approve: BTreeMap<String, ApprovedGrants>,
}

/// Grants approved ahead for one plugin (or all, under `"*"`). Each names
/// exactly what it approves: nothing is implied.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApprovedGrants {
    /// Message access up to this level.
    #[serde(default)]
    pub messages: Option<MessageAccess>,
    /// The plugin's own kv namespace.
    #[serde(default)]
    pub kv: bool,
    /// Exactly these network patterns (as written in manifests).
    #[serde(default)]
    pub network: Vec<HostPattern>,
    /// Exactly these environment variables.
    #[serde(default)]
    pub env: Vec<String>,
    /// Directories (and what lies under them) approved for read-only grants.
    #[serde(default)]
    pub filesystem: Vec<PathBuf>,
    /// Directories (and what lies under them) approved for read-write grants.
    #[serde(default)]
    pub filesystem_write: Vec<PathBuf>,
    /// The plugin's private data directory.
    #[serde(default)]
    pub data_dir: bool,
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
    /// The most message access this plugin may get (narrows what it declares).
    #[serde(default)]
    pub messages: Option<MessageAccess>,
    /// `false` refuses this plugin the kv store even if it asks.
    #[serde(default)]
    pub kv: Option<bool>,
    /// `false` refuses this plugin every network grant.
    #[serde(default)]
    pub network_allowed: Option<bool>,
    /// Tighter limits for this plugin (same syntax as the manifest's `limits`).
    #[serde(default)]
    pub limits: Limits,
    /// Host resources for this plugin (more or less than the host-wide
    /// `resources`; `http.host-concurrent` is read from the host-wide section only).
    #[serde(default)]
    pub resources: ResourcePolicy,
}

/// The `resources:` section of a policy (host-wide, or in a plugin's section).
/// Every value is optional; sizes are integers (bytes) or strings such as `4MiB`.
///
/// ```yaml
/// resources:
///   kv: { bytes: 4MiB, keys: 10000, value-size: 256KiB, key-size: 512 }
///   log: { lines-per-second: 100, burst: 1000, bytes-per-second: 256KiB, byte-burst: 1MiB, max-line: 16KiB }
///   http: { concurrent: 8, host-concurrent: 256 }
///   data-dir: 64MiB
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResourcePolicy {
    /// The kv quota ([`crate::KvQuota`]).
    #[serde(default)]
    pub kv: KvPolicy,
    /// Log size and rate ([`crate::imports::LogLimits`]).
    #[serde(default)]
    pub log: LogPolicy,
    /// Concurrent outgoing HTTP requests ([`crate::imports::HttpLimits`]).
    #[serde(default)]
    pub http: HttpPolicy,
    /// Disk quota of the plugin's data directory (default 64 MiB).
    #[serde(default, deserialize_with = "de_size")]
    pub data_dir: Option<u64>,
}

/// `resources.kv`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KvPolicy {
    /// Key plus value bytes of all keys (default 4 MiB).
    #[serde(default, deserialize_with = "de_size")]
    pub bytes: Option<u64>,
    /// Number of keys (default 10,000).
    #[serde(default)]
    pub keys: Option<u64>,
    /// Largest value (default 256 KiB).
    #[serde(default, deserialize_with = "de_size")]
    pub value_size: Option<u64>,
    /// Longest key (default 512 bytes).
    #[serde(default, deserialize_with = "de_size")]
    pub key_size: Option<u64>,
}

/// `resources.log`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogPolicy {
    /// Sustained lines per second (default 100).
    #[serde(default)]
    pub lines_per_second: Option<u32>,
    /// Lines at once after a quiet period (default 1,000).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Sustained bytes per second (default 256 KiB).
    #[serde(default, deserialize_with = "de_size")]
    pub bytes_per_second: Option<u64>,
    /// Bytes at once after a quiet period (default 1 MiB).
    #[serde(default, deserialize_with = "de_size")]
    pub byte_burst: Option<u64>,
    /// Longest line kept (default 16 KiB).
    #[serde(default, deserialize_with = "de_size")]
    pub max_line: Option<u64>,
}

/// `resources.http`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpPolicy {
    /// Outgoing requests one plugin may have open at once (default 8).
    #[serde(default)]
    pub concurrent: Option<u32>,
    /// Outgoing requests all plugins may have open at once (default 256; host-wide section only).
    #[serde(default)]
    pub host_concurrent: Option<u32>,
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(t)) => t
            .parse::<bytesize::ByteSize>()
            .map(|b| Some(b.as_u64()))
            .map_err(|e| serde::de::Error::custom(format!("invalid size `{t}`: {e}"))),
    }
}

impl ResourcePolicy {
    /// `base` with the values this section sets.
    fn apply(&self, mut base: ResourceLimits) -> ResourceLimits {
        fn set<T: Copy>(to: &mut T, from: Option<T>) {
            if let Some(v) = from {
                *to = v;
            }
        }
        set(&mut base.kv.bytes, self.kv.bytes);
        set(&mut base.kv.keys, self.kv.keys);
        set(&mut base.kv.value_size, self.kv.value_size);
        set(&mut base.kv.key_size, self.kv.key_size);
        set(&mut base.log.lines_per_second, self.log.lines_per_second);
        set(&mut base.log.burst, self.log.burst);
        set(&mut base.log.bytes_per_second, self.log.bytes_per_second);
        set(&mut base.log.byte_burst, self.log.byte_burst);
        set(&mut base.log.max_line, self.log.max_line);
        set(&mut base.http.concurrent, self.http.concurrent);
        set(&mut base.data_dir, self.data_dir);
        base
    }
}

impl Policy {
    /// Reads a policy file; unknown fields are errors.
    pub fn from_path(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut policy: Policy =
            serde_norway::from_str(&text).map_err(|e| Error::Manifest(crate::manifest::from_yaml(e, &text, path)))?;
        policy.path = Some(path.to_path_buf());
        Ok(policy)
    }

    pub(crate) fn for_plugin(&self, name: &str) -> Option<&PluginPolicy> {
        self.plugins.get(name)
    }

    /// The host resources `plugin` gets: [`ResourceLimits::DEFAULT`], then
    /// the host-wide `resources`, then the plugin's own `resources`.
    pub fn resources_for(&self, plugin: &str) -> ResourceLimits {
        let mut limits = self.resources.apply(ResourceLimits::DEFAULT);
        if let Some(host) = self.resources.http.host_concurrent {
            limits.http.host_concurrent = host;
        }
        if let Some(p) = self.for_plugin(plugin) {
            let host_concurrent = limits.http.host_concurrent;
            limits = p.resources.apply(limits);
            limits.http.host_concurrent = host_concurrent;
        }
        limits
    }

    /// Bounds used where the policy sets none.
    pub const DEFAULT_CAPS: ResolvedLimits = ResolvedLimits {
        memory: 256 << 20,
        timeout: Duration::from_secs(10),
        instances: 32,
        stack: 4 << 20,
        fuel: None,
        max_output: 16 << 20,
        max_held: 1 << 20,
    };

    /// Applies the policy's bounds to a plugin's limits; returns the bounded
    /// limits and one line per limit that was lowered.
    pub fn cap_limits(&self, plugin: &str, mut limits: ResolvedLimits) -> (ResolvedLimits, Vec<String>) {
        let host_caps = self.limits.resolve_with(Policy::DEFAULT_CAPS);
        let caps = match self.for_plugin(plugin) {
            Some(p) => p.limits.resolve_with(host_caps).min(&host_caps),
            None => host_caps,
        };
        let mut lowered = Vec::new();
        let mut cap = |name: &str, value: &mut u64, max: u64, show: &dyn Fn(u64) -> String| {
            if *value > max {
                lowered.push(format!("limits.{name} {} lowered to {} by policy", show(*value), show(max)));
                *value = max;
            }
        };
        let bytes = |n: u64| bytesize::ByteSize(n).to_string();
        cap("memory", &mut limits.memory, caps.memory, &bytes);
        cap("max-output", &mut limits.max_output, caps.max_output, &bytes);
        cap("max-held", &mut limits.max_held, caps.max_held, &bytes);
        let mut instances = u64::from(limits.instances);
        cap("instances", &mut instances, u64::from(caps.instances), &|n| n.to_string());
        limits.instances = instances as u32;
        let mut ms = limits.timeout.as_millis() as u64;
        cap("timeout", &mut ms, caps.timeout.as_millis() as u64, &|n| format!("{n}ms"));
        limits.timeout = limits.timeout.min(Duration::from_millis(ms));
        if let (Some(max), fuel) = (caps.fuel, &mut limits.fuel) {
            let mut f = fuel.unwrap_or(u64::MAX);
            cap("fuel", &mut f, max, &|n| n.to_string());
            *fuel = Some(f);
        }
        (limits, lowered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const README_EXAMPLE: &str = r#"
filesystem-roots: [/srv/shared-models]
allow-wildcard-network: false
limits: { memory: 128MiB, timeout: 2s }
plugins:
  openai-proxy:
    network: ["*.openai.com:443"]
  pii-redact:
    messages: write
  untrusted-thing:
    messages: none
    kv: false
    network-allowed: false
    limits: { timeout: 20ms }
approval:
  auto-approve:
    pii-redact: { messages: write }
"#;

    #[test]
    fn readme_example_parses_and_bounds() {
        let p: Policy = serde_norway::from_str(README_EXAMPLE).unwrap();
        assert_eq!(p.filesystem_roots, [PathBuf::from("/srv/shared-models")]);
        let asked = ResolvedLimits { memory: 512 << 20, timeout: Duration::from_secs(5), ..ResolvedLimits::DEFAULT };
        let (l, lowered) = p.cap_limits("anyone", asked);
        assert_eq!(l.memory, 128 << 20);
        assert_eq!(l.timeout, Duration::from_secs(2));
        assert_eq!(lowered.len(), 2, "{lowered:?}");
        let (l, _) = p.cap_limits("untrusted-thing", asked);
        assert_eq!(l.timeout, Duration::from_millis(20));
        assert_eq!(p.for_plugin("untrusted-thing").unwrap().kv, Some(false));
        assert_eq!(p.approval.auto_approve["pii-redact"].messages, Some(MessageAccess::Write));
    }

    #[test]
    fn resources_default_then_host_then_plugin() {
        let p: Policy = serde_norway::from_str(
            "resources:\n  kv: { bytes: 8MiB }\n  log: { lines-per-second: 10 }\n  http: { host-concurrent: 16 }\n\
             plugins:\n  big:\n    resources:\n      kv: { bytes: 64MiB, keys: 5 }\n      data-dir: 1GiB\n\
             \x20     http: { concurrent: 2, host-concurrent: 1000 }\n",
        )
        .unwrap();
        let any = p.resources_for("any");
        assert_eq!(any.kv.bytes, 8 << 20);
        assert_eq!(any.kv.keys, ResourceLimits::DEFAULT.kv.keys);
        assert_eq!(any.log.lines_per_second, 10);
        assert_eq!(any.http.host_concurrent, 16);
        assert_eq!(any.data_dir, 64 << 20);
        let big = p.resources_for("big");
        assert_eq!((big.kv.bytes, big.kv.keys, big.data_dir), (64 << 20, 5, 1 << 30));
        assert_eq!((big.http.concurrent, big.http.host_concurrent), (2, 16), "host-wide only in the host section");
        assert_eq!(Policy::default().resources_for("x"), ResourceLimits::DEFAULT);
        assert!(serde_norway::from_str::<Policy>("resources: { kv: { bytes: lots } }").is_err());
        assert!(serde_norway::from_str::<Policy>("resources: { kv: { quota: 1 } }").is_err());
    }

    #[test]
    fn defaults_bound_generously_and_unknown_fields_fail() {
        let (l, lowered) = Policy::default().cap_limits("x", ResolvedLimits::DEFAULT);
        assert_eq!(l, ResolvedLimits::DEFAULT);
        assert!(lowered.is_empty());
        assert!(serde_norway::from_str::<Policy>("allow-wildcard: true").is_err());
    }
}
