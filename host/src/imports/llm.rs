//! The host side of WIT interface `llm`: the request, response, stream chunk,
//! stream end and tool call a hook reads and edits through `borrow` handles.
//!
//! Each resource is backed by an *entry* the pipeline moves into the
//! instance's resource table for one call and takes back after it. An entry
//! holds the host's data behind an [`Arc`] (the `base`) and, from the first
//! edit on, an edited copy ([`Draft`]): a plugin that edits nothing costs no
//! clone, and the edits of a plugin whose call fails are discarded by
//! dropping the copy.
//!
//! Every read and edit is checked where it happens against the calling
//! plugin's [`CallRules`] (its `messages` permission, the hook, its output
//! budget), exactly as the WIT documents:
//!
//! - `none`: reads no message data (message text, names, tool calls,
//!   tool-call ids, JSON of a message, tool definitions; the text, refusal,
//!   reasoning and tool calls of choices and chunks); it may read counts,
//!   roles, the model, finish reasons, usage, the request facts and
//!   parameters, and edit the model and parameters;
//! - `read`: reads everything; edits nothing that is message data;
//! - `write`: reads and edits everything.
//!
//! Edits are allowed only in the hook that owns the data: the request in
//! `pre-request`, the response in `post-response`, a chunk in `on-chunk`, a
//! tool call in `on-tool-call`, appends in `on-stream-end`. A refused read or
//! edit returns `access-error::denied` (or `too-large` past the output
//! budget) to the guest *and* records a violation that makes the call a
//! plugin failure (invalid output) whatever the hook then returns. An index
//! out of range (`out-of-range`) and a value that does not parse
//! (`invalid`) are answers, not violations.

use std::borrow::Cow;
use std::fmt::Display;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::component::Resource;

use super::StoreState;
use crate::bindings::llm;
use crate::bindings::types::{self as wit, AccessError, LlmError};
use crate::budget::{ELEMENT_COST, MAX_END_CHUNKS, MAX_MESSAGES, OutputBudget};
use crate::manifest::MessageAccess;
use crate::openai::{ChatChunk, ChatMessage, ChatRequest, ChatResponse, Role, ToolCall, Usage};

/// The facts of the request being processed, as plugins see them through
/// the request's `id`, `caller`, `provider` and `streaming` methods.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestInfo {
    /// The request id (the gateway's `x-request-id`, or generated).
    pub request_id: String,
    /// The model the request is for.
    pub model: String,
    /// The provider the request goes to (empty before routing).
    pub provider: String,
    /// Whether the response is streamed.
    pub streaming: bool,
    /// Identity of the caller (API key id, user), when known.
    pub caller: Option<String>,
}

/// What one hook call may do with the `llm` resources it is handed, and what
/// it did wrong: set by the pipeline before the call, taken back after it.
#[derive(Debug)]
pub(crate) struct CallRules {
    /// The hook being called (named in read-only refusals).
    pub(crate) hook: &'static str,
    /// The plugin's `messages` permission.
    pub(crate) access: MessageAccess,
    /// What the plugin may still hand to the host in this call.
    pub(crate) budget: OutputBudget,
    /// The first refused read or edit, naming the JSON path.
    pub(crate) violation: Option<String>,
}

impl Default for CallRules {
    fn default() -> Self {
        CallRules::new("", MessageAccess::None, 0)
    }
}

impl CallRules {
    /// The rules of one call of `hook` by a plugin with `access` and a
    /// `max-output` of `max_output` bytes.
    pub(crate) fn new(hook: &'static str, access: MessageAccess, max_output: u64) -> Self {
        CallRules { hook, access, budget: OutputBudget::new(max_output), violation: None }
    }

    fn violate(&mut self, message: String) {
        if self.violation.is_none() {
            self.violation = Some(message);
        }
    }

    fn deny(&mut self, message: String) -> AccessError {
        self.violate(message.clone());
        AccessError::Denied(message)
    }

