//! The `kv` capability: a key/value store with one namespace per plugin.
//!
//! [`KvStore`] is the seam for other backends (Redis, for rate limits and
//! caches shared across replicas); [`MemoryKv`] is the in-process default.
//! A plugin only ever sees a `KvNamespace` (its own), so it cannot name another
//! plugin's keys, whatever string it passes.
//!
//! Every namespace has a [`KvQuota`]: total bytes (keys plus values), key
//! count, value size and key length. The host checks value size and key
//! length before it calls the store; the store enforces the totals atomically
//! with the write (a backend must, or concurrent instances could overshoot).
//! A write over quota fails with [`KvError::QuotaExceeded`], which the guest
//! sees as the WIT `kv-error::other` with the same message.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Why a kv operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The stored value is not an integer (for `increment`).
    #[error("value is not an integer")]
    NotANumber,
    /// The write would take the namespace past its [`KvQuota`]; the message
    /// names the limit and the offending value.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The store refused the operation (backend failure); the message says why.
    #[error("{0}")]
    Other(String),
}

/// The most one plugin may keep in its kv namespace.
///
/// Defaults ([`KvQuota::DEFAULT`]): 4 MiB in all (key and value bytes), 10,000
/// keys, 256 KiB per value, 512 bytes per key. The operator's policy sets
/// other values (`resources.kv`, host-wide or per plugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KvQuota {
    /// Key plus value bytes of all live keys.
    pub bytes: u64,
    /// Number of keys.
    pub keys: u64,
    /// Largest value.
    pub value_size: u64,
    /// Longest key, in bytes.
    pub key_size: u64,
}

impl KvQuota {
    /// 4 MiB, 10,000 keys, 256 KiB per value, 512 B per key.
    pub const DEFAULT: KvQuota = KvQuota { bytes: 4 << 20, keys: 10_000, value_size: 256 << 10, key_size: 512 };

    /// No limit at all (for tools and tests that use a store directly).
    pub const UNLIMITED: KvQuota =
        KvQuota { bytes: u64::MAX, keys: u64::MAX, value_size: u64::MAX, key_size: u64::MAX };

    /// The stateless part of the quota: key length and value size.
    pub fn check_entry(&self, key: &str, value_len: usize) -> Result<(), KvError> {
        if key.len() as u64 > self.key_size {
            return Err(KvError::QuotaExceeded(format!(
                "kv quota: key of `{}` bytes is over the `key-size` limit of {} bytes",
                key.len(),
                self.key_size
            )));
        }
        if value_len as u64 > self.value_size {
            return Err(KvError::QuotaExceeded(format!(
                "kv quota: value of `{value_len}` bytes is over the `value-size` limit of {} bytes",
                self.value_size
            )));
        }
        Ok(())
    }

    /// The stateful part: whether a namespace using `bytes` in `keys` keys may hold that.
    pub fn check_totals(&self, bytes: u64, keys: u64) -> Result<(), KvError> {
        if keys > self.keys {
            return Err(KvError::QuotaExceeded(format!(
                "kv quota: `{keys}` keys is over the `keys` limit of {}",
                self.keys
            )));
        }
        if bytes > self.bytes {
            return Err(KvError::QuotaExceeded(format!(
                "kv quota: `{bytes}` bytes is over the `bytes` limit of {} bytes",
                self.bytes
            )));
        }
        Ok(())
    }
}

impl Default for KvQuota {
    fn default() -> Self {
        KvQuota::DEFAULT
    }
}

/// What a namespace holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KvUsage {
    /// Key plus value bytes (of entries not yet swept, expired ones included).
    pub bytes: u64,
    /// Number of keys (same caveat).
    pub keys: u64,
}

/// The future a [`KvStore`] method returns.
pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'a>>;

