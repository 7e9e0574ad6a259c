//! OpenAI-compatible upstreams over HTTP (reqwest, rustls with the ring
//! provider): connect, first-byte and total timeouts, retries with
//! exponential backoff and jitter on 429/5xx/connect errors honouring
//! `Retry-After`, pooled connections, SSE streams relayed chunk by chunk as
//! they arrive.
//!
//! Requests are sent as given: the caller sets `model` to the target's model
//! ([`crate::routes::Attempt::model`]); every other field, those the OpenAI
//! types do not model included, reaches the upstream unchanged.
//! [`Upstream::chat`] sends `stream` as the request has it unless it is
//! `true` (then it is removed); [`Upstream::chat_stream`] sends `stream: true`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use plugbox_host::{ChatChunk, ChatRequest, ChatResponse, ErrorKind, LlmError, Nullable, RequestError};

/// One upstream's settings (the `openai-compatible` provider in the config).
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// Base URL, up to and including `/v1` (`https://api.openai.com/v1`).
    pub base_url: String,
    /// Bearer token sent upstream (after `${ENV}` expansion).
    pub api_key: Option<String>,
    /// Extra request headers (after `${ENV}` expansion), such as
    /// `OpenAI-Organization`.
    pub headers: BTreeMap<String, String>,
    /// Connecting (TCP + TLS). Default 10 s.
    pub connect_timeout: Duration,
    /// From sending the request to the response headers. Default 5 min (a
    /// call without streaming sends its headers when the answer is done).
    pub first_byte_timeout: Duration,
    /// The whole call, retries and a stream's last byte included. Default 10 min.
    pub total_timeout: Duration,
    /// Retries after the first try (429, 5xx, connect errors). Default 2.
    pub max_retries: u32,
    /// First backoff; doubles each retry, with jitter, up to `max_backoff`.
    /// Default 250 ms.
    pub initial_backoff: Duration,
    /// Longest wait between tries (a longer `Retry-After` ends the retries).
    /// Default 10 s.
    pub max_backoff: Duration,
}

