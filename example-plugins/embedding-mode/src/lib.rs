//! Interface plugin for **embedding** models (seed 004's interface plugins).
//!
//! * `mode`: `embedding`; endpoint `v1/embeddings`.
//! * `validate-request`: accepts `v1/embeddings` and refuses anything else
//!   (a chat request to an embedding model is the usual mistake) with a reason.
//! * `health-check`: a real one: `POST {base-url}/v1/embeddings` with a short
//!   probe text; healthy when the server answers 2xx with a non-empty
//!   `data[0].embedding`. Outgoing HTTP goes only to hosts granted in
//!   `permissions.network`.
//!
//! Config: `check_timeout_ms` (default 2000), `probe_text` (default
//! `plugbox health check`).

use std::time::Duration;

use plugbox_sdk::serde_json::{self, Value, json};
use plugbox_sdk::{Config, Health, Plugin};

plugbox_sdk::embed_manifest!("../../../manifests/embedding-mode.yaml");

const ENDPOINT: &str = "v1/embeddings";

struct EmbeddingMode {
    check_timeout: Duration,
    probe_text: String,
}

fn normalize(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or_default().trim_matches('/')
}

fn verdict(model: &str, result: Result<usize, String>, elapsed: Duration, timeout: Duration) -> Health {
    match result {
        Ok(dimension) => Health::healthy(format!("model `{model}` embeds (dimension {dimension})")),
        Err(why) if elapsed >= timeout => {
            Health::unhealthy(format!("model `{model}` did not become healthy within {}s: {why}", timeout.as_secs()))
        }
        Err(why) => Health::unhealthy(format!(
            "model `{model}` not ready after {:.1}s of {}s: {why}",
            elapsed.as_secs_f64(),
            timeout.as_secs()
        )),
    }
}

impl EmbeddingMode {
    /// The embedding's dimension, or why there is none.
    fn embed(&self, model: &str, base_url: &str) -> Result<usize, String> {
        let body = json!({ "model": model, "input": self.probe_text }).to_string();
        let reply = mode_http::request(
            "POST",
            base_url,
            "/v1/embeddings",
            Some(("application/json", body.as_bytes())),
            self.check_timeout,
        )?;
        if !(200..300).contains(&reply.status) {
            return Err(format!("{base_url}/v1/embeddings answered HTTP {}", reply.status));
        }
        let v: Value = serde_json::from_slice(&reply.body).map_err(|e| format!("the answer is not JSON: {e}"))?;
        match v.pointer("/data/0/embedding").and_then(Value::as_array) {
            Some(e) if !e.is_empty() => Ok(e.len()),
            _ => Err("the answer has no `data[0].embedding`".into()),
        }
    }
}

impl Plugin for EmbeddingMode {
    fn init(config: Config) -> Result<Self, String> {
        let ms = config.get_i64("check_timeout_ms")?.unwrap_or(2000);
        if ms <= 0 {
            return Err(format!("config `check_timeout_ms` must be positive, got `{ms}`"));
        }
        let probe_text = config.get_str("probe_text")?.unwrap_or("plugbox health check").to_string();
        Ok(EmbeddingMode { check_timeout: Duration::from_millis(ms as u64), probe_text })
    }

    fn mode(&self) -> String {
        "embedding".into()
    }

    fn supported_endpoints(&self) -> Vec<String> {
        vec![ENDPOINT.into()]
    }

    fn validate_request(&mut self, path: &str, model_alias: &str) -> Result<(), String> {
        let path = normalize(path);
        if path == ENDPOINT {
            return Ok(());
        }
        Err(format!("model `{model_alias}` is an embedding model: it serves only {ENDPOINT}, not `{path}`"))
    }

    fn health_check(&mut self, model_alias: &str, base_url: &str, elapsed: Duration, timeout: Duration) -> Health {
        verdict(model_alias, self.embed(model_alias, base_url), elapsed, timeout)
    }
}

plugbox_sdk::export!(EmbeddingMode);
