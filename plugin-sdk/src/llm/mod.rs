//! The LLM data a hook works on: [`Request`], [`Response`], [`Chunk`],
//! [`StreamEnd`], [`ToolCallRef`].
//!
//! On wasm each is a borrowed handle to the host's value: a read lowers only
//! what it returns, and an edit (`&self`: the host value is interior-mutable)
//! is checked by the host against the plugin's `messages` permission
//! ([`Access`](crate::Access)) when it is made. Off wasm each is an in-memory
//! stand-in built with a builder (`Request::builder` …) that applies the same
//! rules, so a plugin's unit tests see the edits the host would refuse.
//!
//! Indices are `usize`; JSON paths in [`AccessError`]s follow the OpenAI body
//! (`$.messages[0].content`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{AccessError, LlmError, Role, ToolCall, ToolCallFragment, Usage};

#[cfg(target_arch = "wasm32")]
use crate::bindings::plugbox::plugin::llm as imp;

#[cfg(not(target_arch = "wasm32"))]
mod builders;
#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
use native as imp;

#[cfg(not(target_arch = "wasm32"))]
pub use builders::{ChunkBuilder, RequestBuilder, ResponseBuilder};

type Res<T> = Result<T, AccessError>;

fn idx(index: usize) -> Res<u32> {
    u32::try_from(index).map_err(|_| AccessError::OutOfRange)
}

fn parse_as<T: DeserializeOwned>(name: &str, json: Option<String>) -> Res<Option<T>> {
    match json {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| AccessError::Invalid(format!("`$.{name}` has an unexpected type: {e}"))),
    }
}

fn to_json_text(name: &str, value: &impl Serialize) -> Res<String> {
    serde_json::to_string(value).map_err(|e| AccessError::Invalid(format!("`$.{name}` cannot be serialized: {e}")))
}

macro_rules! handle {
    ($name:ident) => {
        impl $name {
            /// The SDK view of a handle the host passed to a hook.
            #[cfg(target_arch = "wasm32")]
            pub(crate) fn from_wit(handle: &imp::$name) -> &Self {
                // SAFETY: `$name` is `#[repr(transparent)]` over `imp::$name`.
                unsafe { &*(handle as *const imp::$name as *const Self) }
            }
        }
    };
}

/// A chat completion request (the OpenAI Chat Completions body) and the facts
/// of the request being processed. Editable in `pre_request` only.
///
/// ```
/// use plugbox_sdk::{Access, AccessError, Request, Role};
/// let req = Request::builder("gpt-4o").system("be brief").user("hi").access(Access::Read).caller("alice").build();
/// assert_eq!(req.caller().as_deref(), Some("alice"));
/// assert_eq!(req.message_count(), 2);
/// assert_eq!(req.role(1).unwrap(), Role::User);
/// assert_eq!(req.text(1).unwrap().as_deref(), Some("hi"));
/// // `messages: read` may not edit message data:
/// assert!(matches!(req.set_text(1, "changed"), Err(AccessError::Denied(_))));
/// // but may set the model and parameters:
/// req.set_param("temperature", &0.2).unwrap();
/// assert_eq!(req.param::<f64>("temperature").unwrap(), Some(0.2));
/// ```
#[repr(transparent)]
#[derive(Debug)]
pub struct Request(imp::Request);
handle!(Request);

impl Request {
    /// The request id (the gateway's `x-request-id`, or generated).
    pub fn id(&self) -> String {
        self.0.id()
    }

    /// The identity of the caller (API key id, user), when the host knows it.
    pub fn caller(&self) -> Option<String> {
        self.0.caller()
    }

    /// The provider the request goes to (empty before routing).
    pub fn provider(&self) -> String {
        self.0.provider()
    }

    /// Whether the response is streamed.
    pub fn streaming(&self) -> bool {
        self.0.streaming()
    }

    /// The requested model.
    pub fn model(&self) -> String {
        self.0.model()
    }

    /// Route the request to another model (any permission; `pre_request` only).
    pub fn set_model(&self, model: &str) -> Res<()> {
        self.0.set_model(model).map_err(Into::into)
    }

    /// The number of messages.
    pub fn message_count(&self) -> usize {
        self.0.message_count() as usize
    }

