//! The gateway over real sockets: a `Gateway` on 127.0.0.1:0 (and the real
//! `plugbox serve`), real compiled plugins, reqwest as the client.

use std::path::Path;
use std::time::Duration;

use plugbox_gateway::config::GatewayConfig;
use plugbox_gateway::{Gateway, GatewayBuilder};
use plugbox_host::Host;
use serde_json::{Value, json};

use crate::{PluginDir, scripted};

/// Long enough for anything a test waits on; only hit when it fails.
const WAIT: Duration = Duration::from_secs(60);

const CONFIG: &str = "\
providers:
  echo: { type: plugin, provider-type: echo }
  tools: { type: plugin, provider-type: tools }
routes:
  - { model: tool-model, targets: [tools] }
  - { model: slow, targets: [tools] }
  - { model: slow-100, targets: [tools] }
  - { model: '*', targets: [echo] }
";

/// An HTTP client (rustls needs its crypto provider installed once).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn echo_manifest() -> String {
    std::fs::read_to_string(Path::new(plugbox_artifacts::MANIFESTS_DIR).join("echo-provider.yaml")).unwrap()
}

fn tool_manifest() -> String {
    std::fs::read_to_string(Path::new(plugbox_artifacts::REPO_ROOT).join("tests/fixtures/tool-provider/plugin.yaml"))
        .unwrap()
}

/// A scripted plugin `name` whose hooks do what `set` says (`("chunk", "upper")` ...).
fn scripted_as(name: &str, priority: i32, set: &[(&str, &str)]) -> String {
    // Fail-open hooks with 1 s (the host's cap) rather than 100 ms: a busy
    // machine must not turn a hook into a silent pass.
    let mut m = scripted(name, priority, "continue", "continue").replace("timeout: 100ms", "timeout: 1s");
    for (key, value) in set {
        let default = if *key == "tool" { "allow" } else { "continue" };
        m = m.replace(
            &format!("  {key}: {{ type: string, default: {default} }}"),
            &format!("  {key}: {{ type: string, default: {value} }}"),
        );
    }
    m
}

/// A gateway serving on a loopback port.
struct Gw {
    url: String,
    gateway: Gateway,
    host: Host,
    dir: PluginDir,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

impl Gw {
    async fn start(plugins: &[(&str, &str, String)], yaml: &str) -> Gw {
        let dir = PluginDir::new();
        for (name, wasm, manifest) in plugins {
            dir.add(name, wasm, manifest);
        }
        let host = crate::host();
        let report = host.load_dir(dir.path()).await.unwrap();
        assert!(report.failed.is_empty(), "load failures: {:?}", report.failed);
        let config = GatewayConfig::from_str(yaml, Path::new("gateway-test.yaml")).unwrap();
        let gateway = GatewayBuilder::new(host.clone(), config).build().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let g = gateway.clone();
        let server = tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
        Gw { url, gateway, host, dir, server, client: client() }
    }

