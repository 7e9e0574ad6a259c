//! Constructors and helpers for the LLM types of the WIT package.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    Choice, DeviceKind, DeviceReport, ErrorKind, Health, LlmError, LogLevel, Message, Request, RequestInfo, Response,
    Role, StreamChunk, ToolCall, Usage,
};

impl Role {
    /// The role's name as in the WIT and the OpenAI API (`system`, `user`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Message {
    /// A message with this role and content and nothing else.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message { role, content: content.into(), name: None, tool_calls: Vec::new(), tool_call_id: None }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A `tool` message answering the tool call `call_id`.
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message { tool_call_id: Some(call_id.into()), ..Self::new(Role::Tool, content) }
    }
}

impl ToolCall {
    /// A tool call with JSON-encoded `arguments`.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        ToolCall { id: id.into(), name: name.into(), arguments: arguments.into() }
    }
}

impl Usage {
    /// Usage with `total_tokens` = prompt + completion (saturating).
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens.saturating_add(completion_tokens) }
    }
}

impl Request {
    /// A request for `model` with these messages and no other options.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Request {
            model: model.into(),
            messages,
            temperature: None,
            max_tokens: None,
            stream: false,
            tools: Vec::new(),
            extra: None,
        }
    }

    /// The last message with role `user`.
    pub fn last_user_message(&self) -> Option<&Message> {
        self.messages.iter().rev().find(|m| m.role == Role::User)
    }

    /// The last message with role `user`, to change it.
    pub fn last_user_message_mut(&mut self) -> Option<&mut Message> {
        self.messages.iter_mut().rev().find(|m| m.role == Role::User)
    }

    /// The `system` messages, in order.
    pub fn system_messages(&self) -> impl Iterator<Item = &Message> {
        self.messages.iter().filter(|m| m.role == Role::System)
    }
}

static RESPONSE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh response id: `plugbox-<time><counter>` in hex.
fn response_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let n = RESPONSE_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("plugbox-{nanos:x}{n:x}")
}

impl Response {
    /// A response with one assistant choice holding `content`, finish reason
    /// `stop`, no usage, and a fresh id.
    pub fn text(model: impl Into<String>, content: impl Into<String>) -> Self {
        Response {
            id: response_id(),
            model: model.into(),
            choices: vec![Choice {
                index: 0,
                message: Message::assistant(content),
                finish_reason: Some("stop".to_string()),
            }],
            usage: None,
            extra: None,
        }
    }

    /// The same response with `usage` set.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// The content of the first choice, if there is one.
    pub fn content(&self) -> Option<&str> {
        self.choices.first().map(|c| c.message.content.as_str())
    }

    /// The first choice's message, to change it.
    pub fn first_message_mut(&mut self) -> Option<&mut Message> {
        self.choices.first_mut().map(|c| &mut c.message)
    }
}

impl ErrorKind {
    /// The kind's name as in the WIT (`rate-limited`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid-request",
            ErrorKind::Authentication => "authentication",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::NotFound => "not-found",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ContentFiltered => "content-filtered",
            ErrorKind::Provider => "provider",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LlmError {
    /// An error of `kind` with no fallback and no retry hint.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LlmError { kind, message: message.into(), allow_fallback: false, retry_after_ms: None }
    }

    /// `rate-limited`, retry after `retry_after`; no fallback (another
    /// provider would not lift the caller's limit).
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(ErrorKind::RateLimited, message).with_retry_after(retry_after)
    }

    /// `invalid-request`: the caller sent something wrong.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// `authentication`.
    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Authentication, message)
    }

    /// `permission-denied`.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }

    /// `not-found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// `timeout`, fallback allowed.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message).with_fallback(true)
    }

    /// `content-filtered`.
    pub fn content_filtered(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ContentFiltered, message)
    }

    /// `provider`: the upstream failed; fallback allowed.
    pub fn provider(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Provider, message).with_fallback(true)
    }

    /// `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The same error with `allow_fallback` set.
    pub fn with_fallback(mut self, allow: bool) -> Self {
        self.allow_fallback = allow;
        self
    }

    /// The same error with a retry hint.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after_ms = Some(millis(retry_after));
        self
    }
}

