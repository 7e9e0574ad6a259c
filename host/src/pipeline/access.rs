//! The access door for what a hook *returns*: the actions that create or
//! remove message data, the texts and JSON bodies it hands back. Reads and
//! edits made through the `llm` resources during the call are checked where
//! they happen ([`crate::imports::llm`]); a violation recorded there makes
//! the call fail here, whatever the hook answered.
//!
//! Every function takes the plugin's [`MessageAccess`] and its budget and
//! returns the value the host keeps or the reason the answer is refused. A
//! refusal is a plugin failure
//! ([`FailureKind::InvalidOutput`](crate::FailureKind::InvalidOutput)) whose
//! text names the JSON path.
//!
//! Answering instead of the provider (`respond` in pre-request and in
//! post-response), dropping or holding a chunk, appending chunks at the end
//! of a stream and answering a tool call create or remove message data:
//! they need `write`. Every level may end a request, a response or a stream
//! with an error (`fail`) and allow or deny a tool call. A provider plugin's
//! own output (its response, its chunks) is its answer, not a change: any
//! level may produce it, within its budget.

use crate::bindings::types::LlmError;
use crate::budget::OutputBudget;
use crate::imports::llm::{CallRules, check_chunk, check_response};
use crate::manifest::MessageAccess;
use crate::openai::{ChatChunk, ChatResponse};

pub(crate) fn needs_write(what: &str, path: &str) -> String {
    format!("{what} at `{path}` needs `messages: write` permission")
}

/// The first violation the call's reads and edits recorded, if any.
pub(crate) fn violation(rules: &mut CallRules) -> Result<(), String> {
    rules.violation.take().map_or(Ok(()), Err)
}

/// Checks a `respond` body: `write`, charged, a valid `chat.completion` with
/// at least one choice. `path` names the action (`$.respond`).
pub(crate) fn accept_respond(
    body: &str,
    access: MessageAccess,
    budget: &mut OutputBudget,
) -> Result<ChatResponse, String> {
    if access != MessageAccess::Write {
        return Err(needs_write("answering with a response", "$.respond"));
    }
    accept_response_json("$.respond", body, budget)
}

/// Why a body did not parse: not JSON at all, or JSON of the wrong shape.
fn parse_error(path: &dyn std::fmt::Display, what: &str, e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => format!("`{path}` is not a valid {what}: {e}"),
        _ => format!("`{path}` is not valid JSON: {e}"),
    }
}

/// Parses a response body a plugin hands back (a `respond` action, a
/// provider's `complete`), charged to `budget`.
pub(crate) fn accept_response_json(path: &str, body: &str, budget: &mut OutputBudget) -> Result<ChatResponse, String> {
    budget.text(&path, body)?;
    let resp = ChatResponse::from_json(body).map_err(|e| parse_error(&path, "chat.completion", &e))?;
    check_response(&path, &resp)?;
    if resp.choices.is_empty() {
        return Err(format!("`{path}` has no choices (`{path}.choices` is empty)"));
    }
    Ok(resp)
}