    /// The role of message `index` (readable with any permission).
    pub fn role(&self, index: usize) -> Res<Role> {
        self.0.role(idx(index)?).map_err(Into::into)
    }

    /// The text of message `index`: its string content, or its text parts
    /// joined; `None` when it has no text (a tool-call-only message). Needs
    /// `read`.
    pub fn text(&self, index: usize) -> Res<Option<String>> {
        self.0.text(idx(index)?).map_err(Into::into)
    }

    /// Replace the content of message `index` with `text`. Needs `write`.
    pub fn set_text(&self, index: usize, text: &str) -> Res<()> {
        self.0.set_text(idx(index)?, text).map_err(Into::into)
    }

    /// Message `index` as OpenAI JSON (content parts, tool calls, name …).
    /// Needs `read`.
    pub fn message_json(&self, index: usize) -> Res<String> {
        self.0.message_json(idx(index)?).map_err(Into::into)
    }

    /// Insert a text message before `index` (`index` = count appends). Needs
    /// `write`.
    pub fn insert_message(&self, index: usize, role: Role, text: &str) -> Res<()> {
        self.0.insert_message(idx(index)?, role, text).map_err(Into::into)
    }

    /// Insert a message given as OpenAI JSON before `index`. Needs `write`.
    pub fn insert_message_json(&self, index: usize, json: &str) -> Res<()> {
        self.0.insert_message_json(idx(index)?, json).map_err(Into::into)
    }

    /// Remove message `index`. Needs `write`.
    pub fn remove_message(&self, index: usize) -> Res<()> {
        self.0.remove_message(idx(index)?).map_err(Into::into)
    }

    /// The number of tools offered to the model.
    pub fn tool_count(&self) -> usize {
        self.0.tool_count() as usize
    }

    /// The `tools` array as JSON. Needs `read`.
    pub fn tools_json(&self) -> Res<String> {
        self.0.tools_json().map_err(Into::into)
    }

    /// Any other top-level field (`temperature`, `response_format`, `top_k`
    /// …) as JSON; `None` when absent. `messages` and `tools` are read through
    /// their own methods.
    pub fn param_json(&self, name: &str) -> Res<Option<String>> {
        self.0.param(name).map_err(Into::into)
    }

    /// A top-level field deserialized as `T`; `None` when absent,
    /// [`AccessError::Invalid`] when it has another type.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Res<Option<T>> {
        parse_as(name, self.param_json(name)?)
    }

    /// Set a top-level field other than `messages` and `tools` (any
    /// permission; `pre_request` only).
    pub fn set_param(&self, name: &str, value: &impl Serialize) -> Res<()> {
        let json = to_json_text(name, value)?;
        self.0.set_param(name, Some(&json)).map_err(Into::into)
    }

    /// Set a top-level field given as JSON.
    pub fn set_param_json(&self, name: &str, json: &str) -> Res<()> {
        self.0.set_param(name, Some(json)).map_err(Into::into)
    }

    /// Remove a top-level field.
    pub fn remove_param(&self, name: &str) -> Res<()> {
        self.0.set_param(name, None).map_err(Into::into)
    }

    /// The whole body as JSON. Needs `read`.
    pub fn to_json(&self) -> Res<String> {
        self.0.to_json().map_err(Into::into)
    }

    /// `(index, role)` of every message, in order (any permission).
    pub fn messages(&self) -> impl Iterator<Item = (usize, Role)> + '_ {
        (0..self.message_count()).filter_map(|i| self.role(i).ok().map(|role| (i, role)))
    }

    /// The index of the last message with this role.
    pub fn last_index_of(&self, role: Role) -> Option<usize> {
        (0..self.message_count()).rev().find(|&i| self.role(i).ok() == Some(role))
    }

    /// The index of the last `user` message.
    pub fn last_user_index(&self) -> Option<usize> {
        self.last_index_of(Role::User)
    }

    /// The text of the last `user` message (needs `read`); `None` when there
    /// is none or it has no text.
    pub fn last_user_text(&self) -> Res<Option<String>> {
        match self.last_user_index() {
            Some(i) => self.text(i),
            None => Ok(None),
        }
    }

    /// The caller, or `default` when the host does not know it.
    pub fn caller_or(&self, default: &str) -> String {
        self.caller().unwrap_or_else(|| default.to_string())
    }
}

