//! The facade of [`crate::devtools`]: one hook of one plugin, JSON in and out.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::manifest::Hook;

impl crate::Host {
    /// Runs `hook` of the loaded plugin `name` once with `input` and returns
    /// `{"result": .., "edited": .., "violation": .., "context": {..}}` (what
    /// `plugbox call` prints): the hook's raw answer, the data after its
    /// edits (`null` when it changed nothing), the first read or edit its
    /// `messages` permission refused, and the request context's values.
    ///
    /// The input is a JSON object; requests, responses, chunks and tool calls
    /// are OpenAI JSON; `info` (the request facts) may be left out:
    ///
    /// | hook | input fields |
    /// |---|---|
    /// | `pre-request` | `info`, `req`, optional `context` (an object of strings) |
    /// | `post-response` | `info`, `req`, `response` (a `chat.completion`) or `error` (an llm-error) |
    /// | `on-chunk` | `info`, `req`, `chunk` (a `chat.completion.chunk`), optional `last` |
    /// | `on-stream-end` | `info`, `req`, `usage` |
    /// | `on-tool-call` | `info`, `req`, `call` (`{"id", "type", "function": {"name", "arguments"}}`) |
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
