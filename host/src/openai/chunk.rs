//! One event of a streamed response: [`ChatChunk`] (`chat.completion.chunk`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Extra;
use super::content::{Nullable, Role, flat, nullable};
use super::request::present;
use super::response::Usage;

/// A `chat.completion.chunk`: the `data:` of one server-sent event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatChunk {
    /// The completion's id (the same in every chunk of a stream).
    #[serde(default)]
    pub id: String,
    /// `chat.completion.chunk`.
    #[serde(default = "chunk_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model.
    #[serde(default)]
    pub model: String,
    /// Backend configuration fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub system_fingerprint: Option<Nullable<String>>,
    /// The tier that served the request.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub service_tier: Option<Nullable<String>>,
    /// Deltas, one per choice (none in the usage chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// `null` in every chunk but the last when `include_usage` is set.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub usage: Option<Nullable<Usage>>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

fn chunk_object() -> String {
    "chat.completion.chunk".into()
}

impl ChatChunk {
    /// A chunk with one choice whose delta is `text`.
    pub fn text(text: impl Into<String>) -> Self {
        ChatChunk {
            object: chunk_object(),
            choices: vec![ChunkChoice {
                delta: Delta { content: Some(Nullable::Value(text.into())), ..Default::default() },
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A chunk that ends choice 0 with `finish_reason`.
    pub fn finish(finish_reason: impl Into<String>) -> Self {
        ChatChunk {
            object: chunk_object(),
            choices: vec![ChunkChoice {
                finish_reason: Some(Nullable::Value(finish_reason.into())),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// The usage chunk (no choices).
    pub fn usage_only(usage: Usage) -> Self {
        ChatChunk { object: chunk_object(), usage: Some(Nullable::Value(usage)), ..Default::default() }
    }

    /// Parses a JSON chunk.
    pub fn from_json(body: &str) -> serde_json::Result<Self> {
        serde_json::from_str(body)
    }

    /// The chunk as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ChatChunk always serialises")
    }

    /// The content delta of choice 0.
    pub fn text_delta(&self) -> Option<&str> {
        self.choices.first().and_then(|c| c.delta.text())
    }

    /// Token counts, in the usage chunk.
    pub fn usage(&self) -> Option<&Usage> {
        flat(&self.usage)
    }

    /// Bytes of text (content, reasoning, refusal, tool-call pieces) the chunk carries.
    pub fn text_len(&self) -> usize {
        self.choices.iter().map(|c| c.delta.text_len()).sum()
    }
}

/// One choice's part of a chunk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Which choice.
    #[serde(default)]
    pub index: u32,
    /// What is new.
    #[serde(default)]
    pub delta: Delta,
    /// Set in the choice's last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub finish_reason: Option<Nullable<String>>,
    /// Log probabilities of this delta's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub logprobs: Option<Value>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChunkChoice {
    /// The finish reason, if any.
    pub fn finish_reason(&self) -> Option<&str> {
        flat(&self.finish_reason).map(String::as_str)
    }
}

/// What a chunk adds to one choice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Delta {
    /// Set in a choice's first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub role: Option<Nullable<Role>>,
    /// More text.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub content: Option<Nullable<String>>,
    /// More reasoning (vLLM, DeepSeek and others).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub reasoning_content: Option<Nullable<String>>,
    /// More refusal.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub refusal: Option<Nullable<String>>,
    /// Pieces of tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub tool_calls: Option<Nullable<Vec<ToolCallDelta>>>,
    /// Deprecated `function_call` pieces.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub function_call: Option<Value>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Delta {
    /// The content piece.
    pub fn text(&self) -> Option<&str> {
        flat(&self.content).map(String::as_str)
    }
    /// Replaces the content piece.
    pub fn set_text(&mut self, text: impl Into<String>) {
        self.content = Some(Nullable::Value(text.into()));
    }
    /// The reasoning piece.
    pub fn reasoning(&self) -> Option<&str> {
        flat(&self.reasoning_content).map(String::as_str)
    }
    /// The refusal piece.
    pub fn refusal(&self) -> Option<&str> {
        flat(&self.refusal).map(String::as_str)
    }
    /// The tool-call pieces (empty when none).
    pub fn tool_calls(&self) -> &[ToolCallDelta] {
        flat(&self.tool_calls).map_or(&[], Vec::as_slice)
    }
    /// The role, in a choice's first chunk.
    pub fn role(&self) -> Option<&Role> {
        flat(&self.role)
    }
    /// Bytes of text this delta carries.
    pub fn text_len(&self) -> usize {
        let t = |s: Option<&str>| s.map_or(0, str::len);
        t(self.text())
            + t(self.reasoning())
            + t(self.refusal())
            + self
                .tool_calls()
                .iter()
                .map(|c| c.function.as_ref().map_or(0, |f| t(f.arguments.as_deref()) + t(f.name.as_deref())))
                .sum::<usize>()
    }

    /// Appends `next` to this delta (held chunks merged into the next one):
    /// texts joined, tool-call pieces appended, the role kept from the first.
    pub fn merge(&mut self, next: Delta) {
        fn join(a: &mut Option<Nullable<String>>, b: Option<Nullable<String>>) {
            if let Some(Nullable::Value(b)) = b {
                match a {
                    Some(Nullable::Value(a)) => a.push_str(&b),
                    _ => *a = Some(Nullable::Value(b)),
                }
            }
        }
        if flat(&self.role).is_none() && next.role.is_some() {
            self.role = next.role;
        }
        join(&mut self.content, next.content);
        join(&mut self.reasoning_content, next.reasoning_content);
        join(&mut self.refusal, next.refusal);
        if let Some(Nullable::Value(calls)) = next.tool_calls {
            match &mut self.tool_calls {
                Some(Nullable::Value(mine)) => mine.extend(calls),
                _ => self.tool_calls = Some(Nullable::Value(calls)),
            }
        }
        for (k, v) in next.extra {
            self.extra.insert(k, v);
        }
    }
}

/// A piece of a tool call in a stream.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of the choice (pieces with the same index belong together).
    #[serde(default)]
    pub index: u32,
    /// The call's id (first piece).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function` (first piece).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (first piece) and a piece of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The function part of a tool-call piece.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionDelta {
    /// The function's name (first piece).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A piece of the JSON arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}
