//! Stream hooks, tool-call hooks and provider plugins, on [`Pipeline`], and
//! [`ChunkStream`]: a stream of chunks pulled one by one from a provider
//! plugin or an upstream, with the `on-chunk` hooks run as chunks flow and
//! the `on-stream-end` hooks at the end.
//!
//! Holding: a plugin with `messages: write` may answer `hold` for a chunk.
//! The chunk (with its edits) is kept in the request's context and merged
//! into the next chunk that reaches that plugin ([`merge_chunk`]), which the
//! plugin then sees whole; nothing is passed on meanwhile. The text a plugin
//! holds is bounded by its `limits.max-held`. At the end of the stream each
//! plugin's held chunk is offered to it once more with `last()` true (then
//! `hold` is refused) and passed on through the plugins after it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_util::StreamExt;
use wasmtime::component::ResourceAny;

use super::{Pipeline, PipelineConfig, RequestContext, RequestError, access, hook_timeout, plugin_error, unshare};
use crate::bindings::stream_hooks::ChunkAction;
use crate::bindings::tool_hooks::ToolAction;
use crate::bindings::types::{ErrorKind, LlmError};
use crate::budget::{ELEMENT_COST, MAX_STREAM_CHUNKS, OutputBudget};
use crate::imports::llm::{CallRules, ChunkEntry, RequestEntry, StreamEndEntry, ToolCallEntry};
use crate::openai::{ChatChunk, ChatRequest, ChatResponse, ToolCall, Usage};
use crate::pipeline::invoke;
use crate::plugin::{FailureKind, LoadedPlugin, PluginFailure, Session};

/// What the tool-call hooks decided.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolDecision {
    /// Run this call (possibly edited by a plugin: name, arguments).
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

/// A stream of chunks with the request's stream hooks applied: what
/// [`Host::stream`](crate::Host::stream) and
/// [`Host::filter_stream`](crate::Host::filter_stream) return. Each item is a
/// chunk to send on, or the error that ends the stream (no item follows an
/// error). Dropping it stops the stream (a provider plugin's instance is
/// then discarded).
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, RequestError>> + Send>>;

/// Merges `next` into `held` (a chunk held back, then the next one): each
/// choice's delta is appended to the held choice with the same `index`
/// ([`Delta::merge`](crate::openai::Delta::merge)), its finish reason and
/// logprobs replace the held ones; new choices are added; `usage` and other
/// top-level fields of `next` win.
pub fn merge_chunk(held: &mut ChatChunk, next: ChatChunk) {
    for choice in next.choices {
        match held.choices.iter_mut().find(|c| c.index == choice.index) {
            Some(h) => {
                h.delta.merge(choice.delta);
                if choice.finish_reason.is_some() {
                    h.finish_reason = choice.finish_reason;
                }
                if choice.logprobs.is_some() {
                    h.logprobs = choice.logprobs;
                }
                h.extra.extend(choice.extra);
            }
            None => held.choices.push(choice),
        }
    }
    if next.usage.is_some() {
        held.usage = next.usage;
    }
    if next.system_fingerprint.is_some() {
        held.system_fingerprint = next.system_fingerprint;
    }
    held.extra.extend(next.extra);
}

/// What an `on-chunk` answer amounts to once the door accepted it.
enum ChunkDecision {
    Continue(Option<ChatChunk>),
    Drop,
    Hold(ChatChunk),
    Fail(LlmError),
}

