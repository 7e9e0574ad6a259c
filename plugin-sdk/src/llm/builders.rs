//! Builders for the off-wasm stand-ins of [`Request`], [`Response`],
//! [`Chunk`], [`StreamEnd`] and [`ToolCallRef`], and what a test can inspect
//! on them regardless of the permission.

use std::cell::{Cell, RefCell};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::native::{self, Facts, Guard, role_name};
use super::{Chunk, Request, Response, StreamEnd, ToolCallRef};
use crate::{Access, Completion, CompletionChunk, CompletionToolCall, LlmError, Role, Usage};

/// Builds an off-wasm [`Request`]: the body, the request facts and the
/// plugin's permission. Defaults: id `req-1`, no caller, no provider,
/// `messages: read`, editable (as in `pre_request`).
#[derive(Debug)]
pub struct RequestBuilder {
    body: Map<String, Value>,
    facts: Facts,
    access: Access,
    editable: bool,
    max_output: Option<usize>,
}

impl RequestBuilder {
    /// The request id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.facts.id = id.into();
        self
    }
    /// The caller's identity.
    pub fn caller(mut self, caller: impl Into<String>) -> Self {
        self.facts.caller = Some(caller.into());
        self
    }
    /// The provider the request goes to.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.facts.provider = provider.into();
        self
    }
    /// Whether the response is streamed (also sets the body's `stream`).
    pub fn streaming(mut self, streaming: bool) -> Self {
        self.facts.streaming = Some(streaming);
        self.body.insert("stream".into(), Value::Bool(streaming));
        self
    }
    /// Append a text message.
    pub fn message(mut self, role: Role, text: impl Into<String>) -> Self {
        self.push(json!({"role": role_name(role), "content": text.into()}));
        self
    }
    /// Append a `system` message.
    pub fn system(self, text: impl Into<String>) -> Self {
        self.message(Role::System, text)
    }
    /// Append a `developer` message.
    pub fn developer(self, text: impl Into<String>) -> Self {
        self.message(Role::Developer, text)
    }
    /// Append a `user` message.
    pub fn user(self, text: impl Into<String>) -> Self {
        self.message(Role::User, text)
    }
    /// Append an `assistant` message.
    pub fn assistant(self, text: impl Into<String>) -> Self {
        self.message(Role::Assistant, text)
    }
    /// Append a message given as OpenAI JSON (content parts, tool calls …).
    pub fn message_json(mut self, message: Value) -> Self {
        self.push(message);
        self
    }
    /// Append a tool definition (OpenAI JSON) to `tools`.
    pub fn tool(mut self, tool: Value) -> Self {
        let tools = self.body.entry("tools").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(tools) = tools.as_array_mut() {
            tools.push(tool);
        }
        self
    }
    /// Set a top-level field (`temperature`, `stream_options` …).
    pub fn param(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        self.body.insert(name.into(), serde_json::to_value(value).expect("a parameter serializes"));
        self
    }
    /// The plugin's `messages` permission (default `read`).
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }
    /// Make the request read-only, as in every hook but `pre_request`.
    pub fn read_only(mut self) -> Self {
        self.editable = false;
        self
    }
    /// Refuse edits of more than `bytes` ([`AccessError::TooLarge`](crate::AccessError::TooLarge)),
    /// as `limits.max-output` does.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = Some(bytes);
        self
    }
    /// The request.
    pub fn build(self) -> Request {
        Request(native::Request {
            facts: self.facts,
            guard: Guard::new(self.access, self.editable, self.max_output),
            body: RefCell::new(self.body),
        })
    }
    fn push(&mut self, message: Value) {
        let messages = self.body.entry("messages").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(messages) = messages.as_array_mut() {
            messages.push(message);
        }
    }
}

