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
//!
//! The module is split by resource: [`rules`] (the permission and budget
//! checks every method goes through, and the copy-on-write [`Draft`]),
//! `request`, `response`, `chunk` (chunks and the stream end), `tool_call`,
//! and `wit` (the WIT traits that dispatch to the entries).

use std::fmt::Display;

use serde::{Deserialize, Serialize};

use crate::bindings::types::{self as wit, AccessError};
use crate::openai::{Role, ToolCall, Usage};

mod chunk;
mod request;
mod response;
mod rules;
mod shape;
mod tool_call;
mod wit_traits;

#[cfg(test)]
mod tests;

pub use chunk::{ChunkEntry, StreamEndEntry};
pub use request::RequestEntry;
pub use response::ResponseEntry;
pub(crate) use rules::{CallRules, Draft};
pub(crate) use shape::{check_chunk, check_response};
pub use tool_call::ToolCallEntry;

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
