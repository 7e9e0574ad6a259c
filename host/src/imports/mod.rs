//! What lives in each instance's `Store`, and the host side of the WIT imports
//! `llm` (see [`llm`]), `log`, `context`, `kv` and `devices`, and the gate on
//! outgoing HTTP.
//!
//! The host resources these imports use are bounded per plugin: see
//! [`resources`].

pub mod guest_log;
pub(crate) mod http;
pub mod kv;
pub(crate) mod limiter;
pub mod llm;
pub mod resources;
mod stdio;

pub use guest_log::LogLimits;
pub use http::HttpLimits;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{context, devices, kv as wit_kv, log, types};
use kv::{KvError, KvNamespace};
pub(crate) use stdio::LogWriter;

/// Bytes each context entry is charged on top of its key and value (what the
/// host spends holding it), so that a flood of empty keys costs something.
pub const CONTEXT_ENTRY_COST: usize = 64;

/// Caps on what plugins may put into one request's context map (the
/// `context` import), set host-wide with
/// [`PipelineConfig::context_limits`](crate::pipeline::PipelineConfig::context_limits).
///
/// A `set` whose key or value is too long, or that would take the map's total
/// (keys plus values plus [`CONTEXT_ENTRY_COST`] per entry, the embedder's
/// entries included) past `max_total`, is refused: the plugin's call fails (a
/// trap naming the plugin and the limit) and the map keeps its previous
/// value. A plugin's own entries (the keys it wrote last) may hold at most
/// `max_per_plugin` of that, so one plugin cannot fill the map and make every
/// later plugin's writes fail. The embedder's own
/// [`RequestContext::set`](crate::RequestContext::set) is never refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextLimits {
    /// Longest key, in bytes (default 256 B).
    pub max_key: usize,
    /// Longest value, in bytes (default 64 KiB).
    pub max_value: usize,
    /// Most bytes of keys and values (plus [`CONTEXT_ENTRY_COST`] per entry)
    /// one request's map may hold (default 1 MiB).
    pub max_total: usize,
    /// Most bytes (counted the same way) the entries one plugin wrote may
    /// hold (default 256 KiB).
    pub max_per_plugin: usize,
}

impl Default for ContextLimits {
    fn default() -> Self {
        ContextLimits { max_key: 256, max_value: 64 * 1024, max_total: 1024 * 1024, max_per_plugin: 256 * 1024 }
    }
}

#[derive(Debug, Default)]
struct ContextValues {
    map: HashMap<String, String>,
    bytes: usize,
    limits: ContextLimits,
    /// The plugin that wrote each key last (the embedder's keys have none).
    owner: HashMap<String, Arc<str>>,
    /// What each plugin's keys hold, entry cost included.
    shares: HashMap<Arc<str>, usize>,
}

fn entry_cost(key: &str, value: &str) -> usize {
    key.len() + value.len() + CONTEXT_ENTRY_COST
}

impl ContextValues {
    fn insert(&mut self, key: String, value: String, writer: Option<&Arc<str>>) {
        self.remove(&key);
        self.bytes += key.len() + value.len();
        if let Some(w) = writer {
            *self.shares.entry(w.clone()).or_default() += entry_cost(&key, &value);
            self.owner.insert(key.clone(), w.clone());
        }
        self.map.insert(key, value);
    }
    fn remove(&mut self, key: &str) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= key.len() + old.len();
            if let Some(w) = self.owner.remove(key)
                && let Some(share) = self.shares.get_mut(&w)
            {
                *share -= entry_cost(key, &old);
            }
        }
    }
}

/// The key/value map one request's plugins share (`context` import), with
/// its [`ContextLimits`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ContextMap(Arc<Mutex<ContextValues>>);