impl Request {
    /// A builder for an off-wasm request for `model` with no messages.
    pub fn builder(model: impl Into<String>) -> RequestBuilder {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(model.into()));
        body.insert("messages".into(), Value::Array(Vec::new()));
        RequestBuilder {
            body,
            facts: Facts { id: "req-1".into(), ..Facts::default() },
            access: Access::Read,
            editable: true,
            max_output: None,
        }
    }

    /// A builder for an off-wasm request with this OpenAI body.
    pub fn builder_json(body: &str) -> Result<RequestBuilder, String> {
        match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(map)) => {
                let mut builder = Request::builder("");
                builder.body = map;
                Ok(builder)
            }
            Ok(_) => Err("a request body must be a JSON object".into()),
            Err(e) => Err(format!("a request body must be JSON: {e}")),
        }
    }

    /// Off wasm: the body as JSON, whatever the permission (for assertions).
    pub fn snapshot(&self) -> Value {
        Value::Object(self.0.body.borrow().clone())
    }

    /// Off wasm: make the request editable or read-only, as the host does
    /// between `pre_request` and later hooks.
    pub fn set_editable(&self, editable: bool) {
        self.0.guard.editable.set(editable);
    }

    /// Off wasm: the plugin's permission.
    pub fn access(&self) -> Access {
        self.0.guard.access.get()
    }
}

/// Builds an off-wasm [`Response`]. Defaults: `messages: read`, editable
/// (as in `post_response`).
#[derive(Debug)]
pub struct ResponseBuilder {
    body: Map<String, Value>,
    error: Option<LlmError>,
    access: Access,
    editable: bool,
    max_output: Option<usize>,
}

impl ResponseBuilder {
    fn choices(&mut self) -> &mut Vec<Value> {
        let choices = self.body.entry("choices").or_insert_with(|| Value::Array(Vec::new()));
        choices.as_array_mut().expect("choices is an array")
    }
    /// Add a choice with this assistant text, finish reason `stop`.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        let choices = self.choices();
        let index = choices.len();
        choices.push(json!({
            "index": index,
            "message": {"role": "assistant", "content": text.into()},
            "finish_reason": "stop",
        }));
        self
    }
    /// Add a choice asking for these tool calls, finish reason `tool_calls`.
    pub fn tool_calls(mut self, calls: Vec<CompletionToolCall>) -> Self {
        let choices = self.choices();
        let index = choices.len();
        choices.push(json!({
            "index": index,
            "message": {"role": "assistant", "content": null, "tool_calls": calls},
            "finish_reason": "tool_calls",
        }));
        self
    }
    /// The completion id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.body.insert("id".into(), Value::String(id.into()));
        self
    }
    /// Token counts.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.body.insert("usage".into(), serde_json::to_value(usage).expect("usage serializes"));
        self
    }
    /// Set a top-level field.
    pub fn param(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        self.body.insert(name.into(), serde_json::to_value(value).expect("a field serializes"));
        self
    }
    /// The plugin's `messages` permission (default `read`).
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }
    /// Make the response read-only.
    pub fn read_only(mut self) -> Self {
        self.editable = false;
        self
    }
    /// Refuse edits of more than `bytes`, as `limits.max-output` does.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = Some(bytes);
        self
    }
    /// The response.
    pub fn build(self) -> Response {
        Response(native::Response {
            guard: Guard::new(self.access, self.editable, self.max_output),
            error: self.error,
            body: RefCell::new(self.body),
        })
    }
}

impl Response {
    /// A builder for an off-wasm response from `model` with no choices yet.
    pub fn builder(model: impl Into<String>) -> ResponseBuilder {
        let done = Completion::text("chatcmpl-test", model, "");
        let mut builder = Response::builder_from(&done);
        builder.choices().clear();
        builder
    }

    /// A builder for an off-wasm response with this completion.
    pub fn builder_from(completion: &Completion) -> ResponseBuilder {
        let Value::Object(body) = serde_json::to_value(completion).expect("a completion serializes") else {
            unreachable!("a completion is an object")
        };
        ResponseBuilder { body, error: None, access: Access::Read, editable: true, max_output: None }
    }

    /// A builder for an off-wasm outcome that is this error (no choices).
    pub fn failed(error: LlmError) -> ResponseBuilder {
        let mut builder = Response::builder("");
        builder.error = Some(error);
        builder
    }

    /// Off wasm: the body as JSON, whatever the permission (for assertions).
    pub fn snapshot(&self) -> Value {
        Value::Object(self.0.body.borrow().clone())
    }
}

