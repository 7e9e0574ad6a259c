//! Host resources a plugin uses outside its own memory, bounded per plugin:
//! its kv namespace ([`KvQuota`]), its log ([`LogLimits`]), its outgoing HTTP
//! ([`HttpLimits`]) and its data directory (a disk quota).
//!
//! [`ResourceLimits`] holds the values that apply to one plugin (resolved from
//! the defaults and the operator's policy, `resources:`), and
//! `PluginResources` the state all instances of the plugin share.
//!
//! The data directory has no write hook in `wasmtime-wasi` (48), so its usage
//! is measured after each call of a plugin that has one (a bounded walk on a
//! blocking thread). A call that leaves it over quota, or that leaves it
//! impossible to measure (nested deeper than a path can name, unreadable),
//! fails with a named error,
//! its instance is discarded, and later instances get the directory read-only
//! until usage is back under the quota (the operator removes files, or the
//! quota is raised). The honest bound: one call can overshoot the quota by
//! what it writes before its deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime::component::ResourceTable;

use super::guest_log::{LogLimits, PluginLog};
use super::http::{HttpLimits, HttpPermits, holds_http};
use super::kv::KvQuota;

/// Default disk quota of a plugin's data directory: 64 MiB.
pub const DEFAULT_DATA_DIR_QUOTA: u64 = 64 << 20;

/// Most directory entries a data directory may hold (the walk that measures
/// it stops there): 10,000.
pub const DATA_DIR_MAX_ENTRIES: u64 = 10_000;

/// The bounds on host resources that apply to one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResourceLimits {
    /// Its kv namespace.
    pub kv: KvQuota,
    /// Its log lines (the `log` import and stdout/stderr).
    pub log: LogLimits,
    /// Its outgoing HTTP requests (and the host-wide bound).
    pub http: HttpLimits,
    /// Bytes its data directory may hold.
    pub data_dir: u64,
}

impl ResourceLimits {
    /// Every default: see [`KvQuota::DEFAULT`], [`LogLimits::DEFAULT`],
    /// [`HttpLimits::DEFAULT`] and [`DEFAULT_DATA_DIR_QUOTA`].
    pub const DEFAULT: ResourceLimits = ResourceLimits {
        kv: KvQuota::DEFAULT,
        log: LogLimits::DEFAULT,
        http: HttpLimits::DEFAULT,
        data_dir: DEFAULT_DATA_DIR_QUOTA,
    };
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits::DEFAULT
    }
}

/// A plugin's data directory and its quota.
pub(crate) struct DataDir {
    pub(crate) path: PathBuf,
    quota: u64,
    /// Set while usage is over the quota: new instances get the directory read-only.
    read_only: AtomicBool,
}

/// What the host does with an instance after a call.
pub(crate) enum AfterCall {
    /// Back into the pool.
    Park,
    /// Dropped (it still owned outgoing HTTP resources); the call's result stands.
    Discard,
    /// The call fails with this message (a resource limit), and the instance is dropped.
    Fail(String),
}

/// Resource state shared by every instance of one plugin.
pub(crate) struct PluginResources {
    pub(crate) limits: ResourceLimits,
    pub(crate) log: Arc<PluginLog>,
    pub(crate) http: Arc<HttpPermits>,
    pub(crate) data_dir: Option<DataDir>,
}

impl PluginResources {
    /// State for `plugin`; `host_http` is the host-wide request semaphore
    /// (of `limits.http.host_concurrent` permits), `data_dir` the plugin's data
    /// directory if it has one.
    pub(crate) fn new(
        plugin: Arc<str>,
        limits: ResourceLimits,
        host_http: Arc<Semaphore>,
        data_dir: Option<PathBuf>,
    ) -> Self {
        PluginResources {
            log: Arc::new(PluginLog::new(plugin, limits.log)),
            http: Arc::new(HttpPermits::new(limits.http.concurrent, host_http, limits.http.host_concurrent)),
            data_dir: data_dir.map(|path| DataDir { path, quota: limits.data_dir, read_only: AtomicBool::new(false) }),
            limits,
        }
    }

    /// Whether new instances get the data directory read-only (it is over quota).
    pub(crate) fn data_read_only(&self) -> bool {
        self.data_dir.as_ref().is_some_and(|d| d.read_only.load(Ordering::Acquire))
    }

    /// Log lines dropped so far.
    pub(crate) fn log_dropped(&self) -> u64 {
        self.log.dropped()
    }

