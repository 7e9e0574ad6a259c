//! OpenAI-shaped error bodies with the right status.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plugbox_host::{ErrorKind, LlmError, RequestError};
use serde_json::{Value, json};

use crate::upstream::UpstreamError;

/// An error the gateway answers with: HTTP `status` and the body
/// `{"error": {"message", "type", "param", "code"}}` that OpenAI clients
/// parse (the official SDKs raise `BadRequestError`, `RateLimitError` ...
/// by status).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `error.message`.
    pub message: String,
    /// `error.type` (`invalid_request_error`, `rate_limit_error` ...).
    pub kind: &'static str,
    /// `error.param`: the JSON path of the bad field, when one is to blame.
    pub param: Option<String>,
    /// `error.code` (`model_not_found`, `rate_limit_exceeded` ...).
    pub code: Option<String>,
    /// Sent as `Retry-After` (whole seconds, rounded up) with 429 and 503.
    pub retry_after: Option<Duration>,
    /// An upstream's own OpenAI error body, passed on as is.
    pub body: Option<Box<Value>>,
}

impl ApiError {
    /// An error with `status` and `message`; the type follows the status.
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        let kind = match status {
            400 | 404 | 405 | 408 | 409 | 413 | 415 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            503 => "service_unavailable",
            502 | 504 => "upstream_error",
            _ => "server_error",
        };
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after: None, body: None }
    }

    /// 400 about the field at `param` (a JSON path like `messages[0].role`).
    pub fn bad_field(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { param: Some(param.into()), ..ApiError::new(400, message) }
    }

    /// Sets `error.code`.
    pub fn with_code(mut self, code: impl Into<String>) -> ApiError {
        self.code = Some(code.into());
        self
    }

    /// Sets the `Retry-After` the response carries.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> ApiError {
        self.retry_after = after;
        self
    }

    /// The OpenAI error body: `{"error": {...}}`.
    pub fn body(&self) -> Value {
        if let Some(b) = &self.body {
            return (**b).clone();
        }
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }

    /// The HTTP status of an LLM error kind (a plugin's, a provider's).
    pub fn status_of(kind: ErrorKind) -> u16 {
        match kind {
            ErrorKind::InvalidRequest | ErrorKind::ContentFiltered => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RateLimited => 429,
            ErrorKind::Timeout => 504,
            ErrorKind::Provider => 502,
            ErrorKind::Internal => 500,
        }
    }

    /// The error a request ends with.
    pub fn from_llm(e: &LlmError) -> ApiError {
        let code = code_of(e.kind);
        ApiError::new(ApiError::status_of(e.kind), e.message.clone())
            .with_code(code)
            .with_retry_after(e.retry_after_ms.map(Duration::from_millis))
    }

    /// The error a request ends with, or, when that is `upstream`'s failure
    /// unchanged (no plugin rewrote it) and the upstream sent a 4xx OpenAI
    /// error body, the upstream's status and body as they came.
    pub(crate) fn from_llm_or_upstream(e: &LlmError, upstream: Option<UpstreamError>) -> ApiError {
        let mut api = ApiError::from_llm(e);
        if let Some(u) = upstream
            && u.message == e.message
            && let (Some(status @ 400..=499), Some(body)) = (u.status, u.body)
        {
            api.status = status;
            api.body = Some(Box::new(body));
        }
        api
    }

    /// The error of a request that failed in the pipeline.
    pub fn from_request(e: &RequestError) -> ApiError {
        match e {
            RequestError::Llm(e) => ApiError::from_llm(e),
            RequestError::Plugin(f) => ApiError::new(500, format!("plugin failure: {f}")).with_code("plugin_failed"),
            other => ApiError::new(500, other.to_string()),
        }
    }

    /// As a stream's closing SSE event: `data: {"error":{...}}`.
    pub fn sse_event(&self) -> String {
        format!("data: {}\n\n", self.body())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// An upstream failure as the LLM error the pipeline's post hooks see.
pub(crate) fn upstream_llm_error(e: &UpstreamError) -> LlmError {
    let kind = match e.status {
        Some(400) | Some(422) => ErrorKind::InvalidRequest,
        Some(401) => ErrorKind::Authentication,
        Some(403) => ErrorKind::PermissionDenied,
        Some(404) => ErrorKind::NotFound,
        Some(408) | Some(504) => ErrorKind::Timeout,
        Some(429) => ErrorKind::RateLimited,
        None if e.message.contains("timed out") || e.message.contains("timeout") => ErrorKind::Timeout,
        _ => ErrorKind::Provider,
    };
    LlmError {
        kind,
        message: e.message.clone(),
        allow_fallback: e.allow_fallback,
        retry_after_ms: e.retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

/// The `error.code` of an LLM error kind.
fn code_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request",
        ErrorKind::Authentication => "invalid_api_key",
        ErrorKind::PermissionDenied => "permission_denied",
        ErrorKind::NotFound => "not_found",
        ErrorKind::RateLimited => "rate_limit_exceeded",
        ErrorKind::Timeout => "timeout",
        ErrorKind::ContentFiltered => "content_filter",
        ErrorKind::Provider => "upstream_error",
        ErrorKind::Internal => "internal_error",
    }
}
