//! Interface plugin for **chat** models (seed 004's interface plugins).
//!
//! * `mode`: `chat`; endpoints `v1/chat/completions` and `v1/completions`
//!   (a chat model also completes plain text).
//! * `validate-request`: accepts those two paths and refuses any other with a
//!   reason that names the model, its mode and what it does serve.
//! * `health-check`: `GET {base-url}/v1/models` through `wasi:http`; a 2xx
//!   answer is healthy. The host allows the request only to hosts granted in
//!   `permissions.network` (loopback in the shipped manifest). While a server
//!   is starting, `elapsed` and `timeout` say how long it has had and may
//!   take: past the timeout the verdict is final.
//!
//! Config: `check_timeout_ms` (default 2000): how long one check may wait.

use std::time::Duration;

use plugbox_sdk::{Config, Health, Plugin, log};

plugbox_sdk::embed_manifest!("../../../manifests/chat-mode.yaml");

const ENDPOINTS: [&str; 2] = ["v1/chat/completions", "v1/completions"];

struct ChatMode {
    check_timeout: Duration,
}

/// `/v1/chat/completions/?x=1` -> `v1/chat/completions`.
fn normalize(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or_default().trim_matches('/')
}

/// The verdict when the server is not (yet) healthy: final past the timeout.
fn not_ready(model: &str, why: String, elapsed: Duration, timeout: Duration) -> Health {
    if elapsed >= timeout {
        Health::unhealthy(format!("model `{model}` did not become healthy within {}s: {why}", timeout.as_secs()))
    } else {
        Health::unhealthy(format!(
            "model `{model}` not ready after {:.1}s of {}s: {why}",
            elapsed.as_secs_f64(),
            timeout.as_secs()
        ))
    }
}

impl Plugin for ChatMode {
    fn init(config: Config) -> Result<Self, String> {
        let ms = config.get_i64("check_timeout_ms")?.unwrap_or(2000);
        if ms <= 0 {
            return Err(format!("config `check_timeout_ms` must be positive, got `{ms}`"));
        }
        Ok(ChatMode { check_timeout: Duration::from_millis(ms as u64) })
    }

    fn mode(&self) -> String {
        "chat".into()
    }

    fn supported_endpoints(&self) -> Vec<String> {
        ENDPOINTS.iter().map(|e| e.to_string()).collect()
    }

    fn validate_request(&mut self, path: &str, model_alias: &str) -> Result<(), String> {
        let path = normalize(path);
        if ENDPOINTS.contains(&path) {
            return Ok(());
        }
        Err(format!("model `{model_alias}` is a chat model: it serves {}, not `{path}`", ENDPOINTS.join(" and ")))
    }

    fn health_check(&mut self, model_alias: &str, base_url: &str, elapsed: Duration, timeout: Duration) -> Health {
        let wait = self.check_timeout;
        match mode_http::request("GET", base_url, "/v1/models", None, wait) {
            Ok(reply) if (200..300).contains(&reply.status) => {
                let listed = plugbox_sdk::serde_json::from_slice::<plugbox_sdk::serde_json::Value>(&reply.body)
                    .ok()
                    .and_then(|v| v.get("data").and_then(|d| d.as_array()).map(|d| d.len()));
                let detail = listed.map(|n| format!(", lists {n} model(s)")).unwrap_or_default();
                Health::healthy(format!("model `{model_alias}` is up at {base_url} (HTTP {}{detail})", reply.status))
            }
            Ok(reply) => {
                let why = format!("{base_url}/v1/models answered HTTP {}", reply.status);
                not_ready(model_alias, why, elapsed, timeout)
            }
            Err(e) => {
                log::debug!("health check of `{model_alias}` failed: {e}");
                not_ready(model_alias, e, elapsed, timeout)
            }
        }
    }
}

plugbox_sdk::export!(ChatMode);