impl UpstreamConfig {
    /// Settings for `base_url` with the defaults above and no API key.
    pub fn new(base_url: impl Into<String>) -> UpstreamConfig {
        UpstreamConfig {
            base_url: base_url.into(),
            api_key: None,
            headers: BTreeMap::new(),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            total_timeout: Duration::from_secs(600),
            max_retries: 2,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self.headers.keys().map(|k| (k.as_str(), "<redacted>")).collect();
        f.debug_struct("UpstreamConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("headers", &headers)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// Why an upstream call failed, after its retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct UpstreamError {
    /// The upstream's HTTP status, if it answered.
    pub status: Option<u16>,
    /// The upstream's `Retry-After` (or `retry-after-ms`), if it sent one.
    pub retry_after: Option<Duration>,
    /// Whether the next provider of the route may be tried (connect errors,
    /// timeouts, 429, 5xx, and 401/403/404 about this upstream; not a 400
    /// about the request itself).
    pub allow_fallback: bool,
    /// The message for logs and the client (the upstream's error message when
    /// it sent an OpenAI error body).
    pub message: String,
    /// The upstream's OpenAI error body, passed on as is for 4xx.
    pub body: Option<serde_json::Value>,
    /// Whether a timeout ended the call (connect, first byte or total): the
    /// gateway answers 504 rather than 502.
    pub timed_out: bool,
}

impl UpstreamError {
    fn transport(message: String, timed_out: bool) -> UpstreamError {
        UpstreamError { status: None, retry_after: None, allow_fallback: true, message, body: None, timed_out }
    }

    /// The HTTP status a gateway answers its client with: the upstream's
    /// `4xx` as is (`429` included), `504` after a timeout, `502` otherwise
    /// (the upstream's `5xx`, a refused connection, a broken answer).
    pub fn client_status(&self) -> u16 {
        match self.status {
            _ if self.timed_out => 504,
            Some(s) if (400..500).contains(&s) => s,
            _ => 502,
        }
    }

    /// The error as the pipeline's [`LlmError`]: its kind from the status.
    pub fn to_llm_error(&self) -> LlmError {
        let kind = match self.status {
            _ if self.timed_out => ErrorKind::Timeout,
            Some(400 | 413 | 422) => ErrorKind::InvalidRequest,
            Some(401) => ErrorKind::Authentication,
            Some(403) => ErrorKind::PermissionDenied,
            Some(404) => ErrorKind::NotFound,
            Some(408) => ErrorKind::Timeout,
            Some(429) => ErrorKind::RateLimited,
            _ => ErrorKind::Provider,
        };
        LlmError {
            kind,
            message: self.message.clone(),
            allow_fallback: self.allow_fallback,
            retry_after_ms: self.retry_after.map(|d| d.as_millis().try_into().unwrap_or(u64::MAX)),
        }
    }
}

/// A stream of chunks from an upstream, as they arrive. It ends after
/// `data: [DONE]`; a transport error, an upstream `error` event or a chunk
/// that does not parse is one `Err` item, then the end. Dropping it closes
/// the connection.
pub type UpstreamStream = BoxStream<'static, Result<ChatChunk, RequestError>>;

/// A client for one upstream (cheap to clone; connections pooled).
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    config: UpstreamConfig,
    client: reqwest::Client,
    chat_url: String,
    embeddings_url: String,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// Installs rustls's ring provider as the process default (once; a
/// provider an embedder installed first is kept).
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Which tries may be retried.
#[derive(PartialEq)]
enum Retry {
    Yes,
    No,
}

impl Upstream {
    /// A client for `config`.
    pub fn new(config: UpstreamConfig) -> Result<Upstream, UpstreamError> {
        install_crypto_provider();
        let bad = |message: String| UpstreamError { allow_fallback: false, ..UpstreamError::transport(message, false) };
        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| bad("the upstream API key is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        for (name, value) in &config.headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad(format!("invalid header name `{name}`")))?;
            let mut value =
                HeaderValue::from_str(value).map_err(|_| bad(format!("the value of header `{name}` is not valid")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("plugbox-gateway/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // An API answers where it is asked: a redirect is an error, never
            // followed (it would carry the configured headers, API keys among
            // them, to wherever it points).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(format!("cannot make an HTTP client for `{}`: {e}", config.base_url)))?;
        let base = config.base_url.trim_end_matches('/');
        let (chat_url, embeddings_url) = (format!("{base}/chat/completions"), format!("{base}/embeddings"));
        Ok(Upstream { inner: Arc::new(Inner { config, client, chat_url, embeddings_url }) })
    }

    /// The settings it was made with.
    pub fn config(&self) -> &UpstreamConfig {
        &self.inner.config
    }

    /// `POST {base}/chat/completions` without streaming.
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, UpstreamError> {
        let streaming = matches!(request.stream, Some(Nullable::Value(true)));
        let body = if streaming { body_with_stream(request, None)? } else { to_body(request)? };
        let (response, deadline) = self.send(&self.inner.chat_url, body, false).await?;
        let bytes = self.read_body(response, deadline).await?;
        ChatResponse::from_json(&String::from_utf8_lossy(&bytes)).map_err(|e| UpstreamError {
            status: Some(200),
            ..UpstreamError::transport(
                format!("{} sent a chat completion that does not parse: {e}", self.name()),
                false,
            )
        })
    }

    /// `POST {base}/chat/completions` with `stream: true`: returns once the
    /// response headers arrived (errors before that are retried and may fall
    /// back); then the chunks, parsed from SSE as they arrive, until
    /// `data: [DONE]`.
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<UpstreamStream, UpstreamError> {
        let streaming = matches!(request.stream, Some(Nullable::Value(true)));
        let body = if streaming { to_body(request)? } else { body_with_stream(request, Some(true))? };
        let (response, _) = self.send(&self.inner.chat_url, body, true).await?;
        Ok(sse_chunks(self.name(), response))
    }

    /// `POST {base}/embeddings` with the body as is (the caller sets `model`).
    pub async fn embeddings(&self, body: serde_json::Value) -> Result<serde_json::Value, UpstreamError> {
        let body = Bytes::from(serde_json::to_vec(&body).expect("a JSON value serializes"));
        let (response, deadline) = self.send(&self.inner.embeddings_url, body, false).await?;
        let bytes = self.read_body(response, deadline).await?;
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError {
            status: Some(200),
            ..UpstreamError::transport(
                format!("{} sent an embeddings answer that is not JSON: {e}", self.name()),
                false,
            )
        })
    }

    /// The upstream as messages name it.
    fn name(&self) -> String {
        format!("upstream `{}`", self.inner.config.base_url)
    }

    /// Sends `body` to `url` until a try succeeds (2xx), a try fails in a way
    /// that is not retried, the retries are spent or the total deadline
    /// comes. Returns the response and the deadline for reading its body.
    async fn send(&self, url: &str, body: Bytes, sse: bool) -> Result<(reqwest::Response, Instant), UpstreamError> {
        let config = &self.inner.config;
        let deadline = Instant::now() + config.total_timeout;
        let mut retry = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.total_timeout_error());
            }
            let request = self
                .inner
                .client
                .post(url)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, if sse { "text/event-stream" } else { "application/json" })
                .timeout(remaining)
                .body(body.clone());
            let first_byte = config.first_byte_timeout.min(remaining);
            let (error, retryable) = match tokio::time::timeout(first_byte, request.send()).await {
                Err(_) if first_byte < config.first_byte_timeout => return Err(self.total_timeout_error()),
                Err(_) => {
                    let message = format!(
                        "{} sent no response headers within {} (the first-byte timeout)",
                        self.name(),
                        humantime::format_duration(config.first_byte_timeout)
                    );
                    return Err(UpstreamError::transport(message, true));
                }
                Ok(Ok(response)) if response.status().is_success() => return Ok((response, deadline)),
                Ok(Ok(response)) => self.status_error(response, deadline).await,
                Ok(Err(e)) => self.transport_error(e),
            };
            if retryable == Retry::No || retry >= config.max_retries {
                return Err(error);
            }
            let wait = match error.retry_after {
                Some(after) if after > config.max_backoff => {
                    tracing::debug!(upstream = %config.base_url, ?after, "Retry-After is longer than max-backoff: not retrying");
                    return Err(error);
                }
                Some(after) => after,
                None => backoff(config, retry),
            };
            if Instant::now() + wait >= deadline {
                return Err(error);
            }
            tracing::debug!(upstream = %config.base_url, retry = retry + 1, ?wait, error = %error, "retrying");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    fn total_timeout_error(&self) -> UpstreamError {
        let total = humantime::format_duration(self.inner.config.total_timeout);
        UpstreamError::transport(format!("{} did not answer within {total} (the total timeout)", self.name()), true)
    }

    fn transport_error(&self, e: reqwest::Error) -> (UpstreamError, Retry) {
        let name = self.name();
        if e.is_timeout() {
            let total = humantime::format_duration(self.inner.config.total_timeout);
            return (UpstreamError::transport(format!("{name} timed out (total timeout {total})"), true), Retry::No);
        }
        let detail = error_chain(&e);
        if e.is_connect() {
            let timed_out = detail.contains("timed out") || detail.contains("timeout");
            return (UpstreamError::transport(format!("cannot connect to {name}: {detail}"), timed_out), Retry::Yes);
        }
        (UpstreamError::transport(format!("{name} failed: {detail}"), false), Retry::No)
    }

    /// A non-2xx answer as an error, its body read (within the deadline).
    async fn status_error(&self, response: reqwest::Response, deadline: Instant) -> (UpstreamError, Retry) {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let bytes = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), error_body(response))
            .await
            .unwrap_or_default();
        let body: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let upstream_message = body
            .as_ref()
            .and_then(|b| b.pointer("/error/message").or_else(|| b.get("message")).or_else(|| b.get("error")))
            .and_then(|m| m.as_str())
            .map(str::to_string);
        let message = match upstream_message {
            Some(m) => format!("{} answered {status}: {m}", self.name()),
            None if bytes.is_empty() => format!("{} answered {status}", self.name()),
            None => format!("{} answered {status}: {}", self.name(), snippet(&bytes)),
        };
        let retryable = if status == 429 || status >= 500 { Retry::Yes } else { Retry::No };
        let allow_fallback = matches!(status, 401 | 403 | 404 | 408 | 429) || status >= 500;
        let body = body.filter(|b| b.get("error").is_some());
        (
            UpstreamError { status: Some(status), retry_after, allow_fallback, message, body, timed_out: false },
            retryable,
        )
    }

    /// The whole body of a successful answer, within the deadline and at
    /// most [`MAX_ANSWER_BODY`] bytes.
    async fn read_body(&self, mut response: reqwest::Response, deadline: Instant) -> Result<Bytes, UpstreamError> {
        let status = response.status().as_u16();
        let too_large = || UpstreamError {
            status: Some(status),
            ..UpstreamError::transport(
                format!("{} sent an answer larger than {MAX_ANSWER_BODY} bytes", self.name()),
                false,
            )
        };
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BODY as u64) {
            return Err(too_large());
        }
        let read = async {
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BODY {
                    return Ok(None);
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Some(Bytes::from(body)))
        };
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), read).await {
            Ok(Ok(Some(bytes))) => Ok(bytes),
            Ok(Ok(None)) => Err(too_large()),
            Ok(Err(e)) => {
                let (error, _) = self.transport_error(e);
                Err(UpstreamError { status: Some(status), ..error })
            }
            Err(_) => Err(UpstreamError { status: Some(status), ..self.total_timeout_error() }),
        }
    }
}

