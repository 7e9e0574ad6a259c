//! Message permissions and output checks applied around request hooks.
//!
//! - `messages: none`: the plugin sees requests and responses with message
//!   text (content and tool-call arguments) removed.
//! - `messages: read`: it sees the text; a change it makes to the text is refused.
//! - `messages: write`: its changes take effect.
//!
//! Every request or response a hook returns is also checked: at least one
//! message (request) or choice (response), `extra` is a JSON object, and the
//! text is within the plugin's `max-output` limit.

use std::borrow::Cow;

use crate::bindings::types::{Message, Request, Response};
use crate::manifest::MessageAccess;

fn blank_message(m: &Message) -> Message {
    let mut m = m.clone();
    m.content.clear();
    for call in &mut m.tool_calls {
        call.arguments.clear();
    }
    m
}

/// The request as a plugin with `access` may see it.
pub(crate) fn request_view(req: &Request, access: MessageAccess) -> Cow<'_, Request> {
    match access {
        MessageAccess::None => {
            let mut r = req.clone();
            r.messages = req.messages.iter().map(blank_message).collect();
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

fn same_text(a: &[Message], b: &[Message]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.content == y.content
                && x.tool_calls.len() == y.tool_calls.len()
                && x.tool_calls.iter().zip(&y.tool_calls).all(|(p, q)| p.arguments == q.arguments)
        })
}

fn check_extra(extra: &Option<String>) -> Result<(), String> {
    match extra {
        None => Ok(()),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => Ok(()),
            Ok(_) => Err("`extra` must be a JSON object".into()),
            Err(e) => Err(format!("`extra` is not valid JSON: {e}")),
        },
    }
}

fn text_size(messages: &[Message]) -> usize {
    messages
        .iter()
        .map(|m| m.content.len() + m.tool_calls.iter().map(|c| c.arguments.len() + c.name.len()).sum::<usize>())
        .sum()
}

fn check_size(size: usize, max: u64) -> Result<(), String> {
    if size as u64 > max {
        return Err(format!("output of {size} bytes exceeds the plugin's max-output of {max} bytes"));
    }
    Ok(())
}

/// Checks a request returned by a `modify` action and returns the request to
/// pass on (for `messages: none`, the original text is put back).
pub(crate) fn accept_request(
    original: &Request,
    mut modified: Request,
    access: MessageAccess,
    max_output: u64,
) -> Result<Request, String> {
    if modified.messages.is_empty() {
        return Err("modified request has no messages".into());
    }
    check_extra(&modified.extra)?;
    check_size(text_size(&modified.messages), max_output)?;
    match access {
        MessageAccess::Write => Ok(modified),
        MessageAccess::Read => {
            if same_text(&original.messages, &modified.messages) {
                Ok(modified)
            } else {
                Err("changed message text without `messages: write` permission".into())
            }
        }
        MessageAccess::None => {
            let blank: Vec<Message> = original.messages.iter().map(blank_message).collect();
            if same_text(&blank, &modified.messages) {
                for (m, o) in modified.messages.iter_mut().zip(&original.messages) {
                    *m = o.clone();
                }
                Ok(modified)
            } else {
                Err("changed message text without `messages: write` permission".into())
            }
        }
    }
}

/// Checks a response a hook produced. `replacing` is the response it replaces
/// (post hooks), whose text it may only change with `messages: write`.
pub(crate) fn accept_response(
    replacing: Option<&Response>,
    resp: Response,
    access: MessageAccess,
    max_output: u64,
) -> Result<Response, String> {
    if resp.choices.is_empty() {
        return Err("response has no choices".into());
    }
    check_extra(&resp.extra)?;
    let messages: Vec<&Message> = resp.choices.iter().map(|c| &c.message).collect();
    let size: usize = messages.iter().map(|m| text_size(std::slice::from_ref(*m))).sum();
    check_size(size, max_output)?;
    let Some(old) = replacing else { return Ok(resp) };
    if access == MessageAccess::Write {
        return Ok(resp);
    }
    let old_view = response_view(old, access);
    let old_msgs: Vec<Message> = old_view.choices.iter().map(|c| c.message.clone()).collect();
    let new_msgs: Vec<Message> = resp.choices.iter().map(|c| c.message.clone()).collect();
    if !same_text(&old_msgs, &new_msgs) {
        return Err("changed response text without `messages: write` permission".into());
    }
    if access == MessageAccess::None {
        // Put the real text back into the unchanged structure.
        let mut resp = resp;
        for (c, o) in resp.choices.iter_mut().zip(&old.choices) {
            c.message = o.message.clone();
        }
        return Ok(resp);
    }
    Ok(resp)
}