impl ContextMap {
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        self.0.lock().map.get(key).cloned()
    }
    /// Sets a value without limits (the embedder's own writes).
    pub(crate) fn set(&self, key: String, value: String) {
        self.0.lock().insert(key, value, None);
    }
    pub(crate) fn remove(&self, key: &str) {
        self.0.lock().remove(key);
    }
    pub(crate) fn values(&self) -> HashMap<String, String> {
        self.0.lock().map.clone()
    }
    /// Bytes of keys and values held.
    pub(crate) fn bytes(&self) -> usize {
        self.0.lock().bytes
    }
    pub(crate) fn set_limits(&self, limits: ContextLimits) {
        self.0.lock().limits = limits;
    }
    /// A plugin's write: refused when it breaks a [`ContextLimits`] cap.
    pub(crate) fn try_set(&self, plugin: &Arc<str>, key: String, value: String) -> Result<(), String> {
        let mut values = self.0.lock();
        let limits = values.limits;
        let refuse = |what: String| format!("plugin `{plugin}`: context write refused: {what}");
        if key.len() > limits.max_key {
            return Err(refuse(format!(
                "key of `{}` bytes exceeds the context key limit of {} bytes",
                key.len(),
                limits.max_key
            )));
        }
        if value.len() > limits.max_value {
            return Err(refuse(format!(
                "value of `{}` bytes for key `{}` exceeds the context value limit of {} bytes",
                value.len(),
                key,
                limits.max_value
            )));
        }
        let replaced = values.map.get(&key).map(|old| key.len() + old.len());
        let entries = values.map.len() + usize::from(replaced.is_none());
        let total = values.bytes - replaced.unwrap_or(0) + key.len() + value.len() + entries * CONTEXT_ENTRY_COST;
        if total > limits.max_total {
            return Err(refuse(format!(
                "the request context would hold `{total}` bytes ({entries} entries at {CONTEXT_ENTRY_COST} bytes \
                 each, keys and values), over its limit of {} bytes",
                limits.max_total
            )));
        }
        let own_old = match values.owner.get(&key) {
            Some(w) if w == plugin => replaced.map_or(0, |r| r + CONTEXT_ENTRY_COST),
            _ => 0,
        };
        let share = values.shares.get(plugin).copied().unwrap_or(0) - own_old + entry_cost(&key, &value);
        if share > limits.max_per_plugin {
            return Err(refuse(format!(
                "its entries would hold `{share}` bytes, over the per-plugin context limit of {} bytes",
                limits.max_per_plugin
            )));
        }
        values.insert(key, value, Some(plugin));
        Ok(())
    }
}

/// The latest device reports the host holds (`devices` import).
pub(crate) type DeviceReports = Arc<RwLock<Arc<Vec<types::DeviceReport>>>>;

/// Per-instance state: WASI context, limits and plugbox's own imports.
pub(crate) struct StoreState {
    pub(crate) plugin: Arc<str>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    /// Memory and table caps; the instance's memory size.
    pub(crate) limiter: limiter::InstanceLimiter,
    pub(crate) kv: KvNamespace,
    /// The plugin's log: rate limited, queued, never blocking.
    pub(crate) log: Arc<guest_log::PluginLog>,
    pub(crate) devices: DeviceReports,
    /// The request being served by the current call, if any.
    pub(crate) context: Option<ContextMap>,
    /// What the current hook call may do with the `llm` resources.
    pub(crate) llm: llm::CallRules,
    pub(crate) http: wasmtime_wasi_http::WasiHttpCtx,
    pub(crate) net: http::NetHooks,
}

impl wasmtime_wasi_http::WasiHttpView for StoreState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.net }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for StoreState {}

impl log::Host for StoreState {
    async fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        use guest_log::Level;
        let level = match level {
            types::LogLevel::Trace => Level::Trace,
            types::LogLevel::Debug => Level::Debug,
            types::LogLevel::Info => Level::Info,
            types::LogLevel::Warn => Level::Warn,
            types::LogLevel::Error => Level::Error,
        };
        self.log.emit(level, None, message.as_bytes());
        Ok(())
    }
}

impl context::Host for StoreState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.context.as_ref().and_then(|c| c.get(&key)))
    }

    /// Refused (the call traps with a message naming the plugin and the
    /// limit) when the write breaks the request's [`ContextLimits`].
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        if let Some(c) = &self.context {
            c.try_set(&self.plugin, key, value).map_err(|e| wasmtime::format_err!("{e}"))?;
        }
        Ok(())
    }

    fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        if let Some(c) = &self.context {
            c.remove(&key);
        }
        Ok(())
    }
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

/// Maps a store error to the WIT `kv-error`. A quota refusal becomes
/// `other(message)` (the variant the WIT documents for quota and backend
/// failures), so guests built against 0.1 understand it.
fn kv_err(e: KvError) -> wit_kv::KvError {
    match e {
        KvError::NotANumber => wit_kv::KvError::NotANumber,
        KvError::QuotaExceeded(m) | KvError::Other(m) => wit_kv::KvError::Other(m),
    }
}

impl StoreState {
    fn kv_store(&self) -> Result<Arc<dyn kv::KvStore>, wit_kv::KvError> {
        self.kv.store.clone().ok_or(wit_kv::KvError::Denied)
    }

    /// Maps a write's result, logging a quota refusal with the plugin's name.
    fn kv_write<T>(&self, r: Result<T, KvError>) -> Result<T, wit_kv::KvError> {
        if let Err(KvError::QuotaExceeded(why)) = &r {
            tracing::warn!(plugin = &*self.plugin, "kv write refused: {why}");
        }
        r.map_err(kv_err)
    }
}

