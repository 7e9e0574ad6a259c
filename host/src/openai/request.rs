//! The request body: [`ChatRequest`] and its messages and tools.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use super::Extra;
use super::content::{MessageContent, Nullable, Role, flat, nullable};

/// `Some(value)` for a field that is present, `null` included: the
/// `deserialize_with` of `Option<Value>` fields that keep `null`.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A Chat Completions request (`POST /v1/chat/completions`).
///
/// Every field the reference documents is modelled; a field it documents as
/// nullable keeps an explicit `null` ([`Nullable`]); every other field is kept
/// in [`extra`](ChatRequest::extra). Parsing and serialising gives the same JSON
/// (see the module docs). Build one with [`ChatRequest::new`] and the `with_*`
/// builders, read and write any top-level field by name with
/// [`param`](ChatRequest::param) and [`set_param`](ChatRequest::set_param).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model (or the gateway's alias for one).
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub tools: Option<Nullable<Vec<Tool>>>,
    /// `none`, `auto`, `required`, or `{"type": "function", "function": {"name": ...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several tools at once.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub parallel_tool_calls: Option<Nullable<bool>>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub stream: Option<Nullable<bool>>,
    /// Stream settings (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub stream_options: Option<Nullable<StreamOptions>>,
    /// Sampling temperature, 0–2.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub temperature: Option<Nullable<Number>>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub top_p: Option<Nullable<Number>>,
    /// Number of choices to generate.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub n: Option<Nullable<u32>>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens`; still used by
    /// most compatible servers.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub max_tokens: Option<Nullable<u64>>,
    /// Upper bound on generated tokens, reasoning included.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub max_completion_tokens: Option<Nullable<u64>>,
    /// Up to 4 sequences where generation stops: a string or an array.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub stop: Option<Value>,
    /// -2.0 to 2.0.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub presence_penalty: Option<Nullable<Number>>,
    /// -2.0 to 2.0.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub frequency_penalty: Option<Nullable<Number>>,
    /// Token id → bias.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub logit_bias: Option<Value>,
    /// Return log probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub logprobs: Option<Nullable<bool>>,
    /// 0–20 most likely tokens per position (needs `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub top_logprobs: Option<Nullable<u32>>,
    /// Best-effort determinism.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub seed: Option<Nullable<i64>>,
    /// `{"type": "text" | "json_object"}` or `{"type": "json_schema", "json_schema": {...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub response_format: Option<Value>,
    /// `minimal`, `low`, `medium`, `high` (reasoning models).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub reasoning_effort: Option<Nullable<String>>,
    /// `low`, `medium`, `high`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub verbosity: Option<Nullable<String>>,
    /// Output modalities, e.g. `["text", "audio"]`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub modalities: Option<Nullable<Vec<String>>>,
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
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub store: Option<Nullable<bool>>,
    /// `auto`, `default`, `flex`, `priority`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub service_tier: Option<Nullable<String>>,
    /// End-user identifier (deprecated by OpenAI for `safety_identifier`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub user: Option<Nullable<String>>,
    /// Stable identifier of the end user, for abuse detection.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub safety_identifier: Option<Nullable<String>>,
    /// Prompt-cache bucketing key.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub prompt_cache_key: Option<Nullable<String>>,
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

/// Invokes `$mac!($self, $name; ...)` with every optional field of [`ChatRequest`].
macro_rules! request_optional_fields {
    ($mac:ident, $self:ident, $name:ident $(, $arg:expr)?) => {
        $mac!($self, $name $(, $arg)?; tools tool_choice parallel_tool_calls stream stream_options temperature
            top_p n max_tokens max_completion_tokens stop presence_penalty frequency_penalty logit_bias logprobs
            top_logprobs seed response_format reasoning_effort verbosity modalities audio prediction
            web_search_options metadata store service_tier user safety_identifier prompt_cache_key functions
            function_call)
    };
}