/// A key/value backend, used as `Arc<dyn KvStore>`. Every call names the
/// namespace (the plugin's name); every write carries the namespace's quota.
///
/// Implementations must make `increment` and `compare_and_swap` atomic, and
/// enforce [`KvQuota::check_totals`] atomically with each write that grows
/// the namespace (the host already checked [`KvQuota::check_entry`]).
pub trait KvStore: Send + Sync + 'static {
    /// The live (unexpired) value of `key`, or `None`.
    fn get<'a>(&'a self, ns: &'a str, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>>;
    /// Stores a value, replacing any; `ttl` makes it expire (`None`: never).
    fn set<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> KvFuture<'a, ()>;
    /// Removes `key`; `true` when a live value was removed.
    fn delete<'a>(&'a self, ns: &'a str, key: &'a str) -> KvFuture<'a, bool>;
    /// Atomically adds `delta` to an integer value (missing = 0) and returns the result;
    /// `ttl` applies when the key is created. [`KvError::NotANumber`] if the value is not an integer.
    fn increment<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> KvFuture<'a, i64>;
    /// Atomically replaces the value with `value` if it still equals `expected`
    /// (`None`: the key is absent); `true` when it was replaced.
    fn compare_and_swap<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> KvFuture<'a, bool>;
    /// Keys currently stored in a namespace, sorted (for operators and tests).
    fn keys<'a>(&'a self, ns: &'a str) -> KvFuture<'a, Vec<String>>;
    /// What a namespace holds now.
    fn usage<'a>(&'a self, ns: &'a str) -> KvFuture<'a, KvUsage>;
    /// Removes a namespace and everything in it (the plugin was uninstalled,
    /// or its files were removed).
    fn drop_namespace<'a>(&'a self, ns: &'a str) -> KvFuture<'a, ()>;
}

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