impl Pipeline<'_> {
    /// Records a failed call of `plugin` and says whether it ends the operation.
    fn failed(&self, ctx: &RequestContext, plugin: &LoadedPlugin, f: &PluginFailure, took: Duration) -> bool {
        let closed = self.fails_closed(plugin);
        let verdict = if closed { "failed-closed" } else { "failed-open" };
        ctx.record(plugin, f.hook, format!("{verdict}: {}", f.kind), took);
        if !closed {
            tracing::warn!(plugin = plugin.name(), "fail-open: {f}");
        }
        closed
    }

    /// Passes one streamed chunk through the `on-chunk` hooks of `chain`
    /// (ascending priority). `Ok(None)` means a plugin dropped it or holds
    /// it back (see the module docs).
    pub async fn on_chunk(
        &self,
        ctx: &RequestContext,
        chain: &[Arc<LoadedPlugin>],
        chunk: ChatChunk,
    ) -> Result<Option<ChatChunk>, RequestError> {
        Ok(self.chunk_from(ctx, chain, 0, Arc::new(chunk), None).await?.map(unshare))
    }

    /// Runs `chunk` through `chain[from..]`; the plugin at `last` (if any)
    /// gets it as the final offer of the text it held.
    async fn chunk_from(
        &self,
        ctx: &RequestContext,
        chain: &[Arc<LoadedPlugin>],
        from: usize,
        mut current: Arc<ChatChunk>,
        last: Option<usize>,
    ) -> Result<Option<Arc<ChatChunk>>, RequestError> {
        let cap = self.config.pre_hook_timeout;
        let request = ctx.request();
        for (i, plugin) in chain.iter().enumerate().skip(from) {
            let is_last = last == Some(i);
            if !is_last && let Some(mut held) = ctx.take_held(plugin.name()) {
                merge_chunk(&mut held, unshare(current));
                current = Arc::new(held);
            }
            let started = Instant::now();
            let access = plugin.caps.messages;
            let max_held = plugin.limits.max_held;
            let rules = CallRules::new("on-chunk", access, plugin.limits.max_output);
            let req = RequestEntry::new(request.clone(), ctx.info_arc().clone(), false);
            let chunk = ChunkEntry::new(current.clone(), is_last);
            let shown = current.clone();
            let call = invoke::OnChunk { req, chunk, rules };
            let (decided, took) = plugin
                .call_timed(started, Some(ctx.map()), hook_timeout(plugin, cap), call, move |called| {
                    let invoke::Called { answer, entry, mut rules } = called;
                    access::violation(&mut rules).map_err(FailureKind::InvalidOutput)?;
                    let budget = &mut rules.budget;
                    let refused = FailureKind::InvalidOutput;
                    match answer {
                        Err(message) => Err(plugin_error(message, budget)),
                        Ok(ChunkAction::Continue) => Ok(ChunkDecision::Continue(entry.data.into_edited())),
                        Ok(ChunkAction::Drop) => {
                            access::accept_drop(access).map(|()| ChunkDecision::Drop).map_err(refused)
                        }
                        Ok(ChunkAction::Hold) => {
                            let held = entry.data.into_edited().unwrap_or_else(|| unshare(shown));
                            access::accept_hold(access, is_last, held.text_len(), max_held)
                                .map(|()| ChunkDecision::Hold(held))
                                .map_err(refused)
                        }
                        Ok(ChunkAction::Fail(e)) => {
                            access::accept_error(e, budget).map(ChunkDecision::Fail).map_err(refused)
                        }
                    }
                })
                .await;
            match decided {
                Ok(ChunkDecision::Continue(edited)) => {
                    ctx.record(plugin, "on-chunk", if edited.is_some() { "modify" } else { "continue" }, took);
                    if let Some(c) = edited {
                        current = Arc::new(c);
                    }
                }
                Ok(ChunkDecision::Drop) => {
                    ctx.record(plugin, "on-chunk", "drop", took);
                    return Ok(None);
                }
                Ok(ChunkDecision::Hold(held)) => {
                    ctx.record(plugin, "on-chunk", "hold", took);
                    ctx.hold(&plugin.name, held);
                    return Ok(None);
                }
                Ok(ChunkDecision::Fail(e)) => {
                    ctx.record(plugin, "on-chunk", "fail", took);
                    return Err(RequestError::Llm(e));
                }
                Err(f) if self.failed(ctx, plugin, &f, took) => return Err(RequestError::Plugin(f)),
                Err(_) => {}
            }
        }
        Ok(Some(current))
    }

    /// Ends a stream: the text plugins of `chunk_chain` still hold is offered
    /// to each holder once more (`last()` true) and passed on through the
    /// plugins after it; then the `on-stream-end` hooks of `end_chain` run in
    /// descending priority and may append chunks (`messages: write`).
    /// Returns the flushed chunks, then the appended ones.
    pub async fn on_stream_end(
        &self,
        ctx: &RequestContext,
        chunk_chain: &[Arc<LoadedPlugin>],
        end_chain: &[Arc<LoadedPlugin>],
        usage: Option<Usage>,
    ) -> Result<Vec<ChatChunk>, RequestError> {
        let mut out = Vec::new();
        if ctx.holds_any() {
            for (i, plugin) in chunk_chain.iter().enumerate() {
                if let Some(held) = ctx.take_held(plugin.name())
                    && let Some(c) = self.chunk_from(ctx, chunk_chain, i, Arc::new(held), Some(i)).await?
                {
                    out.push(unshare(c));
                }
            }
        }
        if end_chain.is_empty() {
            return Ok(out);
        }
        let cap = self.config.post_hook_timeout;
        let request = ctx.request();
        for plugin in end_chain.iter().rev() {
            let started = Instant::now();
            let rules = CallRules::new("on-stream-end", plugin.caps.messages, plugin.limits.max_output);
            let req = RequestEntry::new(request.clone(), ctx.info_arc().clone(), false);
            let end = StreamEndEntry { usage: usage.clone(), appended: Vec::new(), before: out.len() };
            let call = invoke::OnStreamEnd { req, end, rules };
            let (decided, took) = plugin
                .call_timed(started, Some(ctx.map()), hook_timeout(plugin, cap), call, move |called| {
                    let invoke::Called { answer, entry, mut rules } = called;
                    access::violation(&mut rules).map_err(FailureKind::InvalidOutput)?;
                    match answer {
                        Err(message) => Err(plugin_error(message, &mut rules.budget)),
                        Ok(()) => Ok(entry.appended),
                    }
                })
                .await;
            match decided {
                Ok(chunks) => {
                    let label = if chunks.is_empty() { "continue" } else { "append" };
                    ctx.record(plugin, "on-stream-end", label, took);
                    out.extend(chunks)
                }
                Err(f) if self.failed(ctx, plugin, &f, took) => return Err(RequestError::Plugin(f)),
                Err(_) => {}
            }
        }
        Ok(out)
    }

    /// Asks the `on-tool-call` hooks of `chain`, in ascending priority, about a
    /// tool call the model requested. The first deny or answer ends the
    /// chain; edits (name, arguments, `messages: write`) are what the next
    /// plugin sees. Answering needs `messages: write`; a plugin with `none`
    /// cannot read the arguments.
    pub async fn on_tool_call(
        &self,
        ctx: &RequestContext,
        chain: &[Arc<LoadedPlugin>],
        call: ToolCall,
    ) -> Result<ToolDecision, RequestError> {
        let cap = self.config.pre_hook_timeout;
        let request = ctx.request();
        let mut current = Arc::new(call);
        for plugin in chain {
            let started = Instant::now();
            let access = plugin.caps.messages;
            let rules = CallRules::new("on-tool-call", access, plugin.limits.max_output);
            let req = RequestEntry::new(request.clone(), ctx.info_arc().clone(), false);
            let invoke = invoke::OnToolCall { req, call: ToolCallEntry::new(current.clone()), rules };
            let (decided, took) = plugin
                .call_timed(started, Some(ctx.map()), hook_timeout(plugin, cap), invoke, move |called| {
                    let invoke::Called { answer, entry, mut rules } = called;
                    access::violation(&mut rules).map_err(FailureKind::InvalidOutput)?;
                    let budget = &mut rules.budget;
                    let refused = FailureKind::InvalidOutput;
                    match answer {
                        Err(message) => Err(plugin_error(message, budget)),
                        Ok(ToolAction::Allow) => Ok(Ok(entry.data.into_edited())),
                        Ok(ToolAction::Deny(reason)) => {
                            access::accept_deny(reason, budget).map(|r| Err(Ok(r))).map_err(refused)
                        }
                        Ok(ToolAction::Answer(result)) => {
                            access::accept_answer(result, access, budget).map(|r| Err(Err(r))).map_err(refused)
                        }
                    }
                })
                .await;
            match decided {
                Ok(Ok(edited)) => {
                    ctx.record(plugin, "on-tool-call", if edited.is_some() { "rewrite" } else { "allow" }, took);
                    if let Some(c) = edited {
                        current = Arc::new(c);
                    }
                }
                Ok(Err(Ok(reason))) => {
                    ctx.record(plugin, "on-tool-call", "deny", took);
                    return Ok(ToolDecision::Denied { plugin: plugin.name().to_string(), reason });
                }
                Ok(Err(Err(result))) => {
                    ctx.record(plugin, "on-tool-call", "answer", took);
                    return Ok(ToolDecision::Answered { plugin: plugin.name().to_string(), result });
                }
                Err(f) if self.failed(ctx, plugin, &f, took) => return Err(RequestError::Plugin(f)),
                Err(_) => {}
            }
        }
        Ok(ToolDecision::Run(unshare(current)))
    }

    /// Calls `provider` (a provider plugin) for a complete response. The
    /// provider reads the request through its handle (under its `messages`
    /// permission); its answer (OpenAI JSON) is charged to its `max-output`.
    /// Its failure always fails the call (there is no provider to fall back
    /// to here).
    pub async fn complete(
        &self,
        ctx: &RequestContext,
        provider: &LoadedPlugin,
        request: Arc<ChatRequest>,
    ) -> Result<ChatResponse, RequestError> {
        let started = Instant::now();
        let rules = CallRules::new("complete", provider.caps.messages, provider.limits.max_output);
        let req = RequestEntry::new(request, ctx.info_arc().clone(), false);
        let call = invoke::Complete { req, rules };
        let result = provider
            .call_checked(Some(ctx.map()), provider.limits.timeout, call, move |called| {
                let invoke::Called { answer, mut rules, .. } = called;
                access::violation(&mut rules).map_err(FailureKind::InvalidOutput)?;
                let budget = &mut rules.budget;
                match answer {
                    Ok(body) => access::accept_response_json("$", &body, budget).map(Ok),
                    Err(e) => access::accept_error(e, budget).map(Err),
                }
                .map_err(FailureKind::InvalidOutput)
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
            ctx.record(provider, "provider", "ok", started.elapsed());
            Ok(value)
        }
        Ok(Err(e)) => {
            ctx.record(provider, "provider", "fail", started.elapsed());
            Err(RequestError::Llm(e))
        }
        Err(f) => {
            ctx.record(provider, "provider", format!("failed-closed: {}", f.kind), started.elapsed());
            Err(RequestError::Plugin(f))
        }
    }
}