    async fn echo_only(extra: &[(&str, &str, String)]) -> Gw {
        let mut plugins = vec![("echo", plugbox_artifacts::ECHO_PROVIDER, echo_manifest())];
        plugins.extend(extra.iter().cloned());
        Gw::start(&plugins, CONFIG).await
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url)).json(body)
    }

    async fn chat(&self, body: &Value) -> (u16, Value) {
        let r = self.post("/v1/chat/completions", body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// A streamed chat: the SSE events' data, in order.
    async fn stream(&self, body: &Value) -> Vec<String> {
        let r = self.post("/v1/chat/completions", body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        events(&r.text().await.unwrap())
    }

    async fn kv(&self, key: &str) -> i64 {
        let v = self.host.kv().get("tool-provider", key).await.unwrap();
        v.map(|b| String::from_utf8(b).unwrap().parse().unwrap()).unwrap_or(0)
    }

    async fn stop(self) {
        self.gateway.shutdown_handle().shutdown();
        tokio::time::timeout(WAIT, self.server).await.expect("the server stops").unwrap().unwrap();
    }
}

/// The `data:` of each SSE event.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE data event: {e:?}")).to_string())
        .collect()
}

/// The JSON chunks of a stream (`[DONE]` left out).
fn chunks(events: &[String]) -> Vec<Value> {
    events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect()
}

/// The text of choice 0 across a stream.
fn stream_text(events: &[String]) -> String {
    chunks(events).iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string)).collect()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

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
async fn gateway_client_disconnect_cancels_the_provider_and_the_end_hooks_run() {
    let gw = Gw::start(&[("tool-provider", plugbox_artifacts::TOOL_PROVIDER, tool_manifest())], CONFIG).await;
    let mut r = gw
        .post("/v1/chat/completions", &json!({"model": "slow", "messages": user("x"), "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut seen = 0;
    while seen < 3 {
        let bytes = r.chunk().await.unwrap().expect("chunks");
        seen += String::from_utf8_lossy(&bytes).matches("tick").count();
    }
    drop(r); // the client goes away mid-stream
    let deadline = std::time::Instant::now() + WAIT;
    while gw.kv("ends").await == 0 || gw.gateway.in_flight() > 0 {
        assert!(std::time::Instant::now() < deadline, "the end hooks never ran after the disconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.kv("ends").await, 1);
    let produced = gw.kv("produced").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.kv("produced").await, produced, "the provider stopped producing");
    assert!(produced < 500, "cancelled long before its end: {produced} chunks made");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_plugin_reloads_under_load_lose_nothing() {
    let manifest =
        |v: &str| scripted_as("tagger", 10, &[("pre", "modify")]).replace("version: 0.1.0", &format!("version: {v}"));
    let gw = Gw::echo_only(&[("tagger", plugbox_artifacts::SCRIPTED, manifest("0.1.0"))]).await;
    let gw = std::sync::Arc::new(gw);
    let mut clients = Vec::new();
    for c in 0..4 {
        let gw = gw.clone();
        clients.push(tokio::spawn(async move {
            for i in 0..15 {
                let text = format!("client {c} request {i}");
                if i % 2 == 0 {
                    let (status, body) = gw.chat(&json!({"model": "m", "messages": user(&text)})).await;
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body["choices"][0]["message"]["content"], format!("{text} [tagger]"));
                } else {
                    let ev = gw.stream(&json!({"model": "m", "messages": user(&text), "stream": true})).await;
                    assert_eq!(ev.last().unwrap(), "[DONE]", "{ev:?}");
                    assert_eq!(stream_text(&ev), format!("{text} [tagger]"));
                }
            }
        }));
    }
    for v in 1..=5 {
        let dir = gw.dir.path().join("tagger");
        std::fs::write(dir.join("plugin.yaml"), manifest(&format!("0.1.{v}"))).unwrap();
        gw.host.reload_dir(gw.dir.path()).await.unwrap();
        assert_eq!(gw.host.plugin("tagger").unwrap().manifest().version.to_string(), format!("0.1.{v}"));
    }
    for c in clients {
        c.await.unwrap();
    }
    std::sync::Arc::into_inner(gw).unwrap().stop().await;
}

/// A `plugbox serve` child: its stdout lines on a channel.
struct ServeProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    errors: std::sync::mpsc::Receiver<String>,
}

impl ServeProcess {
    fn start(args: &[&str]) -> ServeProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plugbox"))
            .arg("serve")
            .args(args)
            .env("PLUGBOX_CACHE_DIR", crate::cache_dir())
            .env_remove("PLUGBOX_POLICY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run plugbox serve");
        fn follow(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
                    eprintln!("plugbox serve: {line}");
                    let _ = tx.send(line);
                }
            });
            rx
        }
        let lines = follow(child.stdout.take().unwrap());
        let errors = follow(child.stderr.take().unwrap());
        ServeProcess { child, lines, errors }
    }

    /// The base URL from `plugbox serve: listening on http://ADDR`.
    fn url(&self) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).expect("plugbox serve prints its listening line");
            if let Some(url) = line.strip_prefix("plugbox serve: listening on ") {
                return url.to_string();
            }
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plugbox_serve_answers_with_the_embedded_echo_and_drains_on_sigterm() {
    let dir = PluginDir::new();
    dir.add("tool-provider", plugbox_artifacts::TOOL_PROVIDER, &tool_manifest());
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "providers:\n  echo: { type: plugin, provider-type: echo }\n  tools: { type: plugin, provider-type: tools }\n\
         routes:\n  - { model: slow-40, targets: [tools] }\n  - { model: '*', targets: [echo] }\n",
    )
    .unwrap();
    let serve = ServeProcess::start(&[
        "--plugins",
        dir.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-watch",
    ]);
    let url = serve.url();
    let client = client();
    // The embedded echo provider answers (the directory has none).
    let body: Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "any", "messages": user("no key needed")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "no key needed");

    // A stream in flight when SIGTERM comes finishes; then the process exits 0.
    let mut r = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "slow-40", "messages": user("x"), "stream": true}))
        .send()
        .await
        .unwrap();
    let mut text = String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()).into_owned();
    let status = std::process::Command::new("kill").args(["-TERM", &serve.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    while let Some(bytes) = r.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    let ev = events(&text);
    assert_eq!(ev.last().unwrap(), "[DONE]");
    assert_eq!(stream_text(&ev).matches("tick").count(), 40, "the whole stream arrived");
    let mut serve = serve;
    let deadline = std::time::Instant::now() + WAIT;
    let exit = loop {
        if let Some(s) = serve.child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "plugbox serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    let printed: Vec<String> = serve.lines.try_iter().collect();
    assert!(printed.iter().any(|l| l.contains("drained")), "{printed:#?}");
}

#[test]
fn plugbox_serve_refuses_a_public_address_without_keys() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugbox"))
        .args(["serve", "--listen", "0.0.0.0:0", "--no-watch"])
        .env("PLUGBOX_CACHE_DIR", crate::cache_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0:0") && err.contains("--allow-unauthenticated"), "{err}");
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

#[tokio::test(flavor = "multi_thread")]
async fn plugbox_serve_hot_reloads_its_config_and_keeps_the_old_one_on_a_bad_edit() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("gateway.yaml");
    let good = |model: &str| {
        format!(
            "providers:\n  echo: {{ type: plugin, provider-type: echo }}\nroutes:\n  - {{ model: {model}, targets: [echo] }}\n"
        )
    };
    std::fs::write(&config, good("first")).unwrap();
    let serve = ServeProcess::start(&["--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let url = serve.url();
    let client = client();
    let status_of = |model: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(format!("{url}/v1/chat/completions"))
                .json(&json!({"model": model, "messages": user("hi")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status_of("first").await, 200);
    // A bad edit: refused with its place, the old config keeps serving.
    std::fs::write(&config, "routes:\n  - { model: x, targets: [nowhere] }\n").unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let refused = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = serve.errors.recv_timeout(left).expect("the bad edit is reported on stderr");
        if line.contains("config not reloaded") {
            break line;
        }
    };
    assert!(refused.contains("gateway.yaml:2:"), "{refused}");
    assert_eq!(status_of("first").await, 200);
    // A good edit swaps in.
    std::fs::write(&config, good("second")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while status_of("second").await != 200 {
        assert!(std::time::Instant::now() < deadline, "the new config never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status_of("first").await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn plugbox_serve_examples_run_the_bundled_plugins_with_config_from_the_file() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("gateway.yaml");
    // The file's `plugins` section wins over the examples' defaults.
    std::fs::write(
        &config,
        "providers:\n  echo: { type: plugin, provider-type: echo }\nroutes:\n  - { model: '*', targets: [echo] }\n\
         plugins:\n  system-prompt: { prompt: Answer in French. }\n  rate-limit: { rps: 0.001, burst: 1 }\n",
    )
    .unwrap();
    let serve = ServeProcess::start(&["--examples", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    // What it printed before it listened: the plugins' statuses.
    let mut printed = Vec::new();
    let url = loop {
        let line = serve.lines.recv_timeout(WAIT).expect("plugbox serve prints its listening line");
        if let Some(url) = line.strip_prefix("plugbox serve: listening on ") {
            break url.to_string();
        }
        printed.push(line);
    };
    let client = client();
    let body: Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "any", "messages": user("Mail me at bob@example.com")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // pii-redact masked the address before the echo provider saw it.
    assert_eq!(body["choices"][0]["message"]["content"], "Mail me at [EMAIL]", "{body}");
    assert!(
        printed.iter().any(|l| l.starts_with("system-prompt ") && l.contains("active")),
        "system-prompt loaded with its prompt from the file: {printed:#?}"
    );
    assert!(!printed.iter().any(|l| l.starts_with("FAILED")), "{printed:#?}");
    // rate-limit got the file's burst of 1, not the examples' 10.
    let r = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "any", "messages": user("a second request")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "{:?}", r.text().await);
}

/// The gateway with a short request deadline and room for one request.
async fn one_at_a_time() -> Gw {
    let yaml = format!("{CONFIG}limits: {{ request-timeout: 3s, max-concurrent: 1 }}\n");
    Gw::start(&[("tool-provider", plugbox_artifacts::TOOL_PROVIDER, tool_manifest())], &yaml).await
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

#[tokio::test(flavor = "multi_thread")]
async fn gateway_client_that_leaves_a_json_request_does_not_skip_the_post_hooks() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = format!(
        "providers:\n  silent: {{ type: openai-compatible, base-url: 'http://{}/v1', retries: {{ max: 0 }} }}\n\
         routes:\n  - {{ model: m, targets: [silent] }}\nlimits: {{ request-timeout: 2s }}\n",
        silent.local_addr().unwrap()
    );
    let metrics = plugbox_artifacts::example("metrics").unwrap();
    let manifest = std::fs::read_to_string(metrics.manifest).unwrap();
    let gw = Gw::start(&[("metrics", metrics.wasm, manifest)], &yaml).await;
    let counter = |key: &'static str| {
        let kv = gw.host.kv();
        async move {
            let v = kv.get("metrics", key).await.unwrap();
            v.map(|b| String::from_utf8(b).unwrap().parse::<i64>().unwrap()).unwrap_or(0)
        }
    };
    // The client gives up once the request is under way.
    let request = gw.post("/v1/chat/completions", &json!({"model": "m", "messages": user("hi")})).send();
    let deadline = std::time::Instant::now() + WAIT;
    tokio::select! {
        r = request => panic!("the silent upstream answered: {r:?}"),
        _ = async {
            while counter("requests").await == 0 {
                assert!(std::time::Instant::now() < deadline, "the request never reached the pre hooks");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } => {}
    }
    // Its post hooks still run (at the request deadline, with the timeout).
    while counter("responses").await == 0 || gw.gateway.in_flight() > 0 {
        assert!(std::time::Instant::now() < deadline, "the post hooks never ran after the client left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((counter("requests").await, counter("responses").await, counter("errors").await), (1, 1, 1));
    gw.stop().await;
    drop(silent);
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
