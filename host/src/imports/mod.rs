//! What lives in each instance's `Store`, and the host side of the WIT imports
//! `log`, `context`, `kv` and `devices`, and the gate on outgoing HTTP.
//!
//! The host resources these imports use are bounded per plugin: see
//! [`resources`].

pub mod guest_log;
pub(crate) mod http;
pub mod kv;
pub(crate) mod limiter;
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

/// Caps on what plugins may put into one request's context map (the
/// `context` import), set host-wide with
/// [`PipelineConfig::context_limits`](crate::pipeline::PipelineConfig::context_limits).
///
/// A `set` whose key or value is too long, or that would take the map's total
/// (keys plus values, the embedder's entries included) past `max_total`, is
/// refused: the plugin's call fails (a trap naming the plugin and the limit)
/// and the map keeps its previous value. The embedder's own
/// [`RequestContext::set`](crate::RequestContext::set) is never refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextLimits {
    /// Longest key, in bytes (default 256 B).
    pub max_key: usize,
    /// Longest value, in bytes (default 64 KiB).
    pub max_value: usize,
    /// Most bytes of keys and values one request's map may hold (default 1 MiB).
    pub max_total: usize,
}

impl Default for ContextLimits {
    fn default() -> Self {
        ContextLimits { max_key: 256, max_value: 64 * 1024, max_total: 1024 * 1024 }
    }
}

#[derive(Debug, Default)]
struct ContextValues {
    map: HashMap<String, String>,
    bytes: usize,
    limits: ContextLimits,
}

impl ContextValues {
    fn insert(&mut self, key: String, value: String) {
        self.bytes += key.len() + value.len();
        if let Some(old) = self.map.insert(key.clone(), value) {
            self.bytes -= key.len() + old.len();
        }
    }
    fn remove(&mut self, key: &str) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= key.len() + old.len();
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
        self.0.lock().insert(key, value);
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
    pub(crate) fn try_set(&self, plugin: &str, key: String, value: String) -> Result<(), String> {
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
        let replaced = values.map.get(&key).map_or(0, |old| key.len() + old.len());
        let total = values.bytes - replaced + key.len() + value.len();
        if total > limits.max_total {
            return Err(refuse(format!(
                "the request context would hold `{total}` bytes, over its limit of {} bytes",
                limits.max_total
            )));
        }
        values.insert(key, value);
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
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.context.as_ref().and_then(|c| c.get(&key)))
    }

    /// Refused (the call traps with a message naming the plugin and the
    /// limit) when the write breaks the request's [`ContextLimits`].
    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        if let Some(c) = &self.context {
            c.try_set(&self.plugin, key, value).map_err(|e| wasmtime::format_err!("{e}"))?;
        }
        Ok(())
    }

    async fn remove(&mut self, key: String) -> wasmtime::Result<()> {
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
        map.set_limits(ContextLimits { max_key: 4, max_value: 8, max_total: 20 });
        let e = map.try_set("p", "12345".into(), "v".into()).unwrap_err();
        assert!(e.contains("plugin `p`") && e.contains("key of `5` bytes") && e.contains("limit of 4 bytes"), "{e}");
        let e = map.try_set("p", "k".into(), "123456789".into()).unwrap_err();
        assert!(e.contains("value of `9` bytes"), "{e}");
        map.try_set("p", "a".into(), "12345678".into()).unwrap();
        map.try_set("p", "b".into(), "12345678".into()).unwrap();
        assert_eq!(map.bytes(), 18);
        let e = map.try_set("p", "c".into(), "12".into()).unwrap_err();
        assert!(e.contains("`21` bytes") && e.contains("limit of 20 bytes"), "{e}");
        assert_eq!(map.get("c"), None, "a refused write changes nothing");
        // Replacing a value frees the old one first.
        map.try_set("p", "a".into(), "1".into()).unwrap();
        map.try_set("p", "c".into(), "12".into()).unwrap();
        map.remove("b");
        assert_eq!(map.bytes(), 5);
        // The embedder is not limited, but its bytes count.
        map.set("embedder".into(), "x".repeat(100));
        assert!(map.try_set("p", "d".into(), String::new()).is_err());
    }
}
