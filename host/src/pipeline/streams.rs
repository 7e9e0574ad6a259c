//! Stream hooks, tool-call hooks and provider plugins.

use std::sync::Arc;

use super::{RequestContext, RequestError, failure, hook_timeout};
use crate::bindings::types::{ChunkAction, LlmError, Request, Response, StreamChunk, ToolAction, ToolCall, Usage};
use crate::error::{Error, Result};
use crate::manifest::Hook;
use crate::pipeline::invoke;
use crate::plugin::{FailureKind, LoadedPlugin};

/// Most chunks one provider stream may produce before the host stops it.
pub const MAX_STREAM_CHUNKS: usize = 100_000;

/// What the tool-call hooks decided.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolDecision {
    /// Run this call (possibly rewritten by a plugin).
    Run(ToolCall),
    /// Do not run it; the plugin named says why.
    Denied {
        /// The plugin that denied the call.
        plugin: String,
        /// Why, as the plugin put it.
        reason: String,
    },
    /// Do not run it; use this JSON result from the plugin named.
    Answered {
        /// The plugin that answered.
        plugin: String,
        /// The tool result, as JSON text.
        result: String,
    },
}

impl crate::Host {
    fn chain(&self, ctx: &RequestContext, hook: Hook) -> Vec<Arc<LoadedPlugin>> {
        ctx.plugins(self).chain(hook)
    }

    /// Passes one streamed chunk through the `on-chunk` hooks in ascending
    /// priority. `Ok(None)` means a plugin dropped it.
    pub async fn on_chunk(
        &self,
        ctx: &RequestContext,
        chunk: StreamChunk,
    ) -> Result<Option<StreamChunk>, RequestError> {
        let cap = self.inner.pipeline.pre_hook_timeout;
        let mut chunk = chunk;
        for plugin in self.chain(ctx, Hook::OnChunk) {
            let call = invoke::OnChunk { info: ctx.info(), chunk: &chunk };
            let result = plugin.call(Some(ctx.map()), hook_timeout(&plugin, cap), call).await;
            let failure = match result {
                Ok(Ok(ChunkAction::Continue)) => continue,
                Ok(Ok(ChunkAction::Modify(c))) => {
                    let size = c.content.as_ref().map_or(0, |s| s.len()) as u64;
                    if size <= plugin.limits.max_output {
                        chunk = c;
                        continue;
                    }
                    failure(
                        &plugin,
                        "on-chunk",
                        FailureKind::InvalidOutput(format!("chunk of {size} bytes exceeds max-output")),
                    )
                }
                Ok(Ok(ChunkAction::Drop)) => return Ok(None),
                Ok(Ok(ChunkAction::Fail(e))) => return Err(RequestError::Llm(e)),
                Ok(Err(message)) => failure(&plugin, "on-chunk", FailureKind::Error(message)),
                Err(f) => f,
            };
            if self.fail_closed(&plugin) {
                return Err(RequestError::Plugin(failure));
            }
            tracing::warn!(plugin = plugin.name(), "fail-open: {failure}");
        }
        Ok(Some(chunk))
    }

    /// Runs the `on-stream-end` hooks; returns the chunks they append.
    pub async fn on_stream_end(
        &self,
        ctx: &RequestContext,
        usage: Option<Usage>,
    ) -> Result<Vec<StreamChunk>, RequestError> {
        let cap = self.inner.pipeline.post_hook_timeout;
        let mut extra = Vec::new();
        for plugin in self.chain(ctx, Hook::OnStreamEnd).iter().rev() {
            let call = invoke::OnStreamEnd { info: ctx.info(), usage };
            match plugin.call(Some(ctx.map()), hook_timeout(plugin, cap), call).await {
                Ok(Ok(chunks)) => extra.extend(chunks),
                Ok(Err(message)) => {
                    let f = failure(plugin, "on-stream-end", FailureKind::Error(message));
                    if self.fail_closed(plugin) {
                        return Err(RequestError::Plugin(f));
                    }
                    tracing::warn!(plugin = plugin.name(), "fail-open: {f}");
                }
                Err(f) if self.fail_closed(plugin) => return Err(RequestError::Plugin(f)),
                Err(f) => tracing::warn!(plugin = plugin.name(), "fail-open: {f}"),
            }
        }
        Ok(extra)
    }

    /// Asks the `on-tool-call` hooks, in ascending priority, about a tool call
    /// the model requested. The first deny or answer ends the chain; a rewrite
    /// is what the next plugin sees.
    pub async fn on_tool_call(&self, ctx: &RequestContext, call: ToolCall) -> Result<ToolDecision, RequestError> {
        let cap = self.inner.pipeline.pre_hook_timeout;
        let mut call = call;
        for plugin in self.chain(ctx, Hook::OnToolCall) {
            let invoke = invoke::OnToolCall { info: ctx.info(), call: &call };
            let f = match plugin.call(Some(ctx.map()), hook_timeout(&plugin, cap), invoke).await {
                Ok(Ok(ToolAction::Allow)) => continue,
                Ok(Ok(ToolAction::Rewrite(c))) => {
                    call = c;
                    continue;
                }
                Ok(Ok(ToolAction::Deny(reason))) => {
                    return Ok(ToolDecision::Denied { plugin: plugin.name().to_string(), reason });
                }
                Ok(Ok(ToolAction::Answer(result))) => {
                    return Ok(ToolDecision::Answered { plugin: plugin.name().to_string(), result });
                }
                Ok(Err(message)) => failure(&plugin, "on-tool-call", FailureKind::Error(message)),
                Err(f) => f,
            };
            if self.fail_closed(&plugin) {
                return Err(RequestError::Plugin(f));
            }
            tracing::warn!(plugin = plugin.name(), "fail-open: {f}");
        }
        Ok(ToolDecision::Run(call))
    }

    fn provider_plugin(&self, ctx: &RequestContext, provider_type: &str) -> Result<Arc<LoadedPlugin>> {
        ctx.plugins(self)
            .providers
            .get(provider_type)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("provider:{provider_type}")))
    }

    /// Calls the provider plugin of `provider_type` for a complete response.
    pub async fn complete(
        &self,
        ctx: &RequestContext,
        provider_type: &str,
        request: &Request,
    ) -> Result<Response, RequestError> {
        let plugin = self.provider_plugin(ctx, provider_type).map_err(|e| RequestError::Llm(not_found(e)))?;
        let call = invoke::Complete { info: ctx.info(), req: request };
        match plugin.call(Some(ctx.map()), plugin.limits.timeout, call).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RequestError::Llm(e)),
            Err(f) => Err(RequestError::Plugin(f)),
        }
    }

    /// Runs a provider plugin's stream to its end and returns the chunks.
    pub async fn complete_stream(
        &self,
        ctx: &RequestContext,
        provider_type: &str,
        request: &Request,
    ) -> Result<Vec<StreamChunk>, RequestError> {
        let plugin = self.provider_plugin(ctx, provider_type).map_err(|e| RequestError::Llm(not_found(e)))?;
        let call = invoke::StreamAll { info: ctx.info(), req: request, max_chunks: MAX_STREAM_CHUNKS };
        match plugin.call(Some(ctx.map()), plugin.limits.timeout, call).await {
            Ok(Ok(chunks)) => Ok(chunks),
            Ok(Err(e)) => Err(RequestError::Llm(e)),
            Err(f) => Err(RequestError::Plugin(f)),
        }
    }
}

fn not_found(e: Error) -> LlmError {
    LlmError {
        kind: crate::bindings::types::ErrorKind::NotFound,
        message: e.to_string(),
        allow_fallback: true,
        retry_after_ms: None,
    }
}
