//! Tool calls: rewritten, denied, answered (JSON and streamed), rounds and their deadline, calls in a pre hook's answer.

use super::*;

/// A gateway with the tools provider and a `guard` plugin whose tool hook does `tool`.
async fn tools_gateway(tool: &str) -> Gw {
    let guard = scripted_as("guard", 10, &[("tool", tool)]);
    let plugins = vec![
        ("echo", plugbox_artifacts::ECHO_PROVIDER, echo_manifest()),
        ("tool-provider", plugbox_artifacts::TOOL_PROVIDER, tool_manifest()),
        ("guard", plugbox_artifacts::SCRIPTED, guard),
    ];
    Gw::start(&plugins, CONFIG).await
}

fn tool_request(stream: bool) -> Value {
    json!({
        "model": "tool-model",
        "messages": user("weather in Paris"),
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "stream": stream,
    })
}

/// The tool calls of a stream, assembled from their fragments.
fn streamed_calls(events: &[String]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in chunks(events) {
        for piece in c["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = piece["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                calls.resize(i + 1, Default::default());
            }
            let call = &mut calls[i];
            call.0.push_str(piece["id"].as_str().unwrap_or_default());
            call.1.push_str(piece["function"]["name"].as_str().unwrap_or_default());
            call.2.push_str(piece["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    calls
}

fn finish_reasons(events: &[String]) -> Vec<String> {
    chunks(events).iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(str::to_string)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_tool_calls_are_rewritten_by_plugins_json_and_streamed() {
    let gw = tools_gateway("rewrite").await;
    let (status, body) = gw.chat(&tool_request(false)).await;
    assert_eq!(status, 200, "{body}");
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_1");
    assert_eq!(call["function"]["name"], "weather");
    assert_eq!(call["function"]["arguments"], r#"{"rewritten_by":"guard"}"#);
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    // Streamed: the provider sends the call in three fragments; the hook sees
    // it whole and the client gets the edited call, then the finish.
    let ev = gw.stream(&tool_request(true)).await;
    assert_eq!(
        streamed_calls(&ev),
        [("call_1".to_string(), "weather".to_string(), r#"{"rewritten_by":"guard"}"#.to_string())]
    );
    assert_eq!(finish_reasons(&ev), ["tool_calls"]);
    assert_eq!(ev.last().unwrap(), "[DONE]");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_denied_tool_calls_are_removed_with_a_note() {
    let gw = tools_gateway("deny").await;
    let (status, body) = gw.chat(&tool_request(false)).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert!(choice["message"].get("tool_calls").is_none_or(Value::is_null), "{body}");
    assert_eq!(choice["message"]["content"], "[tool call weather denied by guard: denied by guard]");
    assert_eq!(choice["finish_reason"], "stop");

    let ev = gw.stream(&tool_request(true)).await;
    assert!(streamed_calls(&ev).is_empty(), "{ev:?}");
    assert_eq!(stream_text(&ev), "[tool call weather denied by guard: denied by guard]");
    assert_eq!(finish_reasons(&ev), ["stop"]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_answered_tool_calls_go_back_to_the_model() {
    let gw = tools_gateway("answer").await;
    let (status, body) = gw.chat(&tool_request(false)).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert!(choice["message"].get("tool_calls").is_none_or(Value::is_null), "{body}");
    // The model saw the plugin's result as a `tool` message and answered.
    assert_eq!(choice["message"]["content"], r#"tool said: {"answered_by":"guard"}"#);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 10, "both rounds counted: {body}");

    let mut request = tool_request(true);
    request["stream_options"] = json!({"include_usage": true});
    let ev = gw.stream(&request).await;
    assert!(streamed_calls(&ev).is_empty(), "{ev:?}");
    assert_eq!(stream_text(&ev), r#"tool said: {"answered_by":"guard"}"#);
    assert_eq!(finish_reasons(&ev), ["stop"], "one finish, the last round's");
    let usage: Vec<Value> = chunks(&ev).into_iter().filter(|c| c["usage"].is_object()).collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["usage"]["total_tokens"], 10);
    // The stream's end was seen once per provider stream (two rounds).
    assert_eq!(gw.kv("ends").await, 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_streamed_tool_round_that_never_starts_ends_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that asks for a tool on its first connection, then takes
    // the next one and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        let chunk = |delta: Value, finish: Value| {
            let c = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {c}\n\n")
        };
        let call = json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": "{}"}}]});
        let body = chunk(call, Value::Null) + &chunk(json!({}), json!("tool_calls")) + "data: [DONE]\n\n";
        let (mut first, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let _ = first.read(&mut buf).await.unwrap();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        first.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
        drop(first);
        let (second, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
        drop(second);
    });
    let yaml = format!(
        "providers:\n  up: {{ type: openai-compatible, base-url: 'http://{addr}/v1', retries: {{ max: 0 }} }}\n\
         routes:\n  - {{ model: m, targets: [up] }}\nlimits: {{ request-timeout: 2s }}\n"
    );
    let answerer = scripted_as("answerer", 10, &[("tool", "answer")]);
    let gw = Gw::start(&[("answerer", plugbox_artifacts::SCRIPTED, answerer)], &yaml).await;
    let request = json!({"model": "m", "messages": user("look it up"), "stream": true});
    let events = tokio::time::timeout(WAIT, gw.stream(&request)).await.expect("the stream ends at its deadline");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "timeout", "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    assert_eq!(gw.gateway.in_flight(), 0);
    gw.stop().await;
    upstream.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_calls_in_a_pre_hooks_answer_go_to_the_tool_hooks_json_and_streamed() {
    let responder = scripted_as("responder", 10, &[("pre", "respond-tool")]);
    let answerer = scripted_as("answerer", 20, &[("tool", "answer")]);
    let gw = Gw::echo_only(&[
        ("responder", plugbox_artifacts::SCRIPTED, responder),
        ("answerer", plugbox_artifacts::SCRIPTED, answerer),
    ])
    .await;
    let why = "[tool calls answered by plugins were not run: a plugin answered this request, there is no model to continue with]";
    let (status, body) = gw.chat(&json!({"model": "any", "messages": user("hi")})).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["content"], why, "{body}");
    assert!(choice["message"].get("tool_calls").is_none_or(Value::is_null), "{body}");
    assert_eq!(choice["finish_reason"], "stop", "{body}");

    let ev = gw.stream(&json!({"model": "any", "messages": user("hi"), "stream": true})).await;
    assert_eq!(ev.last().unwrap(), "[DONE]", "{ev:#?}");
    assert_eq!(stream_text(&ev), why, "{ev:#?}");
    assert!(streamed_calls(&ev).is_empty(), "{ev:#?}");
    assert_eq!(finish_reasons(&ev), ["stop"], "{ev:#?}");
    gw.stop().await;
}