impl wit_kv::Host for StoreState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, wit_kv::KvError>> {
        let store = match self.kv_store() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store.get(&self.kv.namespace, &key).await.map_err(kv_err))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), wit_kv::KvError>> {
        let store = match self.kv_store() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let quota = self.kv.quota;
        let r = match quota.check_entry(&key, value.len()) {
            Ok(()) => store.set(&self.kv.namespace, &key, value, ttl(ttl_ms), quota).await,
            Err(e) => Err(e),
        };
        Ok(self.kv_write(r))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, wit_kv::KvError>> {
        let store = match self.kv_store() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(store.delete(&self.kv.namespace, &key).await.map_err(kv_err))
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<i64, wit_kv::KvError>> {
        let store = match self.kv_store() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let quota = self.kv.quota;
        let r = match quota.check_entry(&key, 0) {
            Ok(()) => store.increment(&self.kv.namespace, &key, delta, ttl(ttl_ms), quota).await,
            Err(e) => Err(e),
        };
        Ok(self.kv_write(r))
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<bool, wit_kv::KvError>> {
        let store = match self.kv_store() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let quota = self.kv.quota;
        let r = match quota.check_entry(&key, value.len()) {
            Ok(()) => store.compare_and_swap(&self.kv.namespace, &key, expected, value, ttl(ttl_ms), quota).await,
            Err(e) => Err(e),
        };
        Ok(self.kv_write(r))
    }
}

impl devices::Host for StoreState {
    async fn list(&mut self) -> wasmtime::Result<Vec<types::DeviceReport>> {
        Ok(self.devices.read().as_ref().clone())
    }
}

#[cfg(test)]
mod context_tests {
    use super::*;

    #[test]
    fn context_writes_are_capped_by_key_value_and_total() {
        let map = ContextMap::default();
        let cost = CONTEXT_ENTRY_COST;
        map.set_limits(ContextLimits { max_key: 4, max_value: 8, max_total: 20 + 2 * cost, max_per_plugin: 1024 });
        let p: Arc<str> = Arc::from("p");
        let e = map.try_set(&p, "12345".into(), "v".into()).unwrap_err();
        assert!(e.contains("plugin `p`") && e.contains("key of `5` bytes") && e.contains("limit of 4 bytes"), "{e}");
        let e = map.try_set(&p, "k".into(), "123456789".into()).unwrap_err();
        assert!(e.contains("value of `9` bytes"), "{e}");
        map.try_set(&p, "a".into(), "12345678".into()).unwrap();
        map.try_set(&p, "b".into(), "12345678".into()).unwrap();
        assert_eq!(map.bytes(), 18);
        let e = map.try_set(&p, "c".into(), "12".into()).unwrap_err();
        assert!(e.contains(&format!("`{}` bytes (3 entries", 21 + 3 * cost)), "{e}");
        // Two entries fit; a third, even empty, does not.
        map.remove("b");
        map.try_set(&p, "c".into(), "12".into()).unwrap();
        let e = map.try_set(&p, "d".into(), String::new()).unwrap_err();
        assert!(e.contains("3 entries"), "{e}");
        map.try_set(&p, "b".into(), "12345678".into()).unwrap_err();
        map.remove("c");
        map.try_set(&p, "b".into(), "12345678".into()).unwrap();
        assert_eq!(map.get("c"), None, "a refused write changes nothing");
        // Replacing a value frees the old one first.
        map.try_set(&p, "a".into(), "1".into()).unwrap();
        map.remove("b");
        map.try_set(&p, "c".into(), "12".into()).unwrap();
        assert_eq!(map.bytes(), 5);
        // One plugin's entries are capped on their own; another plugin still has room.
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let map = ContextMap::default();
        map.set_limits(ContextLimits { max_per_plugin: 2 * (cost + 1), ..Default::default() });
        map.try_set(&a, "1".into(), String::new()).unwrap();
        map.try_set(&a, "2".into(), String::new()).unwrap();
        let e = map.try_set(&a, "3".into(), String::new()).unwrap_err();
        assert!(e.contains("per-plugin context limit") && e.contains("plugin `a`"), "{e}");
        map.try_set(&a, "2".into(), String::new()).unwrap(); // rewriting its own key fits
        map.try_set(&b, "3".into(), String::new()).unwrap();
        map.try_set(&b, "2".into(), String::new()).unwrap(); // taking over `a`'s key frees `a`'s share
        map.try_set(&a, "4".into(), String::new()).unwrap();
        map.remove("1");
        map.try_set(&a, "5".into(), String::new()).unwrap();
        let map = ContextMap::default();
        map.set_limits(ContextLimits { max_key: 4, max_value: 8, max_total: 20 + 2 * cost, max_per_plugin: 1024 });
        map.try_set(&p, "a".into(), "1".into()).unwrap();
        map.try_set(&p, "c".into(), "12".into()).unwrap();
        // The embedder is not limited, but its bytes count.
        map.set("embedder".into(), "x".repeat(100));
        assert!(map.try_set(&p, "d".into(), String::new()).is_err());
    }
}
