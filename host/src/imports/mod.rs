//! What lives in each instance's `Store`, and the host side of the WIT imports
//! `log`, `context`, `kv` and `devices`, and the gate on outgoing HTTP.
//!
//! The host resources these imports use are bounded per plugin: see
//! [`resources`].

pub mod guest_log;
pub(crate) mod http;
pub mod kv;
pub mod resources;
mod stdio;

pub use guest_log::LogLimits;
pub use http::HttpLimits;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{context, devices, kv as wit_kv, log, types};
use kv::{KvError, KvNamespace};
pub(crate) use stdio::LogWriter;

/// The key/value map one request's plugins share (`context` import).
pub(crate) type ContextMap = Arc<Mutex<HashMap<String, String>>>;

/// The latest device reports the host holds (`devices` import).
pub(crate) type DeviceReports = Arc<RwLock<Arc<Vec<types::DeviceReport>>>>;

/// Per-instance state: WASI context, limits and plugbox's own imports.
pub(crate) struct StoreState {
    pub(crate) plugin: Arc<str>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
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
        Ok(self.context.as_ref().and_then(|c| c.lock().get(&key).cloned()))
    }

    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        if let Some(c) = &self.context {
            c.lock().insert(key, value);
        }
        Ok(())
    }

    async fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        if let Some(c) = &self.context {
            c.lock().remove(&key);
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
