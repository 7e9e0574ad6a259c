//! Errors and limits: every status, bodies that never arrive, clients that stop reading, web pages on loopback, the request deadline.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn gateway_errors_are_openai_shaped_with_the_right_status() {
    let limiter = std::fs::read_to_string(Path::new(plugbox_artifacts::MANIFESTS_DIR).join("rate-limit.yaml"))
        .unwrap()
        .replace("default: 10\n", "default: 0.001\n")
        .replace("default: 20\n", "default: 1\n")
        .replace("timeout: 20ms", "timeout: 1s");
    let yaml = "\
providers:
  echo: { type: plugin, provider-type: echo }
  tools: { type: plugin, provider-type: tools }
routes:
  - { model: gpt-x, targets: [echo] }
  - { model: slow, targets: [tools] }
api-keys:
  - { key: sekret-a, caller: team-a }
  - { key: sekret-b, caller: team-b }
  - { key: sekret-c, caller: team-c }
  - { key: sekret-d, caller: team-d }
limits: { max-body: 1KiB, max-concurrent: 1, request-timeout: 60s }
";
    let plugins = vec![
        ("echo", plugbox_artifacts::ECHO_PROVIDER, echo_manifest()),
        ("tool-provider", plugbox_artifacts::TOOL_PROVIDER, tool_manifest()),
        ("rate-limit", plugbox_artifacts::RATE_LIMIT, limiter),
    ];
    let gw = Gw::start(&plugins, yaml).await;
    let chat = |key: Option<&str>, body: Value| {
        let mut r = gw.post("/v1/chat/completions", &body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let ok = json!({"model": "gpt-x", "messages": user("hi")});

    // 401: no key, a wrong key.
    let r = chat(None, ok.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-request-id"));
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "authentication_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("Authorization: Bearer"), "{e}");
    assert_eq!(chat(Some("nope"), ok.clone()).await.unwrap().status(), 401);

    // 400 with the JSON path of the bad field.
    let r = chat(Some("sekret-a"), json!({"model": "gpt-x", "messages": [{"role": 5}]})).await.unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["param"], "messages[0].role", "{e}");
    assert_eq!(e["error"]["type"], "invalid_request_error");

    // 404: no route serves the model.
    let r = chat(Some("sekret-a"), json!({"model": "nope", "messages": user("hi")})).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "model_not_found");

    // 413: past max-body.
    let big = json!({"model": "gpt-x", "messages": user(&"x".repeat(4096))});
    let r = chat(Some("sekret-a"), big).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "request_too_large");

    // 400: embeddings routed to a provider plugin.
    let r = gw.post("/v1/embeddings", &json!({"model": "gpt-x", "input": "hi"})).bearer_auth("sekret-a").send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "embeddings_not_supported");

    // 429 with Retry-After: team-b's bucket holds one request.
    assert_eq!(chat(Some("sekret-b"), ok.clone()).await.unwrap().status(), 200);
    let r = chat(Some("sekret-b"), ok.clone()).await.unwrap();
    assert_eq!(r.status(), 429);
    let after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(after >= 1);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_error", "{e}");

    // 503 while the one permit is held by a stream.
    let slow = json!({"model": "slow", "messages": user("tick"), "stream": true});
    let mut stream = chat(Some("sekret-c"), slow).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.chunk().await.unwrap().is_some(), "the stream started");
    let r = chat(Some("sekret-a"), ok.clone()).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "overloaded");
    drop(stream);
    // The permit comes back with the stream's end.
    let wait_idle = || async {
        let deadline = std::time::Instant::now() + WAIT;
        while gw.gateway.in_flight() > 0 {
            assert!(std::time::Instant::now() < deadline, "the stream's request never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_idle().await;

    // A stream that runs past the request deadline: an SSE error event, no [DONE].
    let short =
        GatewayConfig::from_str(&yaml.replace("request-timeout: 60s", "request-timeout: 300ms"), Path::new("gw.yaml"));
    gw.gateway.set_config(short.unwrap()).unwrap();
    let slow = json!({"model": "slow", "messages": user("tick"), "stream": true});
    let stream = chat(Some("sekret-d"), slow).await.unwrap();
    assert_eq!(stream.status(), 200);
    let ev = events(&stream.text().await.unwrap());
    let last: Value = serde_json::from_str(ev.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "timeout", "{ev:?}");
    assert!(!ev.iter().any(|e| e == "[DONE]"));
    wait_idle().await;
    assert_eq!(chat(Some("sekret-a"), ok).await.unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_body_that_never_arrives_is_refused_and_frees_its_permit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = one_at_a_time().await;
    // Promises 1000 bytes, sends 9, then waits.
    let mut slow = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://")).await.unwrap();
    slow.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
          content-length: 1000\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = slow.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            head.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("the gateway answers a body that never arrives");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    // The one permit is free again, though the slow client is still connected.
    let (status, body) = gw.chat(&json!({"model": "tool-model", "messages": user("next")})).await;
    assert_eq!(status, 200, "{body}");
    drop(slow);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_stream_to_a_client_that_stops_reading_ends_at_the_deadline() {
    use tower::ServiceExt;
    let gw = one_at_a_time().await;
    let body = json!({"model": "slow", "messages": user("x"), "stream": true}).to_string();
    let mut request = axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
    request.extensions_mut().insert(axum::extract::ConnectInfo(loopback));
    // The response is kept, its body never read: the stream fills its buffer.
    let response = gw.gateway.router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let deadline = std::time::Instant::now() + WAIT;
    while gw.gateway.in_flight() > 0 {
        assert!(std::time::Instant::now() < deadline, "a stream nobody reads outlived its deadline");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.kv("ends").await, 1, "the end hooks ran");
    assert!(gw.kv("produced").await < 500, "the provider was stopped");
    let (status, body) = gw.chat(&json!({"model": "tool-model", "messages": user("next")})).await;
    assert_eq!(status, 200, "the permit is free again: {body}");
    // What the buffer held: ticks, and no `[DONE]`.
    let text = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("tick") && !text.contains("[DONE]"), "{text}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_without_keys_refuses_web_pages_on_loopback() {
    let gw = Gw::echo_only(&[]).await;
    let ask = |origin: Option<&str>| {
        let mut r = gw.post("/v1/chat/completions", &json!({"model": "m", "messages": user("hi")}));
        if let Some(origin) = origin {
            r = r.header("origin", origin);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // A page of another site, run by the user's browser on this machine.
    let (status, body) = ask(Some("https://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "loopback_only");
    // A page served from loopback itself, and a client that sends no origin.
    let local = gw.url.clone();
    assert_eq!(ask(Some(&local)).await.0, 200);
    assert_eq!(ask(None).await.0, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_request_deadline_is_an_error_the_post_hooks_see() {
    // An upstream that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = format!(
        "providers:\n  silent: {{ type: openai-compatible, base-url: 'http://{}/v1', retries: {{ max: 0 }} }}\n\
         routes:\n  - {{ model: m, targets: [silent] }}\nlimits: {{ request-timeout: 1s }}\n",
        silent.local_addr().unwrap()
    );
    let plain = Gw::start(&[], &yaml).await;
    let (status, body) = plain.chat(&json!({"model": "m", "messages": user("hi")})).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    assert!(body["error"]["message"].as_str().unwrap().contains("ran past its deadline of 1s"), "{body}");
    plain.stop().await;
    // A post hook sees the timeout, and may answer in its place.
    let rescuer = scripted_as("rescuer", 10, &[("post", "recover")]);
    let gw = Gw::start(&[("rescuer", plugbox_artifacts::SCRIPTED, rescuer)], &yaml).await;
    let (status, body) = gw.chat(&json!({"model": "m", "messages": user("hi")})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "recovered by rescuer");
    gw.stop().await;
    drop(silent);
}
