//! The in-process stand-in for the host, used when the SDK is compiled for
//! anything but `wasm32` (so plugins can be unit tested with `cargo test`).
//!
//! Everything is thread-local: each test thread sees its own host. Logs are
//! printed to stderr and recorded; `context` and `kv` are maps (kv honours
//! TTLs); `devices::list` returns what [`set_devices`] stored.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{DeviceReport, KvError, LogLevel};

#[derive(Default)]
pub(crate) struct NativeHost {
    pub(crate) logs: Vec<(LogLevel, String)>,
    pub(crate) context: HashMap<String, String>,
    pub(crate) kv: HashMap<String, (Vec<u8>, Option<Instant>)>,
    pub(crate) kv_denied: bool,
    pub(crate) devices: Vec<DeviceReport>,
}

thread_local! {
    static HOST: RefCell<NativeHost> = RefCell::new(NativeHost::default());
}

pub(crate) fn with<R>(f: impl FnOnce(&mut NativeHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

/// Forget all logs, context, kv entries and devices, and allow kv again.
pub fn reset() {
    with(|h| *h = NativeHost::default());
}

/// The messages logged so far on this thread.
pub fn logs() -> Vec<(LogLevel, String)> {
    with(|h| h.logs.clone())
}

/// The current request context, as a map.
pub fn context() -> HashMap<String, String> {
    with(|h| h.context.clone())
}

/// Forget the request context (as between two requests).
pub fn clear_context() {
    with(|h| h.context.clear());
}

/// Make every kv call fail with [`KvError::Denied`], as without
/// `permissions.kv`.
pub fn deny_kv(denied: bool) {
    with(|h| h.kv_denied = denied);
}

/// What `devices::list` returns.
pub fn set_devices(devices: Vec<DeviceReport>) {
    with(|h| h.devices = devices);
}

pub(crate) fn record_log(level: LogLevel, message: &str) {
    eprintln!("[plugin {level}] {message}");
    with(|h| h.logs.push((level, message.to_string())));
}

fn kv_op<R>(f: impl FnOnce(&mut HashMap<String, (Vec<u8>, Option<Instant>)>) -> R) -> Result<R, KvError> {
    with(|h| {
        if h.kv_denied {
            return Err(KvError::Denied);
        }
        let now = Instant::now();
        h.kv.retain(|_, (_, expires)| expires.is_none_or(|t| t > now));
        Ok(f(&mut h.kv))
    })
}

fn expiry(ttl_ms: Option<u64>) -> Option<Instant> {
    ttl_ms.map(|ms| Instant::now() + Duration::from_millis(ms))
}

pub(crate) fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    kv_op(|kv| kv.get(key).map(|(v, _)| v.clone()))
}

pub(crate) fn kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), KvError> {
    kv_op(|kv| {
        kv.insert(key.to_string(), (value.to_vec(), expiry(ttl_ms)));
    })
}

pub(crate) fn kv_delete(key: &str) -> Result<bool, KvError> {
    kv_op(|kv| kv.remove(key).is_some())
}

pub(crate) fn kv_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, KvError> {
    kv_op(|kv| {
        let (current, expires) = match kv.get(key) {
            Some((bytes, expires)) => {
                let text = std::str::from_utf8(bytes).map_err(|_| KvError::NotANumber)?;
                (text.trim().parse::<i64>().map_err(|_| KvError::NotANumber)?, *expires)
            }
            None => (0, expiry(ttl_ms)),
        };
        let next = current.checked_add(delta).ok_or(KvError::NotANumber)?;
        kv.insert(key.to_string(), (next.to_string().into_bytes(), expires));
        Ok(next)
    })?
}

pub(crate) fn kv_cas(key: &str, expected: Option<&[u8]>, value: &[u8], ttl_ms: Option<u64>) -> Result<bool, KvError> {
    kv_op(|kv| {
        let current = kv.get(key).map(|(v, _)| v.as_slice());
        if current != expected {
            return false;
        }
        kv.insert(key.to_string(), (value.to_vec(), expiry(ttl_ms)));
        true
    })
}
