//! What lives in each instance's `Store`, and the host side of the WIT imports
//! `log`, `context`, `kv` and `devices`, and the gate on outgoing HTTP.

pub(crate) mod http;
pub mod kv;
pub(crate) mod limiter;
mod stdio;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
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
    /// Memory and table caps; the instance's memory size.
    pub(crate) limiter: limiter::InstanceLimiter,
    pub(crate) kv: KvNamespace,
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
        let plugin = &*self.plugin;
        match level {
            types::LogLevel::Trace => tracing::trace!(target: "plugbox::guest", plugin, "{message}"),
            types::LogLevel::Debug => tracing::debug!(target: "plugbox::guest", plugin, "{message}"),
            types::LogLevel::Info => tracing::info!(target: "plugbox::guest", plugin, "{message}"),
            types::LogLevel::Warn => tracing::warn!(target: "plugbox::guest", plugin, "{message}"),
            types::LogLevel::Error => tracing::error!(target: "plugbox::guest", plugin, "{message}"),
        }
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

fn kv_err(e: KvError) -> wit_kv::KvError {
    match e {
        KvError::NotANumber => wit_kv::KvError::NotANumber,
        KvError::Other(m) => wit_kv::KvError::Other(m),
    }
}

impl StoreState {
    fn kv_store(&self) -> Result<&dyn kv::KvStore, wit_kv::KvError> {
        self.kv.store.as_deref().ok_or(wit_kv::KvError::Denied)
    }
}

impl wit_kv::Host for StoreState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, wit_kv::KvError>> {
        Ok(self.kv_store().and_then(|s| s.get(&self.kv.namespace, &key).map_err(kv_err)))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), wit_kv::KvError>> {
        Ok(self.kv_store().and_then(|s| s.set(&self.kv.namespace, &key, value, ttl(ttl_ms)).map_err(kv_err)))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, wit_kv::KvError>> {
        Ok(self.kv_store().and_then(|s| s.delete(&self.kv.namespace, &key).map_err(kv_err)))
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<i64, wit_kv::KvError>> {
        Ok(self.kv_store().and_then(|s| s.increment(&self.kv.namespace, &key, delta, ttl(ttl_ms)).map_err(kv_err)))
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<bool, wit_kv::KvError>> {
        Ok(self.kv_store().and_then(|s| {
            s.compare_and_swap(&self.kv.namespace, &key, expected.as_deref(), value, ttl(ttl_ms)).map_err(kv_err)
        }))
    }
}

impl devices::Host for StoreState {
    async fn list(&mut self) -> wasmtime::Result<Vec<types::DeviceReport>> {
        Ok(self.devices.read().as_ref().clone())
    }
}
