//! The access door: the one place that decides, for every text-bearing field
//! of every request, stream, tool and provider hook, what a plugin with
//! `messages: none | read | write` sees of the host's data and what it may
//! hand back, and that charges everything it hands back to its
//! [`OutputBudget`].
//!
//! Every function here takes what the host holds, what the plugin answered,
//! the plugin's [`MessageAccess`] and its budget, and returns either the value
//! the host keeps or the reason the answer is refused. A refusal is a plugin
//! failure ([`FailureKind::InvalidOutput`](crate::FailureKind::InvalidOutput))
//! whose text names the field's JSON path.
//!
//! # What each level sees and may change
//!
//! *Message data* is: every field of every message of a request (role,
//! content, name, tool calls, tool-call id) and their count and order; the
//! request's tool definitions; every choice of a response (index and message)
//! and their count and order; every field of a stream chunk except `usage`;
//! the chunks a stream ends with; a tool call's arguments, and the call a tool
//! hook rewrites or answers.
//!
//! - `none`: sees message text removed (content, author name, tool-call
//!   arguments, and tool definitions' descriptions and parameter schemas are
//!   empty; roles, counts, tool names and ids stay) in requests,
//!   responses, chunks, tool calls and, for a provider, the prompt. It may
//!   change no message data.
//! - `read`: sees everything; it may change no message data either.
//! - `write`: sees everything and may change all of it.
//!
//! Outside message data every level may change a request's `model`,
//! `temperature`, `max_tokens`, `stream` and `extra`; a response's `id`,
//! `model`, `usage`, `extra` and each choice's `finish_reason`; a chunk's
//! `usage`. Every level may end a request, a response or a stream with an
//! error (`fail`) and allow or deny a tool call. Answering instead of the
//! provider (`respond` in pre-request, `respond` in post-response over an
//! error), dropping a chunk, appending chunks at the end of a stream and a
//! tool hook's `rewrite` and `answer` all create or remove message data: they
//! need `write`.
//!
//! A provider plugin's own output (its response or its chunks) is its answer,
//! not a change: any level may produce it, within its budget.

use std::borrow::Cow;

use crate::bindings::types::{LlmError, Message, Request, Response, StreamChunk, ToolAction, ToolCall};
use crate::budget::OutputBudget;
use crate::manifest::MessageAccess;

fn needs_write(what: &str, path: &str) -> String {
    format!("{what} at `{path}` needs `messages: write` permission")
}

fn blank_call(call: &mut ToolCall) {
    call.arguments.clear();
}

fn blank_message(m: &Message) -> Message {
    let mut m = m.clone();
    m.content.clear();
    m.name = m.name.as_ref().map(|_| String::new());
    m.tool_calls.iter_mut().for_each(blank_call);
    m
}

/// The request as a plugin with `access` may see it (pre-request hooks and
/// provider input).
pub(crate) fn request_view(req: &Request, access: MessageAccess) -> Cow<'_, Request> {
    match access {
        MessageAccess::None => {
            let mut r = req.clone();
            r.messages = req.messages.iter().map(blank_message).collect();
            for t in &mut r.tools {
                t.description.clear();
                t.parameters.clear();
            }
            Cow::Owned(r)
        }
        MessageAccess::Read | MessageAccess::Write => Cow::Borrowed(req),
    }
}

/// The response as a plugin with `access` may see it.
pub(crate) fn response_view(resp: &Response, access: MessageAccess) -> Cow<'_, Response> {
    match access {
        MessageAccess::None => {
            let mut r = resp.clone();
            for c in &mut r.choices {
                c.message = blank_message(&c.message);
            }
            Cow::Owned(r)
        }
        MessageAccess::Read | MessageAccess::Write => Cow::Borrowed(resp),
    }
}

/// The chunk as a plugin with `access` may see it.
pub(crate) fn chunk_view(chunk: &StreamChunk, access: MessageAccess) -> Cow<'_, StreamChunk> {
    match access {
        MessageAccess::None => {
            let mut c = chunk.clone();
            if let Some(content) = &mut c.content {
                content.clear();
            }
            c.tool_calls.iter_mut().for_each(blank_call);
            Cow::Owned(c)
        }
        MessageAccess::Read | MessageAccess::Write => Cow::Borrowed(chunk),
    }
}