/// The most of a successful answer without streaming (a chat completion,
/// embeddings) read from an upstream: a larger one is an error, not memory
/// spent.
pub const MAX_ANSWER_BODY: usize = 64 << 20;

/// The longest line of an upstream's event stream: a stream that sends more
/// without a line break ends with an error rather than growing a buffer.
pub const MAX_SSE_LINE: usize = 8 << 20;

/// The most of an error answer's body read (it only feeds a message and the
/// error body passed on).
const MAX_ERROR_BODY: usize = 64 << 10;

/// The start of an error answer's body, up to [`MAX_ERROR_BODY`] (a broken
/// connection keeps what arrived).
async fn error_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR_BODY - body.len())]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    body
}

/// The request as JSON, as is.
fn to_body(request: &ChatRequest) -> Result<Bytes, UpstreamError> {
    serde_json::to_vec(request)
        .map(Bytes::from)
        .map_err(|e| UpstreamError::transport(format!("cannot serialize the request: {e}"), false))
}

/// The request as JSON with `stream` set (`Some`) or removed (`None`).
fn body_with_stream(request: &ChatRequest, stream: Option<bool>) -> Result<Bytes, UpstreamError> {
    let mut value = serde_json::to_value(request)
        .map_err(|e| UpstreamError::transport(format!("cannot serialize the request: {e}"), false))?;
    if let Some(map) = value.as_object_mut() {
        match stream {
            Some(s) => {
                map.insert("stream".into(), s.into());
            }
            None => {
                map.shift_remove("stream");
                map.shift_remove("stream_options");
            }
        }
    }
    Ok(Bytes::from(serde_json::to_vec(&value).expect("a JSON value serializes")))
}