/// A chat completion response, or the error the request failed with.
/// Editable in `post_response` only.
///
/// ```
/// use plugbox_sdk::{Access, Response, Usage};
/// let resp = Response::builder("gpt-4o").text("hello").usage(Usage::new(3, 1)).access(Access::Write).build();
/// assert_eq!(resp.text(0).unwrap().as_deref(), Some("hello"));
/// resp.set_text(0, "HELLO").unwrap();
/// assert_eq!(resp.text(0).unwrap().as_deref(), Some("HELLO"));
/// assert_eq!(resp.usage().unwrap().total_tokens, 4);
/// ```
#[repr(transparent)]
#[derive(Debug)]
pub struct Response(imp::Response);
handle!(Response);

impl Response {
    /// The error, when the outcome is one (then there are no choices).
    pub fn error(&self) -> Option<LlmError> {
        self.0.error()
    }

    /// The completion id.
    pub fn id(&self) -> String {
        self.0.id()
    }

    /// The model that answered.
    pub fn model(&self) -> String {
        self.0.model()
    }

    /// The number of choices.
    pub fn choice_count(&self) -> usize {
        self.0.choice_count() as usize
    }

    /// The assistant text of choice `index`. Needs `read`.
    pub fn text(&self, index: usize) -> Res<Option<String>> {
        self.0.text(idx(index)?).map_err(Into::into)
    }

    /// Replace the text of choice `index`. Needs `write`.
    pub fn set_text(&self, index: usize, text: &str) -> Res<()> {
        self.0.set_text(idx(index)?, text).map_err(Into::into)
    }

    /// The refusal of choice `index`. Needs `read`.
    pub fn refusal(&self, index: usize) -> Res<Option<String>> {
        self.0.refusal(idx(index)?).map_err(Into::into)
    }

    /// The finish reason of choice `index`.
    pub fn finish_reason(&self, index: usize) -> Res<Option<String>> {
        self.0.finish_reason(idx(index)?).map_err(Into::into)
    }

    /// The tool calls of choice `index`. Needs `read`.
    pub fn tool_calls(&self, index: usize) -> Res<Vec<ToolCall>> {
        self.0.tool_calls(idx(index)?).map_err(Into::into)
    }

    /// Token counts, when reported.
    pub fn usage(&self) -> Option<Usage> {
        self.0.usage()
    }

    /// Any other top-level field (`system_fingerprint` …) as JSON.
    pub fn param_json(&self, name: &str) -> Res<Option<String>> {
        self.0.param(name).map_err(Into::into)
    }

    /// A top-level field deserialized as `T`.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Res<Option<T>> {
        parse_as(name, self.param_json(name)?)
    }

    /// Set a top-level field other than `choices` (`post_response` only).
    pub fn set_param(&self, name: &str, value: &impl Serialize) -> Res<()> {
        let json = to_json_text(name, value)?;
        self.0.set_param(name, Some(&json)).map_err(Into::into)
    }

    /// Remove a top-level field.
    pub fn remove_param(&self, name: &str) -> Res<()> {
        self.0.set_param(name, None).map_err(Into::into)
    }

    /// The whole body as JSON. Needs `read`.
    pub fn to_json(&self) -> Res<String> {
        self.0.to_json().map_err(Into::into)
    }

    /// Whether the outcome is an error.
    pub fn is_error(&self) -> bool {
        self.error().is_some()
    }
}

/// One chunk of a streamed response (a `chat.completion.chunk`).
///
/// ```
/// use plugbox_sdk::{Access, Chunk};
/// let chunk = Chunk::builder().text("hel").access(Access::Read).build();
/// assert_eq!(chunk.text(0).unwrap().as_deref(), Some("hel"));
/// assert!(chunk.set_text(0, "x").is_err());
/// ```
#[repr(transparent)]
#[derive(Debug)]
pub struct Chunk(imp::Chunk);
handle!(Chunk);

impl Chunk {
    /// The number of choices in this chunk (0 on the usage chunk).
    pub fn choice_count(&self) -> usize {
        self.0.choice_count() as usize
    }

    /// The content delta of choice `index`. Needs `read`.
    pub fn text(&self, index: usize) -> Res<Option<String>> {
        self.0.text(idx(index)?).map_err(Into::into)
    }