    /// Reading message data at `path` needs `read`.
    fn read(&mut self, path: &dyn Display) -> Result<(), AccessError> {
        match self.access {
            MessageAccess::Read | MessageAccess::Write => Ok(()),
            MessageAccess::None => {
                Err(self.deny(format!("reading message data at `{path}` needs `messages: read` permission")))
            }
        }
    }

    /// A change outside message data (model, parameters, usage): any level,
    /// in the hook that owns the data.
    fn edit(&mut self, editable: bool, what: &str, path: &dyn Display) -> Result<(), AccessError> {
        if editable {
            return Ok(());
        }
        let hook = self.hook;
        Err(self.deny(format!("the {what} is read-only in `{hook}`: the change at `{path}` is refused")))
    }

    /// A change to message data: `write`, in the hook that owns the data.
    fn write(&mut self, editable: bool, what: &str, path: &dyn Display) -> Result<(), AccessError> {
        self.edit(editable, what, path)?;
        match self.access {
            MessageAccess::Write => Ok(()),
            _ => Err(self.deny(format!("a change to message data at `{path}` needs `messages: write` permission"))),
        }
    }

    /// Charges `bytes` an edit adds at `path`.
    fn charge(&mut self, path: &dyn Display, bytes: usize) -> Result<(), AccessError> {
        self.budget.charge(path, bytes as u64).map_err(|e| {
            self.violate(e);
            AccessError::TooLarge
        })
    }

    /// Refuses a list growing past `max` elements.
    fn count(&mut self, path: &dyn Display, n: usize, max: usize) -> Result<(), AccessError> {
        if n <= max {
            return Ok(());
        }
        self.violate(format!("`{path}` would have {n} elements; at most {max} are accepted"));
        Err(AccessError::TooLarge)
    }
}

/// Host data a hook may edit, copy-on-write: the shared `base` until the
/// first edit, then an edited copy.
#[derive(Debug)]
pub(crate) struct Draft<T: Clone> {
    base: Arc<T>,
    edited: Option<T>,
}