/// The tool call as a plugin with `access` may see it (its arguments are
/// empty for `none`; the tool's name and the call's id stay).
pub(crate) fn tool_call_view(call: &ToolCall, access: MessageAccess) -> Cow<'_, ToolCall> {
    match access {
        MessageAccess::None => {
            let mut c = call.clone();
            blank_call(&mut c);
            Cow::Owned(c)
        }
        MessageAccess::Read | MessageAccess::Write => Cow::Borrowed(call),
    }
}

/// The first field in which two messages differ, if any.
fn changed_field(a: &Message, b: &Message) -> Option<&'static str> {
    if a.role != b.role {
        Some("role")
    } else if a.content != b.content {
        Some("content")
    } else if a.name != b.name {
        Some("name")
    } else if a.tool_calls != b.tool_calls {
        Some("tool_calls")
    } else if a.tool_call_id != b.tool_call_id {
        Some("tool_call_id")
    } else {
        None
    }
}

/// The first path at which `seen` and `returned` messages differ, if any.
fn first_message_change(prefix: &str, seen: &[Message], returned: &[Message]) -> Option<String> {
    if seen.len() != returned.len() {
        return Some(format!("{prefix} (count {} -> {})", seen.len(), returned.len()));
    }
    seen.iter()
        .zip(returned)
        .enumerate()
        .find_map(|(i, (a, b))| changed_field(a, b).map(|field| format!("{prefix}[{i}].{field}")))
}

/// Checks a request a `modify` action hands back and returns the request to
/// pass on. Everything is charged to `budget`; without `write`, message data
/// must come back exactly as the plugin saw it (for `none`, the original text
/// is put back).
pub(crate) fn accept_request(
    original: &Request,
    mut modified: Request,
    access: MessageAccess,
    budget: &mut OutputBudget,
) -> Result<Request, String> {
    let seen = request_view(original, access);
    budget.request_changes(Some(&seen), &modified)?;
    if modified.messages.is_empty() {
        return Err("modified request has no messages (`$.messages` is empty)".into());
    }
    if access == MessageAccess::Write {
        return Ok(modified);
    }
    if let Some(path) = first_message_change("$.messages", &seen.messages, &modified.messages) {
        return Err(needs_write("a change to message data", &path));
    }
    if seen.tools != modified.tools {
        return Err(needs_write("a change to message data", "$.tools"));
    }
    modified.messages = original.messages.clone();
    modified.tools = original.tools.clone();
    Ok(modified)
}

/// Checks a response a hook hands back. `replacing` is the response it
/// replaces (a post hook over a successful outcome); with `None` the plugin
/// answers in place of the provider (pre-request `respond`, or post-response
/// recovering from an error), which needs `write`. Without `write`, the
/// choices must come back exactly as the plugin saw them (for `none`, the
/// original text is put back).
pub(crate) fn accept_response(
    replacing: Option<&Response>,
    mut resp: Response,
    access: MessageAccess,
    budget: &mut OutputBudget,
) -> Result<Response, String> {
    let shown = replacing.map(|old| response_view(old, access));
    budget.response_changes(shown.as_deref(), &resp)?;
    if resp.choices.is_empty() {
        return Err("response has no choices (`$.choices` is empty)".into());
    }
    if access == MessageAccess::Write {
        return Ok(resp);
    }
    let (Some(old), Some(seen)) = (replacing, shown) else {
        return Err(needs_write("answering with a response", "$.choices"));
    };
    if seen.choices.len() != resp.choices.len() {
        return Err(needs_write(
            "a change to message data",
            &format!("$.choices (count {} -> {})", seen.choices.len(), resp.choices.len()),
        ));
    }
    for (i, (a, b)) in seen.choices.iter().zip(&resp.choices).enumerate() {
        if a.index != b.index {
            return Err(needs_write("a change to message data", &format!("$.choices[{i}].index")));
        }
        if let Some(field) = changed_field(&a.message, &b.message) {
            return Err(needs_write("a change to message data", &format!("$.choices[{i}].message.{field}")));
        }
    }
    for (c, o) in resp.choices.iter_mut().zip(&old.choices) {
        c.message = o.message.clone();
    }
    Ok(resp)
}