/// Where a [`ChunkStream`]'s chunks come from.
enum Source {
    /// A provider plugin's `start-stream` / `next`, on one checked-out instance.
    Plugin {
        plugin: Arc<LoadedPlugin>,
        /// The request, until the stream is started.
        request: Option<Arc<ChatRequest>>,
        session: Option<Box<Session>>,
        stream: Option<ResourceAny>,
    },
    /// Chunks from elsewhere (an OpenAI-compatible upstream).
    Upstream(ChunkStream),
    /// Nothing more (finished, or failed before it started).
    Done,
}

/// The next item of a [`ChunkStream`], being worked out.
type Step<'a> = Pin<Box<dyn Future<Output = Option<Result<ChatChunk, RequestError>>> + Send + 'a>>;
/// The next chunk of a source, being fetched.
type Pull<'a> = Pin<Box<dyn Future<Output = Result<Option<ChatChunk>, RequestError>> + Send + 'a>>;

/// The state of one [`ChunkStream`].
struct Driver {
    config: PipelineConfig,
    ctx: RequestContext,
    chunk_chain: Vec<Arc<LoadedPlugin>>,
    end_chain: Vec<Arc<LoadedPlugin>>,
    source: Source,
    deadline: tokio::time::Instant,
    /// The per-stream byte cap.
    budget: OutputBudget,
    count: usize,
    usage: Option<Usage>,
    pending: VecDeque<ChatChunk>,
    /// An error to yield first (the stream could not start).
    failed: Option<RequestError>,
    done: bool,
}