/// Parses one chunk of a provider's stream, charged to the stream's budget.
pub(crate) fn accept_chunk_json(
    path: &dyn std::fmt::Display,
    body: &str,
    budget: &mut OutputBudget,
) -> Result<ChatChunk, String> {
    budget.text(path, body)?;
    let chunk = ChatChunk::from_json(body).map_err(|e| parse_error(path, "chat.completion.chunk", &e))?;
    check_chunk(path, &chunk)?;
    Ok(chunk)
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

/// Whether a plugin with `access` may drop a chunk (it removes message text).
pub(crate) fn accept_drop(access: MessageAccess) -> Result<(), String> {
    match access {
        MessageAccess::Write => Ok(()),
        _ => Err(needs_write("dropping a chunk", "$.drop")),
    }
}

/// Whether a plugin with `access` may hold a chunk of `held` bytes of text
/// back, within its `max-held`; never for the final offer (`last`).
pub(crate) fn accept_hold(access: MessageAccess, last: bool, held: usize, max_held: u64) -> Result<(), String> {
    if access != MessageAccess::Write {
        return Err(needs_write("holding a chunk back", "$.hold"));
    }
    if last {
        return Err("`hold` is refused for held text offered at the end of the stream (`last()` is true)".into());
    }
    if held as u64 > max_held {
        return Err(format!(
            "holding `{held}` bytes of text at `$.hold` exceeds the plugin's max-held of {max_held} bytes"
        ));
    }
    Ok(())
}

/// Checks a tool hook's denial reason (charged) and answer (`write`,
/// charged, valid JSON).
pub(crate) fn accept_deny(reason: String, budget: &mut OutputBudget) -> Result<String, String> {
    budget.text(&"$.deny", &reason)?;
    Ok(reason)
}

/// Checks a tool hook's `answer`: `write`, charged, valid JSON.
pub(crate) fn accept_answer(
    result: String,
    access: MessageAccess,
    budget: &mut OutputBudget,
) -> Result<String, String> {
    if access != MessageAccess::Write {
        return Err(needs_write("answering a tool call", "$.answer"));
    }
    budget.json(&"$.answer", &result)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> OutputBudget {
        OutputBudget::new(1 << 20)
    }

    #[test]
    fn respond_needs_write_and_a_valid_body() {
        let body = ChatResponse::text("r", "m", "hi").to_json();
        for access in [MessageAccess::None, MessageAccess::Read] {
            let e = accept_respond(&body, access, &mut budget()).unwrap_err();
            assert!(e.contains("`$.respond` needs `messages: write`"), "{e}");
        }
        let r = accept_respond(&body, MessageAccess::Write, &mut budget()).unwrap();
        assert_eq!(r.first_text().as_deref(), Some("hi"));
        let e = accept_respond("{", MessageAccess::Write, &mut budget()).unwrap_err();
        assert!(e.contains("`$.respond` is not valid JSON"), "{e}");
        let e = accept_respond(r#"{"choices":7}"#, MessageAccess::Write, &mut budget()).unwrap_err();
        assert!(e.contains("`$.respond` is not a valid chat.completion"), "{e}");
        let e = accept_respond(r#"{"choices":[]}"#, MessageAccess::Write, &mut budget()).unwrap_err();
        assert!(e.contains("no choices"), "{e}");
        let e = accept_respond(&body, MessageAccess::Write, &mut OutputBudget::new(8)).unwrap_err();
        assert!(e.contains("max-output of 8 bytes"), "{e}");
    }

    #[test]
    fn drops_holds_and_answers_need_write() {
        for access in [MessageAccess::None, MessageAccess::Read] {
            assert!(accept_drop(access).unwrap_err().contains("`$.drop`"));
            assert!(accept_hold(access, false, 1, 10).unwrap_err().contains("`$.hold`"));
            assert!(accept_answer("{}".into(), access, &mut budget()).unwrap_err().contains("`$.answer`"));
            accept_deny("no".into(), &mut budget()).unwrap();
        }
        accept_drop(MessageAccess::Write).unwrap();
        accept_hold(MessageAccess::Write, false, 10, 10).unwrap();
        let e = accept_hold(MessageAccess::Write, false, 11, 10).unwrap_err();
        assert!(e.contains("`11` bytes") && e.contains("max-held of 10 bytes"), "{e}");
        assert!(accept_hold(MessageAccess::Write, true, 1, 10).unwrap_err().contains("last()"));
        let e = accept_answer("nope".into(), MessageAccess::Write, &mut budget()).unwrap_err();
        assert!(e.contains("`$.answer` is not valid JSON"), "{e}");
        let e = accept_deny("x".repeat(4096), &mut OutputBudget::new(1024)).unwrap_err();
        assert!(e.contains("`$.deny`"), "{e}");
    }
}