/// The wait before retry number `retry + 1`: `initial-backoff` doubled per
/// retry, capped at `max-backoff`, then "equal jitter" (half of it fixed,
/// half random) so that clients retrying together spread out.
fn backoff(config: &UpstreamConfig, retry: u32) -> Duration {
    let base = config.initial_backoff.saturating_mul(1u32 << retry.min(20)).min(config.max_backoff);
    let half = base / 2;
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(rand::random_range(0..=jitter_nanos))
}

/// `retry-after-ms` (OpenAI's, milliseconds), else `Retry-After`: seconds,
/// or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// An error and its sources, `: `-separated (reqwest's own text is terse).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The start of a body that is not JSON, for a message.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn stream_error(message: String) -> RequestError {
    RequestError::Llm(LlmError { kind: ErrorKind::Provider, message, allow_fallback: false, retry_after_ms: None })
}

/// Why the bytes of an event stream stopped: the transport, or a line past
/// [`MAX_SSE_LINE`].
#[derive(Debug)]
enum SseRead {
    Transport(reqwest::Error),
    LineTooLong,
}

impl fmt::Display for SseRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseRead::Transport(e) => f.write_str(&error_chain(e)),
            SseRead::LineTooLong => write!(f, "a line longer than {MAX_SSE_LINE} bytes"),
        }
    }
}

