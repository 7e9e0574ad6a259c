//! The facade of [`crate::devtools`]: one hook of one plugin, JSON in and out.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::manifest::Hook;

impl crate::Host {
    /// Runs `hook` of the loaded plugin `name` once with `input` and returns
    /// the raw result plus the request context's values as
    /// `{"result": .., "context": {..}}` (what `plugbox call` prints).
    ///
    /// The input is a JSON object with the hook's WIT parameters by name;
    /// `info` may be left out (a default request-info is used):
    ///
    /// | hook | input fields |
    /// |---|---|
    /// | `pre-request` | `info`, `req`, optional `context` (an object of strings) |
    /// | `post-response` | `info`, `outcome` (`{"Ok": response}` / `{"Err": llm-error}`) |
    /// | `on-chunk` | `info`, `chunk` |
    /// | `on-stream-end` | `info`, `usage` |
    /// | `on-tool-call` | `info`, `call` |
    /// | `provider` | `info`, `req`, optional `"stream": true` |
    /// | `on-device-probe` | `reports` |
    /// | `device-probe` | (none) |
    /// | `endpoint` | `path`, `model` (validate); `model`, `base_url`, `elapsed_ms`, `timeout_ms` (health check); or nothing (describe) |
    ///
    /// Errors: [`Error::NotFound`] when no plugin `name` is loaded,
    /// [`Error::HookNotImplemented`], [`Error::InvalidInput`] for a missing or
    /// mistyped field, and the call's own failure.
    pub async fn call_hook_json(&self, name: &str, hook: Hook, input: &Value) -> Result<Value> {
        let plugin = self.plugin(name).ok_or_else(|| Error::NotFound(name.to_string()))?;
        crate::devtools::call_hook_json(&plugin, hook, input).await
    }
}
