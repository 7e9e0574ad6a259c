//! OpenAI-compatible upstreams over HTTP (reqwest): connect, first-byte and
//! total timeouts, retries with backoff and jitter on 429/5xx/connect errors
//! honouring `Retry-After`, pooled connections, SSE streams relayed chunk by
//! chunk as they arrive.
//! IMPLEMENTATION OWNED BY THE CONFIG/UPSTREAM WORK: the signatures below are
//! the contract the server uses.

use std::time::Duration;

use futures_util::stream::BoxStream;
use plugbox_host::{ChatChunk, ChatRequest, ChatResponse, RequestError};

/// One upstream's settings (the `openai-compatible` provider in the config).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// Base URL, up to and including `/v1` (`https://api.openai.com/v1`).
    pub base_url: String,
    /// Bearer token sent upstream (after `${ENV}` expansion).
    pub api_key: Option<String>,
    /// Connecting (TCP + TLS).
    pub connect_timeout: Duration,
    /// From sending the request to the response headers.
    pub first_byte_timeout: Duration,
    /// The whole call, a stream's last byte included.
    pub total_timeout: Duration,
    /// Retries after the first try (429, 5xx, connect errors).
    pub max_retries: u32,
    /// First backoff; doubles each retry, with jitter, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest wait between tries (a longer `Retry-After` ends the retries).
    pub max_backoff: Duration,
}

/// Why an upstream call failed, after its retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct UpstreamError {
    /// The upstream's HTTP status, if it answered.
    pub status: Option<u16>,
    /// The upstream's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// Whether the next provider of the route may be tried (connect errors,
    /// timeouts, 429, 5xx; not a 400 about the request itself).
    pub allow_fallback: bool,
    /// The message for logs and the client (the upstream's error message when
    /// it sent an OpenAI error body).
    pub message: String,
    /// The upstream's OpenAI error body, passed on as is for 4xx.
    pub body: Option<serde_json::Value>,
}

/// A stream of chunks from an upstream, as they arrive.
pub type UpstreamStream = BoxStream<'static, Result<ChatChunk, RequestError>>;

/// A client for one upstream (cheap to clone; connections pooled).
#[derive(Debug, Clone)]
pub struct Upstream {
    config: UpstreamConfig,
}

impl Upstream {
    /// A client for `config`.
    pub fn new(config: UpstreamConfig) -> Result<Upstream, UpstreamError> {
        Ok(Upstream { config })
    }

    /// The settings it was made with.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// `POST {base}/chat/completions` without streaming.
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, UpstreamError> {
        let _ = request;
        todo!("upstream work")
    }

    /// `POST {base}/chat/completions` with `stream: true`: returns once the
    /// response headers arrived (errors before that are retried and may fall
    /// back); then the chunks, parsed from SSE as they arrive, until
    /// `data: [DONE]`.
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<UpstreamStream, UpstreamError> {
        let _ = request;
        todo!("upstream work")
    }

    /// `POST {base}/embeddings` with the client's body as is (model renamed).
    pub async fn embeddings(&self, body: serde_json::Value) -> Result<serde_json::Value, UpstreamError> {
        let _ = body;
        todo!("upstream work")
    }
}
