//! OpenAI Chat Completions bodies as plain Rust types that lose nothing.
//!
//! [`ChatRequest`], [`ChatResponse`] and [`ChatChunk`] (one
//! `chat.completion.chunk` of a stream) model every field of the OpenAI
//! reference; fields they do not model (newer OpenAI fields, vLLM's `top_k`
//! and `guided_json`, any server's extensions) are kept verbatim, in order, in
//! each object's `extra` map and written back where they were found.
//! Parsing a body and serialising it again gives the same JSON.
//!
//! Three conventions keep the round trip exact:
//! - a field that is absent stays absent (`None`, skipped when written);
//! - a field the reference documents as nullable and that came as `null`
//!   stays `null` ([`Nullable`]);
//! - sampling numbers stay [`serde_json::Number`]s, so `1` is not rewritten
//!   as `1.0` (use the `f64` accessors to read them).
//!
//! These are the types the host's pipeline, the gateway and embedders use;
//! plugins reach them through the `plugbox:plugin/llm` resources.

mod chunk;
mod content;
mod request;
mod response;

pub use chunk::{ChatChunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta};
pub use content::{ContentPart, MessageContent, Nullable, Role};
pub use request::{ChatMessage, ChatRequest, StreamOptions, Tool, ToolCall, FunctionCall, FunctionDef};
pub use response::{ChatResponse, Choice, Usage};

/// A JSON object of fields a type does not model, kept in their original order.
pub type Extra = serde_json::Map<String, serde_json::Value>;