impl StreamChunk {
    /// A chunk carrying a piece of assistant text for choice `index`.
    pub fn text(index: u32, content: impl Into<String>) -> Self {
        StreamChunk {
            index,
            role: None,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    /// The last chunk of choice `index`: a finish reason and optional usage.
    pub fn finish(index: u32, finish_reason: impl Into<String>, usage: Option<Usage>) -> Self {
        StreamChunk {
            index,
            role: None,
            content: None,
            tool_calls: Vec::new(),
            finish_reason: Some(finish_reason.into()),
            usage,
        }
    }
}

impl RequestInfo {
    /// Request facts for tests: this id and model, no provider, not streaming,
    /// no caller.
    pub fn new(request_id: impl Into<String>, model: impl Into<String>) -> Self {
        RequestInfo {
            request_id: request_id.into(),
            model: model.into(),
            provider: String::new(),
            streaming: false,
            caller: None,
        }
    }

    /// The same facts with a caller.
    pub fn with_caller(mut self, caller: impl Into<String>) -> Self {
        self.caller = Some(caller.into());
        self
    }

    /// The caller's identity, or `default` when the host does not know it.
    pub fn caller_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.caller.as_deref().unwrap_or(default)
    }
}

impl Health {
    /// A healthy verdict.
    pub fn healthy(message: impl Into<String>) -> Self {
        Health { healthy: true, message: message.into() }
    }

    /// An unhealthy verdict saying why.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Health { healthy: false, message: message.into() }
    }
}

impl DeviceReport {
    /// An online device with no memory figures, reported by `source`.
    pub fn new(id: impl Into<String>, kind: DeviceKind, name: impl Into<String>, source: impl Into<String>) -> Self {
        DeviceReport {
            id: id.into(),
            kind,
            name: name.into(),
            online: true,
            memory_total_mb: 0,
            memory_free_mb: 0,
            memory_used_mb: 0,
            utilization: None,
            temperature_c: None,
            source: source.into(),
            annotations: Vec::new(),
        }
    }

    /// Add or replace the annotation `key`.
    pub fn annotate(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.annotations.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.annotations.push((key, value)),
        }
    }
}

impl LogLevel {
    /// The level's name (`trace` … `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// Parse `trace`, `debug`, `info`, `warn` (or `warning`), `error`,
    /// ignoring case.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "trace" => Some(LogLevel::Trace),
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            _ => None,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_helpers() {
        let mut req = Request::new(
            "m",
            vec![Message::system("s"), Message::user("a"), Message::assistant("b"), Message::user("c")],
        );
        assert_eq!(req.last_user_message().unwrap().content, "c");
        req.last_user_message_mut().unwrap().content.push('!');
        assert_eq!(req.messages[3].content, "c!");
        assert_eq!(req.system_messages().count(), 1);
    }

    #[test]
    fn response_round_trips_through_json() {
        let mut resp = Response::text("m", "hello").with_usage(Usage::new(1, 2));
        resp.extra = Some(r#"{"a":1}"#.into());
        let json = serde_json::to_string(&resp).unwrap();
        let back: Response = serde_json::from_str(&json).unwrap();
        assert_eq!(back, resp);
        assert!(json.contains(r#""role":"assistant""#), "{json}");
    }

    #[test]
    fn errors() {
        let e = LlmError::rate_limited("slow down", Duration::from_millis(1500));
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after_ms, Some(1500));
        assert!(!e.allow_fallback);
        assert!(LlmError::provider("x").allow_fallback);
        assert_eq!(ErrorKind::RateLimited.to_string(), "rate-limited");
    }

    #[test]
    fn annotations_replace() {
        let mut d = DeviceReport::new("gpu:0", DeviceKind::Gpu, "card", "plugin:x");
        d.annotate("a", "1");
        d.annotate("a", "2");
        assert_eq!(d.annotations, vec![("a".to_string(), "2".to_string())]);
    }
}
