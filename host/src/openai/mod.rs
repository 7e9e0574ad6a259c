//! OpenAI Chat Completions bodies as plain Rust types that lose nothing.
//!
//! [`ChatRequest`], [`ChatResponse`] and [`ChatChunk`] (one
//! `chat.completion.chunk` of a stream) model every field of the OpenAI
//! reference; fields they do not model (newer OpenAI fields, vLLM's `top_k`
//! and `guided_json`, any server's extensions) are kept verbatim, in order, in
//! each object's `extra` map and written back after the modelled fields.
//! Parsing a body and serialising it again gives the same JSON (equal as
//! JSON: the same members with the same values; the order of an object's
//! members may differ, which JSON does not give a meaning to).
//!
//! Three conventions keep the round trip exact:
//! - a field that is absent stays absent (`None`, skipped when written);
//! - a field the reference documents as nullable and that came as `null`
//!   stays `null` ([`Nullable`]; `Option<Nullable<T>>` is absent, `null` or a
//!   value); a field of a fixed type that is not nullable (`user`, `tools`,
//!   `parallel_tool_calls` ...) reads an explicit `null` as absent;
//! - sampling numbers stay [`serde_json::Number`]s, so `1` is not rewritten
//!   as `1.0` (use the `f64` accessors to read them).
//!
//! These are the types the host's pipeline, the gateway and embedders use;
//! plugins reach them through the `plugbox:plugin/llm` resources.

mod chunk;
mod content;
mod request;
mod response;
pub mod sse;
#[cfg(test)]
mod tests;

pub use chunk::{ChatChunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta};
pub use content::{ContentPart, MessageContent, Nullable, Role};
pub use request::{ChatMessage, ChatRequest, FunctionCall, FunctionDef, StreamOptions, Tool, ToolCall};
pub use response::{ChatResponse, Choice, Usage};

/// A JSON object of fields a type does not model, kept in their original order.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// One field as JSON (the types here always serialise).
fn to_value<T: serde::Serialize>(field: &T) -> serde_json::Value {
    serde_json::to_value(field).expect("openai types always serialise")
}

/// The value of a required field set by name: present and of the field's type.
fn required<T: serde::de::DeserializeOwned>(name: &str, value: Option<serde_json::Value>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("`$.{name}` is required and cannot be removed"))?;
    serde_json::from_value(value).map_err(|e| format!("`$.{name}`: {e}"))
}

/// The value of an optional field set by name: `None` removes it.
fn optional<T: serde::de::DeserializeOwned>(name: &str, value: Option<serde_json::Value>) -> Result<Option<T>, String> {
    value.map(|v| serde_json::from_value(v).map_err(|e| format!("`$.{name}`: {e}"))).transpose()
}

/// Sets or removes a field kept in `extra` (a field that was there keeps its place).
fn set_extra(extra: &mut Extra, name: &str, value: Option<serde_json::Value>) {
    match value {
        Some(v) => {
            extra.insert(name.to_string(), v);
        }
        None => {
            extra.shift_remove(name);
        }
    }
}
