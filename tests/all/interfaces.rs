//! Interface plugins: routing and validating requests by mode, health
//! checks against a loopback model server, budgets and network grants.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plugbox_host::models::{ModelSet, RouteError};
use plugbox_host::{Host, ModelConfig};
use serde_json::json;

use crate::bounds::{Bounds, MIB};
use crate::devices::{example_manifest, example_wasm, load};
use crate::*;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Behaviour {
    Healthy,
    Status(u16),
    /// Accepts the connection and never answers.
    Hang,
}

/// A loopback stand-in for a model server (OpenAI-style `/v1/models` and
/// `/v1/embeddings`). Records `METHOD PATH BODY` of each request.
pub(crate) struct ModelServer {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

impl ModelServer {
    pub(crate) fn start(behaviour: Behaviour) -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, behaviour, &seen));
            }
        });
        ModelServer { port, hits }
    }
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub(crate) fn hits(&self) -> Vec<String> {
        self.hits.lock().clone()
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, seen: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    seen.lock().push(format!("{method} {path} {body}").trim_end().to_string());
    let (status, payload) = match behaviour {
        Behaviour::Hang => {
            std::thread::sleep(Duration::from_secs(10));
            return;
        }
        Behaviour::Status(code) => (code, String::new()),
        Behaviour::Healthy => match (method, path) {
            ("GET", "/v1/models") => (200, json!({"object": "list", "data": [{"id": "qwen"}]}).to_string()),
            ("POST", "/v1/embeddings") => (200, json!({"data": [{"embedding": [0.1, 0.2, 0.3]}]}).to_string()),
            _ => (404, String::new()),
        },
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

fn models(chat_url: &str, embed_url: &str) -> ModelSet {
    let src = format!(
        "models:\n  qwen2.5-7b:\n    aliases: [qwen]\n    mode: chat\n    base-url: {chat_url}\n    required-devices: [gpu:0]\n    memory-mb: {{ gpu:0: 8192 }}\n\
         \x20 bge-m3:\n    aliases: [bge]\n    mode: embedding\n    base-url: {embed_url}\n\
         \x20 whisper:\n    mode: transcription\n"
    );
    ModelSet::from_str(&src, Path::new("models.yaml")).unwrap()
}

/// chat-mode and embedding-mode, with `check_timeout_ms` 300.
async fn interface_host(chat_manifest: Option<String>) -> (Host, PluginDir) {
    let fast = json!({"check_timeout_ms": 300});
    let b = builder()
        .plugin_config("chat-mode", fast.as_object().unwrap().clone())
        .plugin_config("embedding-mode", fast.as_object().unwrap().clone());
    let chat = chat_manifest.unwrap_or_else(|| example_manifest("chat-mode"));
    load(
        b,
        &[
            ("chat-mode", example_wasm("chat-mode"), chat),
            ("embedding-mode", example_wasm("embedding-mode"), example_manifest("embedding-mode")),
        ],
    )
    .await
}

#[tokio::test]
async fn interface_plugins_route_and_validate_requests_by_mode() {
    let (host, _d) = interface_host(None).await;
    let mut interfaces = host.interfaces().await;
    interfaces.sort_by(|a, b| a.mode.cmp(&b.mode));
    assert_eq!(interfaces[0].mode, "chat");
    assert_eq!(interfaces[0].endpoints, ["v1/chat/completions", "v1/completions"]);
    assert_eq!((interfaces[1].mode.as_str(), interfaces[1].plugin.as_str()), ("embedding", "embedding-mode"));

    let set = models("http://127.0.0.1:1", "http://127.0.0.1:1");
    let ok = host.validate_request(&set, "/v1/chat/completions", "qwen").await.unwrap();
    assert!(ok.accepted && ok.reason.is_none());
    assert_eq!((ok.model.as_str(), ok.requested.as_str(), ok.plugin.as_str()), ("qwen2.5-7b", "qwen", "chat-mode"));
    assert!(host.validate_request(&set, "/v1/completions?x=1", "qwen2.5-7b").await.unwrap().accepted);

    let refused = host.validate_request(&set, "/v1/embeddings", "qwen").await.unwrap();
    assert!(!refused.accepted);
    assert_eq!(
        refused.reason.as_deref(),
        Some("model `qwen` is a chat model: it serves v1/chat/completions and v1/completions, not `v1/embeddings`")
    );
    let refused = host.validate_request(&set, "/v1/chat/completions", "bge").await.unwrap();
    assert_eq!(refused.plugin, "embedding-mode");
    assert_eq!(
        refused.reason.as_deref(),
        Some("model `bge` is an embedding model: it serves only v1/embeddings, not `v1/chat/completions`")
    );
    assert!(host.validate_request(&set, "v1/embeddings", "bge-m3").await.unwrap().accepted);

    assert_eq!(
        host.validate_request(&set, "/v1/chat/completions", "gpt-9").await.unwrap_err(),
        RouteError::UnknownModel("gpt-9".into())
    );
    let e = host.validate_request(&set, "/v1/audio/transcriptions", "whisper").await.unwrap_err();
    assert_eq!(e.to_string(), "model `whisper` has mode `transcription`, but no loaded interface plugin implements it");
    assert_eq!(
        host.check_model_health(&set, "whisper", Duration::ZERO, Duration::from_secs(1)).await.unwrap_err(),
        RouteError::NoBaseUrl("whisper".into())
    );
}

#[tokio::test]
async fn health_checks_reach_a_loopback_model_server() {
    let (host, _d) = interface_host(None).await;
    let up = ModelServer::start(Behaviour::Healthy);
    let set = models(&up.url(), &up.url());
    let (elapsed, timeout) = (Duration::from_secs(1), Duration::from_secs(300));

    let h = host.check_model_health(&set, "qwen", elapsed, timeout).await.unwrap();
    assert!(h.healthy, "{}", h.message);
    assert_eq!(h.message, format!("model `qwen2.5-7b` is up at {} (HTTP 200, lists 1 model(s))", up.url()));
    let h = host.check_model_health(&set, "bge", elapsed, timeout).await.unwrap();
    assert!(h.healthy, "{}", h.message);
    assert_eq!(h.message, "model `bge-m3` embeds (dimension 3)");
    assert_eq!(
        up.hits(),
        ["GET /v1/models", r#"POST /v1/embeddings {"input":"plugbox health check","model":"bge-m3"}"#]
    );

    // Unhealthy status.
    let down = ModelServer::start(Behaviour::Status(503));
    let set = models(&down.url(), &down.url());
    let h = host.check_model_health(&set, "qwen", elapsed, timeout).await.unwrap();
    assert!(!h.healthy);
    assert_eq!(
        h.message,
        format!("model `qwen2.5-7b` not ready after 1.0s of 300s: {}/v1/models answered HTTP 503", down.url())
    );
    let h = host.check_model_health(&set, "bge", elapsed, timeout).await.unwrap();
    assert!(!h.healthy && h.message.ends_with("/v1/embeddings answered HTTP 503"), "{}", h.message);
    // Past the start-up timeout the verdict is final.
    let h = host.check_model_health(&set, "qwen", Duration::from_secs(301), timeout).await.unwrap();
    assert!(h.message.starts_with("model `qwen2.5-7b` did not become healthy within 300s: "), "{}", h.message);

    // A server that accepts and never answers.
    let hung = ModelServer::start(Behaviour::Hang);
    let set = models(&hung.url(), &hung.url());
    for model in ["qwen", "bge"] {
        let h = host.check_model_health(&set, model, elapsed, timeout).await.unwrap();
        assert!(!h.healthy);
        assert!(h.message.contains("did not answer in time"), "{model}: {}", h.message);
    }

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let set = models(&url, &url);
    let h = host.check_model_health(&set, "qwen", elapsed, timeout).await.unwrap();
    assert!(!h.healthy);
    assert!(h.message.ends_with("refused"), "{}", h.message);
}

/// Manifest of the `device-scripted` fixture as an interface plugin.
fn interface_scripted(name: &str, on_error: &str, config: &[(&str, &str)]) -> String {
    let mut m = format!(
        "name: {name}\nversion: 0.1.0\nhooks: [endpoint]\npriority: 5\non-error: {on_error}\n\
         limits: {{ timeout: 1s, memory: 32MiB, max-output: 1KiB }}\nconfig:\n  tag: {{ type: string, default: {name} }}\n"
    );
    for (key, value) in config {
        let ty = if value.parse::<i64>().is_ok() { "integer" } else { "string" };
        m.push_str(&format!("  {key}: {{ type: {ty}, default: {value} }}\n"));
    }
    m
}

#[tokio::test]
async fn interface_plugins_answering_past_their_budget_are_refused() {
    let big = ("big_bytes", "262144");
    let plugins = [
        ("chat-mode", example_wasm("chat-mode"), example_manifest("chat-mode")),
        (
            "open",
            plugbox_artifacts::DEVICE_SCRIPTED,
            interface_scripted("open", "fail-open", &[("mode", "open"), ("validate", "huge"), big]),
        ),
        (
            "closed",
            plugbox_artifacts::DEVICE_SCRIPTED,
            interface_scripted("closed", "fail-closed", &[("mode", "closed"), ("validate", "huge"), big]),
        ),
        (
            "wordy",
            plugbox_artifacts::DEVICE_SCRIPTED,
            interface_scripted("wordy", "fail-open", &[("mode", "wordy"), ("health", "huge"), big]),
        ),
        ("long", plugbox_artifacts::DEVICE_SCRIPTED, interface_scripted("long", "fail-open", &[("mode", "long"), big])),
        (
            "sprawl",
            plugbox_artifacts::DEVICE_SCRIPTED,
            interface_scripted("sprawl", "fail-open", &[("mode", "sprawl"), ("endpoints", "100000")]),
        ),
    ];
    let (host, _d) = load(builder(), &plugins).await;
    let src = "models:\n  qwen:\n    mode: chat\n  o:\n    mode: open\n  c:\n    mode: closed\n\
               \x20 w:\n    mode: wordy\n    base-url: http://127.0.0.1:1\n  l:\n    mode: long\n  s:\n    mode: sprawl\n";
    let set = ModelSet::from_str(src, Path::new("models.yaml")).unwrap();
    let before = Bounds::now();
    for _ in 0..3 {
        // fail-open: let through unvalidated, and said so.
        let v = host.validate_request(&set, "/v1/e0", "o").await.unwrap();
        assert!(v.accepted);
        let reason = v.reason.unwrap();
        assert!(reason.starts_with("not validated: plugin `open` failed in `validate-request`: invalid output: output exceeds the plugin's max-output of 1024 bytes at `$.error`"), "{reason}");
        assert!(reason.len() < 1024, "{}", reason.len());
        // fail-closed: an error naming the plugin.
        match host.validate_request(&set, "/v1/e0", "c").await.unwrap_err() {
            RouteError::Plugin(f) => {
                assert_eq!((f.plugin.as_str(), f.hook), ("closed", "validate-request"));
                assert!(f.to_string().contains("at `$.error`"), "{f}");
            }
            e => panic!("{e}"),
        }
        // A health message past the budget is an error, never healthy.
        let e = host.check_model_health(&set, "w", Duration::ZERO, Duration::from_secs(1)).await.unwrap_err();
        assert!(e.to_string().contains("at `$.message`"), "{e}");
        // Declarations past the budget: the plugin is left out of routing.
        for (model, mode) in [("l", "long"), ("s", "sprawl")] {
            assert!(
                matches!(host.validate_request(&set, "/v1/e0", model).await, Err(RouteError::NoInterface { .. })),
                "{mode}"
            );
        }
        // The others keep serving.
        assert!(host.validate_request(&set, "/v1/chat/completions", "qwen").await.unwrap().accepted);
    }
    let mut modes: Vec<String> = host.interfaces().await.into_iter().map(|i| i.mode).collect();
    modes.sort();
    assert_eq!(modes, ["chat", "closed", "open", "wordy"]);
    for (name, calls) in [("open", 3), ("closed", 3), ("wordy", 3)] {
        let stats = host.plugin(name).unwrap().stats();
        // One call for mode and endpoints (cached), then one per request: each refused answer counted once.
        assert_eq!((stats.calls, stats.errors), (calls + 1, calls), "{name}: {stats:?}");
    }
    assert_eq!(host.plugin("sprawl").unwrap().stats().errors, host.plugin("sprawl").unwrap().stats().calls);
    before.assert_within(16, 64 * MIB);
}

#[tokio::test]
async fn health_checks_to_hosts_not_granted_are_refused() {
    let granted = ModelServer::start(Behaviour::Healthy);
    let other = ModelServer::start(Behaviour::Healthy);
    // chat-mode may reach exactly one host:port.
    let manifest = example_manifest("chat-mode")
        .replace("network: [127.0.0.1, localhost]", &format!("network: [\"127.0.0.1:{}\"]", granted.port));
    let (host, _d) = interface_host(Some(manifest)).await;
    let chat = ModelConfig::new("qwen", "chat");
    let (elapsed, timeout) = (Duration::ZERO, Duration::from_secs(60));

    assert!(host.check_health_at(&chat, &granted.url(), elapsed, timeout).await.unwrap().healthy);
    for url in [other.url(), format!("http://localhost:{}", granted.port), "http://198.51.100.7:80".into()] {
        let h = host.check_health_at(&chat, &url, elapsed, timeout).await.unwrap();
        assert!(!h.healthy, "{url}");
        assert!(h.message.contains("is not granted to this plugin"), "{url}: {}", h.message);
    }
    assert!(other.hits().is_empty(), "the refused request never left the host");
    assert_eq!(granted.hits().len(), 1);
}
