//! The gateway over real sockets: a `Gateway` on 127.0.0.1:0 (and the real
//! `plugbox serve`), real compiled plugins, reqwest as the client. Shared
//! helpers here; the tests by concern in the submodules.

mod errors;
mod lifecycle;
mod pipeline;
mod serve;
mod tools;

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

/// The gateway with a short request deadline and room for one request.
async fn one_at_a_time() -> Gw {
    let yaml = format!("{CONFIG}limits: {{ request-timeout: 3s, max-concurrent: 1 }}\n");
    Gw::start(&[("tool-provider", plugbox_artifacts::TOOL_PROVIDER, tool_manifest())], &yaml).await
}
