//! Unit tests of the access rules, the budget charges and copy-on-write.

use std::sync::Arc;

use super::*;
use crate::bindings::types::{self as wit, AccessError};
use crate::budget::{ELEMENT_COST, MAX_END_CHUNKS};
use crate::manifest::MessageAccess;
use crate::openai::{ChatChunk, ChatMessage, ChatRequest, ChatResponse, Tool, ToolCall};

const BIG: u64 = 1 << 20;

fn rules(access: MessageAccess) -> CallRules {
    CallRules::new("pre-request", access, BIG)
}

fn request() -> Arc<ChatRequest> {
    let mut r = ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage::system("be nice"), ChatMessage::user("secret")],
        ..Default::default()
    }
    .with_tool(Tool::function("bill", "internal", serde_json::json!({"type": "object"})))
    .with_temperature(0.5);
    r.extra.insert("top_k".into(), serde_json::json!(5));
    Arc::new(r)
}

fn entry(editable: bool) -> RequestEntry {
    RequestEntry::new(request(), Arc::new(RequestInfo::default()), editable)
}

#[test]
fn none_reads_counts_roles_model_and_params_but_no_message_data() {
    let (e, mut r) = (entry(true), rules(MessageAccess::None));
    assert_eq!(e.role(1), Ok(wit::Role::User));
    assert_eq!(e.param("temperature"), Ok(Some("0.5".into())));
    assert_eq!(e.param("top_k"), Ok(Some("5".into())));
    assert_eq!(e.param("seed"), Ok(None));
    assert!(r.violation.is_none(), "counts, roles and parameters are not message data");
    let Err(AccessError::Denied(why)) = e.text(&mut r, 1) else { panic!("text is message data") };
    assert!(why.contains("`$.messages[1].content` needs `messages: read`"), "{why}");
    assert_eq!(r.violation.as_deref(), Some(why.as_str()), "a refused read is a violation");
    for refused in [e.message_json(&mut r, 0), e.tools_json(&mut r), e.to_json(&mut r)] {
        assert!(matches!(refused, Err(AccessError::Denied(_))));
    }
    assert_eq!(e.text(&mut r, 9), Err(AccessError::OutOfRange), "out of range is checked first");
}

#[test]
fn read_reads_everything_and_edits_no_message_data() {
    let (mut e, mut r) = (entry(true), rules(MessageAccess::Read));
    assert_eq!(e.text(&mut r, 1), Ok(Some("secret".into())));
    assert!(e.tools_json(&mut r).unwrap().contains("internal"));
    assert!(e.message_json(&mut r, 0).unwrap().contains("be nice"));
    assert!(r.violation.is_none());
    let Err(AccessError::Denied(why)) = e.set_text(&mut r, 0, "x".into()) else { panic!() };
    assert!(why.contains("a change to message data at `$.messages[0].content` needs `messages: write`"), "{why}");
    assert!(matches!(e.insert_message(&mut r, 0, wit::Role::System, "x".into()), Err(AccessError::Denied(_))));
    assert!(matches!(e.insert_message_json(&mut r, 0, "{}".into()), Err(AccessError::Denied(_))));
    assert!(matches!(e.remove_message(&mut r, 0), Err(AccessError::Denied(_))));
    assert!(!e.data.is_edited(), "a refused edit leaves the data unchanged");
    // The model and parameters are not message data.
    e.set_model(&mut r, "other".into()).unwrap();
    e.set_param(&mut r, "temperature", Some("1".into())).unwrap();
    let edited = e.data.get();
    assert_eq!((edited.model.as_str(), edited.temperature()), ("other", Some(1.0)));
    assert_eq!(edited.messages.len(), 2, "setting a parameter keeps the messages");
    assert!(edited.tools.is_some(), "and the tools");
}