fn entry_bytes(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// What the in-memory store counts against its host-wide limit for one
/// entry besides its key and value: the map slot and the two allocations.
pub const MEMORY_KV_ENTRY_COST: u64 = 64;

/// The default host-wide limit of [`MemoryKv`]: 256 MiB.
pub const DEFAULT_MEMORY_KV_LIMIT: u64 = 256 << 20;

fn entry_cost(key: &str, value_len: usize) -> u64 {
    (key.len() + value_len) as u64 + MEMORY_KV_ENTRY_COST
}

/// The bytes all namespaces of one [`MemoryKv`] hold, and the most they may.
#[derive(Debug)]
struct HostBudget {
    used: AtomicU64,
    limit: u64,
}

impl HostBudget {
    /// Takes `n` bytes if the total stays within the limit.
    fn try_charge(&self, n: u64) -> Result<(), u64> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .map(drop)
            .map_err(|used| used.saturating_add(n))
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// In-memory [`KvStore`]: one map per namespace, expired entries dropped lazily
/// and swept when a namespace grows or a write would pass the quota.
///
/// Besides each namespace's [`KvQuota`], the store has a host-wide limit on
/// what all namespaces hold together ([`DEFAULT_MEMORY_KV_LIMIT`], 256 MiB;
/// [`MemoryKv::with_limit`], `HostBuilder::kv_memory_limit`), counting each
/// entry's key and value plus [`MEMORY_KV_ENTRY_COST`]: per-plugin quotas
/// alone let the store grow with the number of plugins loaded. A write past
/// it fails like a quota refusal, naming the limit.
pub struct MemoryKv {
    namespaces: Mutex<HashMap<String, Arc<Mutex<Namespace>>>>,
    budget: Arc<HostBudget>,
}

impl Default for MemoryKv {
    fn default() -> Self {
        MemoryKv::with_limit(DEFAULT_MEMORY_KV_LIMIT)
    }
}

struct Namespace {
    entries: HashMap<String, Entry>,
    /// Key plus value bytes of `entries`.
    bytes: u64,
    /// Size at which the next full sweep of expired entries happens.
    sweep_at: usize,
    /// The store's host-wide budget: holds this namespace's cost (bytes plus
    /// [`MEMORY_KV_ENTRY_COST`] per entry) at all times.
    budget: Arc<HostBudget>,
}

impl Namespace {
    fn new(budget: Arc<HostBudget>) -> Self {
        Namespace { entries: HashMap::new(), bytes: 0, sweep_at: 0, budget }
    }

    /// What this namespace holds against the host-wide budget.
    fn cost(&self) -> u64 {
        self.bytes + MEMORY_KV_ENTRY_COST * self.entries.len() as u64
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.bytes -= entry_bytes(key, &e.value);
        self.budget.release(entry_cost(key, e.value.len()));
        Some(e)
    }

    fn sweep(&mut self, now: Instant) {
        let mut freed = 0;
        let mut swept = 0;
        self.entries.retain(|k, e| {
            let keep = e.live(now);
            if !keep {
                freed += entry_bytes(k, &e.value);
                swept += 1;
            }
            keep
        });
        self.bytes -= freed;
        self.budget.release(freed + swept * MEMORY_KV_ENTRY_COST);
        self.sweep_at = (self.entries.len() * 2).max(1024);
    }

    fn get_live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| !e.live(now)) {
            self.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// Usage after replacing `key`'s value with one of `len` bytes.
    fn usage_with(&self, key: &str, len: usize) -> (u64, u64) {
        match self.entries.get(key) {
            Some(old) => (self.bytes - old.value.len() as u64 + len as u64, self.entries.len() as u64),
            None => (self.bytes + key.len() as u64 + len as u64, self.entries.len() as u64 + 1),
        }
    }

    /// What a write of `len` bytes to `key` adds to the host-wide budget.
    fn growth(&self, key: &str, len: usize) -> u64 {
        let old = self.entries.get(key).map_or(0, |e| entry_cost(key, e.value.len()));
        entry_cost(key, len).saturating_sub(old)
    }

    /// Checks the quota's totals for a write of `len` bytes to `key`, and
    /// takes its growth from the host-wide budget, sweeping expired entries
    /// once before refusing. On `Ok` the write must follow through [`put`](Self::put).
    fn admit(&mut self, key: &str, len: usize, quota: &KvQuota, now: Instant) -> Result<(), KvError> {
        let (bytes, keys) = self.usage_with(key, len);
        if quota.check_totals(bytes, keys).is_ok() && self.budget.try_charge(self.growth(key, len)).is_ok() {
            return Ok(());
        }
        self.sweep(now);
        let (bytes, keys) = self.usage_with(key, len);
        quota.check_totals(bytes, keys)?;
        self.budget.try_charge(self.growth(key, len)).map_err(|total| {
            KvError::QuotaExceeded(format!(
                "kv quota: the host's in-memory kv store would hold `{total}` bytes, over its host-wide limit of {} bytes",
                self.budget.limit
            ))
        })
    }

    /// Stores `value` at `key` after [`admit`](Self::admit) took its growth;
    /// gives back what a smaller value frees.
    fn put(&mut self, key: &str, value: Vec<u8>, expires: Option<Instant>) {
        let new_cost = entry_cost(key, value.len());
        self.bytes += entry_bytes(key, &value);
        if let Some(old) = self.entries.insert(key.to_string(), Entry { value, expires }) {
            self.bytes -= entry_bytes(key, &old.value);
            self.budget.release(entry_cost(key, old.value.len()).saturating_sub(new_cost));
        }
    }

    fn insert(
        &mut self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: &KvQuota,
        now: Instant,
    ) -> Result<(), KvError> {
        if self.entries.len() >= self.sweep_at {
            self.sweep(now);
        }
        self.admit(key, value.len(), quota, now)?;
        self.put(key, value, ttl.map(|t| now + t));
        Ok(())
    }
}

impl MemoryKv {
    /// An empty store with the default host-wide limit ([`DEFAULT_MEMORY_KV_LIMIT`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose namespaces together hold at most `bytes` (keys,
    /// values and [`MEMORY_KV_ENTRY_COST`] per entry).
    pub fn with_limit(bytes: u64) -> Self {
        MemoryKv {
            namespaces: Mutex::default(),
            budget: Arc::new(HostBudget { used: AtomicU64::new(0), limit: bytes }),
        }
    }

    /// What all namespaces hold now against the host-wide limit.
    pub fn host_usage(&self) -> u64 {
        self.budget.used.load(Ordering::Acquire)
    }

    fn ns(&self, ns: &str) -> Arc<Mutex<Namespace>> {
        let mut map = self.namespaces.lock();
        map.entry(ns.to_string()).or_insert_with(|| Arc::new(Mutex::new(Namespace::new(self.budget.clone())))).clone()
    }

    fn get_now(&self, ns: &str, key: &str) -> Option<Vec<u8>> {
        let ns = self.ns(ns);
        let mut ns = ns.lock();
        ns.get_live(key, Instant::now()).map(|e| e.value.clone())
    }

    fn increment_now(
        &self,
        ns: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
        quota: &KvQuota,
    ) -> Result<i64, KvError> {
        let ns = self.ns(ns);
        let mut ns = ns.lock();
        let now = Instant::now();
        let current = match ns.get_live(key, now) {
            Some(entry) => Some(
                std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or(KvError::NotANumber)?,
            ),
            None => None,
        };
        let next = current.unwrap_or(0).saturating_add(delta);
        let bytes = next.to_string().into_bytes();
        quota.check_entry(key, bytes.len())?;
        match current {
            Some(_) => {
                ns.admit(key, bytes.len(), quota, now)?;
                let expires = ns.entries.get(key).expect("live entry").expires;
                ns.put(key, bytes, expires);
            }
            None => ns.insert(key, bytes, ttl, quota, now)?,
        }
        Ok(next)
    }

    fn cas_now(
        &self,
        ns: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: &KvQuota,
    ) -> Result<bool, KvError> {
        let ns = self.ns(ns);
        let mut ns = ns.lock();
        let now = Instant::now();
        let current = ns.get_live(key, now).map(|e| e.value.as_slice());
        if current != expected {
            return Ok(false);
        }
        ns.insert(key, value, ttl, quota, now)?;
        Ok(true)
    }
}

fn ready<'a, T: Send + 'a>(r: Result<T, KvError>) -> KvFuture<'a, T> {
    Box::pin(std::future::ready(r))
}

impl KvStore for MemoryKv {
    fn get<'a>(&'a self, ns: &'a str, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>> {
        ready(Ok(self.get_now(ns, key)))
    }

    fn set<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> KvFuture<'a, ()> {
        let r = quota
            .check_entry(key, value.len())
            .and_then(|()| self.ns(ns).lock().insert(key, value, ttl, &quota, Instant::now()));
        ready(r)
    }

    fn delete<'a>(&'a self, ns: &'a str, key: &'a str) -> KvFuture<'a, bool> {
        let ns = self.ns(ns);
        let mut ns = ns.lock();
        let now = Instant::now();
        ready(Ok(ns.remove(key).is_some_and(|e| e.live(now))))
    }

    fn increment<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> KvFuture<'a, i64> {
        ready(self.increment_now(ns, key, delta, ttl, &quota))
    }

    fn compare_and_swap<'a>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> KvFuture<'a, bool> {
        let r = quota
            .check_entry(key, value.len())
            .and_then(|()| self.cas_now(ns, key, expected.as_deref(), value, ttl, &quota));
        ready(r)
    }

    fn keys<'a>(&'a self, ns: &'a str) -> KvFuture<'a, Vec<String>> {
        let ns = self.ns(ns);
        let ns = ns.lock();
        let now = Instant::now();
        let mut keys: Vec<String> = ns.entries.iter().filter(|(_, e)| e.live(now)).map(|(k, _)| k.clone()).collect();
        keys.sort();
        ready(Ok(keys))
    }

    fn usage<'a>(&'a self, ns: &'a str) -> KvFuture<'a, KvUsage> {
        let usage = match self.namespaces.lock().get(ns) {
            Some(n) => {
                let n = n.lock();
                KvUsage { bytes: n.bytes, keys: n.entries.len() as u64 }
            }
            None => KvUsage::default(),
        };
        ready(Ok(usage))
    }

    fn drop_namespace<'a>(&'a self, ns: &'a str) -> KvFuture<'a, ()> {
        if let Some(n) = self.namespaces.lock().remove(ns) {
            let mut n = n.lock();
            n.budget.release(n.cost());
            n.entries.clear();
            n.bytes = 0;
        }
        ready(Ok(()))
    }
}

