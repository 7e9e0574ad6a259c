//! The plugin's own key/value store in the host (its own namespace), with
//! TTLs and atomic operations.
//!
//! Needs `permissions.kv: true` in the manifest; without it every call fails
//! with [`KvError::Denied`]. The store outlives instances (and, with a Redis
//! backend, is shared by every replica), so this is where state that all
//! requests share belongs.
//!
//! ```
//! use plugbox_sdk::kv;
//! use std::time::Duration;
//!
//! # fn demo() -> Result<(), plugbox_sdk::KvError> {
//! kv::set("greeting", b"hello", Some(Duration::from_secs(60)))?;
//! assert_eq!(kv::get("greeting")?.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(kv::increment("hits", 2, None)?, 2);
//! assert!(kv::compare_and_swap("lock", None, b"me", None)?);
//! assert!(!kv::compare_and_swap("lock", None, b"you", None)?);
//! # Ok(()) }
//! # demo().unwrap();
//! ```

use std::time::Duration;

pub use crate::KvError;

/// A TTL in whole milliseconds, never rounding a non-zero TTL down to zero.
pub(crate) fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|d| {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 && !d.is_zero() { 1 } else { ms }
    })
}

/// The value of `key`, `None` if absent or expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::plugbox::plugin::kv::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return super::testing::kv_get(key);
}

/// The value of `key` as UTF-8 text. A value that is not UTF-8 is an
/// [`KvError::Other`].
pub fn get_string(key: &str) -> Result<Option<String>, KvError> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => {
            String::from_utf8(bytes).map(Some).map_err(|_| KvError::Other(format!("the value of `{key}` is not UTF-8")))
        }
    }
}

/// Store `value` under `key`; with a `ttl` it expires.
pub fn set(key: &str, value: impl AsRef<[u8]>, ttl: Option<Duration>) -> Result<(), KvError> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::plugbox::plugin::kv::set(key, value.as_ref(), ttl_ms(ttl));
    #[cfg(not(target_arch = "wasm32"))]
    return super::testing::kv_set(key, value.as_ref(), ttl_ms(ttl));
}

/// Remove `key`; `true` if it was there.
pub fn delete(key: &str) -> Result<bool, KvError> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::plugbox::plugin::kv::delete(key);
    #[cfg(not(target_arch = "wasm32"))]
    return super::testing::kv_delete(key);
}

/// Atomically add `delta` to the integer stored under `key` (a missing key
/// counts as 0) and return the new value. `ttl` applies when the key is
/// created.
pub fn increment(key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::plugbox::plugin::kv::increment(key, delta, ttl_ms(ttl));
    #[cfg(not(target_arch = "wasm32"))]
    return super::testing::kv_increment(key, delta, ttl_ms(ttl));
}

/// Atomically store `value` if the current value still equals `expected`
/// (`None`: the key is absent). `true` if the swap happened.
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    value: impl AsRef<[u8]>,
    ttl: Option<Duration>,
) -> Result<bool, KvError> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::plugbox::plugin::kv::compare_and_swap(key, expected, value.as_ref(), ttl_ms(ttl));
    #[cfg(not(target_arch = "wasm32"))]
    return super::testing::kv_cas(key, expected, value.as_ref(), ttl_ms(ttl));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounding() {
        assert_eq!(ttl_ms(None), None);
        assert_eq!(ttl_ms(Some(Duration::ZERO)), Some(0));
        assert_eq!(ttl_ms(Some(Duration::from_micros(10))), Some(1));
        assert_eq!(ttl_ms(Some(Duration::from_secs(2))), Some(2000));
    }
}