impl ChatRequest {
    /// The top-level fields this type models (the others go to
    /// [`extra`](ChatRequest::extra)), in the order they are written.
    pub const FIELDS: &'static [&'static str] = {
        macro_rules! names {
            ($self:ident, $name:ident; $($field:ident)*) => {
                &["model", "messages", $(stringify!($field)),*]
            };
        }
        request_optional_fields!(names, self, name)
    };

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
        self.stream = Some(Nullable::Value(stream));
        self
    }

    /// Builder: sets `stream_options.include_usage`.
    pub fn with_include_usage(mut self, include_usage: bool) -> Self {
        let options = StreamOptions { include_usage: Some(include_usage), ..Default::default() };
        self.stream_options = Some(Nullable::Value(options));
        self
    }

    /// Builder: sets `temperature` (a float that is not finite is ignored).
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.temperature = Number::from_f64(temperature).map(Nullable::Value);
        self
    }

    /// Builder: sets `max_tokens`.
    pub fn with_max_tokens(mut self, max_tokens: u64) -> Self {
        self.max_tokens = Some(Nullable::Value(max_tokens));
        self
    }

    /// Builder: sets `max_completion_tokens`.
    pub fn with_max_completion_tokens(mut self, max_completion_tokens: u64) -> Self {
        self.max_completion_tokens = Some(Nullable::Value(max_completion_tokens));
        self
    }

    /// Builder: sets `n`, the number of choices.
    pub fn with_n(mut self, n: u32) -> Self {
        self.n = Some(Nullable::Value(n));
        self
    }

    /// Builder: sets `seed`.
    pub fn with_seed(mut self, seed: i64) -> Self {
        self.seed = Some(Nullable::Value(seed));
        self
    }

    /// Builder: adds a tool.
    pub fn with_tool(mut self, tool: Tool) -> Self {
        match &mut self.tools {
            Some(Nullable::Value(tools)) => tools.push(tool),
            _ => self.tools = Some(Nullable::Value(vec![tool])),
        }
        self
    }

    /// Builder: sets a field this type does not model (`top_k`,
    /// `guided_json` ...), kept in [`extra`](ChatRequest::extra). For a
    /// modelled field use [`set_param`](ChatRequest::set_param).
    pub fn with_extra(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// Whether the answer is to be streamed.
    pub fn is_streaming(&self) -> bool {
        flat(&self.stream) == Some(&true)
    }

    /// Whether the stream ends with a usage chunk (`stream_options.include_usage`).
    pub fn includes_usage(&self) -> bool {
        flat(&self.stream_options).and_then(|o| o.include_usage) == Some(true)
    }

    /// `temperature` as a float.
    pub fn temperature(&self) -> Option<f64> {
        flat(&self.temperature).and_then(Number::as_f64)
    }

    /// `top_p` as a float.
    pub fn top_p(&self) -> Option<f64> {
        flat(&self.top_p).and_then(Number::as_f64)
    }

    /// `max_completion_tokens`, or else the older `max_tokens`.
    pub fn max_tokens(&self) -> Option<u64> {
        flat(&self.max_completion_tokens).or(flat(&self.max_tokens)).copied()
    }

    /// The number of choices asked for (`n`, 1 when absent or `null`).
    pub fn n(&self) -> u32 {
        flat(&self.n).copied().unwrap_or(1)
    }

    /// `seed`, when set.
    pub fn seed(&self) -> Option<i64> {
        flat(&self.seed).copied()
    }

    /// The tools offered to the model (empty when none).
    pub fn tools(&self) -> &[Tool] {
        flat(&self.tools).map_or(&[], Vec::as_slice)
    }

    /// The last message with role `user`.
    pub fn last_user_message(&self) -> Option<&ChatMessage> {
        self.messages.iter().rev().find(|m| m.role == Role::User)
    }

    /// The last message with role `user`, mutably.
    pub fn last_user_message_mut(&mut self) -> Option<&mut ChatMessage> {
        self.messages.iter_mut().rev().find(|m| m.role == Role::User)
    }

    /// The top-level field `name` as JSON (`model`, `messages` and `tools`
    /// included), `None` when absent. Serialises that one field only; an
    /// explicit `null` is `Some(Value::Null)`.
    pub fn param(&self, name: &str) -> Option<Value> {
        macro_rules! get {
            ($self:ident, $name:ident; $($field:ident)*) => {
                match $name {
                    "model" => Some(Value::String($self.model.clone())),
                    "messages" => Some(super::to_value(&$self.messages)),
                    $(stringify!($field) => $self.$field.as_ref().map(super::to_value),)*
                    _ => $self.extra.get($name).cloned(),
                }
            };
        }
        request_optional_fields!(get, self, name)
    }

    /// Sets (`Some`) or removes (`None`) the top-level field `name`, touching
    /// no other field. `Some(Value::Null)` writes an explicit `null` where
    /// the reference allows one. A field this type does not model is kept in
    /// [`extra`](ChatRequest::extra) (in place when it was there).
    ///
    /// # Errors
    ///
    /// A value that does not fit the field's type (`temperature` takes a
    /// number), or removing `model` or `messages`; the message names the JSON
    /// path (`` `$.temperature`: invalid type: string "hot", expected ... ``).
    /// The request is unchanged then.
    pub fn set_param(&mut self, name: &str, value: Option<Value>) -> Result<(), String> {
        macro_rules! set {
            ($self:ident, $name:ident, $value:expr; $($field:ident)*) => {
                match $name {
                    "model" => $self.model = super::required($name, $value)?,
                    "messages" => $self.messages = super::required($name, $value)?,
                    $(stringify!($field) => $self.$field = super::optional($name, $value)?,)*
                    _ => super::set_extra(&mut $self.extra, $name, $value),
                }
            };
        }
        request_optional_fields!(set, self, name, value);
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
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub name: Option<Nullable<String>>,
    /// The assistant's refusal.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub refusal: Option<Nullable<String>>,
    /// Tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub tool_calls: Option<Nullable<Vec<ToolCall>>>,
    /// For `role: tool`: the call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub tool_call_id: Option<Nullable<String>>,
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
        ChatMessage { tool_call_id: Some(Nullable::Value(tool_call_id.into())), ..Self::new(Role::Tool, content) }
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
        flat(&self.tool_calls).map_or(&[], Vec::as_slice)
    }

    /// The tool calls, mutably (an empty list is created when there is none).
    pub fn tool_calls_mut(&mut self) -> &mut Vec<ToolCall> {
        if !matches!(self.tool_calls, Some(Nullable::Value(_))) {
            self.tool_calls = Some(Nullable::Value(Vec::new()));
        }
        match &mut self.tool_calls {
            Some(Nullable::Value(calls)) => calls,
            _ => unreachable!("set just above"),
        }
    }

    /// The author name, if any.
    pub fn name(&self) -> Option<&str> {
        flat(&self.name).map(String::as_str)
    }

    /// For `role: tool`: the call this message answers.
    pub fn tool_call_id(&self) -> Option<&str> {
        flat(&self.tool_call_id).map(String::as_str)
    }

    /// The reasoning text (`reasoning_content`), if any.
    pub fn reasoning(&self) -> Option<&str> {
        flat(&self.reasoning_content).map(String::as_str)
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
    /// The function called. A call of another tool type (`custom`, with its
    /// data in `extra`) has none: then this is empty and not written.
    #[serde(default, skip_serializing_if = "FunctionCall::is_empty")]
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

impl FunctionCall {
    /// No name, no arguments, nothing else: the `function` of a call that has none.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty() && self.arguments.is_empty() && self.extra.is_empty()
    }
}
