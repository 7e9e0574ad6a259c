//! What hooks decide: [`PreAction`], [`PostAction`], [`ChunkAction`],
//! [`ToolAction`]. They convert to the WIT variants; a [`Completion`] in a
//! `Respond` becomes its OpenAI JSON.

use crate::bindings::exports::plugbox::plugin::{request_hooks, stream_hooks, tool_hooks};
use crate::{Completion, LlmError};

/// What [`Plugin::pre_request`](crate::Plugin::pre_request) decides. Edits
/// made through the [`Request`](crate::Request) are kept with `Continue`.
#[derive(Clone, Debug, PartialEq)]
pub enum PreAction {
    /// Pass the request on (with the edits made through the handle).
    Continue,
    /// Short-circuit: answer with this completion; the provider is not
    /// called. Needs `messages: write`.
    Respond(Completion),
    /// Short-circuit: fail the request with this error.
    Fail(LlmError),
}

/// What [`Plugin::post_response`](crate::Plugin::post_response) decides.
/// Edits made through the [`Response`](crate::Response) are kept with
/// `Continue`.
#[derive(Clone, Debug, PartialEq)]
pub enum PostAction {
    /// Keep the outcome (with the edits made through the handle).
    Continue,
    /// Replace the outcome with this completion (e.g. to recover from an
    /// error). Needs `messages: write`.
    Respond(Completion),
    /// Replace the outcome with this error.
    Fail(LlmError),
}

/// What [`Plugin::on_chunk`](crate::Plugin::on_chunk) decides for one chunk.
#[derive(Clone, Debug, PartialEq)]
pub enum ChunkAction {
    /// Pass the chunk on (with the edits made through the handle).
    Continue,
    /// Drop this chunk; the stream goes on. Needs `messages: write`.
    Drop,
    /// Keep this chunk back and merge it into the next one (text joined),
    /// which this hook then sees whole. Bounded by the manifest's
    /// `limits.max-held`; text still held when the stream ends is offered
    /// once more as a final chunk ([`Chunk::last`](crate::Chunk::last)), where
    /// `Hold` is refused. Needs `messages: write`.
    Hold,
    /// Abort the stream with this error.
    Fail(LlmError),
}

/// What [`Plugin::on_tool_call`](crate::Plugin::on_tool_call) decides. Edits
/// made through the [`ToolCallRef`](crate::ToolCallRef) are kept with `Allow`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolAction {
    /// Let the call go ahead (as edited).
    Allow,
    /// Refuse the call; the string says why.
    Deny(String),
    /// Do not run the tool; use this JSON-encoded result.
    Answer(String),
}

impl From<PreAction> for request_hooks::PreAction {
    fn from(action: PreAction) -> Self {
        match action {
            PreAction::Continue => request_hooks::PreAction::Continue,
            PreAction::Respond(done) => request_hooks::PreAction::Respond(done.to_json()),
            PreAction::Fail(e) => request_hooks::PreAction::Fail(e),
        }
    }
}

impl From<PostAction> for request_hooks::PostAction {
    fn from(action: PostAction) -> Self {
        match action {
            PostAction::Continue => request_hooks::PostAction::Continue,
            PostAction::Respond(done) => request_hooks::PostAction::Respond(done.to_json()),
            PostAction::Fail(e) => request_hooks::PostAction::Fail(e),
        }
    }
}

impl From<ChunkAction> for stream_hooks::ChunkAction {
    fn from(action: ChunkAction) -> Self {
        match action {
            ChunkAction::Continue => stream_hooks::ChunkAction::Continue,
            ChunkAction::Drop => stream_hooks::ChunkAction::Drop,
            ChunkAction::Hold => stream_hooks::ChunkAction::Hold,
            ChunkAction::Fail(e) => stream_hooks::ChunkAction::Fail(e),
        }
    }
}

impl From<ToolAction> for tool_hooks::ToolAction {
    fn from(action: ToolAction) -> Self {
        match action {
            ToolAction::Allow => tool_hooks::ToolAction::Allow,
            ToolAction::Deny(why) => tool_hooks::ToolAction::Deny(why),
            ToolAction::Answer(json) => tool_hooks::ToolAction::Answer(json),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_carries_openai_json() {
        let action: request_hooks::PreAction = PreAction::Respond(Completion::text("c", "m", "hi")).into();
        let request_hooks::PreAction::Respond(json) = action else { panic!("not respond") };
        assert_eq!(Completion::from_json(&json).unwrap().content(), Some("hi"));
        let action: stream_hooks::ChunkAction = ChunkAction::Hold.into();
        assert!(matches!(action, stream_hooks::ChunkAction::Hold));
        let action: tool_hooks::ToolAction = ToolAction::Deny("no".into()).into();
        assert!(matches!(action, tool_hooks::ToolAction::Deny(w) if w == "no"));
    }
}
