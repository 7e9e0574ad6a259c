//! The `messages` permission, where each read and edit happens: `none`
//! reads no message data, `read` edits none, `write` edits all; the model
//! and the parameters are open to every level; the request is editable in
//! `pre-request` only. A refused read or edit is a failure of the call
//! whatever the hook then returns (the plugin's `on-error` applies), and a
//! failed call's edits vanish. Real plugins: the `scripted` fixture.

use std::sync::Arc;

use parking_lot::Mutex;
use plugbox_host::{ChatRequest, FailureKind, RequestContext, RequestError};

use crate::*;

/// `scripted` as `name` doing `pre` / `post` with `messages`; `read`
/// says whether its pre hook reads the prompt into `seen:<name>`.
fn plugin(name: &str, pre: &str, post: &str, on_error: &str, messages: &str, read: bool) -> String {
    scripted_with(name, 1, pre, post, on_error, messages)
        .replace("read: { type: boolean, default: true }", &format!("read: {{ type: boolean, default: {read} }}"))
}

/// A provider that keeps the request it got and answers like [`echo`].
fn capture() -> (Arc<Mutex<Option<ChatRequest>>>, impl Fn(ChatRequest) -> std::pin::Pin<Box<dyn Future<Output = plugbox_host::Outcome> + Send>> + Clone) {
    let seen = Arc::new(Mutex::new(None));
    let keep = seen.clone();
    let provider = move |req: ChatRequest| -> std::pin::Pin<Box<dyn Future<Output = plugbox_host::Outcome> + Send>> {
        *keep.lock() = Some(req.clone());
        Box::pin(echo(req))
    };
    (seen, provider)
}

/// The one trace action of plugin `name` in `hook`.
fn action(ctx: &RequestContext, name: &str, hook: &str) -> String {
    let actions: Vec<String> =
        ctx.trace().into_iter().filter(|t| t.plugin == name && t.hook == hook).map(|t| t.action).collect();
    assert_eq!(actions.len(), 1, "{:?}", ctx.trace());
    actions.into_iter().next().unwrap()
}

#[tokio::test]
async fn reading_message_text_needs_read() {
    let (host, _d) = scripted_host(&[("n", plugin("n", "continue", "continue", "fail-open", "none", true))]).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("secret prompt"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: secret prompt");
    let seen = ctx.get("seen:n").unwrap();
    assert!(seen.starts_with("access denied") && seen.contains("`$.messages[0].content`"), "the guest saw: {seen}");
    let a = action(&ctx, "n", "pre-request");
    assert!(a.starts_with("failed-open:") && a.contains("`$.messages[0].content`"), "{a}");
    assert_eq!(host.plugin("n").unwrap().stats().errors, 1, "a refused read is a failure");

    let (host, _d) = scripted_host(&[("r", plugin("r", "continue", "continue", "fail-open", "read", true))]).await;
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, request("secret prompt"), echo).await.unwrap();
    assert_eq!(ctx.get("seen:r").as_deref(), Some("secret prompt"));
    assert!(!action(&ctx, "r", "pre-request").starts_with("failed"), "{:?}", ctx.trace());
    assert_eq!(host.plugin("r").unwrap().stats().errors, 0);
}

