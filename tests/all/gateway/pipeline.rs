//! JSON and SSE through the hooks, fallback across upstreams, config swaps, endpoint checks and device admission.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn gateway_json_and_sse_pass_through_the_plugins_hooks() {
    let tagger = scripted_as("tagger", 10, &[("pre", "modify"), ("post", "modify"), ("chunk", "upper")]);
    let gw = Gw::echo_only(&[("tagger", plugbox_artifacts::SCRIPTED, tagger)]).await;

    // JSON: the pre hook's edit reached the provider, the post hook's the client;
    // a field no plugin touches is kept; the client's request id is echoed.
    let r = gw
        .post("/v1/chat/completions", &json!({"model": "gpt-x", "messages": user("hello gateway"), "top_k": 5}))
        .header("x-request-id", "client-id-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "client-id-7");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "hello gateway [tagger] [post:tagger]");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["choices"][0]["message"].get("tool_calls").is_none(), "{body}");

    // SSE: on-chunk upper-cases each piece as it flows; usage when asked; [DONE].
    let r = gw
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-x", "messages": user("hello gateway"), "stream": true,
                    "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.starts_with("req-"), "a generated request id: {id}");
    let ev = events(&r.text().await.unwrap());
    assert_eq!(ev.last().unwrap(), "[DONE]");
    assert_eq!(stream_text(&ev), "HELLO GATEWAY [TAGGER]");
    let all = chunks(&ev);
    assert!(all.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let usage: Vec<&Value> = all.iter().filter(|c| c["usage"].is_object()).collect();
    assert_eq!(usage.len(), 1, "one usage chunk: {ev:?}");
    assert_eq!(usage[0]["choices"], json!([]));
    assert!(all.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));

    // Without include_usage: no usage anywhere.
    let ev = gw.stream(&json!({"model": "gpt-x", "messages": user("no usage"), "stream": true})).await;
    assert!(chunks(&ev).iter().all(|c| c.get("usage").is_none_or(Value::is_null)), "{ev:?}");
    assert_eq!(stream_text(&ev), "NO USAGE [TAGGER]");

    // Models, health, readiness.
    let models: Value = gw.client.get(format!("{}/v1/models", gw.url)).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"tool-model") && ids.contains(&"slow") && !ids.contains(&"*"), "{models}");
    assert_eq!(gw.client.get(format!("{}/healthz", gw.url)).send().await.unwrap().status(), 200);
    // The tools provider is not loaded here: not ready.
    let ready = gw.client.get(format!("{}/readyz", gw.url)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["missing_provider_plugins"], json!(["tools"]));
    let (status, e) = gw.chat(&json!({"model": "tool-model", "messages": user("x")})).await;
    assert_eq!(status, 502, "{e}");
    assert_eq!(e["error"]["message"], "no provider plugin of type `tools` is loaded");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_falls_back_from_a_dead_upstream_to_a_live_one_and_swaps_config() {
    // The live upstream: another gateway, answering `gpt-x` with the echo provider.
    let echo_yaml =
        "providers:\n  echo: { type: plugin, provider-type: echo }\nroutes:\n  - { model: gpt-x, targets: [echo] }\n";
    let upstream = Gw::start(&[("echo", plugbox_artifacts::ECHO_PROVIDER, echo_manifest())], echo_yaml).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let yaml = format!(
        "providers:\n\
         \x20 dead: {{ type: openai-compatible, base-url: 'http://{dead}/v1', retries: {{ max: 0 }} }}\n\
         \x20 live: {{ type: openai-compatible, base-url: '{}/v1', retries: {{ max: 0 }} }}\n\
         routes:\n  - {{ model: gpt-x, targets: [dead, live] }}\n\
         \x20 - {{ model: gpt-q, targets: [{{ provider: live, model: not-there }}] }}\n",
        upstream.url
    );
    let tagger = scripted_as("tagger", 10, &[("pre", "modify"), ("chunk", "upper")]);
    // After the fallback, post and end hooks see the provider that answered.
    let prov = scripted("prov", 20, "continue", "provider")
        .replace("on-tool-call]", "on-tool-call, on-stream-end]")
        .replace("timeout: 100ms", "timeout: 1s")
        + "  stream_end: { type: string, default: provider }\n";
    let gw = Gw::start(
        &[("tagger", plugbox_artifacts::SCRIPTED, tagger), ("prov", plugbox_artifacts::SCRIPTED, prov)],
        &yaml,
    )
    .await;
    let (status, body) = gw.chat(&json!({"model": "gpt-x", "messages": user("over the wire"), "seed": 7})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "over the wire [tagger] [provider:live]");
    let ev = gw.stream(&json!({"model": "gpt-x", "messages": user("streamed"), "stream": true})).await;
    assert_eq!(stream_text(&ev), "STREAMED [TAGGER] [provider:live]");
    assert_eq!(ev.last().unwrap(), "[DONE]");

    // An upstream's 4xx error body reaches the client as the upstream sent it.
    let (status, direct) = upstream.chat(&json!({"model": "not-there", "messages": user("hi")})).await;
    assert_eq!(status, 404, "{direct}");
    let (status, body) = gw.chat(&json!({"model": "gpt-q", "messages": user("hi")})).await;
    assert_eq!((status, &body), (404, &direct));
    let (status, body) = gw.chat(&json!({"model": "gpt-q", "messages": user("hi"), "stream": true})).await;
    assert_eq!((status, &body), (404, &direct));

    // A new config swaps in at once; the old routes are gone.
    let next = GatewayConfig::from_str(
        &yaml.replace(
            "model: gpt-x, targets: [dead, live]",
            "model: gpt-y, targets: [{ provider: live, model: gpt-x }]",
        ),
        Path::new("gateway-test.yaml"),
    )
    .unwrap();
    gw.gateway.set_config(next).unwrap();
    let (status, _) = gw.chat(&json!({"model": "gpt-x", "messages": user("hi")})).await;
    assert_eq!(status, 404);
    let (status, body) = gw.chat(&json!({"model": "gpt-y", "messages": user("hi")})).await;
    assert_eq!(status, 200, "{body}");
    gw.stop().await;
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_checks_endpoints_through_interface_plugins_and_admits_by_devices() {
    let chat_mode =
        std::fs::read_to_string(Path::new(plugbox_artifacts::MANIFESTS_DIR).join("chat-mode.yaml")).unwrap();
    let plugins = vec![
        ("echo", plugbox_artifacts::ECHO_PROVIDER, echo_manifest()),
        ("chat-mode", plugbox_artifacts::CHAT_MODE, chat_mode),
    ];
    let yaml = "\
providers:
  echo: { type: plugin, provider-type: echo }
routes:
  - { model: chatty, targets: [echo] }
  - { model: big, targets: [echo] }
models:
  chatty: { mode: chat }
  big: { mode: chat, required-devices: [gpu:0], memory-mb: { gpu:0: 8192 } }
";
    let gw = Gw::start(&plugins, yaml).await;
    let (status, body) = gw.chat(&json!({"model": "chatty", "messages": user("fine")})).await;
    assert_eq!(status, 200, "{body}");
    // The chat interface plugin refuses the embeddings endpoint for a chat model.
    let r = gw.post("/v1/embeddings", &json!({"model": "chatty", "input": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "unsupported_endpoint", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("chat-mode"), "{e}");
    // No gpu:0 here: the model is not admitted.
    let (status, e) = gw.chat(&json!({"model": "big", "messages": user("heavy")})).await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(e["error"]["code"], "insufficient_resources");
    assert!(e["error"]["message"].as_str().unwrap().contains("gpu:0"), "{e}");
    gw.stop().await;
}
