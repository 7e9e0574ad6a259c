//! Stream hooks, tool-call hooks and provider plugins, on [`Pipeline`].

use std::sync::Arc;
use std::time::Instant;

use super::{Pipeline, RequestContext, RequestError, access, hook_timeout, plugin_error};
use crate::bindings::types::{ChunkAction, LlmError, Request, Response, StreamChunk, ToolAction, ToolCall, Usage};
use crate::budget::OutputBudget;
use crate::pipeline::invoke;
use crate::plugin::{FailureKind, LoadedPlugin, PluginFailure};

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

/// What an `on-chunk` answer amounts to once the door accepted it.
enum ChunkDecision {
    Continue,
    Modify(StreamChunk),
    Drop,
    Fail(LlmError),
}

impl Pipeline<'_> {
    /// Records a failed call of `plugin` and says whether it ends the operation.
    fn failed(&self, ctx: &RequestContext, plugin: &LoadedPlugin, f: &PluginFailure, started: Instant) -> bool {
        let closed = self.fails_closed(plugin);
        let verdict = if closed { "failed-closed" } else { "failed-open" };
        ctx.record(plugin, f.hook, format!("{verdict}: {}", f.kind), started);
        if !closed {
            tracing::warn!(plugin = plugin.name(), "fail-open: {f}");
        }
        closed
    }

    /// Passes one streamed chunk through the `on-chunk` hooks of `chain`
    /// (ascending priority). `Ok(None)` means a plugin dropped it.
    pub async fn on_chunk(
        &self,
        ctx: &RequestContext,
        chain: &[Arc<LoadedPlugin>],
        mut chunk: StreamChunk,
    ) -> Result<Option<StreamChunk>, RequestError> {
        let cap = self.config.pre_hook_timeout;
        for plugin in chain {
            let started = Instant::now();
            let access = plugin.caps.messages;
            let max_output = plugin.limits.max_output;
            let current = &chunk;
            let view = access::chunk_view(current, access);
            let call = invoke::OnChunk { info: ctx.info(), chunk: &view };
            let decided = plugin
                .call_checked(Some(ctx.map()), hook_timeout(plugin, cap), call, move |answer| {
                    let mut budget = OutputBudget::new(max_output);
                    let refused = FailureKind::InvalidOutput;
                    match answer {
                        Err(message) => Err(plugin_error(message, &mut budget)),
                        Ok(ChunkAction::Continue) => Ok(ChunkDecision::Continue),
                        Ok(ChunkAction::Modify(c)) => access::accept_chunk(current, c, access, &mut budget)
                            .map(ChunkDecision::Modify)
                            .map_err(refused),
                        Ok(ChunkAction::Drop) => {
                            access::accept_drop(access).map(|()| ChunkDecision::Drop).map_err(refused)
                        }
                        Ok(ChunkAction::Fail(e)) => {
                            access::accept_error(e, &mut budget).map(ChunkDecision::Fail).map_err(refused)
                        }
                    }
                })
                .await;
            drop(view);
            match decided {
                Ok(ChunkDecision::Continue) => ctx.record(plugin, "on-chunk", "continue", started),
                Ok(ChunkDecision::Modify(c)) => {
                    ctx.record(plugin, "on-chunk", "modify", started);
                    chunk = c;
                }
                Ok(ChunkDecision::Drop) => {
                    ctx.record(plugin, "on-chunk", "drop", started);
                    return Ok(None);
                }
                Ok(ChunkDecision::Fail(e)) => {
                    ctx.record(plugin, "on-chunk", "fail", started);
                    return Err(RequestError::Llm(e));
                }
                Err(f) if self.failed(ctx, plugin, &f, started) => return Err(RequestError::Plugin(f)),
                Err(_) => {}
            }
        }
        Ok(Some(chunk))
    }

    /// Runs the `on-stream-end` hooks of `chain` in descending priority;
    /// returns the chunks they append (appending needs `messages: write`).
    pub async fn on_stream_end(
        &self,
        ctx: &RequestContext,
        chain: &[Arc<LoadedPlugin>],
        usage: Option<Usage>,
    ) -> Result<Vec<StreamChunk>, RequestError> {
        let cap = self.config.post_hook_timeout;
        let mut extra = Vec::new();
        for plugin in chain.iter().rev() {
            let started = Instant::now();
            let access = plugin.caps.messages;
            let max_output = plugin.limits.max_output;
            let call = invoke::OnStreamEnd { info: ctx.info(), usage };
            let decided = plugin
                .call_checked(Some(ctx.map()), hook_timeout(plugin, cap), call, move |answer| {
                    let mut budget = OutputBudget::new(max_output);
                    match answer {
                        Err(message) => Err(plugin_error(message, &mut budget)),
                        Ok(chunks) => {
                            access::accept_end_chunks(chunks, access, &mut budget).map_err(FailureKind::InvalidOutput)
                        }
                    }
                })
                .await;
            match decided {
                Ok(chunks) => {
                    let label = if chunks.is_empty() { "continue" } else { "append" };
                    ctx.record(plugin, "on-stream-end", label, started);
                    extra.extend(chunks)
                }
                Err(f) if self.failed(ctx, plugin, &f, started) => return Err(RequestError::Plugin(f)),
                Err(_) => {}
            }
        }
        Ok(extra)
    }

    /// Asks the `on-tool-call` hooks of `chain`, in ascending priority, about a
    /// tool call the model requested. The first deny or answer ends the
    /// chain; a rewrite is what the next plugin sees. Rewriting and answering
    /// need `messages: write`; a plugin with `none` sees the call without its
    /// arguments.
    pub async fn on_tool_call(
        &self,
        ctx: &RequestContext,
        chain: &[Arc<LoadedPlugin>],
        mut call: ToolCall,
    ) -> Result<ToolDecision, RequestError> {
        let cap = self.config.pre_hook_timeout;
        for plugin in chain {
            let started = Instant::now();
            let access = plugin.caps.messages;
            let max_output = plugin.limits.max_output;
            let view = access::tool_call_view(&call, access);
            let invoke = invoke::OnToolCall { info: ctx.info(), call: &view };
            let decided = plugin
                .call_checked(Some(ctx.map()), hook_timeout(plugin, cap), invoke, move |answer| {
                    let mut budget = OutputBudget::new(max_output);
                    match answer {
                        Err(message) => Err(plugin_error(message, &mut budget)),
                        Ok(action) => {
                            access::accept_tool_action(action, access, &mut budget).map_err(FailureKind::InvalidOutput)
                        }
                    }
                })
                .await;
            drop(view);
            match decided {
                Ok(ToolAction::Allow) => ctx.record(plugin, "on-tool-call", "allow", started),
                Ok(ToolAction::Rewrite(c)) => {
                    ctx.record(plugin, "on-tool-call", "rewrite", started);
                    call = c;
                }
                Ok(ToolAction::Deny(reason)) => {
                    ctx.record(plugin, "on-tool-call", "deny", started);
                    return Ok(ToolDecision::Denied { plugin: plugin.name().to_string(), reason });
                }
                Ok(ToolAction::Answer(result)) => {
                    ctx.record(plugin, "on-tool-call", "answer", started);
                    return Ok(ToolDecision::Answered { plugin: plugin.name().to_string(), result });
                }
                Err(f) if self.failed(ctx, plugin, &f, started) => return Err(RequestError::Plugin(f)),
                Err(_) => {}
            }
        }
        Ok(ToolDecision::Run(call))
    }

    /// Calls `provider` (a provider plugin) for a complete response. A
    /// provider with `messages: none` gets the request with its text removed.
    /// The response is charged to the provider's `max-output`; its failure
    /// always fails the call (there is no provider to fall back to here).
    pub async fn complete(
        &self,
        ctx: &RequestContext,
        provider: &LoadedPlugin,
        request: &Request,
    ) -> Result<Response, RequestError> {
        let started = Instant::now();
        let max_output = provider.limits.max_output;
        let view = access::request_view(request, provider.caps.messages);
        let call = invoke::Complete { info: ctx.info(), req: &view };
        let result = provider
            .call_checked(Some(ctx.map()), provider.limits.timeout, call, move |answer| {
                let mut budget = OutputBudget::new(max_output);
                match answer {
                    Ok(resp) => access::accept_provider_response(resp, &mut budget).map(Ok),
                    Err(e) => access::accept_error(e, &mut budget).map(Err),
                }
                .map_err(FailureKind::InvalidOutput)
            })
            .await;
        finish_provider(ctx, provider, started, result)
    }

    /// Runs a provider plugin's stream to its end and returns the chunks. A
    /// provider with `messages: none` gets the request with its text removed.
    /// The stream is bounded: its chunks together are charged to the
    /// provider's `max-output` (at most 100,000 of them), and the provider's
    /// `limits.timeout` is the deadline of the whole stream, from
    /// `start-stream` to its last chunk. A stream past either is cut off and
    /// fails as the provider's invalid output or timeout.
    pub async fn complete_stream(
        &self,
        ctx: &RequestContext,
        provider: &LoadedPlugin,
        request: &Request,
    ) -> Result<Vec<StreamChunk>, RequestError> {
        let started = Instant::now();
        let max_output = provider.limits.max_output;
        let view = access::request_view(request, provider.caps.messages);
        let call = invoke::StreamAll { info: ctx.info(), req: &view, budget: OutputBudget::new(max_output) };
        let result = provider
            .call_checked(Some(ctx.map()), provider.limits.timeout, call, move |answer| match answer {
                Err(cut_off) => Err(FailureKind::InvalidOutput(cut_off)),
                Ok(Ok(chunks)) => Ok(Ok(chunks)),
                Ok(Err(e)) => access::accept_error(e, &mut OutputBudget::new(max_output))
                    .map(Err)
                    .map_err(FailureKind::InvalidOutput),
            })
            .await;
        finish_provider(ctx, provider, started, result)
    }
}

fn finish_provider<T>(
    ctx: &RequestContext,
    provider: &LoadedPlugin,
    started: Instant,
    result: Result<Result<T, LlmError>, PluginFailure>,
) -> Result<T, RequestError> {
    match result {
        Ok(Ok(value)) => {
            ctx.record(provider, "provider", "ok", started);
            Ok(value)
        }
        Ok(Err(e)) => {
            ctx.record(provider, "provider", "fail", started);
            Err(RequestError::Llm(e))
        }
        Err(f) => {
            ctx.record(provider, "provider", format!("failed-closed: {}", f.kind), started);
            Err(RequestError::Plugin(f))
        }
    }
}
