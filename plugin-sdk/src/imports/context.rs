//! The current request's key/value map, shared by the plugins of one request.
//!
//! Use it to pass facts between hooks (a start time from `pre_request` to
//! `post_response`) and between plugins (a cache hit flag). Keys are plain
//! strings; prefix them with your plugin's name (`my-plugin.started`).
//! Outside a request (in `init`, device hooks) reads return `None` and writes
//! are ignored.

/// The value of `key`, if set.
pub fn get(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::plugbox::plugin::context::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return super::testing::with(|h| h.context.get(key).cloned());
}

/// Set `key` to `value`.
pub fn set(key: &str, value: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::plugbox::plugin::context::set(key, value);
    #[cfg(not(target_arch = "wasm32"))]
    super::testing::with(|h| h.context.insert(key.to_string(), value.to_string()));
}

/// Remove `key`.
pub fn remove(key: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::plugbox::plugin::context::remove(key);
    #[cfg(not(target_arch = "wasm32"))]
    super::testing::with(|h| h.context.remove(key));
}