/// Charges an error a hook ends the request, response or stream with (`fail`).
pub(crate) fn accept_error(err: LlmError, budget: &mut OutputBudget) -> Result<LlmError, String> {
    budget.llm_error(&"$.fail", &err)?;
    Ok(err)
}

/// Charges the `err` text a hook returned (the plugin's own failure); an
/// oversized one is refused like any other output.
pub(crate) fn accept_failure_text(message: String, budget: &mut OutputBudget) -> Result<String, String> {
    budget.text(&"$.err", &message)?;
    Ok(message)
}

/// Checks a chunk an `on-chunk` `modify` hands back. Without `write` only
/// `usage` may change: the rest must be as the plugin saw it (for `none`, the
/// original text is put back).
pub(crate) fn accept_chunk(
    original: &StreamChunk,
    modified: StreamChunk,
    access: MessageAccess,
    budget: &mut OutputBudget,
) -> Result<StreamChunk, String> {
    budget.chunk(&"$.modify", &modified)?;
    if access == MessageAccess::Write {
        return Ok(modified);
    }
    let seen = chunk_view(original, access);
    let field = if seen.index != modified.index {
        "index"
    } else if seen.role != modified.role {
        "role"
    } else if seen.content != modified.content {
        "content"
    } else if seen.tool_calls != modified.tool_calls {
        "tool_calls"
    } else if seen.finish_reason != modified.finish_reason {
        "finish_reason"
    } else {
        return Ok(StreamChunk { usage: modified.usage, ..original.clone() });
    };
    Err(needs_write("a change to the chunk", &format!("$.modify.{field}")))
}

/// Whether a plugin with `access` may drop a chunk (it removes message text).
pub(crate) fn accept_drop(access: MessageAccess) -> Result<(), String> {
    match access {
        MessageAccess::Write => Ok(()),
        _ => Err(needs_write("dropping a chunk", "$.drop")),
    }
}

/// Checks the chunks an `on-stream-end` hook appends: all charged; appending
/// any needs `write`.
pub(crate) fn accept_end_chunks(
    chunks: Vec<StreamChunk>,
    access: MessageAccess,
    budget: &mut OutputBudget,
) -> Result<Vec<StreamChunk>, String> {
    budget.end_chunks(&chunks)?;
    if !chunks.is_empty() && access != MessageAccess::Write {
        return Err(needs_write("appending chunks at the end of a stream", "$[0]"));
    }
    Ok(chunks)
}

/// Checks a tool hook's answer: a denial reason is charged; `rewrite` and
/// `answer` need `write`, are charged, and an answer must be valid JSON.
pub(crate) fn accept_tool_action(
    action: ToolAction,
    access: MessageAccess,
    budget: &mut OutputBudget,
) -> Result<ToolAction, String> {
    match &action {
        ToolAction::Allow => {}
        ToolAction::Deny(reason) => budget.text(&"$.deny", reason)?,
        ToolAction::Rewrite(call) => {
            budget.tool_call(&"$.rewrite", call)?;
            if access != MessageAccess::Write {
                return Err(needs_write("rewriting a tool call", "$.rewrite"));
            }
        }
        ToolAction::Answer(result) => {
            budget.json(&"$.answer", result)?;
            if access != MessageAccess::Write {
                return Err(needs_write("answering a tool call", "$.answer"));
            }
        }
    }
    Ok(action)
}