#[tokio::test]
async fn read_cannot_edit_message_data_and_the_call_fails() {
    for (pre, path) in [("modify", "`$.messages[0].content`"), ("insert", "`$.messages[0]`"), ("remove", "`$.messages[0]`")] {
        // fail-open: the request goes on as it was, byte for byte.
        let (host, _d) = scripted_host(&[("r", plugin("r", pre, "continue", "fail-open", "read", true))]).await;
        let ctx = RequestContext::new("m");
        let (seen, provider) = capture();
        let sent = request("hi");
        let resp = host.run_request(&ctx, sent.clone(), provider).await.unwrap();
        assert_eq!(text(&resp), "echo: hi", "{pre}");
        assert_eq!(seen.lock().as_ref().unwrap().to_json(), sent.to_json(), "{pre}: the request is unchanged");
        let guest = ctx.get("access:r").unwrap_or_default();
        assert!(guest.starts_with("access denied") && guest.contains(path), "{pre}: the guest saw {guest:?}");
        let a = action(&ctx, "r", "pre-request");
        assert!(a.starts_with("failed-open:") && a.contains(path) && a.contains("messages: write"), "{pre}: {a}");
        let stats = host.plugin("r").unwrap().stats();
        assert_eq!((stats.calls, stats.errors), (1, 1), "{pre}: one failed call (its post hook is skipped)");

        // fail-closed: the request ends with the plugin's failure.
        let (host, _d) = scripted_host(&[("r", plugin("r", pre, "continue", "fail-closed", "read", true))]).await;
        match host.run_request(&RequestContext::new("m"), request("hi"), echo).await {
            Err(RequestError::Plugin(f)) => {
                assert_eq!((f.plugin.as_str(), f.hook.as_str()), ("r", "pre-request"));
                assert!(matches!(&f.kind, FailureKind::InvalidOutput(m) if m.contains(path)), "{pre}: {f}");
            }
            other => panic!("{pre}: expected the plugin's failure, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn write_edits_apply() {
    let cases = [
        ("modify", vec!["user:hi [w]"]),
        ("insert", vec!["system:[w]", "user:hi"]),
        ("remove", vec!["user:hi"]),
    ];
    for (pre, expect) in cases {
        let (host, _d) = scripted_host(&[("w", plugin("w", pre, "continue", "fail-open", "write", true))]).await;
        let ctx = RequestContext::new("m");
        let (seen, provider) = capture();
        let mut sent = request("hi");
        if pre == "remove" {
            sent.messages.insert(0, plugbox_host::ChatMessage::system("you are a pirate"));
        }
        host.run_request(&ctx, sent, provider).await.unwrap();
        let got = seen.lock().take().unwrap();
        let messages: Vec<String> = got.messages.iter().map(|m| format!("{}:{}", m.role, message_text(m))).collect();
        assert_eq!(messages, expect, "{pre}");
        assert!(ctx.get("access:w").is_none(), "{pre}: {:?}", ctx.get("access:w"));
        assert_eq!(host.plugin("w").unwrap().stats().errors, 0, "{pre}");
    }
}

#[tokio::test]
async fn model_and_parameter_edits_are_open_to_every_level() {
    for messages in ["none", "read", "write"] {
        let (host, _d) = scripted_host(&[
            ("a", plugin("a", "model", "continue", "fail-closed", messages, false)),
            ("b", plugin("b", "param", "continue", "fail-closed", messages, false).replace("priority: 1", "priority: 2")),
        ])
        .await;
        let (seen, provider) = capture();
        host.run_request(&RequestContext::new("m"), request("hi"), provider).await.unwrap();
        let got = seen.lock().take().unwrap();
        assert_eq!(got.model, "a-model", "{messages}");
        assert_eq!(got.seed, Some(7), "{messages}");
        assert_eq!(got.messages, request("hi").messages, "{messages}");
    }
}

#[tokio::test]
async fn edits_outside_their_hook_are_denied() {
    // The request is read-only after pre-request.
    let (host, _d) = scripted_host(&[("p", plugin("p", "continue", "edit-request", "fail-open", "write", true))]).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi");
    let a = action(&ctx, "p", "post-response");
    assert!(a.starts_with("failed-open:") && a.contains("`$.model`"), "{a}");
    assert!(ctx.get("access:p").unwrap_or_default().starts_with("access denied"), "{:?}", ctx.values());

    // ... and in the stream hooks.
    let manifest = plugin("c", "continue", "continue", "fail-open", "write", true)
        .replace("chunk: { type: string, default: continue }", "chunk: { type: string, default: edit-request }");
    let (host, _d) = scripted_host(&[("c", manifest)]).await;
    let ctx = RequestContext::new("m");
    let out = host.on_chunk(&ctx, chunk("x")).await.unwrap();
    assert_eq!(delta(&out.unwrap()), "x", "fail-open: the chunk goes on");
    let a = action(&ctx, "c", "on-chunk");
    assert!(a.starts_with("failed-open:") && a.contains("`$.model`"), "{a}");
}

#[tokio::test]
async fn respond_needs_write() {
    let (host, _d) = scripted_host(&[("r", plugin("r", "respond", "continue", "fail-open", "read", false))]).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi", "the provider answers");
    let a = action(&ctx, "r", "pre-request");
    assert!(a.starts_with("failed-open:") && a.contains("messages: write"), "{a}");
}

/// A request with every kind of field: content parts, tools, a JSON
/// schema, numbers that are integers, fields no type models.
const RICH: &str = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"https://example.org/cat.png","detail":"low"}}],"name":"alice"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"look","arguments":"{\"x\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"a cat"}],"tools":[{"type":"function","function":{"name":"look","description":"look closer","parameters":{"type":"object","properties":{"x":{"type":"integer"}}},"strict":true}}],"tool_choice":"auto","temperature":1,"top_p":0.9,"n":1,"stop":["\n\n"],"seed":42,"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object"}}},"stream_options":{"include_usage":true},"metadata":{"k":"v"},"top_k":40,"guided_json":{"type":"object"},"x_vendor":{"nested":[1,2.5,null]}}"#;

#[tokio::test]
async fn a_plugin_that_edits_nothing_leaves_the_request_byte_identical() {
    let (host, _d) = scripted_host(&[
        ("a", plugin("a", "continue", "continue", "fail-open", "write", true)),
        ("b", plugin("b", "config", "continue", "fail-open", "none", false).replace("priority: 1", "priority: 2")),
        ("c", plugin("c", "continue", "continue", "fail-open", "read", true).replace("priority: 1", "priority: 3")),
    ])
    .await;
    let sent = ChatRequest::from_json(RICH).unwrap();
    let (seen, provider) = capture();
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, sent.clone(), provider).await.unwrap();
    let got = seen.lock().take().unwrap();
    assert_eq!(got.to_json(), sent.to_json(), "the provider gets the request as it was sent");
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    assert_eq!(json(&got.to_json()), json(RICH), "... which is the body as it came");
    assert_eq!(ctx.get("seen:a").as_deref(), Some("what is this?"), "text parts are the message's text");
    assert!(ctx.trace().iter().all(|t| !t.action.starts_with("failed")), "{:?}", ctx.trace());
}

#[tokio::test]
async fn a_failing_plugins_edits_vanish() {
    let (host, _d) = scripted_host(&[
        ("a", plugin("a", "modify-error", "continue", "fail-open", "write", true)),
        ("b", plugin("b", "modify", "continue", "fail-open", "write", true).replace("priority: 1", "priority: 2")),
    ])
    .await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [b]", "a's edit is gone; b edited the original");
    assert_eq!(ctx.get("seen:b").as_deref(), Some("hi"), "b never saw a's edit");
    assert!(action(&ctx, "a", "pre-request").contains("scripted error from a after an edit"), "{:?}", ctx.trace());
}