/// Builds an off-wasm [`Chunk`]: one choice (index 0) unless
/// [`usage`](ChunkBuilder::usage) makes it the usage chunk. Default
/// `messages: read`.
#[derive(Debug)]
pub struct ChunkBuilder {
    chunk: CompletionChunk,
    access: Access,
    last: bool,
    max_output: Option<usize>,
}

impl ChunkBuilder {
    fn delta(&mut self) -> &mut crate::ChunkDelta {
        &mut self.chunk.choices[0].delta
    }
    /// The content delta.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.delta().content = Some(text.into());
        self
    }
    /// The reasoning delta.
    pub fn reasoning(mut self, text: impl Into<String>) -> Self {
        self.delta().reasoning_content = Some(text.into());
        self
    }
    /// The refusal delta.
    pub fn refusal(mut self, text: impl Into<String>) -> Self {
        self.delta().refusal = Some(text.into());
        self
    }
    /// The role (a choice's first chunk).
    pub fn role(mut self, role: Role) -> Self {
        self.delta().role = Some(role);
        self
    }
    /// A piece of a tool call.
    pub fn tool_call(mut self, piece: CompletionToolCall) -> Self {
        self.delta().tool_calls.push(piece);
        self
    }
    /// The finish reason.
    pub fn finish(mut self, reason: impl Into<String>) -> Self {
        self.chunk.choices[0].finish_reason = Some(reason.into());
        self
    }
    /// Make this the usage chunk: no choices, `usage` set.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.chunk.choices.clear();
        self.chunk.usage = Some(usage);
        self
    }
    /// The plugin's `messages` permission (default `read`).
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }
    /// Mark the chunk as held text offered once more at the end of the stream.
    pub fn last(mut self, last: bool) -> Self {
        self.last = last;
        self
    }
    /// Refuse edits of more than `bytes`, as `limits.max-output` does.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = Some(bytes);
        self
    }
    /// The chunk.
    pub fn build(self) -> Chunk {
        let Value::Object(body) = serde_json::to_value(&self.chunk).expect("a chunk serializes") else {
            unreachable!("a chunk is an object")
        };
        Chunk(native::Chunk {
            guard: Guard::new(self.access, true, self.max_output),
            last: self.last,
            body: RefCell::new(body),
        })
    }
}

impl Chunk {
    /// A builder for an off-wasm chunk with one empty choice.
    pub fn builder() -> ChunkBuilder {
        Chunk::builder_from(CompletionChunk::delta("chatcmpl-test", "test-model", Default::default()))
    }

    /// A builder for an off-wasm chunk with this body.
    pub fn builder_from(chunk: CompletionChunk) -> ChunkBuilder {
        ChunkBuilder { chunk, access: Access::Read, last: false, max_output: None }
    }

    /// Off wasm: the chunk, whatever the permission (for assertions).
    pub fn snapshot(&self) -> CompletionChunk {
        serde_json::from_value(Value::Object(self.0.body.borrow().clone())).expect("the stand-in holds a chunk")
    }
}

impl StreamEnd {
    /// An off-wasm stream end with this usage, for a plugin with `access`.
    pub fn new(usage: Option<Usage>, access: Access) -> StreamEnd {
        StreamEnd(native::StreamEnd {
            guard: Guard::new(access, true, None),
            usage,
            template: CompletionChunk::text("chatcmpl-test", "test-model", ""),
            appended: RefCell::new(Vec::new()),
        })
    }

    /// Off wasm: the chunks appended so far.
    pub fn appended(&self) -> Vec<CompletionChunk> {
        self.0.appended.borrow().clone()
    }
}

impl ToolCallRef {
    /// An off-wasm tool call, for a plugin with `access`.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: impl Into<String>, access: Access) -> Self {
        ToolCallRef(native::ToolCallRef {
            guard: Guard { access: Cell::new(access), editable: Cell::new(true), max_output: Cell::new(None) },
            id: id.into(),
            name: RefCell::new(name.into()),
            arguments: RefCell::new(arguments.into()),
        })
    }
}