/// A plugin's view of the store: its own namespace and quota, or nothing when not granted.
#[derive(Clone)]
pub(crate) struct KvNamespace {
    pub(crate) store: Option<Arc<dyn KvStore>>,
    pub(crate) namespace: String,
    pub(crate) quota: KvQuota,
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: KvQuota = KvQuota::DEFAULT;

    /// MemoryKv's futures are always ready: poll once.
    fn block<T>(mut f: KvFuture<'_, T>) -> Result<T, KvError> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => panic!("MemoryKv future not ready"),
        }
    }

    #[test]
    fn namespaces_are_disjoint() {
        let kv = MemoryKv::new();
        block(kv.set("a", "k", b"1".to_vec(), None, Q)).unwrap();
        assert_eq!(block(kv.get("b", "k")).unwrap(), None);
        assert_eq!(block(kv.get("a", "k")).unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn ttl_expires() {
        let kv = MemoryKv::new();
        block(kv.set("a", "k", b"1".to_vec(), Some(Duration::from_millis(1)), Q)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(block(kv.get("a", "k")).unwrap(), None);
        assert!(block(kv.keys("a")).unwrap().is_empty());
    }

    #[test]
    fn increment_and_cas() {
        let kv = MemoryKv::new();
        assert_eq!(block(kv.increment("a", "n", 2, None, Q)).unwrap(), 2);
        assert_eq!(block(kv.increment("a", "n", -5, None, Q)).unwrap(), -3);
        block(kv.set("a", "s", b"x".to_vec(), None, Q)).unwrap();
        assert_eq!(block(kv.increment("a", "s", 1, None, Q)), Err(KvError::NotANumber));
        assert!(block(kv.compare_and_swap("a", "c", None, b"1".to_vec(), None, Q)).unwrap());
        assert!(!block(kv.compare_and_swap("a", "c", None, b"2".to_vec(), None, Q)).unwrap());
        assert!(block(kv.compare_and_swap("a", "c", Some(b"1".to_vec()), b"2".to_vec(), None, Q)).unwrap());
        assert_eq!(block(kv.get("a", "c")).unwrap(), Some(b"2".to_vec()));
        assert!(block(kv.delete("a", "c")).unwrap());
        assert!(!block(kv.delete("a", "c")).unwrap());
    }

    #[test]
    fn quota_bounds_bytes_keys_and_sizes() {
        let kv = MemoryKv::new();
        let q = KvQuota { bytes: 100, keys: 3, value_size: 40, key_size: 4 };
        let err = block(kv.set("a", "long-key", b"x".to_vec(), None, q)).unwrap_err();
        assert_eq!(err.to_string(), "kv quota: key of `8` bytes is over the `key-size` limit of 4 bytes");
        let err = block(kv.set("a", "k", vec![0; 41], None, q)).unwrap_err();
        assert!(err.to_string().contains("`41` bytes is over the `value-size` limit"), "{err}");
        block(kv.set("a", "k1", vec![0; 38], None, q)).unwrap();
        block(kv.set("a", "k2", vec![0; 38], None, q)).unwrap();
        let err = block(kv.set("a", "k3", vec![0; 38], None, q)).unwrap_err();
        assert!(err.to_string().contains("over the `bytes` limit of 100 bytes"), "{err}");
        // Replacing a value counts the difference only.
        block(kv.set("a", "k1", vec![1; 38], None, q)).unwrap();
        block(kv.set("a", "k3", vec![0; 2], None, q)).unwrap();
        let err = block(kv.set("a", "k4", vec![], None, q)).unwrap_err();
        assert!(err.to_string().contains("`4` keys is over the `keys` limit of 3"), "{err}");
        assert_eq!(block(kv.usage("a")).unwrap(), KvUsage { bytes: 2 + 38 + 2 + 38 + 2 + 2, keys: 3 });
        assert!(block(kv.delete("a", "k1")).unwrap());
        block(kv.set("a", "k4", vec![], None, q)).unwrap();
        let err = block(kv.increment("a", "k4", 1, None, q)).unwrap_err();
        assert_eq!(err, KvError::NotANumber);
    }

    #[test]
    fn expired_entries_free_quota_and_namespaces_drop() {
        let kv = MemoryKv::new();
        let q = KvQuota { bytes: 10, keys: 10, value_size: 10, key_size: 10 };
        block(kv.set("a", "k", vec![0; 8], Some(Duration::from_millis(1)), q)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        block(kv.set("a", "j", vec![0; 8], None, q)).unwrap();
        assert_eq!(block(kv.usage("a")).unwrap(), KvUsage { bytes: 9, keys: 1 });
        block(kv.drop_namespace("a")).unwrap();
        assert_eq!(block(kv.usage("a")).unwrap(), KvUsage::default());
        assert!(block(kv.keys("a")).unwrap().is_empty());
    }

    /// Namespaces together stay within the host-wide limit; what one frees
    /// (delete, expiry, a smaller value, a dropped namespace) is given back.
    #[test]
    fn the_host_wide_limit_bounds_all_namespaces_together() {
        let cost = entry_cost("k0", 1000);
        let kv = MemoryKv::with_limit(3 * cost);
        for ns in ["a", "b", "c"] {
            block(kv.set(ns, "k0", vec![0; 1000], None, Q)).unwrap();
        }
        let err = block(kv.set("d", "k0", vec![0; 1000], None, Q)).unwrap_err();
        assert!(err.to_string().contains("host-wide limit of"), "{err}");
        assert_eq!(kv.host_usage(), 3 * cost);
        block(kv.set("a", "k0", vec![0; 10], None, Q)).unwrap();
        block(kv.delete("b", "k0")).unwrap();
        block(kv.drop_namespace("c")).unwrap();
        assert_eq!(kv.host_usage(), entry_cost("k0", 10));
        block(kv.set("d", "k0", vec![0; 1000], Some(Duration::from_millis(1)), Q)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // The expired entry is swept to make room.
        block(kv.set("e", "k0", vec![0; 1000], None, Q)).unwrap();
        block(kv.set("e", "k1", vec![0; 1000], None, Q)).unwrap_err();
    }

    /// Set/expire churn with fresh keys: nothing grows past the live keys.
    #[test]
    fn ttl_churn_does_not_grow_the_store() {
        let kv = MemoryKv::new();
        let quota = KvQuota { keys: 100, ..Q };
        for round in 0..50 {
            for i in 0..100 {
                block(kv.set("a", &format!("r{round}-{i}"), vec![0; 100], Some(Duration::from_millis(1)), quota))
                    .unwrap();
            }
            block(kv.increment("a", "n", 1, Some(Duration::from_millis(1)), quota)).unwrap_or_default();
            std::thread::sleep(Duration::from_millis(2));
        }
        let usage = block(kv.usage("a")).unwrap();
        assert!(usage.keys <= 101, "{usage:?}");
        assert!(kv.host_usage() <= 101 * entry_cost("r49-99", 100), "{}", kv.host_usage());
        let ns = kv.ns("a");
        assert!(ns.lock().entries.capacity() < 1024, "the map stays small");
    }
}
