//! The corpus (`tests/corpus/`: request, response and SSE bodies written from
//! the OpenAI reference and from OpenAI-compatible servers) round-trips
//! through these types; and the rules the types promise (nulls, numbers,
//! unknown fields, field access by name) hold.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

fn corpus(kind: &str, ext: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the corpus in {} has only {} `.{ext}` files", dir.display(), files.len());
    files
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The object's keys at a JSON path, in order.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn every_corpus_request_round_trips_json_equal() {
    for (name, body) in corpus("requests", "json") {
        let req = ChatRequest::from_json(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(value(&req.to_json()), value(&body), "{name}");
        // Through a Value too (what `serde_json::from_value` callers do).
        let again: ChatRequest = serde_json::from_value(value(&body)).unwrap();
        assert_eq!(again, req, "{name}");
    }
}

#[test]
fn every_corpus_response_round_trips_json_equal() {
    for (name, body) in corpus("responses", "json") {
        let resp = ChatResponse::from_json(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(value(&resp.to_json()), value(&body), "{name}");
        assert!(!resp.choices.is_empty(), "{name}");
    }
}

#[test]
fn every_corpus_stream_round_trips_chunk_by_chunk() {
    for (name, body) in corpus("streams", "sse") {
        let events = sse::data_events(&body);
        assert_eq!(events.last().map(String::as_str), Some(sse::DONE), "{name}: ends with [DONE]");
        assert!(body.ends_with("data: [DONE]\n\n"), "{name}: written as a server sends it");
        let chunks = &events[..events.len() - 1];
        assert!(chunks.len() >= 4, "{name}");
        for (i, data) in chunks.iter().enumerate() {
            let chunk = ChatChunk::from_json(data).unwrap_or_else(|e| panic!("{name} event {i}: {e}"));
            assert_eq!(chunk.object, "chat.completion.chunk", "{name} event {i}");
            assert_eq!(value(&chunk.to_json()), value(data), "{name} event {i}");
            let back = sse::data_events(&chunk.to_sse());
            assert_eq!(value(&back[0]), value(data), "{name} event {i} as SSE");
        }
    }
}

#[test]
fn the_corpus_covers_every_modelled_request_field() {
    let mut seen = std::collections::BTreeSet::new();
    for (_, body) in corpus("requests", "json") {
        seen.extend(value(&body).as_object().unwrap().keys().cloned());
    }
    let missing: Vec<_> = ChatRequest::FIELDS.iter().filter(|f| !seen.contains(**f)).collect();
    assert!(missing.is_empty(), "no corpus request has {missing:?}");
}

#[test]
fn the_corpus_shows_what_it_is_named_for() {
    let load = |kind: &str, ext: &str, file: &str| {
        corpus(kind, ext).into_iter().find(|(n, _)| n == file).unwrap_or_else(|| panic!("{kind}/{file}")).1
    };
    // Vision: text and image parts, URL and data URL.
    let req = ChatRequest::from_json(&load("requests", "json", "vision-image-parts.json")).unwrap();
    let MessageContent::Parts(parts) = req.messages[0].content.as_ref().unwrap().as_value().unwrap() else {
        panic!("parts")
    };
    assert_eq!(parts.iter().map(|p| p.kind.as_str()).collect::<Vec<_>>(), ["text", "image_url", "image_url"]);
    assert!(parts[2].image_url_str().unwrap().starts_with("data:image/png;base64,"));
    assert_eq!(parts[1].payload().unwrap()["detail"], "high");
    // Audio in and out.
    let req = ChatRequest::from_json(&load("requests", "json", "audio-input-and-audio-output.json")).unwrap();
    assert_eq!(flat_vec(&req.modalities), ["text", "audio"]);
    assert_eq!(req.audio.as_ref().unwrap()["voice"], "alloy");
    assert_eq!(req.messages[1].text().as_deref(), Some("What is in this recording?"));
    assert_eq!(req.messages[2].audio.as_ref().unwrap()["id"], "audio_abc123");
    assert_eq!(req.messages[2].content, Some(Nullable::Null));
    // Tool calls with content null, answered by tool messages (string and parts).
    let req =
        ChatRequest::from_json(&load("requests", "json", "assistant-tool-calls-content-null-and-tool-messages.json"))
            .unwrap();
    let calls = req.messages[2].tool_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].function.name, "get_current_weather");
    assert_eq!(req.messages[2].text(), None);
    assert_eq!(req.messages[4].tool_call_id(), Some(calls[1].id.as_str()));
    assert!(req.messages[4].text().unwrap().contains("Light rain"));
    // vLLM's fields are kept, in order.
    let req = ChatRequest::from_json(&load("requests", "json", "vllm-sampling-extensions.json")).unwrap();
    assert_eq!(
        keys(&Value::Object(req.extra.clone())),
        [
            "top_k",
            "min_p",
            "repetition_penalty",
            "guided_json",
            "guided_decoding_backend",
            "skip_special_tokens",
            "chat_template_kwargs"
        ]
    );
    assert_eq!(req.param("top_k"), Some(json!(40)));
    // Streams: usage null until the usage chunk; tool-call fragments; reasoning; refusal.
    let usage_stream = sse::data_events(&load("streams", "sse", "text-with-include-usage.sse"));
    let chunks: Vec<ChatChunk> =
        usage_stream[..usage_stream.len() - 1].iter().map(|d| ChatChunk::from_json(d).unwrap()).collect();
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.usage == Some(Nullable::Null)));
    assert_eq!(chunks.last().unwrap().usage().unwrap().total_tokens, 29);
    assert_eq!(chunks[0].choices[0].delta.role(), Some(&Role::Assistant));
    let text: String = chunks.iter().filter_map(ChatChunk::text_delta).collect();
    assert_eq!(text, "Hello! How can I help you today?");
    let tools = sse::data_events(&load("streams", "sse", "parallel-tool-call-fragments.sse"));
    let mut merged = Delta::default();
    for d in &tools[..tools.len() - 1] {
        merged.merge(ChatChunk::from_json(d).unwrap().choices.remove(0).delta);
    }
    let args: String = merged
        .tool_calls()
        .iter()
        .filter(|f| f.index == 1)
        .filter_map(|f| f.function.as_ref()?.arguments.as_deref())
        .collect();
    assert_eq!(value(&args), json!({"location": "Paris, France"}));
    let reasoning = sse::data_events(&load("streams", "sse", "vllm-reasoning-content.sse"));
    let reasoning: String = reasoning[..reasoning.len() - 1]
        .iter()
        .map(|d| ChatChunk::from_json(d).unwrap())
        .filter_map(|c| c.choices.first().and_then(|c| c.delta.reasoning().map(str::to_owned)))
        .collect();
    assert_eq!(reasoning, "Compare the tenths: 1 < 8.");
    let refusal = sse::data_events(&load("streams", "sse", "refusal-deltas.sse"));
    let refusal: String = refusal[..refusal.len() - 1]
        .iter()
        .map(|d| ChatChunk::from_json(d).unwrap())
        .filter_map(|c| c.choices.first().and_then(|c| c.delta.refusal().map(str::to_owned)))
        .collect();
    assert_eq!(refusal, "I'm sorry, I cannot assist with that request.");
    // Responses.
    let resp = ChatResponse::from_json(&load("responses", "json", "refusal.json")).unwrap();
    assert_eq!(resp.choices[0].message.refusal(), Some("I'm sorry, I cannot assist with that request."));
    let resp = ChatResponse::from_json(&load("responses", "json", "n-2.json")).unwrap();
    assert_eq!(resp.choices.iter().map(|c| c.finish_reason().unwrap()).collect::<Vec<_>>(), ["stop", "length"]);
    let resp = ChatResponse::from_json(&load("responses", "json", "vllm-reasoning-content.json")).unwrap();
    assert!(resp.choices[0].message.reasoning().unwrap().contains("tenths"));
    assert_eq!(resp.choices[0].extra["stop_reason"], Value::Null);
}

