//! The peer plugin: what the `system-prompt` and `pii-redact` example plugins
//! do before a request, as one Extism plugin. Extism hands a plugin bytes, so
//! the request travels as OpenAI JSON and comes back as OpenAI JSON.

use extism_pdk::{FnResult, plugin_fn};
use serde_json::Value;

// The same scanner as the plugbox example plugin: the same logic on both sides.
#[path = "../../../../example-plugins/pii-redact/src/scan.rs"]
#[allow(dead_code)]
mod scan;

const PROMPT: &str = "You are a helpful assistant. Answer briefly.";

#[plugin_fn]
pub fn pre_request(input: String) -> FnResult<String> {
    let mut req: Value = serde_json::from_str(&input)?;
    let messages = req["messages"].as_array_mut().ok_or_else(|| extism_pdk::Error::msg("no messages"))?;
    let has_prompt = messages.iter().any(|m| m["role"] == "system" && m["content"] == PROMPT);
    if !has_prompt {
        messages.insert(0, serde_json::json!({"role": "system", "content": PROMPT}));
    }
    let masks = scan::Masks { card: Some("[CARD]"), email: Some("[EMAIL]"), phone: Some("[PHONE]") };
    for m in messages.iter_mut() {
        if let Some(text) = m["content"].as_str() {
            let (out, n) = scan::redact(text, &masks);
            if n > 0 {
                m["content"] = Value::String(out);
            }
        }
    }
    Ok(req.to_string())
}
