//! [`Access`] (the `messages` permission) and [`AccessError`] (why the host
//! refused a read or an edit).

use std::fmt;

use crate::bindings::plugbox::plugin::types::AccessError as WitAccessError;

/// A plugin's `permissions.messages`: what it may read and edit of the
/// request, response, chunks and tool calls.
///
/// - [`Access::None`]: no message data (text, names, tool-call arguments, tool
///   definitions); counts, roles, the model, the request facts and parameters
///   may be read, and the model and parameters edited.
/// - [`Access::Read`]: reads everything; edits nothing that is message data.
/// - [`Access::Write`]: reads and edits everything.
///
/// Message data is: the messages (role, name, content, tool calls, tool-call
/// id, their number and order), `tools`, and in responses and chunks the
/// choices' text, refusal, reasoning and tool calls.
///
/// On wasm the host enforces it; off wasm the stand-in values
/// (`Request::builder` …) apply the same rules, so
/// a unit test sees the edits the host would refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// `messages: none`.
    None,
    /// `messages: read`.
    #[default]
    Read,
    /// `messages: write`.
    Write,
}

impl Access {
    /// The permission's name in the manifest (`none`, `read`, `write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::None => "none",
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the host refused a read or an edit. A refused edit leaves the data
/// unchanged. [`Denied`](AccessError::Denied) and
/// [`TooLarge`](AccessError::TooLarge) also make the hook call count as a
/// plugin failure (its `on-error` applies), whatever the hook returns, so a
/// plugin should not try to recover from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// The plugin's `messages` permission does not allow this, or the data is
    /// read-only in this hook. The text names the JSON path.
    Denied(String),
    /// No message, choice or tool at this index.
    OutOfRange,
    /// The value is not acceptable (invalid JSON, wrong type for the field).
    Invalid(String),
    /// The edit would exceed the plugin's output budget (`limits.max-output`).
    TooLarge,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::Denied(why) => write!(f, "access denied: {why}"),
            AccessError::OutOfRange => f.write_str("index out of range"),
            AccessError::Invalid(why) => write!(f, "invalid value: {why}"),
            AccessError::TooLarge => f.write_str("the edit exceeds the plugin's output budget (`limits.max-output`)"),
        }
    }
}

impl std::error::Error for AccessError {}

impl From<WitAccessError> for AccessError {
    fn from(e: WitAccessError) -> Self {
        match e {
            WitAccessError::Denied(why) => AccessError::Denied(why),
            WitAccessError::OutOfRange => AccessError::OutOfRange,
            WitAccessError::Invalid(why) => AccessError::Invalid(why),
            WitAccessError::TooLarge => AccessError::TooLarge,
        }
    }
}

/// An `AccessError` in a hook that returns `Result<_, String>`: `?` works.
impl From<AccessError> for String {
    fn from(e: AccessError) -> Self {
        e.to_string()
    }
}
