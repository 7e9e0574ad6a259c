//! [`Completion`] and [`CompletionChunk`]: the OpenAI `chat.completion` and
//! `chat.completion.chunk` bodies that `respond` actions and providers return.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Role, Usage};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh completion id: `chatcmpl-plugbox-<time><counter>` in hex.
pub fn completion_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("chatcmpl-plugbox-{nanos:x}{n:x}")
}

/// The current time in whole seconds since the Unix epoch (OpenAI's `created`).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn is_empty_list<T>(v: &[T]) -> bool {
    v.is_empty()
}

/// A tool call in a completion message, or a piece of one in a chunk delta
/// (then `index` is set and the other fields arrive over several chunks).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionToolCall {
    /// In a chunk: which call of the choice this piece belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The call's id (in a chunk, only on the first piece).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function` (in a chunk, only on the first piece).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The function name and (a piece of) its JSON arguments.
    #[serde(default)]
    pub function: FunctionCall,
    /// Fields this type does not name, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `function` of a tool call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// JSON-encoded arguments (in a chunk, a piece of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl CompletionToolCall {
    /// A whole tool call, as in a `chat.completion` message.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        CompletionToolCall {
            index: None,
            id: Some(id.into()),
            kind: Some("function".into()),
            function: FunctionCall { name: Some(name.into()), arguments: Some(arguments.into()) },
            extra: Map::new(),
        }
    }

    /// The first piece of call `index` in a stream: its id and name.
    pub fn start(index: u32, id: impl Into<String>, name: impl Into<String>) -> Self {
        CompletionToolCall {
            index: Some(index),
            id: Some(id.into()),
            kind: Some("function".into()),
            function: FunctionCall { name: Some(name.into()), arguments: Some(String::new()) },
            extra: Map::new(),
        }
    }

    /// A later piece of call `index` in a stream: more of its arguments.
    pub fn arguments(index: u32, piece: impl Into<String>) -> Self {
        CompletionToolCall {
            index: Some(index),
            function: FunctionCall { name: None, arguments: Some(piece.into()) },
            ..Default::default()
        }
    }
}

/// The message of a completion choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionMessage {
    /// Always `assistant` in practice.
    pub role: Role,
    /// The text; `null` for a tool-call-only answer.
    #[serde(default)]
    pub content: Option<String>,
    /// A refusal, when the model refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The tool calls the model asks for.
    #[serde(default, skip_serializing_if = "is_empty_list")]
    pub tool_calls: Vec<CompletionToolCall>,
    /// Fields this type does not name, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CompletionMessage {
    /// An assistant message with this text.
    pub fn assistant(text: impl Into<String>) -> Self {
        CompletionMessage {
            role: Role::Assistant,
            content: Some(text.into()),
            refusal: None,
            tool_calls: Vec::new(),
            extra: Map::new(),
        }
    }
}