/// Why a stream was cut off at chunk `n`.
fn stream_cap(limit: u64, n: usize) -> String {
    format!("the stream is cut off at `$.stream[{n}]`: its chunks pass the stream byte cap of {limit} bytes")
}

fn llm_error(kind: ErrorKind, message: String) -> RequestError {
    RequestError::Llm(LlmError { kind, message, allow_fallback: false, retry_after_ms: None })
}

impl Driver {
    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline::new(&self.config)
    }

    fn remaining(&self) -> std::time::Duration {
        self.deadline.saturating_duration_since(tokio::time::Instant::now())
    }

    fn past_deadline(&self) -> RequestError {
        let t = humantime::format_duration(self.config.stream_timeout);
        llm_error(ErrorKind::Timeout, format!("the stream ran past its deadline of {t}"))
    }

    /// The next chunk from the source, before the hooks; `None` at its end.
    fn pull(&mut self) -> Pull<'_> {
        Box::pin(self.pull_inner())
    }

    async fn pull_inner(&mut self) -> Result<Option<ChatChunk>, RequestError> {
        let remaining = self.remaining();
        if remaining.is_zero() {
            return Err(self.past_deadline());
        }
        let n = self.count;
        if n == MAX_STREAM_CHUNKS {
            return Err(llm_error(
                ErrorKind::Provider,
                format!(
                    "`$.stream` has more than {MAX_STREAM_CHUNKS} chunks; at most {MAX_STREAM_CHUNKS} are accepted"
                ),
            ));
        }
        self.count += 1;
        let Driver { source, ctx, budget, .. } = self;
        match source {
            Source::Done => Ok(None),
            Source::Upstream(upstream) => match tokio::time::timeout(remaining, upstream.next()).await {
                Err(_) => Err(self.past_deadline()),
                Ok(None) => Ok(None),
                Ok(Some(Err(e))) => Err(e),
                Ok(Some(Ok(chunk))) => {
                    let bytes = chunk.text_len() as u64 + ELEMENT_COST;
                    budget
                        .charge(&format_args!("$.stream[{n}]"), bytes)
                        .map_err(|_| llm_error(ErrorKind::Provider, stream_cap(budget.limit(), n)))?;
                    Ok(Some(chunk))
                }
            },
            Source::Plugin { plugin, request, session, stream } => {
                // Each call: the plugin's own deadline, within what is left of the stream's.
                let remaining = remaining.min(plugin.limits.timeout);
                if session.is_none() {
                    *session =
                        Some(Box::new(plugin.session("start-stream", remaining).await.map_err(RequestError::Plugin)?));
                }
                let s = session.as_mut().expect("checked out above");
                if stream.is_none() {
                    let started = Instant::now();
                    let req = request.take().expect("a stream starts once");
                    let rules = CallRules::new("start-stream", plugin.caps.messages, plugin.limits.max_output);
                    let call =
                        invoke::StartStream { req: RequestEntry::new(req, ctx.info_arc().clone(), false), rules };
                    let result = s
                        .call_checked(Some(ctx.map()), remaining, call, |called| {
                            let invoke::Called { answer, mut rules, .. } = called;
                            access::violation(&mut rules).map_err(FailureKind::InvalidOutput)?;
                            match answer {
                                Ok(resource) => Ok(Ok(resource)),
                                Err(e) => access::accept_error(e, &mut rules.budget)
                                    .map(Err)
                                    .map_err(FailureKind::InvalidOutput),
                            }
                        })
                        .await;
                    *stream = Some(finish_provider(ctx, plugin, started, result)?);
                }
                let resource = stream.expect("started above");
                let left = self.deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(self.past_deadline());
                }
                let remaining = left.min(plugin.limits.timeout);
                let max_output = plugin.limits.max_output;
                let next = s
                    .call_checked(Some(ctx.map()), remaining, invoke::NextChunk { stream: resource }, |answer| {
                        match answer {
                            Ok(Some(body)) => {
                                let path = format_args!("$.stream[{n}]");
                                OutputBudget::new(max_output)
                                    .text(&path, &body)
                                    .and_then(|()| budget.text(&path, &body).map_err(|_| stream_cap(budget.limit(), n)))
                                    .and_then(|()| {
                                        access::accept_chunk_json(&path, &body, &mut OutputBudget::new(u64::MAX))
                                    })
                                    .map(|c| Ok(Some(c)))
                            }
                            Ok(None) => Ok(Ok(None)),
                            Err(e) => access::accept_error(e, &mut OutputBudget::new(max_output)).map(Err),
                        }
                        .map_err(FailureKind::InvalidOutput)
                    })
                    .await;
                match next {
                    Ok(Ok(chunk)) => Ok(chunk),
                    Ok(Err(e)) => Err(RequestError::Llm(e)),
                    // Cut off by the stream's deadline rather than the plugin's own.
                    Err(f) if matches!(f.kind, FailureKind::Timeout(_)) && left < plugin.limits.timeout => {
                        Err(self.past_deadline())
                    }
                    Err(f) => Err(RequestError::Plugin(f)),
                }
            }
        }
    }

    /// Lets go of the source: a provider plugin's stream resource is dropped
    /// and its instance parked (or discarded, after a failure).
    async fn release(&mut self) {
        if let Source::Plugin { session: Some(mut s), stream, .. } = std::mem::replace(&mut self.source, Source::Done) {
            if let Some(resource) = stream {
                let limit = self.remaining().min(s.plugin().limits.timeout);
                let dropped = s.call_checked(None, limit, invoke::EndStream { stream: resource }, Ok).await;
                if dropped.is_err() {
                    return; // the session discarded the instance
                }
            }
            s.close().await;
        }
    }

    /// The next item of the stream.
    fn step(&mut self) -> Step<'_> {
        Box::pin(self.step_inner())
    }

    async fn step_inner(&mut self) -> Option<Result<ChatChunk, RequestError>> {
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Some(Err(e));
        }
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Some(Ok(c));
            }
            if self.done {
                return None;
            }
            let pulled = self.pull().await;
            let item = match pulled {
                Ok(Some(chunk)) => {
                    if let Some(u) = chunk.usage() {
                        self.usage = Some(u.clone());
                    }
                    let (ctx, chain) = (&self.ctx, &self.chunk_chain);
                    match self.pipeline().on_chunk(ctx, chain, chunk).await {
                        Ok(Some(c)) => return Some(Ok(c)),
                        Ok(None) => continue,
                        Err(e) => Err(e),
                    }
                }
                Ok(None) => {
                    self.release().await;
                    self.done = true;
                    let usage = self.usage.take();
                    let (ctx, chunks, ends) = (&self.ctx, &self.chunk_chain, &self.end_chain);
                    match self.pipeline().on_stream_end(ctx, chunks, ends, usage).await {
                        Ok(tail) => {
                            self.pending.extend(tail);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            self.release().await;
            self.done = true;
            self.pending.clear();
            return Some(item);
        }
    }
}

/// Where a [`ChunkStream`] reads from, as the host facade chooses it.
pub(crate) enum StreamFrom {
    /// A provider plugin, with the request it is to answer.
    Plugin(Arc<LoadedPlugin>, Arc<ChatRequest>),
    /// Another stream of chunks.
    Upstream(ChunkStream),
    /// Nothing: the stream is this error.
    Error(RequestError),
}

/// A [`ChunkStream`] over `from`, with the `on-chunk` hooks of `chunk_chain`
/// and the `on-stream-end` hooks of `end_chain`, bounded by the config's
/// stream deadline and byte cap.
pub(crate) fn chunk_stream(
    config: &PipelineConfig,
    ctx: &RequestContext,
    chunk_chain: Vec<Arc<LoadedPlugin>>,
    end_chain: Vec<Arc<LoadedPlugin>>,
    from: StreamFrom,
) -> ChunkStream {
    let (source, failed) = match from {
        StreamFrom::Plugin(plugin, request) => {
            (Source::Plugin { plugin, request: Some(request), session: None, stream: None }, None)
        }
        StreamFrom::Upstream(s) => (Source::Upstream(s), None),
        StreamFrom::Error(e) => (Source::Done, Some(e)),
    };
    let driver = Driver {
        config: config.clone(),
        ctx: ctx.clone(),
        chunk_chain,
        end_chain,
        source,
        deadline: tokio::time::Instant::now() + config.stream_timeout,
        budget: OutputBudget::new(config.stream_max_bytes),
        count: 0,
        usage: None,
        pending: VecDeque::new(),
        failed,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(driver, |mut d| async move { d.step().await.map(|item| (item, d)) }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::*;
    use crate::openai::{ChunkChoice, Delta, FunctionDelta, Nullable, ToolCallDelta};
    use crate::{HostBuilder, PipelineConfig};

    #[test]
    fn merged_chunks_join_text_and_tool_call_pieces() {
        let mut held = ChatChunk::text("Mail me at ada@");
        held.id = "c1".into();
        let mut next = ChatChunk::text("example.com");
        next.choices[0].finish_reason = Some(Nullable::Value("stop".into()));
        next.choices[0].delta.tool_calls = Some(
            vec![ToolCallDelta {
                index: 0,
                function: Some(FunctionDelta { arguments: Some("{}".into()), ..Default::default() }),
                ..Default::default()
            }]
            .into(),
        );
        next.choices.push(ChunkChoice {
            index: 1,
            delta: Delta { content: Some(Nullable::Value("second".into())), ..Default::default() },
            ..Default::default()
        });
        next.usage = Some(Nullable::Value(Usage::new(1, 2)));
        merge_chunk(&mut held, next);
        assert_eq!(held.text_delta(), Some("Mail me at ada@example.com"));
        assert_eq!(held.choices[0].finish_reason(), Some("stop"));
        assert_eq!(held.choices[0].delta.tool_calls().len(), 1);
        assert_eq!(held.choices[1].delta.text(), Some("second"));
        assert_eq!(held.usage().map(|u| u.total_tokens), Some(3));
        assert_eq!(held.id, "c1", "the held chunk's id stays");
    }

    #[test]
    fn holds_are_kept_per_plugin_in_the_request_context() {
        let ctx = RequestContext::new("m");
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        assert!(!ctx.holds_any());
        ctx.hold(&a, ChatChunk::text("x"));
        ctx.hold(&b, ChatChunk::text("y"));
        let copy = ctx.clone();
        assert_eq!(copy.take_held("a").unwrap().text_delta(), Some("x"), "clones share the holds");
        assert!(ctx.take_held("a").is_none(), "taken once");
        assert!(ctx.holds_any());
        assert_eq!(ctx.take_held("b").unwrap().text_delta(), Some("y"));
        assert!(!ctx.holds_any());
    }

    fn chunks(n: usize) -> Vec<Result<ChatChunk, RequestError>> {
        (0..n).map(|i| Ok(ChatChunk::text(format!("piece {i} ")))).collect()
    }

    #[tokio::test]
    async fn filter_stream_passes_chunks_on_in_order_as_they_arrive() {
        let host = HostBuilder::new().build().unwrap();
        let ctx = RequestContext::new("m");
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<ChatChunk, RequestError>>(1);
        let upstream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let mut out = host.filter_stream(&ctx, upstream);
        // Chunk by chunk: the first comes out before the second is sent.
        tx.send(Ok(ChatChunk::text("a"))).await.unwrap();
        assert_eq!(out.next().await.unwrap().unwrap().text_delta(), Some("a"));
        tx.send(Ok(ChatChunk::text("b"))).await.unwrap();
        assert_eq!(out.next().await.unwrap().unwrap().text_delta(), Some("b"));
        drop(tx);
        assert!(out.next().await.is_none(), "the end of the upstream ends the stream");
    }

    #[tokio::test]
    async fn a_stream_past_its_byte_cap_or_deadline_ends_with_an_error() {
        let config = PipelineConfig { stream_max_bytes: 3 * (ELEMENT_COST + 8), ..Default::default() };
        let host = HostBuilder::new().pipeline(config).build().unwrap();
        let ctx = RequestContext::new("m");
        let items: Vec<_> = host.filter_stream(&ctx, futures_util::stream::iter(chunks(10))).collect().await;
        assert_eq!(items.len(), 4, "three chunks fit, then the error");
        let Err(RequestError::Llm(e)) = &items[3] else { panic!("{:?}", items[3]) };
        assert!(e.message.contains("`$.stream[3]`") && e.message.contains("byte cap of 72 bytes"), "{}", e.message);

        let config = PipelineConfig { stream_timeout: Duration::from_millis(50), ..Default::default() };
        let host = HostBuilder::new().pipeline(config).build().unwrap();
        let slow = futures_util::stream::iter(chunks(3)).then(|c| async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            c
        });
        let items: Vec<_> = host.filter_stream(&ctx, slow).collect().await;
        assert_eq!(items.len(), 2, "one chunk in time, then the deadline");
        let Err(RequestError::Llm(e)) = &items[1] else { panic!("{:?}", items[1]) };
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.message.contains("deadline of 50ms"), "{}", e.message);

        let failing = futures_util::stream::iter(vec![
            Ok(ChatChunk::text("a")),
            Err(llm_error(ErrorKind::Provider, "boom".into())),
            Ok(ChatChunk::text("b")),
        ]);
        let items: Vec<_> = host.filter_stream(&ctx, failing).collect().await;
        assert_eq!(items.len(), 2, "nothing follows an error");
    }

    #[tokio::test]
    async fn a_missing_provider_is_a_stream_of_one_error() {
        let host = HostBuilder::new().build().unwrap();
        let ctx = RequestContext::new("m");
        let items: Vec<_> = host.stream(&ctx, "nope", ChatRequest::default()).collect().await;
        assert!(matches!(&items[..], [Err(RequestError::Llm(e))] if e.kind == ErrorKind::NotFound));
    }
}
