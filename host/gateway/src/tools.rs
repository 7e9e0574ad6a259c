//! Tool calls the model returns, through the `on-tool-call` hooks.
//!
//! Every call (a streamed one once assembled from its fragments) is put to
//! [`Host::on_tool_call`]:
//!
//! * run (maybe edited): it goes back to the client as the plugins left it;
//! * denied: it is removed; the client learns it from a note appended to the
//!   choice's text, `[tool call <name> denied by <plugin>: <reason>]`, and
//!   when no call is left the finish reason becomes `stop`;
//! * answered: the gateway executes it: it appends the assistant message
//!   with the answered (and denied) calls and one `tool` message per call
//!   (the plugin's result; for a denied call `{"error": "denied by ..."}`)
//!   and calls the model again, at most `limits.max-tool-rounds` times. The
//!   calls the plugins left to run in a round that had answers are not sent
//!   to the client: the model sees the answers and asks again for what it
//!   still needs. Only calls no plugin answered go back to the client.

use std::collections::BTreeMap;

use plugbox_host::{
    ChatChunk, ChatMessage, ChatRequest, Delta, Host, MessageContent, Nullable, RequestContext, RequestError, Role,
    ToolCall, ToolCallDelta, ToolDecision,
};
use serde_json::json;

/// What the hooks made of one choice's tool calls.
#[derive(Default, Debug)]
pub(crate) struct Decided {
    /// Calls to hand to the client.
    pub run: Vec<ToolCall>,
    /// Calls a plugin answered, with the result.
    pub answered: Vec<(ToolCall, String)>,
    /// Calls a plugin denied: (call, plugin, reason).
    pub denied: Vec<(ToolCall, String, String)>,
}

impl Decided {
    /// The note the client sees for the denied calls (empty when none).
    pub fn denial_note(&self) -> String {
        self.denied
            .iter()
            .map(|(c, plugin, reason)| format!("[tool call {} denied by {plugin}: {reason}]", c.function.name))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The messages that report this round's answers to the model: the
    /// assistant message with the answered and denied calls, then one `tool`
    /// message per call.
    pub fn follow_up(&self, text: Option<String>) -> Vec<ChatMessage> {
        let mut assistant = ChatMessage::new(Role::Assistant, "");
        assistant.content = text.map(|t| Nullable::Value(MessageContent::Text(t))).or(Some(Nullable::Null));
        let calls: Vec<ToolCall> =
            self.answered.iter().map(|(c, _)| c.clone()).chain(self.denied.iter().map(|(c, _, _)| c.clone())).collect();
        assistant.tool_calls = Some(Nullable::Value(calls));
        let mut out = vec![assistant];
        for (call, result) in &self.answered {
            out.push(ChatMessage::tool(call.id.clone(), result.clone()));
        }
        for (call, plugin, reason) in &self.denied {
            let body = json!({"error": format!("denied by {plugin}: {reason}")}).to_string();
            out.push(ChatMessage::tool(call.id.clone(), body));
        }
        out
    }
}

/// Puts each call to the hooks, in order.
pub(crate) async fn decide(host: &Host, ctx: &RequestContext, calls: Vec<ToolCall>) -> Result<Decided, RequestError> {
    let mut out = Decided::default();
    for call in calls {
        match host.on_tool_call(ctx, call.clone()).await? {
            ToolDecision::Run(edited) => out.run.push(edited),
            ToolDecision::Denied { plugin, reason } => out.denied.push((call, plugin, reason)),
            ToolDecision::Answered { plugin: _, result } => out.answered.push((call, result)),
        }
    }
    Ok(out)
}

/// Appends `note` to a message's text.
pub(crate) fn append_text(message: &mut ChatMessage, note: &str) {
    let text = message.text().map(|t| t.into_owned()).unwrap_or_default();
    let joined = if text.is_empty() { note.to_string() } else { format!("{text} {note}") };
    message.set_text(joined);
}

/// Streamed tool-call fragments, assembled per choice until the choice
/// finishes.
#[derive(Default)]
pub(crate) struct Assembler {
    /// choice index → calls by their stream index.
    calls: BTreeMap<u32, BTreeMap<u32, ToolCall>>,
}

impl Assembler {
    /// Takes the tool-call fragments out of `chunk`; returns whether it had any.
    pub fn absorb(&mut self, chunk: &mut ChatChunk) -> bool {
        let mut any = false;
        for choice in &mut chunk.choices {
            let Some(Nullable::Value(pieces)) = choice.delta.tool_calls.take() else {
                continue;
            };
            any = true;
            let calls = self.calls.entry(choice.index).or_default();
            for piece in pieces {
                let call = calls.entry(piece.index).or_insert_with(|| ToolCall::function("", "", ""));
                if let Some(id) = piece.id.filter(|i| !i.is_empty()) {
                    call.id = id;
                }
                if let Some(kind) = piece.kind {
                    call.kind = kind;
                }
                if let Some(f) = piece.function {
                    if let Some(name) = f.name {
                        call.function.name.push_str(&name);
                    }
                    if let Some(args) = f.arguments {
                        call.function.arguments.push_str(&args);
                    }
                }
            }
        }
        any
    }

    /// The calls of `choice` assembled so far, taken out.
    pub fn take(&mut self, choice: u32) -> Vec<ToolCall> {
        self.calls.remove(&choice).map(|c| c.into_values().collect()).unwrap_or_default()
    }
}

/// A chunk that carries `calls` whole for `choice` (indexes 0, 1 ...),
/// with the id, model and creation time of `like`.
pub(crate) fn calls_chunk(like: &ChatChunk, choice: u32, calls: &[ToolCall]) -> ChatChunk {
    let pieces = calls
        .iter()
        .enumerate()
        .map(|(i, c)| ToolCallDelta {
            index: i as u32,
            id: Some(c.id.clone()),
            kind: Some(c.kind.clone()),
            function: Some(plugbox_host::openai::FunctionDelta {
                name: Some(c.function.name.clone()),
                arguments: Some(c.function.arguments.clone()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let delta = Delta { tool_calls: Some(Nullable::Value(pieces)), ..Default::default() };
    chunk_like(like, choice, delta)
}

/// A chunk with one choice's `delta`, dressed like `like`.
pub(crate) fn chunk_like(like: &ChatChunk, choice: u32, delta: Delta) -> ChatChunk {
    let mut chunk = ChatChunk {
        id: like.id.clone(),
        object: like.object.clone(),
        created: like.created,
        model: like.model.clone(),
        ..Default::default()
    };
    chunk.choices.push(plugbox_host::ChunkChoice { index: choice, delta, ..Default::default() });
    chunk
}

/// Whether a chunk has nothing to say (after its tool-call fragments were taken).
pub(crate) fn is_empty_chunk(chunk: &ChatChunk) -> bool {
    chunk.usage.is_none()
        && chunk
            .choices
            .iter()
            .all(|c| c.delta == Delta::default() && c.finish_reason.is_none() && c.logprobs.is_none())
}

/// The request for the next tool round: `request` plus `messages`.
pub(crate) fn next_round(request: &ChatRequest, messages: Vec<ChatMessage>) -> ChatRequest {
    let mut next = request.clone();
    next.messages.extend(messages);
    next
}
