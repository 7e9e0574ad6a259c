//! The `kv` capability: a key/value store with one namespace per plugin.
//!
//! [`KvStore`] is the seam for other backends (Redis, for rate limits and
//! caches shared across replicas); [`MemoryKv`] is the in-process default.
//! A plugin only ever sees a `KvNamespace` (its own), so it cannot name another
//! plugin's keys, whatever string it passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Why a kv operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The stored value is not an integer (for `increment`).
    #[error("value is not an integer")]
    NotANumber,
    /// The store refused the operation (quota, backend failure); the message says why.
    #[error("{0}")]
    Other(String),
}

/// A key/value backend. Every call names the namespace (the plugin's name).
///
/// Implementations must make `increment` and `compare_and_swap` atomic.
pub trait KvStore: Send + Sync + 'static {
    /// The live (unexpired) value of `key`, or `None`.
    fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores a value, replacing any; `ttl` makes it expire (`None`: never).
    fn set(&self, ns: &str, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), KvError>;
    /// Removes `key`; `true` when a live value was removed.
    fn delete(&self, ns: &str, key: &str) -> Result<bool, KvError>;
    /// Atomically adds `delta` to an integer value (missing = 0) and returns the result;
    /// `ttl` applies when the key is created. [`KvError::NotANumber`] if the value is not an integer.
    fn increment(&self, ns: &str, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError>;
    /// Atomically replaces the value with `value` if it still equals `expected`
    /// (`None`: the key is absent); `true` when it was replaced.
    fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError>;
    /// Keys currently stored in a namespace (for operators and tests).
    fn keys(&self, ns: &str) -> Vec<String>;
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

/// In-memory [`KvStore`]: one map per namespace, expired entries dropped lazily
/// and swept when a namespace grows.
#[derive(Default)]
pub struct MemoryKv {
    namespaces: Mutex<HashMap<String, Arc<Mutex<Namespace>>>>,
}

#[derive(Default)]
struct Namespace {
    entries: HashMap<String, Entry>,
    /// Size at which the next full sweep of expired entries happens.
    sweep_at: usize,
}

impl Namespace {
    fn get_live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| !e.live(now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn insert(&mut self, key: &str, value: Vec<u8>, ttl: Option<Duration>, now: Instant) {
        if self.entries.len() >= self.sweep_at {
            self.entries.retain(|_, e| e.live(now));
            self.sweep_at = (self.entries.len() * 2).max(1024);
        }
        self.entries.insert(key.to_string(), Entry { value, expires: ttl.map(|t| now + t) });
    }
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn ns(&self, ns: &str) -> Arc<Mutex<Namespace>> {
        self.namespaces.lock().entry(ns.to_string()).or_default().clone()
    }
}

impl KvStore for MemoryKv {
    fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let ns = self.ns(ns);
        let mut ns = ns.lock();
        Ok(ns.get_live(key, Instant::now()).map(|e| e.value.clone()))
    }

    fn set(&self, ns: &str, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), KvError> {
        self.ns(ns).lock().insert(key, value, ttl, Instant::now());
        Ok(())
    }

    fn delete(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        let ns = self.ns(ns);
        let mut ns = ns.lock();
        let now = Instant::now();
        Ok(ns.entries.remove(key).is_some_and(|e| e.live(now)))
    }

    fn increment(&self, ns: &str, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError> {
        let ns = self.ns(ns);
        let mut ns = ns.lock();
        let now = Instant::now();
        match ns.get_live(key, now) {
            Some(entry) => {
                let current: i64 = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or(KvError::NotANumber)?;
                let next = current.saturating_add(delta);
                entry.value = next.to_string().into_bytes();
                Ok(next)
            }
            None => {
                ns.insert(key, delta.to_string().into_bytes(), ttl, now);
                Ok(delta)
            }
        }
    }

    fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let ns = self.ns(ns);
        let mut ns = ns.lock();
        let now = Instant::now();
        let current = ns.get_live(key, now).map(|e| e.value.as_slice());
        if current != expected {
            return Ok(false);
        }
        ns.insert(key, value, ttl, now);
        Ok(true)
    }

    fn keys(&self, ns: &str) -> Vec<String> {
        let ns = self.ns(ns);
        let ns = ns.lock();
        let now = Instant::now();
        let mut keys: Vec<String> = ns.entries.iter().filter(|(_, e)| e.live(now)).map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys
    }
}

/// A plugin's view of the store: its own namespace, or nothing when not granted.
#[derive(Clone)]
pub(crate) struct KvNamespace {
    pub(crate) store: Option<Arc<dyn KvStore>>,
    pub(crate) namespace: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_disjoint() {
        let kv = MemoryKv::new();
        kv.set("a", "k", b"1".to_vec(), None).unwrap();
        assert_eq!(kv.get("b", "k").unwrap(), None);
        assert_eq!(kv.get("a", "k").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn ttl_expires() {
        let kv = MemoryKv::new();
        kv.set("a", "k", b"1".to_vec(), Some(Duration::from_millis(1))).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(kv.get("a", "k").unwrap(), None);
        assert!(kv.keys("a").is_empty());
    }

    #[test]
    fn increment_and_cas() {
        let kv = MemoryKv::new();
        assert_eq!(kv.increment("a", "n", 2, None).unwrap(), 2);
        assert_eq!(kv.increment("a", "n", -5, None).unwrap(), -3);
        kv.set("a", "s", b"x".to_vec(), None).unwrap();
        assert_eq!(kv.increment("a", "s", 1, None), Err(KvError::NotANumber));
        assert!(kv.compare_and_swap("a", "c", None, b"1".to_vec(), None).unwrap());
        assert!(!kv.compare_and_swap("a", "c", None, b"2".to_vec(), None).unwrap());
        assert!(kv.compare_and_swap("a", "c", Some(b"1"), b"2".to_vec(), None).unwrap());
        assert_eq!(kv.get("a", "c").unwrap(), Some(b"2".to_vec()));
        assert!(kv.delete("a", "c").unwrap());
        assert!(!kv.delete("a", "c").unwrap());
    }
}