impl<T: Clone> Draft<T> {
    pub(crate) fn new(base: Arc<T>) -> Self {
        Draft { base, edited: None }
    }
    /// The data as it stands (edited or not).
    pub(crate) fn get(&self) -> &T {
        self.edited.as_ref().unwrap_or(&self.base)
    }
    /// The data to edit: the copy, made on the first call.
    pub(crate) fn edit(&mut self) -> &mut T {
        let base = &self.base;
        self.edited.get_or_insert_with(|| T::clone(base))
    }
    /// Whether an edit was made.
    pub(crate) fn is_edited(&self) -> bool {
        self.edited.is_some()
    }
    /// The edited copy, if an edit was made.
    pub(crate) fn into_edited(self) -> Option<T> {
        self.edited
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("host data always serialises")
}

fn invalid(what: impl Display) -> AccessError {
    AccessError::Invalid(what.to_string())
}

/// The WIT role of an OpenAI role.
pub(crate) fn wit_role(role: &Role) -> wit::Role {
    match role {
        Role::System => wit::Role::System,
        Role::Developer => wit::Role::Developer,
        Role::User => wit::Role::User,
        Role::Assistant => wit::Role::Assistant,
        Role::Tool => wit::Role::Tool,
        Role::Function => wit::Role::Function,
        Role::Other(_) => wit::Role::Other,
    }
}

fn openai_role(role: wit::Role) -> Option<Role> {
    Some(match role {
        wit::Role::System => Role::System,
        wit::Role::Developer => Role::Developer,
        wit::Role::User => Role::User,
        wit::Role::Assistant => Role::Assistant,
        wit::Role::Tool => Role::Tool,
        wit::Role::Function => Role::Function,
        wit::Role::Other => return None,
    })
}

fn count32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The WIT usage of OpenAI token counts (saturating at `u32::MAX`).
pub(crate) fn wit_usage(u: &Usage) -> wit::Usage {
    wit::Usage {
        prompt_tokens: count32(u.prompt_tokens),
        completion_tokens: count32(u.completion_tokens),
        total_tokens: count32(u.total_tokens),
    }
}

fn wit_tool_call(c: &ToolCall) -> wit::ToolCall {
    wit::ToolCall { id: c.id.clone(), name: c.function.name.clone(), arguments: c.function.arguments.clone() }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Sets (`Some`) or removes (`None`) a top-level field of a body given as
/// JSON text; `set` does the typed work. Rejects text that does not parse.
fn parse_param(name: &str, value: Option<&str>) -> Result<Option<serde_json::Value>, AccessError> {
    value
        .map(|text| serde_json::from_str(text).map_err(|e| invalid(format_args!("`$.{name}` is not valid JSON: {e}"))))
        .transpose()
}

/// One top-level field of a request, other than `messages` and `tools`, as
/// JSON, without serialising the messages.
fn request_param(r: &ChatRequest, name: &str) -> Option<String> {
    macro_rules! typed {
        ($($field:ident),*) => {
            match name {
                "model" => Some(json(&r.model)),
                $(stringify!($field) => r.$field.as_ref().map(json),)*
                _ => r.extra.get(name).map(json),
            }
        };
    }
    typed!(
        tool_choice, parallel_tool_calls, stream, stream_options, temperature, top_p, n, max_tokens,
        max_completion_tokens, stop, presence_penalty, frequency_penalty, logit_bias, logprobs, top_logprobs, seed,
        response_format, reasoning_effort, verbosity, modalities, audio, prediction, web_search_options, metadata,
        store, service_tier, user, safety_identifier, prompt_cache_key, functions, function_call
    )
}

/// One top-level field of a response, other than `choices`, as JSON.
fn response_param(r: &ChatResponse, name: &str) -> Option<String> {
    match name {
        "id" => Some(json(&r.id)),
        "object" => Some(json(&r.object)),
        "created" => Some(json(&r.created)),
        "model" => Some(json(&r.model)),
        "usage" => r.usage.as_ref().map(json),
        "system_fingerprint" => r.system_fingerprint.as_ref().map(json),
        "service_tier" => r.service_tier.as_ref().map(json),
        _ => r.extra.get(name).map(json),
    }
}

/// The request of one hook call (resource `request`).
#[derive(Debug)]
pub struct RequestEntry {
    pub(crate) data: Draft<ChatRequest>,
    pub(crate) info: Arc<RequestInfo>,
    /// Edits allowed (`pre-request` only).
    pub(crate) editable: bool,
}

impl RequestEntry {
    /// An entry over `base`, editable when `editable`.
    pub(crate) fn new(base: Arc<ChatRequest>, info: Arc<RequestInfo>, editable: bool) -> Self {
        RequestEntry { data: Draft::new(base), info, editable }
    }

    fn message(&self, index: u32) -> Result<&ChatMessage, AccessError> {
        self.data.get().messages.get(index as usize).ok_or(AccessError::OutOfRange)
    }

    fn check_index(&self, index: u32) -> Result<(), AccessError> {
        self.message(index).map(drop)
    }

    pub(crate) fn role(&self, index: u32) -> Result<wit::Role, AccessError> {
        self.message(index).map(|m| wit_role(&m.role))
    }

    pub(crate) fn text(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        let m = self.message(index)?;
        rules.read(&format_args!("$.messages[{index}].content"))?;
        Ok(m.text().map(Cow::into_owned))
    }

    pub(crate) fn set_text(&mut self, rules: &mut CallRules, index: u32, text: String) -> Result<(), AccessError> {
        self.check_index(index)?;
        let path = format_args!("$.messages[{index}].content");
        rules.write(self.editable, "request", &path)?;
        rules.charge(&path, text.len())?;
        self.data.edit().messages[index as usize].set_text(text);
        Ok(())
    }

    pub(crate) fn message_json(&self, rules: &mut CallRules, index: u32) -> Result<String, AccessError> {
        let m = self.message(index)?;
        rules.read(&format_args!("$.messages[{index}]"))?;
        Ok(json(m))
    }

    fn insert(&mut self, rules: &mut CallRules, index: u32, bytes: usize) -> Result<(), AccessError> {
        let count = self.data.get().messages.len();
        if index as usize > count {
            return Err(AccessError::OutOfRange);
        }
        let path = format_args!("$.messages[{index}]");
        rules.write(self.editable, "request", &path)?;
        rules.count(&"$.messages", count + 1, MAX_MESSAGES)?;
        rules.charge(&path, bytes + ELEMENT_COST as usize)
    }

    pub(crate) fn insert_message(
        &mut self,
        rules: &mut CallRules,
        index: u32,
        role: wit::Role,
        text: String,
    ) -> Result<(), AccessError> {
        let Some(role) = openai_role(role) else {
            return Err(invalid("role `other` cannot be inserted by name: use insert-message-json"));
        };
        self.insert(rules, index, text.len())?;
        self.data.edit().messages.insert(index as usize, ChatMessage::new(role, text));
        Ok(())
    }

    pub(crate) fn insert_message_json(
        &mut self,
        rules: &mut CallRules,
        index: u32,
        text: String,
    ) -> Result<(), AccessError> {
        self.insert(rules, index, text.len())?;
        let m: ChatMessage = serde_json::from_str(&text)
            .map_err(|e| invalid(format_args!("`$.messages[{index}]` is not a valid message: {e}")))?;
        self.data.edit().messages.insert(index as usize, m);
        Ok(())
    }

    pub(crate) fn remove_message(&mut self, rules: &mut CallRules, index: u32) -> Result<(), AccessError> {
        self.check_index(index)?;
        rules.write(self.editable, "request", &format_args!("$.messages[{index}]"))?;
        if self.data.get().messages.len() == 1 {
            return Err(invalid("`$.messages` cannot be left empty: a request needs a message"));
        }
        self.data.edit().messages.remove(index as usize);
        Ok(())
    }

    pub(crate) fn tools_json(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$.tools")?;
        Ok(self.data.get().tools.as_ref().map_or_else(|| "[]".to_string(), json))
    }

    fn own_methods(name: &str) -> Result<(), AccessError> {
        match name {
            "messages" | "tools" => {
                Err(invalid(format_args!("`$.{name}` is read and changed through its own methods, not as a parameter")))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn param(&self, name: &str) -> Result<Option<String>, AccessError> {
        Self::own_methods(name)?;
        Ok(request_param(self.data.get(), name))
    }

    pub(crate) fn set_model(&mut self, rules: &mut CallRules, model: String) -> Result<(), AccessError> {
        rules.edit(self.editable, "request", &"$.model")?;
        rules.charge(&"$.model", model.len())?;
        self.data.edit().model = model;
        Ok(())
    }

    pub(crate) fn set_param(
        &mut self,
        rules: &mut CallRules,
        name: &str,
        value: Option<String>,
    ) -> Result<(), AccessError> {
        Self::own_methods(name)?;
        let path = format_args!("$.{name}");
        rules.edit(self.editable, "request", &path)?;
        rules.charge(&path, name.len() + value.as_ref().map_or(0, String::len))?;
        let value = parse_param(name, value.as_deref())?;
        let r = self.data.edit();
        // Set on the body without its messages and tools (which the
        // parameter cannot touch), so that their size does not matter.
        let messages = std::mem::take(&mut r.messages);
        let tools = r.tools.take();
        let set = r.set_param(name, value);
        r.messages = messages;
        r.tools = tools;
        set.map_err(invalid)
    }

    pub(crate) fn to_json(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$")?;
        Ok(json(self.data.get()))
    }
}

/// The response of one `post-response` call (resource `response`), or the
/// error the request failed with.
#[derive(Debug)]
pub struct ResponseEntry {
    pub(crate) data: Draft<ChatResponse>,
    pub(crate) error: Option<LlmError>,
    /// Edits allowed (`post-response`).
    pub(crate) editable: bool,
}

impl ResponseEntry {
    /// An entry over a successful response.
    pub(crate) fn new(base: Arc<ChatResponse>, editable: bool) -> Self {
        ResponseEntry { data: Draft::new(base), error: None, editable }
    }

    /// An entry over an error outcome (no choices).
    pub(crate) fn failed(error: LlmError, empty: Arc<ChatResponse>) -> Self {
        ResponseEntry { data: Draft::new(empty), error: Some(error), editable: false }
    }

    fn choice(&self, index: u32) -> Result<&crate::openai::Choice, AccessError> {
        self.data.get().choices.get(index as usize).ok_or(AccessError::OutOfRange)
    }

    pub(crate) fn text(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        let c = self.choice(index)?;
        rules.read(&format_args!("$.choices[{index}].message.content"))?;
        Ok(c.message.text().map(Cow::into_owned))
    }

    pub(crate) fn set_text(&mut self, rules: &mut CallRules, index: u32, text: String) -> Result<(), AccessError> {
        self.choice(index)?;
        let path = format_args!("$.choices[{index}].message.content");
        rules.write(self.editable, "response", &path)?;
        rules.charge(&path, text.len())?;
        self.data.edit().choices[index as usize].message.set_text(text);
        Ok(())
    }

    pub(crate) fn refusal(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        let c = self.choice(index)?;
        rules.read(&format_args!("$.choices[{index}].message.refusal"))?;
        Ok(c.message.refusal().map(str::to_string))
    }

    pub(crate) fn finish_reason(&self, index: u32) -> Result<Option<String>, AccessError> {
        Ok(self.choice(index)?.finish_reason().map(str::to_string))
    }

    pub(crate) fn tool_calls(&self, rules: &mut CallRules, index: u32) -> Result<Vec<wit::ToolCall>, AccessError> {
        let c = self.choice(index)?;
        rules.read(&format_args!("$.choices[{index}].message.tool_calls"))?;
        Ok(c.message.tool_calls().iter().map(wit_tool_call).collect())
    }

    fn own_methods(name: &str) -> Result<(), AccessError> {
        match name {
            "choices" => Err(invalid("`$.choices` is read and changed through its own methods, not as a parameter")),
            _ => Ok(()),
        }
    }

    pub(crate) fn param(&self, name: &str) -> Result<Option<String>, AccessError> {
        Self::own_methods(name)?;
        Ok(response_param(self.data.get(), name))
    }

    pub(crate) fn set_param(
        &mut self,
        rules: &mut CallRules,
        name: &str,
        value: Option<String>,
    ) -> Result<(), AccessError> {
        Self::own_methods(name)?;
        let path = format_args!("$.{name}");
        rules.edit(self.editable, "response", &path)?;
        rules.charge(&path, name.len() + value.as_ref().map_or(0, String::len))?;
        let value = parse_param(name, value.as_deref())?;
        let r = self.data.edit();
        let choices = std::mem::take(&mut r.choices);
        let set = r.set_param(name, value);
        r.choices = choices;
        set.map_err(invalid)
    }

    pub(crate) fn to_json(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$")?;
        Ok(json(self.data.get()))
    }
}

/// One chunk of a stream in an `on-chunk` call (resource `chunk`).
#[derive(Debug)]
pub struct ChunkEntry {
    pub(crate) data: Draft<ChatChunk>,
    /// Held text offered once more at the end of the stream.
    pub(crate) last: bool,
    /// Edits allowed (`on-chunk`).
    pub(crate) editable: bool,
}

impl ChunkEntry {
    /// An entry over `base`.
    pub(crate) fn new(base: Arc<ChatChunk>, last: bool) -> Self {
        ChunkEntry { data: Draft::new(base), last, editable: true }
    }

    fn choice(&self, index: u32) -> Result<&crate::openai::ChunkChoice, AccessError> {
        self.data.get().choices.get(index as usize).ok_or(AccessError::OutOfRange)
    }

    fn read_delta<'a, T>(
        &'a self,
        rules: &mut CallRules,
        index: u32,
        field: &str,
        get: impl FnOnce(&'a crate::openai::Delta) -> T,
    ) -> Result<T, AccessError> {
        let c = self.choice(index)?;
        rules.read(&format_args!("$.choices[{index}].delta.{field}"))?;
        Ok(get(&c.delta))
    }

    pub(crate) fn text(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        self.read_delta(rules, index, "content", |d| d.text().map(str::to_string))
    }

    pub(crate) fn reasoning(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        self.read_delta(rules, index, "reasoning_content", |d| d.reasoning().map(str::to_string))
    }

    pub(crate) fn refusal(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        self.read_delta(rules, index, "refusal", |d| d.refusal().map(str::to_string))
    }

    pub(crate) fn tool_calls(
        &self,
        rules: &mut CallRules,
        index: u32,
    ) -> Result<Vec<wit::ToolCallFragment>, AccessError> {
        self.read_delta(rules, index, "tool_calls", |d| {
            d.tool_calls()
                .iter()
                .map(|c| wit::ToolCallFragment {
                    index: c.index,
                    id: c.id.clone(),
                    name: c.function.as_ref().and_then(|f| f.name.clone()),
                    arguments: c.function.as_ref().and_then(|f| f.arguments.clone()),
                })
                .collect()
        })
    }

    pub(crate) fn role(&self, index: u32) -> Result<Option<wit::Role>, AccessError> {
        Ok(self.choice(index)?.delta.role.as_ref().map(wit_role))
    }

    pub(crate) fn finish_reason(&self, index: u32) -> Result<Option<String>, AccessError> {
        Ok(self.choice(index)?.finish_reason().map(str::to_string))
    }

    pub(crate) fn set_text(&mut self, rules: &mut CallRules, index: u32, text: String) -> Result<(), AccessError> {
        self.choice(index)?;
        let path = format_args!("$.choices[{index}].delta.content");
        rules.write(self.editable, "chunk", &path)?;
        rules.charge(&path, text.len())?;
        self.data.edit().choices[index as usize].delta.set_text(text);
        Ok(())
    }

    pub(crate) fn to_json(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$")?;
        Ok(json(self.data.get()))
    }
}

/// The end of a stream in an `on-stream-end` call (resource `stream-end`):
/// the usage reported and the chunks this call appends.
#[derive(Debug, Default)]
pub struct StreamEndEntry {
    pub(crate) usage: Option<Usage>,
    pub(crate) appended: Vec<ChatChunk>,
    /// Chunks appended by earlier plugins (for the count cap).
    pub(crate) before: usize,
}

impl StreamEndEntry {
    fn append(&mut self, rules: &mut CallRules, bytes: usize, chunk: impl FnOnce() -> Result<ChatChunk, AccessError>) -> Result<(), AccessError> {
        let n = self.before + self.appended.len();
        let path = format_args!("$.append[{n}]");
        rules.write(true, "stream end", &path)?;
        rules.count(&"$.append", n + 1, MAX_END_CHUNKS)?;
        rules.charge(&path, bytes + ELEMENT_COST as usize)?;
        self.appended.push(chunk()?);
        Ok(())
    }

    pub(crate) fn append_text(&mut self, rules: &mut CallRules, text: String) -> Result<(), AccessError> {
        self.append(rules, text.len(), || Ok(ChatChunk::text(text)))
    }

    pub(crate) fn append_json(&mut self, rules: &mut CallRules, text: String) -> Result<(), AccessError> {
        self.append(rules, text.len(), || {
            ChatChunk::from_json(&text).map_err(|e| invalid(format_args!("the appended chunk is not a valid chunk: {e}")))
        })
    }
}

/// The tool call of one `on-tool-call` call (resource `tool-call-ref`).
#[derive(Debug)]
pub struct ToolCallEntry {
    pub(crate) data: Draft<ToolCall>,
    /// Edits allowed (`on-tool-call`).
    pub(crate) editable: bool,
}

impl ToolCallEntry {
    /// An entry over `base`.
    pub(crate) fn new(base: Arc<ToolCall>) -> Self {
        ToolCallEntry { data: Draft::new(base), editable: true }
    }

    pub(crate) fn arguments(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$.function.arguments")?;
        Ok(self.data.get().function.arguments.clone())
    }

    pub(crate) fn set_arguments(&mut self, rules: &mut CallRules, text: String) -> Result<(), AccessError> {
        let path = "$.function.arguments";
        rules.write(self.editable, "tool call", &path)?;
        rules.charge(&path, text.len())?;
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| invalid(format_args!("`{path}` is not valid JSON: {e}")))?;
        self.data.edit().function.arguments = text;
        Ok(())
    }

    pub(crate) fn set_name(&mut self, rules: &mut CallRules, name: String) -> Result<(), AccessError> {
        let path = "$.function.name";
        rules.write(self.editable, "tool call", &path)?;
        rules.charge(&path, name.len())?;
        self.data.edit().function.name = name;
        Ok(())
    }
}

// The WIT traits: each method finds its entry in the instance's table and
// applies the entry's rule. A handle that is not in the table (it cannot be,
// the component model checks handles) traps instead of panicking.

impl llm::Host for StoreState {}

impl llm::HostRequest for StoreState {
    fn id(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.info.request_id.clone())
    }
    fn caller(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&r)?.info.caller.clone())
    }
    fn provider(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.info.provider.clone())
    }
    fn streaming(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&r)?.info.streaming)
    }
    fn model(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().model.clone())
    }
    fn set_model(&mut self, r: Resource<RequestEntry>, model: String) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_model(&mut self.llm, model))
    }
    fn message_count(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<u32> {
        Ok(len32(self.table.get(&r)?.data.get().messages.len()))
    }
    fn role(&mut self, r: Resource<RequestEntry>, index: u32) -> wasmtime::Result<Result<wit::Role, AccessError>> {
        Ok(self.table.get(&r)?.role(index))
    }
    fn text(
        &mut self,
        r: Resource<RequestEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.text(&mut self.llm, index))
    }
    fn set_text(
        &mut self,
        r: Resource<RequestEntry>,
        index: u32,
        text: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_text(&mut self.llm, index, text))
    }
    fn message_json(&mut self, r: Resource<RequestEntry>, index: u32) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.message_json(&mut self.llm, index))
    }
    fn insert_message(
        &mut self,
        r: Resource<RequestEntry>,
        index: u32,
        role: wit::Role,
        text: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.insert_message(&mut self.llm, index, role, text))
    }
    fn insert_message_json(
        &mut self,
        r: Resource<RequestEntry>,
        index: u32,
        json: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.insert_message_json(&mut self.llm, index, json))
    }
    fn remove_message(&mut self, r: Resource<RequestEntry>, index: u32) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.remove_message(&mut self.llm, index))
    }
    fn tool_count(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<u32> {
        Ok(len32(self.table.get(&r)?.data.get().tools.as_ref().map_or(0, Vec::len)))
    }
    fn tools_json(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.tools_json(&mut self.llm))
    }
    fn param(
        &mut self,
        r: Resource<RequestEntry>,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.param(&name))
    }
    fn set_param(
        &mut self,
        r: Resource<RequestEntry>,
        name: String,
        json: Option<String>,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_param(&mut self.llm, &name, json))
    }
    fn to_json(&mut self, r: Resource<RequestEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.to_json(&mut self.llm))
    }
    fn drop(&mut self, _: Resource<RequestEntry>) -> wasmtime::Result<()> {
        // Guests only ever get borrows; the pipeline takes the entry back.
        Ok(())
    }
}