/// Checks a provider's response (`complete`): charged whole; `extra` must be a
/// JSON object.
pub(crate) fn accept_provider_response(resp: Response, budget: &mut OutputBudget) -> Result<Response, String> {
    budget.response(&resp)?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{Choice, Role, ToolDefinition, Usage};

    const BIG: u64 = 1 << 20;

    fn msg(role: Role, content: &str) -> Message {
        Message { role, content: content.into(), name: Some("alice".into()), tool_calls: vec![], tool_call_id: None }
    }

    fn req() -> Request {
        Request {
            model: "m".into(),
            messages: vec![
                msg(Role::System, "be nice"),
                Message {
                    tool_calls: vec![ToolCall { id: "c1".into(), name: "f".into(), arguments: "{\"x\":1}".into() }],
                    ..msg(Role::User, "secret")
                },
            ],
            temperature: None,
            max_tokens: None,
            stream: false,
            tools: vec![],
            extra: None,
        }
    }

    fn resp() -> Response {
        Response {
            id: "r".into(),
            model: "m".into(),
            choices: vec![Choice { index: 0, message: msg(Role::Assistant, "answer"), finish_reason: None }],
            usage: None,
            extra: None,
        }
    }

    fn chunk() -> StreamChunk {
        StreamChunk {
            index: 0,
            role: Some(Role::Assistant),
            content: Some("text".into()),
            tool_calls: vec![ToolCall { id: "c".into(), name: "f".into(), arguments: "{}".into() }],
            finish_reason: None,
            usage: None,
        }
    }

    fn budget() -> OutputBudget {
        OutputBudget::new(BIG)
    }

    #[test]
    fn none_sees_no_text_anywhere() {
        let r = request_view(&req(), MessageAccess::None).into_owned();
        assert!(r.messages.iter().all(|m| m.content.is_empty() && m.name.as_deref() == Some("")));
        assert_eq!(r.messages[1].tool_calls[0].arguments, "");
        assert_eq!(r.messages[1].tool_calls[0].name, "f", "tool names stay");
        let mut with_tools = req();
        with_tools.tools =
            vec![ToolDefinition { name: "bill".into(), description: "internal".into(), parameters: "{}".into() }];
        let seen = request_view(&with_tools, MessageAccess::None).into_owned();
        assert_eq!((seen.tools[0].name.as_str(), seen.tools[0].description.as_str()), ("bill", ""));
        assert_eq!(seen.tools[0].parameters, "");
        let back = accept_request(&with_tools, seen, MessageAccess::None, &mut budget()).unwrap();
        assert_eq!(back.tools, with_tools.tools, "the real definitions are passed on");
        assert!(response_view(&resp(), MessageAccess::None).choices[0].message.content.is_empty());
        let c = chunk_view(&chunk(), MessageAccess::None).into_owned();
        assert_eq!(c.content.as_deref(), Some(""));
        assert_eq!(c.tool_calls[0].arguments, "");
        let call = ToolCall { id: "1".into(), name: "rm".into(), arguments: "{\"path\":\"/\"}".into() };
        assert_eq!(tool_call_view(&call, MessageAccess::None).arguments, "");
        assert_eq!(*tool_call_view(&call, MessageAccess::Read), call);
    }

    #[test]
    fn read_may_change_nothing_about_messages() {
        let original = req();
        type Change = Box<dyn Fn(&mut Request)>;
        let cases: Vec<(&str, Change)> = vec![
            ("$.messages[1].role", Box::new(|r| r.messages[1].role = Role::System)),
            ("$.messages[0].name", Box::new(|r| r.messages[0].name = Some("mallory".into()))),
            ("$.messages[1].tool_calls", Box::new(|r| r.messages[1].tool_calls.clear())),
            ("$.messages[1].content", Box::new(|r| r.messages[1].content.push('!'))),
            ("$.messages[0].tool_call_id", Box::new(|r| r.messages[0].tool_call_id = Some("x".into()))),
            ("$.messages (count 2 -> 1)", Box::new(|r| drop(r.messages.pop()))),
            ("$.messages[0].role", Box::new(|r| r.messages.swap(0, 1))),
            (
                "$.tools",
                Box::new(|r| {
                    r.tools.push(ToolDefinition {
                        name: "t".into(),
                        description: String::new(),
                        parameters: "{}".into(),
                    })
                }),
            ),
        ];
        for access in [MessageAccess::Read, MessageAccess::None] {
            for (path, change) in &cases {
                let mut seen = request_view(&original, access).into_owned();
                change(&mut seen);
                let e = accept_request(&original, seen, access, &mut budget()).unwrap_err();
                assert!(e.contains(&format!("`{path}`")) && e.contains("messages: write"), "{access:?}: {e}");
            }
        }
        let mut w = original.clone();
        w.messages[1].role = Role::System;
        assert_eq!(accept_request(&original, w.clone(), MessageAccess::Write, &mut budget()).unwrap(), w);
    }

    #[test]
    fn any_level_may_change_parameters_and_none_gets_its_text_back() {
        let original = req();
        let mut seen = request_view(&original, MessageAccess::None).into_owned();
        seen.model = "other".into();
        seen.temperature = Some(0.5);
        seen.extra = Some("{\"route\":\"b\"}".into());
        let out = accept_request(&original, seen, MessageAccess::None, &mut budget()).unwrap();
        assert_eq!(out.model, "other");
        assert_eq!(out.messages, original.messages, "the real text is passed on");
    }

    #[test]
    fn responses_need_write_to_answer_or_change_messages() {
        let e = accept_response(None, resp(), MessageAccess::Read, &mut budget()).unwrap_err();
        assert!(e.contains("answering with a response"), "{e}");
        accept_response(None, resp(), MessageAccess::Write, &mut budget()).unwrap();
        let mut changed = resp();
        changed.choices[0].message.role = Role::User;
        let e = accept_response(Some(&resp()), changed, MessageAccess::Read, &mut budget()).unwrap_err();
        assert!(e.contains("`$.choices[0].message.role`"), "{e}");
        let mut meta = response_view(&resp(), MessageAccess::None).into_owned();
        meta.usage = Some(Usage { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
        meta.choices[0].finish_reason = Some("stop".into());
        let out = accept_response(Some(&resp()), meta, MessageAccess::None, &mut budget()).unwrap();
        assert_eq!(out.choices[0].message.content, "answer");
        assert_eq!(out.usage.unwrap().total_tokens, 3);
    }

    #[test]
    fn chunks_drops_and_end_chunks_need_write() {
        for access in [MessageAccess::None, MessageAccess::Read] {
            let mut c = chunk_view(&chunk(), access).into_owned();
            c.content = Some("injected".into());
            assert!(accept_chunk(&chunk(), c, access, &mut budget()).unwrap_err().contains("`$.modify.content`"));
            let mut c = chunk_view(&chunk(), access).into_owned();
            c.tool_calls[0].arguments = "{\"evil\":1}".into();
            assert!(accept_chunk(&chunk(), c, access, &mut budget()).unwrap_err().contains("tool_calls"));
            let mut c = chunk_view(&chunk(), access).into_owned();
            c.usage = Some(Usage { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 });
            let out = accept_chunk(&chunk(), c, access, &mut budget()).unwrap();
            assert_eq!(out.content.as_deref(), Some("text"));
            assert!(out.usage.is_some());
            assert!(accept_drop(access).is_err());
            assert!(accept_end_chunks(vec![chunk()], access, &mut budget()).unwrap_err().contains("messages: write"));
            assert!(accept_end_chunks(vec![], access, &mut budget()).unwrap().is_empty());
        }
        accept_drop(MessageAccess::Write).unwrap();
        accept_end_chunks(vec![chunk()], MessageAccess::Write, &mut budget()).unwrap();
    }

    #[test]
    fn tool_answers_need_write_and_json() {
        let call = ToolCall { id: "1".into(), name: "f".into(), arguments: "{}".into() };
        for access in [MessageAccess::None, MessageAccess::Read] {
            assert!(accept_tool_action(ToolAction::Rewrite(call.clone()), access, &mut budget()).is_err());
            assert!(accept_tool_action(ToolAction::Answer("{}".into()), access, &mut budget()).is_err());
            accept_tool_action(ToolAction::Deny("no".into()), access, &mut budget()).unwrap();
            accept_tool_action(ToolAction::Allow, access, &mut budget()).unwrap();
        }
        let e = accept_tool_action(ToolAction::Answer("nope".into()), MessageAccess::Write, &mut budget()).unwrap_err();
        assert!(e.contains("`$.answer` is not valid JSON"), "{e}");
        let huge = ToolAction::Deny("x".repeat(4096));
        assert!(
            accept_tool_action(huge, MessageAccess::Write, &mut OutputBudget::new(1024))
                .unwrap_err()
                .contains("`$.deny`")
        );
    }
}