#[test]
fn write_edits_and_each_edit_is_charged() {
    let (mut e, mut r) = (entry(true), rules(MessageAccess::Write));
    e.set_text(&mut r, 1, "redacted".into()).unwrap();
    e.insert_message(&mut r, 0, wit::Role::System, "first".into()).unwrap();
    e.insert_message_json(&mut r, 3, r#"{"role":"assistant","content":"ok","x-extra":1}"#.into()).unwrap();
    e.remove_message(&mut r, 1).unwrap();
    let m = &e.data.get().messages;
    let texts: Vec<_> = m.iter().map(|m| m.text().unwrap().into_owned()).collect();
    assert_eq!(texts, ["first", "redacted", "ok"]);
    assert_eq!(m[2].extra.get("x-extra"), Some(&serde_json::json!(1)), "unknown fields kept");
    assert_eq!(r.budget.used(), 8 + (5 + ELEMENT_COST) + (47 + ELEMENT_COST));
    assert!(r.violation.is_none());
    // Answers that are not violations.
    assert_eq!(e.set_text(&mut r, 7, "x".into()), Err(AccessError::OutOfRange));
    assert!(matches!(e.insert_message_json(&mut r, 0, "{".into()), Err(AccessError::Invalid(_))));
    assert!(matches!(e.set_param(&mut r, "temperature", Some("\"hot\"".into())), Err(AccessError::Invalid(_))));
    assert!(matches!(e.set_param(&mut r, "messages", Some("[]".into())), Err(AccessError::Invalid(_))));
    assert!(matches!(e.insert_message(&mut r, 0, wit::Role::Other, "x".into()), Err(AccessError::Invalid(_))));
    assert!(r.violation.is_none(), "out of range and invalid values are answers, not violations");
    // Too large: refused, and a violation naming the path and the limit.
    let mut small = CallRules::new("pre-request", MessageAccess::Write, 10);
    assert_eq!(e.set_text(&mut small, 0, "x".repeat(11)), Err(AccessError::TooLarge));
    let v = small.violation.unwrap();
    assert!(v.contains("`$.messages[0].content`") && v.contains("max-output of 10 bytes"), "{v}");
}

#[test]
fn edits_are_refused_outside_the_hook_that_owns_the_data() {
    let mut r = CallRules::new("post-response", MessageAccess::Write, BIG);
    let mut e = entry(false);
    let Err(AccessError::Denied(why)) = e.set_model(&mut r, "x".into()) else { panic!() };
    assert!(why.contains("read-only in `post-response`") && why.contains("`$.model`"), "{why}");
    assert!(matches!(e.set_text(&mut r, 0, "x".into()), Err(AccessError::Denied(_))));
    assert!(!e.data.is_edited());
    assert_eq!(e.text(&mut r, 0), Ok(Some("be nice".into())), "reads are fine");
}

#[test]
fn copy_on_write_clones_only_on_the_first_edit() {
    let base = request();
    let mut e = RequestEntry::new(base.clone(), Arc::new(RequestInfo::default()), true);
    let mut r = rules(MessageAccess::Write);
    e.text(&mut r, 0).unwrap();
    assert!(!e.data.is_edited());
    assert_eq!(Arc::strong_count(&base), 2, "shared, not copied");
    e.set_text(&mut r, 0, "a".into()).unwrap();
    e.set_text(&mut r, 1, "b".into()).unwrap();
    assert_eq!(base.messages[0].text().unwrap(), "be nice", "the base is never changed");
    let edited = e.data.into_edited().unwrap();
    assert_eq!(edited.messages[1].text().unwrap(), "b");
}

#[test]
fn responses_chunks_tool_calls_and_appends_follow_the_same_rules() {
    let resp = Arc::new(ChatResponse::text("r", "m", "answer"));
    let mut none = CallRules::new("post-response", MessageAccess::None, BIG);
    let mut e = ResponseEntry::new(resp.clone(), true);
    assert_eq!(e.finish_reason(0), Ok(Some("stop".into())));
    assert!(matches!(e.text(&mut none, 0), Err(AccessError::Denied(_))));
    let mut none = CallRules::new("post-response", MessageAccess::None, BIG);
    e.set_param(&mut none, "system_fingerprint", Some("\"fp\"".into())).unwrap();
    assert_eq!(e.param("system_fingerprint"), Ok(Some("\"fp\"".into())));
    assert_eq!(e.data.get().choices.len(), 1, "choices kept");
    assert!(none.violation.is_none());

    let mut read = CallRules::new("on-chunk", MessageAccess::Read, BIG);
    let mut c = ChunkEntry::new(Arc::new(ChatChunk::text("Hel")), false);
    assert_eq!(c.text(&mut read, 0), Ok(Some("Hel".into())));
    let Err(AccessError::Denied(why)) = c.set_text(&mut read, 0, "x".into()) else { panic!() };
    assert!(why.contains("`$.choices[0].delta.content`"), "{why}");
    let mut write = CallRules::new("on-chunk", MessageAccess::Write, BIG);
    c.set_text(&mut write, 0, "Hi".into()).unwrap();
    assert_eq!(c.data.get().text_delta(), Some("Hi"));

    let mut t = ToolCallEntry::new(Arc::new(ToolCall::function("1", "f", "{}")));
    let mut none = CallRules::new("on-tool-call", MessageAccess::None, BIG);
    assert!(matches!(t.arguments(&mut none), Err(AccessError::Denied(_))));
    let mut write = CallRules::new("on-tool-call", MessageAccess::Write, BIG);
    assert!(matches!(t.set_arguments(&mut write, "nope".into()), Err(AccessError::Invalid(_))));
    t.set_arguments(&mut write, r#"{"a":1}"#.into()).unwrap();
    t.set_name(&mut write, "g".into()).unwrap();
    assert_eq!(t.data.get().function.name, "g");

    let mut end = StreamEndEntry::default();
    let mut read = CallRules::new("on-stream-end", MessageAccess::Read, BIG);
    assert!(matches!(end.append_text(&mut read, "x".into()), Err(AccessError::Denied(_))));
    let mut write = CallRules::new("on-stream-end", MessageAccess::Write, BIG);
    end.append_text(&mut write, "tail".into()).unwrap();
    assert!(matches!(end.append_json(&mut write, "[".into()), Err(AccessError::Invalid(_))));
    assert_eq!(end.appended.len(), 1);
    let mut full = StreamEndEntry { before: MAX_END_CHUNKS, ..Default::default() };
    assert_eq!(full.append_text(&mut write, "x".into()), Err(AccessError::TooLarge));
    assert!(write.violation.unwrap().contains("at most 1024"));
}