/// One choice of a completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// The choice's position.
    pub index: u32,
    /// The answer.
    pub message: CompletionMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter` …
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Fields this type does not name (`logprobs` …), kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An OpenAI `chat.completion` body: what a provider's `complete` returns and
/// what a `Respond` action answers with.
///
/// ```
/// use plugbox_sdk::{Completion, Usage};
/// let done = Completion::text("chatcmpl-1", "gpt-4o", "hello").with_usage(Usage::new(3, 1));
/// let json = done.to_json();
/// assert!(json.contains(r#""object":"chat.completion""#), "{json}");
/// assert_eq!(Completion::from_json(&json).unwrap(), done);
/// assert_eq!(done.content(), Some("hello"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The completion id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The answers (one unless the request asked for `n`).
    pub choices: Vec<CompletionChoice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Fields this type does not name (`system_fingerprint` …), kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Completion {
    /// A completion with one assistant choice holding `text`, finish reason
    /// `stop`, created now, no usage.
    pub fn text(id: impl Into<String>, model: impl Into<String>, text: impl Into<String>) -> Self {
        Completion {
            id: id.into(),
            object: "chat.completion".into(),
            created: unix_now(),
            model: model.into(),
            choices: vec![CompletionChoice {
                index: 0,
                message: CompletionMessage::assistant(text),
                finish_reason: Some("stop".into()),
                extra: Map::new(),
            }],
            usage: None,
            extra: Map::new(),
        }
    }

    /// A completion whose one choice asks for these tool calls (finish
    /// reason `tool_calls`, no text).
    pub fn tool_calls(id: impl Into<String>, model: impl Into<String>, calls: Vec<CompletionToolCall>) -> Self {
        let mut done = Self::text(id, model, "");
        let choice = &mut done.choices[0];
        choice.message.content = None;
        choice.message.tool_calls = calls;
        choice.finish_reason = Some("tool_calls".into());
        done
    }

    /// The same completion with `usage` set.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// The same completion with the top-level field `name` set to `value`
    /// (kept in `extra`).
    pub fn with_field(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// The text of the first choice.
    pub fn content(&self) -> Option<&str> {
        self.choices.first().and_then(|c| c.message.content.as_deref())
    }

    /// The body as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a completion always serializes")
    }

    /// Parse a `chat.completion` body.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// The delta of a chunk choice: the pieces this chunk adds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkDelta {
    /// Set on a choice's first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// A piece of the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A piece of the reasoning (`reasoning_content`, as vLLM and others send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// A piece of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Pieces of tool calls.
    #[serde(default, skip_serializing_if = "is_empty_list")]
    pub tool_calls: Vec<CompletionToolCall>,
    /// Fields this type does not name, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One choice of a chunk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// The choice's position.
    pub index: u32,
    /// What this chunk adds.
    #[serde(default)]
    pub delta: ChunkDelta,
    /// Set on the choice's last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Fields this type does not name (`logprobs` …), kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An OpenAI `chat.completion.chunk` body: what a provider's stream yields.
///
/// ```
/// use plugbox_sdk::{CompletionChunk, Usage};
/// let piece = CompletionChunk::text("chatcmpl-1", "m", "hel");
/// assert_eq!(piece.text_delta(), Some("hel"));
/// let end = CompletionChunk::finish("chatcmpl-1", "m", "stop");
/// assert_eq!(end.choices[0].finish_reason.as_deref(), Some("stop"));
/// let usage = CompletionChunk::usage("chatcmpl-1", "m", Usage::new(3, 2));
/// assert!(usage.choices.is_empty());
/// assert_eq!(CompletionChunk::from_json(&usage.to_json()).unwrap(), usage);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionChunk {
    /// The completion id (the same on every chunk of a stream).
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// The model that answers.
    pub model: String,
    /// The choices this chunk adds to (none on the usage chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Set on the usage chunk (`stream_options.include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Fields this type does not name, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CompletionChunk {
    /// A chunk with one choice (index 0) and this delta.
    pub fn delta(id: impl Into<String>, model: impl Into<String>, delta: ChunkDelta) -> Self {
        CompletionChunk {
            id: id.into(),
            object: "chat.completion.chunk".into(),
            created: unix_now(),
            model: model.into(),
            choices: vec![ChunkChoice { index: 0, delta, finish_reason: None, extra: Map::new() }],
            usage: None,
            extra: Map::new(),
        }
    }

    /// The first chunk of a stream: role `assistant`, empty text.
    pub fn role(id: impl Into<String>, model: impl Into<String>) -> Self {
        Self::delta(
            id,
            model,
            ChunkDelta { role: Some(Role::Assistant), content: Some(String::new()), ..Default::default() },
        )
    }

    /// A piece of text for choice 0.
    pub fn text(id: impl Into<String>, model: impl Into<String>, text: impl Into<String>) -> Self {
        Self::delta(id, model, ChunkDelta { content: Some(text.into()), ..Default::default() })
    }

    /// Pieces of tool calls for choice 0 (see [`CompletionToolCall::start`]
    /// and [`CompletionToolCall::arguments`]).
    pub fn tool_calls(id: impl Into<String>, model: impl Into<String>, pieces: Vec<CompletionToolCall>) -> Self {
        Self::delta(id, model, ChunkDelta { tool_calls: pieces, ..Default::default() })
    }

    /// The last chunk of choice 0: an empty delta and `finish_reason`.
    pub fn finish(id: impl Into<String>, model: impl Into<String>, finish_reason: impl Into<String>) -> Self {
        let mut chunk = Self::delta(id, model, ChunkDelta::default());
        chunk.choices[0].finish_reason = Some(finish_reason.into());
        chunk
    }

    /// The usage chunk: no choices, `usage` set (sent last when the request
    /// has `stream_options.include_usage`).
    pub fn usage(id: impl Into<String>, model: impl Into<String>, usage: Usage) -> Self {
        let mut chunk = Self::delta(id, model, ChunkDelta::default());
        chunk.choices.clear();
        chunk.usage = Some(usage);
        chunk
    }

    /// The text delta of the first choice.
    pub fn text_delta(&self) -> Option<&str> {
        self.choices.first().and_then(|c| c.delta.content.as_deref())
    }

    /// The body as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a chunk always serializes")
    }

    /// Parse a `chat.completion.chunk` body.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive() {
        let json = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","annotations":[]},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"system_fingerprint":"fp"}"#;
        let done = Completion::from_json(json).unwrap();
        assert_eq!(done.extra["system_fingerprint"], "fp");
        assert_eq!(done.choices[0].message.extra["annotations"], Value::Array(vec![]));
        let back: Value = serde_json::from_str(&done.to_json()).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(json).unwrap());
    }

    #[test]
    fn tool_call_pieces() {
        let first = CompletionChunk::tool_calls("c", "m", vec![CompletionToolCall::start(0, "call_1", "lookup")]);
        let json: Value = serde_json::from_str(&first.to_json()).unwrap();
        assert_eq!(json["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "lookup");
        assert_eq!(json["choices"][0]["delta"]["tool_calls"][0]["type"], "function");
        let more = CompletionChunk::tool_calls("c", "m", vec![CompletionToolCall::arguments(0, "{\"q\":")]);
        let json: Value = serde_json::from_str(&more.to_json()).unwrap();
        assert_eq!(json["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert!(json["choices"][0]["delta"]["tool_calls"][0].get("id").is_none());
        let done = Completion::tool_calls("c", "m", vec![CompletionToolCall::new("call_1", "lookup", "{}")]);
        assert_eq!(done.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(done.content(), None);
    }
}