    /// Runs after every call, whatever its outcome: drops an instance that
    /// still owns outgoing HTTP resources, and measures the data directory.
    /// `pool_stale` is set when the data directory switched between read-write
    /// and read-only, so pooled instances (opened the old way) must go.
    pub(crate) async fn after_call(&self, plugin: &str, table: &mut ResourceTable, pool_stale: &mut bool) -> AfterCall {
        let mut verdict = AfterCall::Park;
        if holds_http(table) {
            tracing::debug!(plugin, "instance still owns outgoing HTTP resources: discarded");
            verdict = AfterCall::Discard;
        }
        if let Some(dir) = &self.data_dir {
            let path = dir.path.clone();
            let measured = tokio::task::spawn_blocking(move || measure(&path, DATA_DIR_MAX_ENTRIES)).await;
            let over = match measured {
                Ok(Ok(Usage { entries, .. })) if entries > DATA_DIR_MAX_ENTRIES => Some(format!(
                    "data directory holds more than `{DATA_DIR_MAX_ENTRIES}` entries (limit `resources.data-dir`)"
                )),
                Ok(Ok(Usage { bytes, .. })) if bytes > dir.quota => Some(format!(
                    "data directory holds `{bytes}` bytes, over its quota of {} (`resources.data-dir`)",
                    bytesize::ByteSize(dir.quota)
                )),
                Ok(Ok(_)) => None,
                // A directory the host cannot measure (nested deeper than a
                // path can name, unreadable) counts as over its quota: the
                // quota must not depend on the plugin letting it be measured.
                Ok(Err(e)) => Some(format!(
                    "data directory cannot be measured ({e}), so it counts as over its quota of {} \
                     (`resources.data-dir`)",
                    bytesize::ByteSize(dir.quota)
                )),
                Err(e) => Some(format!("data directory cannot be measured ({e}), so it counts as over its quota")),
            };
            let was = dir.read_only.swap(over.is_some(), Ordering::AcqRel);
            if was != over.is_some() {
                *pool_stale = true;
                match &over {
                    Some(why) => tracing::warn!(plugin, "{why}: the data directory is read-only until it shrinks"),
                    None => tracing::info!(plugin, "data directory back under its quota: read-write again"),
                }
            }
            if let Some(why) = over {
                verdict = AfterCall::Fail(why);
            }
        }
        verdict
    }
}

struct Usage {
    bytes: u64,
    entries: u64,
}

/// Bytes of the regular files under `dir` (symbolic links are not followed)
/// and the number of entries, stopping after `max_entries + 1` entries.
///
/// An entry that vanishes while it is measured (the plugin removed it) is
/// skipped; any other error (a path too long to name, a directory that
/// cannot be read) is returned, and the caller treats the directory as over
/// its quota.
fn measure(dir: &Path, max_entries: u64) -> std::io::Result<Usage> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut usage = Usage { bytes: 0, entries: 0 };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if gone(&e) && d != dir => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            usage.entries += 1;
            if usage.entries > max_entries {
                return Ok(usage);
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                usage.bytes += meta.len();
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_counts_files_and_stops_at_the_entry_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0; 1000]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), vec![0; 24]).unwrap();
        let u = measure(dir.path(), 100).unwrap();
        assert_eq!((u.bytes, u.entries), (1024, 3));
        for i in 0..10 {
            std::fs::write(dir.path().join(format!("f{i}")), b"").unwrap();
        }
        assert_eq!(measure(dir.path(), 5).unwrap().entries, 6);
    }

    #[tokio::test]
    async fn over_quota_fails_the_call_and_turns_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ResourceLimits { data_dir: 100, ..ResourceLimits::DEFAULT };
        let r = PluginResources::new(Arc::from("p"), limits, Arc::new(Semaphore::new(1)), Some(dir.path().into()));
        let mut table = ResourceTable::new();
        let mut stale = false;
        assert!(matches!(r.after_call("p", &mut table, &mut stale).await, AfterCall::Park));
        std::fs::write(dir.path().join("big"), vec![0; 101]).unwrap();
        match r.after_call("p", &mut table, &mut stale).await {
            AfterCall::Fail(why) => {
                assert_eq!(why, "data directory holds `101` bytes, over its quota of 100 B (`resources.data-dir`)")
            }
            _ => panic!("expected a failure"),
        }
        assert!(stale && r.data_read_only());
        std::fs::remove_file(dir.path().join("big")).unwrap();
        stale = false;
        assert!(matches!(r.after_call("p", &mut table, &mut stale).await, AfterCall::Park));
        assert!(stale && !r.data_read_only());
    }
}