    /// Replace the content delta of choice `index`. Needs `write`.
    pub fn set_text(&self, index: usize, text: &str) -> Res<()> {
        self.0.set_text(idx(index)?, text).map_err(Into::into)
    }

    /// The reasoning delta (`reasoning_content`). Needs `read`.
    pub fn reasoning(&self, index: usize) -> Res<Option<String>> {
        self.0.reasoning(idx(index)?).map_err(Into::into)
    }

    /// The refusal delta. Needs `read`.
    pub fn refusal(&self, index: usize) -> Res<Option<String>> {
        self.0.refusal(idx(index)?).map_err(Into::into)
    }

    /// The role, set on a choice's first chunk.
    pub fn role(&self, index: usize) -> Res<Option<Role>> {
        self.0.role(idx(index)?).map_err(Into::into)
    }

    /// Pieces of tool calls. Needs `read`.
    pub fn tool_calls(&self, index: usize) -> Res<Vec<ToolCallFragment>> {
        self.0.tool_calls(idx(index)?).map_err(Into::into)
    }

    /// The finish reason, set on a choice's last chunk.
    pub fn finish_reason(&self, index: usize) -> Res<Option<String>> {
        self.0.finish_reason(idx(index)?).map_err(Into::into)
    }

    /// Set on the usage chunk (`stream_options.include_usage`).
    pub fn usage(&self) -> Option<Usage> {
        self.0.usage()
    }

    /// The whole chunk as JSON. Needs `read`.
    pub fn to_json(&self) -> Res<String> {
        self.0.to_json().map_err(Into::into)
    }

    /// True when the stream has ended and this is text the hook held, offered
    /// once more: [`ChunkAction::Hold`](crate::ChunkAction::Hold) is then
    /// refused.
    pub fn last(&self) -> bool {
        self.0.last()
    }
}

/// The end of a stream: the usage, and a way to append chunks.
#[repr(transparent)]
#[derive(Debug)]
pub struct StreamEnd(imp::StreamEnd);
handle!(StreamEnd);

impl StreamEnd {
    /// The usage the stream reported, if any.
    pub fn usage(&self) -> Option<Usage> {
        self.0.usage()
    }

    /// Append a chunk with this content delta after the stream's last chunk.
    /// Needs `write`.
    pub fn append_text(&self, text: &str) -> Res<()> {
        self.0.append_text(text).map_err(Into::into)
    }

    /// Append a chunk given as `chat.completion.chunk` JSON. Needs `write`.
    pub fn append_json(&self, json: &str) -> Res<()> {
        self.0.append_json(json).map_err(Into::into)
    }
}

/// A tool call the model asked for, before the caller runs it.
///
/// ```
/// use plugbox_sdk::{Access, ToolCallRef};
/// let call = ToolCallRef::new("call_1", "lookup", r#"{"q":"x"}"#, Access::Write);
/// call.set_arguments(r#"{"q":"y"}"#).unwrap();
/// assert_eq!(call.arguments().unwrap(), r#"{"q":"y"}"#);
/// ```
#[repr(transparent)]
#[derive(Debug)]
pub struct ToolCallRef(imp::ToolCallRef);
handle!(ToolCallRef);

impl ToolCallRef {
    /// The call's id.
    pub fn id(&self) -> String {
        self.0.id()
    }

    /// The function's name.
    pub fn name(&self) -> String {
        self.0.name()
    }

    /// The JSON arguments. Needs `read`.
    pub fn arguments(&self) -> Res<String> {
        self.0.arguments().map_err(Into::into)
    }

    /// The arguments deserialized as `T`. Needs `read`.
    pub fn arguments_as<T: DeserializeOwned>(&self) -> Res<T> {
        let json = self.arguments()?;
        serde_json::from_str(&json).map_err(|e| AccessError::Invalid(format!("`$.function.arguments`: {e}")))
    }

    /// Replace the arguments (must be JSON). Needs `write`.
    pub fn set_arguments(&self, json: &str) -> Res<()> {
        self.0.set_arguments(json).map_err(Into::into)
    }

    /// Rename the function. Needs `write`.
    pub fn set_name(&self, name: &str) -> Res<()> {
        self.0.set_name(name).map_err(Into::into)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Access, Completion, CompletionToolCall};

