//! Constructors and helpers for the plain WIT types (roles, usage, errors,
//! devices, log levels).

use std::fmt;
use std::time::Duration;

use crate::{DeviceKind, DeviceReport, ErrorKind, Health, LlmError, LogLevel, Role, ToolCall, Usage};

impl Role {
    /// The role's name as in the WIT and the OpenAI API (`system`, `user`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
            Role::Other => "other",
        }
    }

    /// The role named `name`; [`Role::Other`] for a name this version does
    /// not know.
    pub fn parse(name: &str) -> Role {
        match name {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "function" => Role::Function,
            _ => Role::Other,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    fn roles() {
        for role in [Role::System, Role::Developer, Role::User, Role::Assistant, Role::Tool, Role::Function] {
            assert_eq!(Role::parse(role.as_str()), role);
        }
        assert_eq!(Role::parse("critic"), Role::Other);
        assert_eq!(serde_json::to_string(&Role::Developer).unwrap(), "\"developer\"");
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
