//! The request body: [`ChatRequest`] and its messages and tools.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use super::content::{MessageContent, Nullable, Role, flat, nullable};
use super::Extra;

/// `Some(value)` for a field that is present, `null` included: the
/// `deserialize_with` of `Option<Value>` fields that keep `null`.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A Chat Completions request (`POST /v1/chat/completions`).
///
/// Typed optional fields read an explicit `null` as absent; every other field
/// round-trips exactly (see the module docs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model (or the gateway's alias for one).
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `none`, `auto`, `required`, or `{"type": "function", "function": {"name": ...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several tools at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream settings (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature, 0–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Number>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<Number>,
    /// Number of choices to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens`; still used by
    /// most compatible servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Upper bound on generated tokens, reasoning included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Up to 4 sequences where generation stops: a string or an array.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub stop: Option<Value>,
    /// -2.0 to 2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<Number>,
    /// -2.0 to 2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<Number>,
    /// Token id → bias.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub logit_bias: Option<Value>,
    /// Return log probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// 0–20 most likely tokens per position (needs `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Best-effort determinism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// `{"type": "text" | "json_object"}` or `{"type": "json_schema", "json_schema": {...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub response_format: Option<Value>,
    /// `minimal`, `low`, `medium`, `high` (reasoning models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// `low`, `medium`, `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
    /// Output modalities, e.g. `["text", "audio"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<Vec<String>>,
    /// Audio output settings (`voice`, `format`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub audio: Option<Value>,
    /// Predicted output (`{"type": "content", "content": ...}`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub prediction: Option<Value>,
    /// Web search settings.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub web_search_options: Option<Value>,
    /// Up to 16 string pairs attached to the request.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub metadata: Option<Value>,
    /// Store the completion for distillation or evals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// `auto`, `default`, `flex`, `priority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// End-user identifier (deprecated by OpenAI for `safety_identifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Stable identifier of the end user, for abuse detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    /// Prompt-cache bucketing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    /// Deprecated `functions` (use `tools`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub functions: Option<Value>,
    /// Deprecated `function_call` (use `tool_choice`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub function_call: Option<Value>,
    /// Every other field (`top_k`, `guided_json`, `repetition_penalty` ...),
    /// verbatim and in order.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `stream_options`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the whole request's `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Other stream options, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatRequest {
    /// A request for `model` with `messages` and nothing else.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        ChatRequest { model: model.into(), messages, ..Default::default() }
    }

    /// Parses a JSON body.
    pub fn from_json(body: &str) -> serde_json::Result<Self> {
        serde_json::from_str(body)
    }

    /// The body as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ChatRequest always serialises")
    }

    /// Builder: sets `stream`.
    pub fn with_stream(mut self, stream: bool) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Builder: sets `temperature`.
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.temperature = Number::from_f64(temperature);
        self
    }

    /// Builder: sets `max_tokens`.
    pub fn with_max_tokens(mut self, max_tokens: u64) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Builder: adds a tool.
    pub fn with_tool(mut self, tool: Tool) -> Self {
        self.tools.get_or_insert_with(Vec::new).push(tool);
        self
    }

    /// Whether the answer is to be streamed.
    pub fn is_streaming(&self) -> bool {
        self.stream == Some(true)
    }

    /// `temperature` as a float.
    pub fn temperature(&self) -> Option<f64> {
        self.temperature.as_ref().and_then(Number::as_f64)
    }

    /// The last message with role `user`.
    pub fn last_user_message(&self) -> Option<&ChatMessage> {
        self.messages.iter().rev().find(|m| m.role == Role::User)
    }

    /// The last message with role `user`, mutably.
    pub fn last_user_message_mut(&mut self) -> Option<&mut ChatMessage> {
        self.messages.iter_mut().rev().find(|m| m.role == Role::User)
    }

    /// The top-level field `name` as JSON (`messages` included), `None` when
    /// absent. Serialises that one field.
    pub fn param(&self, name: &str) -> Option<Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => map.remove(name),
            _ => None,
        }
    }

    /// Sets (`Some`) or removes (`None`) the top-level field `name`. The
    /// value must fit the field's type (`"temperature"` takes a number); the
    /// error says why not.
    pub fn set_param(&mut self, name: &str, value: Option<Value>) -> Result<(), String> {
        let Value::Object(mut map) = serde_json::to_value(&*self).map_err(|e| e.to_string())? else {
            unreachable!("a ChatRequest serialises to an object")
        };
        match value {
            Some(v) => {
                map.insert(name.to_string(), v);
            }
            None => {
                map.shift_remove(name);
            }
        }
        *self = serde_json::from_value(Value::Object(map)).map_err(|e| format!("`{name}`: {e}"))?;
        Ok(())
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Text or content parts; `null` for an assistant message that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub content: Option<Nullable<MessageContent>>,
    /// Optional author name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The assistant's refusal.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub refusal: Option<Nullable<String>>,
    /// Tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For `role: tool`: the call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Reasoning text some servers (vLLM, DeepSeek) return.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub reasoning_content: Option<Nullable<String>>,
    /// Audio output of an assistant message (`{id, data, expires_at, transcript}`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub audio: Option<Value>,
    /// Deprecated `function_call`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub function_call: Option<Value>,
    /// URL citations of web search (`annotations`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub annotations: Option<Value>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatMessage {
    /// A message with `role` and text `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: Some(Nullable::Value(MessageContent::Text(content.into()))), ..Default::default() }
    }
    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    /// A `tool` message answering `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { tool_call_id: Some(tool_call_id.into()), ..Self::new(Role::Tool, content) }
    }

    /// The text: string content, or the text parts joined. `None` when there
    /// is none (absent or `null` content, or no text part).
    pub fn text(&self) -> Option<Cow<'_, str>> {
        flat(&self.content).and_then(MessageContent::text)
    }

    /// Replaces the content with `text` (content parts included).
    pub fn set_text(&mut self, text: impl Into<String>) {
        self.content = Some(Nullable::Value(MessageContent::Text(text.into())));
    }

    /// The refusal text, if any.
    pub fn refusal(&self) -> Option<&str> {
        flat(&self.refusal).map(String::as_str)
    }

    /// The tool calls (empty when none).
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.tool_calls.as_deref().unwrap_or_default()
    }
}

/// A tool offered to the model (`{"type": "function", "function": {...}}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tool {
    /// `function` (or a newer type, with its data in `extra`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The function, for `type: function`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDef>,
    /// Other fields, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Tool {
    /// A function tool.
    pub fn function(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Tool {
            kind: "function".into(),
            function: Some(FunctionDef {
                name: name.into(),
                description: Some(description.into()),
                parameters: Some(parameters),
                ..Default::default()
            }),
            extra: Extra::new(),
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionDef {
    /// The function's name.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Other fields, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool call in an assistant message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed by the `tool` message that answers it.
    pub id: String,
    /// `function`.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The function called.
    pub function: FunctionCall,
    /// Other fields, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

fn function_kind() -> String {
    "function".into()
}

impl ToolCall {
    /// A function call.
    pub fn function(id: impl Into<String>, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        ToolCall {
            id: id.into(),
            kind: function_kind(),
            function: FunctionCall { name: name.into(), arguments: arguments.into(), extra: Extra::new() },
            extra: Extra::new(),
        }
    }
}

/// The function part of a tool call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// JSON-encoded arguments, as the model produced them.
    #[serde(default)]
    pub arguments: String,
    /// Other fields, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}