    fn denied(r: Res<impl std::fmt::Debug>) -> String {
        match r {
            Err(AccessError::Denied(why)) => why,
            other => panic!("expected denied, got {other:?}"),
        }
    }

    #[test]
    fn none_reads_shape_but_not_text() {
        let req = Request::builder("gpt-4o")
            .system("s")
            .user("secret")
            .tool(json!({"type": "function", "function": {"name": "f"}}))
            .param("temperature", 0.5)
            .access(Access::None)
            .build();
        assert_eq!((req.message_count(), req.tool_count()), (2, 1));
        assert_eq!(req.messages().collect::<Vec<_>>(), vec![(0, Role::System), (1, Role::User)]);
        assert_eq!(req.last_user_index(), Some(1));
        assert!(denied(req.text(1)).contains("`$.messages[1].content` needs `messages: read`"));
        denied(req.message_json(0));
        denied(req.tools_json());
        denied(req.to_json());
        denied(req.insert_message(0, Role::System, "x"));
        // The model and parameters are not message data.
        req.set_model("small").unwrap();
        req.set_param("temperature", &0.1).unwrap();
        assert_eq!(req.param::<f64>("temperature").unwrap(), Some(0.1));
        assert_eq!(req.snapshot()["model"], "small");
    }

    #[test]
    fn write_edits_and_errors_are_typed() {
        let req = Request::builder("m")
            .message_json(json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}, {"type": "text", "text": "b"}]}))
            .access(Access::Write)
            .max_output(40)
            .build();
        assert_eq!(req.text(0).unwrap().as_deref(), Some("ab"));
        req.insert_message(0, Role::System, "be brief").unwrap();
        assert_eq!(req.role(0).unwrap(), Role::System);
        assert_eq!(req.text(5), Err(AccessError::OutOfRange));
        assert_eq!(req.insert_message(9, Role::User, "x"), Err(AccessError::OutOfRange));
        assert_eq!(req.set_text(1, &"x".repeat(41)), Err(AccessError::TooLarge));
        assert!(matches!(req.insert_message_json(0, "nope"), Err(AccessError::Invalid(_))));
        assert!(matches!(req.param::<String>("messages"), Err(AccessError::Invalid(_))));
        req.remove_message(0).unwrap();
        assert_eq!(req.message_count(), 1);
        req.set_editable(false);
        assert!(denied(req.set_model("x")).contains("read-only"));
    }

    #[test]
    fn responses_chunks_and_tool_calls() {
        let done = Completion::tool_calls("c", "m", vec![CompletionToolCall::new("call_1", "f", "{}")]);
        let resp = Response::builder_from(&done).access(Access::Read).build();
        assert_eq!(resp.tool_calls(0).unwrap()[0].name, "f");
        assert_eq!(resp.finish_reason(0).unwrap().as_deref(), Some("tool_calls"));
        assert!(denied(resp.set_text(0, "x")).contains("needs `messages: write`"));
        let failed = Response::failed(LlmError::timeout("slow")).build();
        assert!(failed.is_error());
        assert_eq!(failed.choice_count(), 0);

        let chunk = Chunk::builder()
            .role(Role::Assistant)
            .reasoning("hmm")
            .tool_call(CompletionToolCall::start(0, "call_1", "f"))
            .access(Access::None)
            .build();
        assert_eq!(chunk.role(0).unwrap(), Some(Role::Assistant));
        denied(chunk.reasoning(0));
        denied(chunk.tool_calls(0));
        let chunk = Chunk::builder().tool_call(CompletionToolCall::start(0, "call_1", "f")).build();
        let pieces = chunk.tool_calls(0).unwrap();
        assert_eq!((pieces[0].id.as_deref(), pieces[0].name.as_deref()), (Some("call_1"), Some("f")));

        let end = StreamEnd::new(None, Access::Read);
        denied(end.append_text("x"));
        let call = ToolCallRef::new("1", "f", "{}", Access::None);
        assert_eq!(call.name(), "f");
        denied(call.arguments());
        let call = ToolCallRef::new("1", "f", "{}", Access::Write);
        assert!(matches!(call.set_arguments("{"), Err(AccessError::Invalid(_))));
        assert_eq!(call.arguments_as::<serde_json::Value>().unwrap(), json!({}));
    }
}