/// The chunks of an SSE response, as they arrive.
fn sse_chunks(name: String, response: reqwest::Response) -> UpstreamStream {
    // Bytes since the last line break: bounded, so that the parser's buffer is.
    let mut line = 0usize;
    let bytes = response.bytes_stream().map(move |read| {
        let bytes = read.map_err(SseRead::Transport)?;
        line = match bytes.iter().rposition(|b| *b == b'\n' || *b == b'\r') {
            Some(at) => bytes.len() - at - 1,
            None => line + bytes.len(),
        };
        if line > MAX_SSE_LINE {
            return Err(SseRead::LineTooLong);
        }
        Ok(bytes)
    });
    let events = bytes.eventsource();
    futures_util::stream::unfold(Some(events), move |state| {
        let name = name.clone();
        async move {
            let mut events = state?;
            loop {
                let item = match events.next().await {
                    None => Err(stream_error(format!("{name} closed the stream before `data: [DONE]`"))),
                    Some(Err(EventStreamError::Transport(e))) => {
                        let timed_out = matches!(&e, SseRead::Transport(e) if e.is_timeout());
                        let what = if timed_out { "timed out".to_string() } else { e.to_string() };
                        Err(RequestError::Llm(LlmError {
                            kind: if timed_out { ErrorKind::Timeout } else { ErrorKind::Provider },
                            message: format!("{name}: the stream broke off: {what}"),
                            allow_fallback: false,
                            retry_after_ms: None,
                        }))
                    }
                    Some(Err(e)) => Err(stream_error(format!("{name} sent a malformed event stream: {e}"))),
                    Some(Ok(event)) => {
                        let data = event.data.trim();
                        if data.is_empty() {
                            continue;
                        }
                        if data == plugbox_host::openai::sse::DONE {
                            return None;
                        }
                        match serde_json::from_str::<serde_json::Value>(data) {
                            Ok(value) if event.event == "error" || value.get("error").is_some() => {
                                let message = value
                                    .pointer("/error/message")
                                    .or_else(|| value.get("message"))
                                    .and_then(|m| m.as_str())
                                    .unwrap_or(data);
                                Err(stream_error(format!("{name} sent an error: {message}")))
                            }
                            Ok(_) => match ChatChunk::from_json(data) {
                                Ok(chunk) => return Some((Ok(chunk), Some(events))),
                                Err(e) => Err(stream_error(format!("{name} sent a chunk that does not parse: {e}"))),
                            },
                            Err(_) if event.event == "error" => {
                                Err(stream_error(format!("{name} sent an error: {data}")))
                            }
                            Err(e) => Err(stream_error(format!("{name} sent an event that is not JSON: {e}"))),
                        }
                    }
                };
                // An error ends the stream (and drops the connection).
                return Some((item, None));
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests;