impl llm::HostResponse for StoreState {
    fn error(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<Option<LlmError>> {
        Ok(self.table.get(&r)?.error.clone())
    }
    fn id(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().id.clone())
    }
    fn model(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().model.clone())
    }
    fn choice_count(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<u32> {
        Ok(len32(self.table.get(&r)?.data.get().choices.len()))
    }
    fn text(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.text(&mut self.llm, index))
    }
    fn set_text(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
        text: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_text(&mut self.llm, index, text))
    }
    fn refusal(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.refusal(&mut self.llm, index))
    }
    fn finish_reason(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.finish_reason(index))
    }
    fn tool_calls(
        &mut self,
        r: Resource<ResponseEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Vec<wit::ToolCall>, AccessError>> {
        Ok(self.table.get(&r)?.tool_calls(&mut self.llm, index))
    }
    fn usage(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<Option<wit::Usage>> {
        Ok(self.table.get(&r)?.data.get().usage().map(wit_usage))
    }
    fn param(
        &mut self,
        r: Resource<ResponseEntry>,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.param(&name))
    }
    fn set_param(
        &mut self,
        r: Resource<ResponseEntry>,
        name: String,
        json: Option<String>,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_param(&mut self.llm, &name, json))
    }
    fn to_json(&mut self, r: Resource<ResponseEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.to_json(&mut self.llm))
    }
    fn drop(&mut self, _: Resource<ResponseEntry>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl llm::HostChunk for StoreState {
    fn choice_count(&mut self, r: Resource<ChunkEntry>) -> wasmtime::Result<u32> {
        Ok(len32(self.table.get(&r)?.data.get().choices.len()))
    }
    fn text(&mut self, r: Resource<ChunkEntry>, index: u32) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.text(&mut self.llm, index))
    }
    fn set_text(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
        text: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_text(&mut self.llm, index, text))
    }
    fn reasoning(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.reasoning(&mut self.llm, index))
    }
    fn refusal(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.refusal(&mut self.llm, index))
    }
    fn role(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<wit::Role>, AccessError>> {
        Ok(self.table.get(&r)?.role(index))
    }
    fn tool_calls(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Vec<wit::ToolCallFragment>, AccessError>> {
        Ok(self.table.get(&r)?.tool_calls(&mut self.llm, index))
    }
    fn finish_reason(
        &mut self,
        r: Resource<ChunkEntry>,
        index: u32,
    ) -> wasmtime::Result<Result<Option<String>, AccessError>> {
        Ok(self.table.get(&r)?.finish_reason(index))
    }
    fn usage(&mut self, r: Resource<ChunkEntry>) -> wasmtime::Result<Option<wit::Usage>> {
        Ok(self.table.get(&r)?.data.get().usage().map(wit_usage))
    }
    fn to_json(&mut self, r: Resource<ChunkEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.to_json(&mut self.llm))
    }
    fn last(&mut self, r: Resource<ChunkEntry>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&r)?.last)
    }
    fn drop(&mut self, _: Resource<ChunkEntry>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl llm::HostStreamEnd for StoreState {
    fn usage(&mut self, r: Resource<StreamEndEntry>) -> wasmtime::Result<Option<wit::Usage>> {
        Ok(self.table.get(&r)?.usage.as_ref().map(wit_usage))
    }
    fn append_text(&mut self, r: Resource<StreamEndEntry>, text: String) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.append_text(&mut self.llm, text))
    }
    fn append_json(&mut self, r: Resource<StreamEndEntry>, json: String) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.append_json(&mut self.llm, json))
    }
    fn drop(&mut self, _: Resource<StreamEndEntry>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl llm::HostToolCallRef for StoreState {
    fn id(&mut self, r: Resource<ToolCallEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().id.clone())
    }
    fn name(&mut self, r: Resource<ToolCallEntry>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.data.get().function.name.clone())
    }
    fn arguments(&mut self, r: Resource<ToolCallEntry>) -> wasmtime::Result<Result<String, AccessError>> {
        Ok(self.table.get(&r)?.arguments(&mut self.llm))
    }
    fn set_arguments(
        &mut self,
        r: Resource<ToolCallEntry>,
        json: String,
    ) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_arguments(&mut self.llm, json))
    }
    fn set_name(&mut self, r: Resource<ToolCallEntry>, name: String) -> wasmtime::Result<Result<(), AccessError>> {
        Ok(self.table.get_mut(&r)?.set_name(&mut self.llm, name))
    }
    fn drop(&mut self, _: Resource<ToolCallEntry>) -> wasmtime::Result<()> {
        Ok(())
    }
}