fn flat_vec(field: &Option<Nullable<Vec<String>>>) -> Vec<&str> {
    field.as_ref().and_then(Nullable::as_value).unwrap().iter().map(String::as_str).collect()
}

#[test]
fn explicit_nulls_stay_null_and_absent_fields_stay_absent() {
    let body = r#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":null}],
        "temperature":null,"max_tokens":null,"stream":null,"tools":null,"stop":null,"user":null}"#;
    let req = ChatRequest::from_json(body).unwrap();
    assert_eq!(req.temperature, Some(Nullable::Null));
    assert_eq!(req.temperature(), None);
    assert_eq!(req.max_tokens, Some(Nullable::Null));
    assert!(!req.is_streaming());
    assert_eq!(req.tools(), &[]);
    assert_eq!(req.stop, Some(Value::Null));
    assert_eq!(req.top_p, None);
    assert_eq!(req.messages[0].content, Some(Nullable::Null));
    assert_eq!(value(&req.to_json()), value(body));
    assert!(!req.to_json().contains("top_p"));
    assert_eq!(req.param("temperature"), Some(Value::Null));
    assert_eq!(req.param("top_p"), None);
}

#[test]
fn numbers_are_not_rewritten() {
    let body = r#"{"model":"m","messages":[],"temperature":1,"top_p":1.0,"presence_penalty":-0.5,"x":[1,2.50,1e2]}"#;
    let json = ChatRequest::from_json(body).unwrap().to_json();
    assert!(json.contains(r#""temperature":1,"#), "{json}");
    assert!(json.contains(r#""top_p":1.0,"#), "{json}");
    assert!(json.contains(r#""presence_penalty":-0.5"#), "{json}");
    assert!(json.contains(r#""x":[1,2.5,100.0]"#), "{json}");
}

#[test]
fn unknown_fields_are_kept_in_order_at_every_level() {
    let body = r#"{"zeta":1,"model":"m","alpha":2,"messages":[{"role":"user","content":[{"type":"text","text":"hi","z":1,"a":2}],"m2":true,"m1":false}],
        "tools":[{"type":"function","function":{"name":"f","fz":0,"fa":1},"tz":1}],"mid":3}"#;
    let req = ChatRequest::from_json(body).unwrap();
    assert_eq!(keys(&Value::Object(req.extra.clone())), ["zeta", "alpha", "mid"]);
    assert_eq!(keys(&Value::Object(req.messages[0].extra.clone())), ["m2", "m1"]);
    let MessageContent::Parts(parts) = req.messages[0].content.as_ref().unwrap().as_value().unwrap() else { panic!() };
    assert_eq!(keys(&Value::Object(parts[0].extra.clone())), ["z", "a"]);
    assert_eq!(keys(&Value::Object(req.tools()[0].function.as_ref().unwrap().extra.clone())), ["fz", "fa"]);
    let out = value(&req.to_json());
    assert_eq!(out, value(body));
    // Unknown fields come after the modelled ones, in their original order.
    let top = keys(&out);
    assert_eq!(&top[top.len() - 3..], ["zeta", "alpha", "mid"]);
}

#[test]
fn unknown_roles_and_tool_types_round_trip() {
    let body = r#"{"model":"m","messages":[{"role":"critic","content":"x"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"custom","custom":{"name":"sql","input":"select 1"}}]}],
        "tools":[{"type":"custom","custom":{"name":"sql","description":"SQL"}}]}"#;
    let req = ChatRequest::from_json(body).unwrap();
    assert_eq!(req.messages[0].role, Role::Other("critic".into()));
    assert!(req.messages[1].tool_calls()[0].function.is_empty());
    assert_eq!(req.tools()[0].function, None);
    assert_eq!(value(&req.to_json()), value(body));
}

#[test]
fn content_that_is_neither_text_nor_parts_is_refused_clearly() {
    let err = ChatRequest::from_json(r#"{"model":"m","messages":[{"role":"user","content":42}]}"#).unwrap_err();
    assert!(err.to_string().contains("a string or an array of content parts"), "{err}");
}

#[test]
fn param_reads_every_field_of_every_corpus_request_by_name() {
    for (name, body) in corpus("requests", "json") {
        let req = ChatRequest::from_json(&body).unwrap();
        for (key, v) in value(&body).as_object().unwrap() {
            assert_eq!(req.param(key).as_ref(), Some(v), "{name}: `{key}`");
        }
    }
    for (name, body) in corpus("responses", "json") {
        let resp = ChatResponse::from_json(&body).unwrap();
        for (key, v) in value(&body).as_object().unwrap() {
            assert_eq!(resp.param(key).as_ref(), Some(v), "{name}: `{key}`");
        }
    }
}

#[test]
fn set_param_changes_one_field_and_nothing_else() {
    for (name, body) in corpus("requests", "json") {
        let mut req = ChatRequest::from_json(&body).unwrap();
        let mut expected = value(&body);
        for (key, v) in [("temperature", json!(0.25)), ("top_k", json!(7)), ("metadata", Value::Null)] {
            req.set_param(key, Some(v.clone())).unwrap();
            expected[key] = v;
        }
        req.set_param("seed", None).unwrap();
        expected.as_object_mut().unwrap().shift_remove("seed");
        assert_eq!(value(&req.to_json()), expected, "{name}");
    }
    let mut req = ChatRequest::new("m", vec![ChatMessage::user("hi")]).with_extra("top_k", json!(1));
    req.set_param("top_k", Some(json!(2))).unwrap();
    req.set_param("model", Some(json!("other"))).unwrap();
    assert_eq!(req.model, "other");
    assert_eq!(req.extra["top_k"], 2);
    req.set_param("top_k", None).unwrap();
    assert!(req.extra.is_empty());
    // A modelled field never lands in `extra` (it would be written twice).
    req.set_param("max_tokens", Some(json!(5))).unwrap();
    assert!(req.extra.is_empty());
    assert_eq!(req.max_tokens(), Some(5));
}

#[test]
fn set_param_refuses_a_wrong_type_naming_the_path_and_changes_nothing() {
    let mut req = ChatRequest::new("m", vec![ChatMessage::user("hi")]).with_temperature(0.5);
    let before = req.clone();
    let err = req.set_param("temperature", Some(json!("hot"))).unwrap_err();
    assert!(err.starts_with("`$.temperature`: invalid type: string"), "{err}");
    let err = req.set_param("messages", None).unwrap_err();
    assert_eq!(err, "`$.messages` is required and cannot be removed");
    let err = req.set_param("n", Some(json!(-1))).unwrap_err();
    assert!(err.starts_with("`$.n`:"), "{err}");
    let err = req.set_param("user", Some(json!(5))).unwrap_err();
    assert!(err.starts_with("`$.user`:"), "{err}");
    assert_eq!(req, before);

    let mut resp = ChatResponse::text("id", "m", "hi");
    let err = resp.set_param("choices", Some(json!("x"))).unwrap_err();
    assert!(err.starts_with("`$.choices`:"), "{err}");
    resp.set_param("system_fingerprint", Some(json!("fp"))).unwrap();
    resp.set_param("x_trace", Some(json!([1]))).unwrap();
    assert_eq!(resp.param("system_fingerprint"), Some(json!("fp")));
    assert_eq!(resp.param("x_trace"), Some(json!([1])));
}

#[test]
fn builders_and_accessors() {
    let req = ChatRequest::new("gpt", vec![ChatMessage::system("s"), ChatMessage::user("u")])
        .with_stream(true)
        .with_include_usage(true)
        .with_temperature(0.5)
        .with_max_tokens(10)
        .with_n(2)
        .with_seed(-3)
        .with_tool(Tool::function("f", "does f", json!({"type": "object"})));
    assert!(req.is_streaming() && req.includes_usage());
    assert_eq!((req.temperature(), req.max_tokens(), req.n(), req.seed()), (Some(0.5), Some(10), 2, Some(-3)));
    assert_eq!(req.tools().len(), 1);
    assert_eq!(req.last_user_message().unwrap().text().as_deref(), Some("u"));
    assert_eq!(
        value(&req.to_json()),
        json!({"model": "gpt", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "tools": [{"type": "function", "function": {"name": "f", "description": "does f", "parameters": {"type": "object"}}}],
            "stream": true, "stream_options": {"include_usage": true}, "temperature": 0.5, "n": 2, "max_tokens": 10, "seed": -3})
    );
    assert_eq!(ChatRequest::new("m", vec![]).with_max_completion_tokens(7).max_tokens(), Some(7));
    let tool = ChatMessage::tool("call_1", "42");
    assert_eq!((tool.role.clone(), tool.tool_call_id()), (Role::Tool, Some("call_1")));

    let mut m = ChatMessage::user("x");
    m.content = Some(Nullable::Value(MessageContent::Parts(vec![
        ContentPart::text_part("a"),
        ContentPart::image_url("https://x/y.png"),
        ContentPart::input_audio("AAAA", "wav"),
        ContentPart::file_id("file-1"),
        ContentPart::text_part("b"),
    ])));
    assert_eq!(m.text().as_deref(), Some("ab"));
    m.set_text("c");
    assert_eq!(m.content, Some(Nullable::Value(MessageContent::Text("c".into()))));
    m.tool_calls_mut().push(ToolCall::function("c1", "f", "{}"));
    assert_eq!(m.tool_calls().len(), 1);

    let resp = ChatResponse::text("id", "m", "hello").with_usage(Usage::new(3, 4));
    assert_eq!(resp.first_text().as_deref(), Some("hello"));
    assert_eq!(resp.usage().unwrap().total_tokens, 7);
    assert_eq!(resp.choices[0].finish_reason(), Some("stop"));
    assert_eq!(ChatResponse::from_json(&resp.to_json()).unwrap(), resp);

    let usage = ChatChunk::usage_only(Usage::new(1, 2));
    assert_eq!(value(&usage.to_json())["choices"], json!([]));
    assert_eq!(ChatChunk::finish("length").choices[0].finish_reason(), Some("length"));
    assert_eq!(ChatChunk::text("abc").text_len(), 3);
}

#[test]
fn merged_deltas_join_text_and_keep_the_first_role() {
    let mut a = ChatChunk::text("Hel").choices.remove(0).delta;
    a.role = Some(Nullable::Value(Role::Assistant));
    let mut b = ChatChunk::text("lo").choices.remove(0).delta;
    b.role = Some(Nullable::Null);
    b.reasoning_content = Some(Nullable::Value("r".into()));
    b.tool_calls = Some(Nullable::Value(vec![ToolCallDelta { index: 0, ..Default::default() }]));
    a.merge(b);
    assert_eq!((a.text(), a.reasoning(), a.role()), (Some("Hello"), Some("r"), Some(&Role::Assistant)));
    assert_eq!(a.tool_calls().len(), 1);
    assert_eq!(a.text_len(), 6);
}
