//! `stream: true`: Server-Sent Events, `data: {chunk}\n\n` per chunk, then
//! `data: [DONE]\n\n`.
//!
//! The provider attempts run until one yields its first chunk (so a failure
//! before that falls back to the next provider, and a failure of the last
//! one is an HTTP error); then the response starts and a task drives the
//! stream: `on-chunk` hooks as chunks flow (in the host's stream), tool-call
//! fragments held back and assembled until their choice finishes, then put
//! to the tool hooks (see [`crate::tools`]), and `on-stream-end` at the end.
//! An error after the first chunk is one SSE event `data: {"error":{...}}`,
//! then the stream closes (no `[DONE]`). A client that goes away, or the
//! request deadline, drops the provider's stream at once (a plugin's
//! instance is discarded, an upstream connection closed), and the
//! `on-stream-end` hooks still run.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures_util::StreamExt;
use plugbox_host::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, ChunkChoice, ChunkStream, Delta, ErrorKind, Host, LlmError,
    Nullable, RequestContext, Role, Usage,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::chat::{LastUpstreamError, add_usage, for_attempt, llm, missing_provider, request_llm};
use crate::error::{ApiError, upstream_llm_error};
use crate::routes::{Attempt, Target};
use crate::server::Admitted;
use crate::state::Shared;
use crate::tools::{self, Assembler};

/// Opens the stream (pre hooks, attempts with fallback until a first
/// chunk), then answers with the SSE response a task feeds.
pub(crate) async fn start(
    shared: Arc<Shared>,
    admitted: Admitted,
    ctx: RequestContext,
    request: ChatRequest,
    plan: Vec<Attempt>,
    deadline: Instant,
) -> Result<Response, ApiError> {
    let host = shared.host.clone();
    let include_usage = request.includes_usage();
    let max_rounds = admitted.active.config.limits.max_tool_rounds;
    let mut stage = host.pre_request(&ctx, request).await;
    let opened = if let Some(answered) = stage.short_circuit.take() {
        // A pre hook answered: its answer (after the post hooks) is streamed
        // through the stream hooks like a provider's.
        let request = stage.request.clone();
        let response = host.post_response(&ctx, stage, answered).await.map_err(|e| ApiError::from_request(&e))?;
        let chunks = response_chunks(&response);
        let mut stream = host.filter_stream(&ctx, futures_util::stream::iter(chunks.into_iter().map(Ok)));
        let first = stream.next().await;
        Opened { stream, first, attempt: None, request: (*request).clone() }
    } else if stage.failure.is_some() {
        let failed = Err(llm(ErrorKind::Internal, "a fail-closed plugin failed", false));
        let e = match host.post_response(&ctx, stage, failed).await {
            Err(e) => ApiError::from_request(&e),
            Ok(_) => ApiError::new(500, "a fail-closed plugin failed"),
        };
        return Err(e);
    } else {
        let request = (*stage.request).clone();
        drop(stage);
        match tokio::time::timeout_at(deadline, open_with_fallback(&host, &ctx, request, &plan)).await {
            Ok(opened) => opened?,
            Err(_) => return Err(ApiError::new(504, "the stream did not start before the request deadline")),
        }
    };
    // From here on the hooks see the provider that serves the stream.
    let ctx = match &opened.attempt {
        Some(attempt) => ctx.with_provider(attempt.provider.clone()),
        None => ctx,
    };
    // A pre hook's answer has no model to send plugin-answered tool calls to.
    let model_behind = opened.attempt.is_some();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let driver = Driver {
        host,
        ctx,
        include_usage,
        max_rounds,
        model_behind,
        deadline,
        tx,
        assembler: Assembler::default(),
        round: 0,
        round_text: String::new(),
        spent: None,
        follow_up: None,
        held: (admitted.permit, admitted.in_flight),
    };
    tokio::spawn(driver.run(opened));
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// A stream that yielded its first item (or ended at once).
struct Opened {
    stream: ChunkStream,
    first: Option<Result<ChatChunk, plugbox_host::RequestError>>,
    /// The attempt that serves it (`None`: a pre hook's answer).
    attempt: Option<Attempt>,
    /// The request as the pre hooks passed it on.
    request: ChatRequest,
}

async fn open(
    host: &Host,
    ctx: &RequestContext,
    attempt: &Attempt,
    request: &ChatRequest,
    upstream: &LastUpstreamError,
) -> Result<ChunkStream, LlmError> {
    let request = for_attempt(attempt, request);
    match &attempt.target {
        Target::Plugin { provider_type } => {
            missing_provider(host, provider_type)?;
            Ok(host.stream(ctx, provider_type, request))
        }
        Target::Upstream(client) => {
            let chunks = client.chat_stream(&request).await.map_err(|e| {
                let llm = upstream_llm_error(&e);
                *upstream.lock() = Some(e);
                llm
            })?;
            Ok(host.filter_stream(ctx, chunks))
        }
        #[allow(unreachable_patterns)]
        _ => Err(llm(ErrorKind::Internal, "a provider kind this gateway cannot call", true)),
    }
}

async fn open_with_fallback(
    host: &Host,
    ctx: &RequestContext,
    request: ChatRequest,
    plan: &[Attempt],
) -> Result<Opened, ApiError> {
    for (i, attempt) in plan.iter().enumerate() {
        let last = i + 1 == plan.len();
        let upstream = LastUpstreamError::default();
        // The hooks of this attempt's stream see its provider (`req.provider()`).
        let ctx = &ctx.clone().with_provider(attempt.provider.clone());
        let failed = match open(host, ctx, attempt, &request, &upstream).await {
            Ok(mut stream) => match stream.next().await {
                Some(Err(e)) => request_llm(&e),
                first => return Ok(Opened { stream, first, attempt: Some(attempt.clone()), request }),
            },
            Err(e) => e,
        };
        if last || !failed.allow_fallback {
            return Err(ApiError::from_llm_or_upstream(&failed, upstream.lock().take()));
        }
        tracing::info!(
            request_id = %ctx.info().request_id, provider = %attempt.provider,
            "stream failed before its first chunk ({}), falling back to `{}`", failed.message, plan[i + 1].provider
        );
    }
    Err(ApiError::new(503, "no provider"))
}

/// A provider's whole answer as stream chunks: per choice one chunk with
/// its role, text and tool calls, one with its finish reason; then usage.
fn response_chunks(response: &ChatResponse) -> Vec<ChatChunk> {
    let like = ChatChunk {
        id: response.id.clone(),
        object: "chat.completion.chunk".into(),
        created: response.created,
        model: response.model.clone(),
        ..Default::default()
    };
    let mut out = Vec::new();
    for choice in &response.choices {
        let m = &choice.message;
        let delta = Delta {
            role: Some(Nullable::Value(m.role.clone())),
            content: m.text().map(|t| Nullable::Value(t.into_owned())),
            refusal: m.refusal.clone(),
            ..Default::default()
        };
        out.push(tools::chunk_like(&like, choice.index, delta));
        if !m.tool_calls().is_empty() {
            out.push(tools::calls_chunk(&like, choice.index, m.tool_calls()));
        }
        let mut end = tools::chunk_like(&like, choice.index, Delta::default());
        end.choices[0].finish_reason = Some(Nullable::Value(choice.finish_reason().unwrap_or("stop").to_string()));
        out.push(end);
    }
    if let Some(u) = response.usage() {
        let mut usage = like.clone();
        usage.usage = Some(Nullable::Value(u.clone()));
        out.push(usage);
    }
    out
}

/// Drives one stream into the response body.
struct Driver {
    host: Host,
    ctx: RequestContext,
    include_usage: bool,
    max_rounds: u32,
    /// Whether a model serves the stream (not a pre hook's answer): only then
    /// can plugin-answered tool calls go back to it.
    model_behind: bool,
    deadline: Instant,
    tx: mpsc::Sender<Bytes>,
    assembler: Assembler,
    /// Tool rounds done.
    round: u32,
    /// Choice 0's text this round (for the follow-up assistant message).
    round_text: String,
    /// Usage of the rounds before this one.
    spent: Option<Usage>,
    /// Messages for the next round, when plugins answered tool calls.
    follow_up: Option<Vec<ChatMessage>>,
    /// The concurrency permit and the in-flight count, held to the end.
    held: (tokio::sync::OwnedSemaphorePermit, crate::state::InFlight),
}

/// How a stream ended.
enum End {
    /// Its last chunk and `[DONE]` went out.
    Done,
    /// It ended with an error event.
    Failed,
    /// The client went away or the deadline passed: the provider's stream was
    /// dropped before its end.
    Cut,
}

impl Driver {
    async fn run(mut self, opened: Opened) {
        let Opened { mut stream, first, attempt, mut request } = opened;
        let mut next = first.map(Some);
        let end = loop {
            let item = match next.take() {
                Some(item) => item,
                None => {
                    tokio::select! {
                        biased;
                        _ = self.tx.closed() => break End::Cut,
                        _ = tokio::time::sleep_until(self.deadline) => {
                            let e = ApiError::new(504, "the stream ran past the request deadline").with_code("timeout");
                            let _ = self.send(Bytes::from(e.sse_event())).await;
                            break End::Cut;
                        }
                        item = stream.next() => item,
                    }
                }
            };
            match item {
                None => {
                    let Some(messages) = self.follow_up.take() else {
                        if !self.send(Bytes::from_static(b"data: [DONE]\n\n")).await {
                            break End::Done; // the stream itself ended: its end hooks ran
                        }
                        break End::Done;
                    };
                    // Plugins answered tool calls: call the model again.
                    let Some(attempt) = &attempt else {
                        // Not reached: without a model behind the stream no follow-up is planned.
                        let _ = self.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
                        break End::Done;
                    };
                    request = tools::next_round(&request, messages);
                    self.round += 1;
                    self.round_text.clear();
                    self.assembler = Assembler::default();
                    // Within the deadline, and only while the client is there
                    // (the last round's end hooks ran: the end is `Failed`).
                    let upstream = LastUpstreamError::default();
                    let reopen = open(&self.host, &self.ctx, attempt, &request, &upstream);
                    let reopened = tokio::select! {
                        biased;
                        _ = self.tx.closed() => break End::Failed,
                        r = tokio::time::timeout_at(self.deadline, reopen) => r,
                    };
                    match reopened {
                        Ok(Ok(s)) => stream = s,
                        Ok(Err(e)) => {
                            let _ = self.send(Bytes::from(ApiError::from_llm(&e).sse_event())).await;
                            break End::Failed;
                        }
                        Err(_) => {
                            let e = ApiError::new(504, "the stream ran past the request deadline").with_code("timeout");
                            let _ = self.send(Bytes::from(e.sse_event())).await;
                            break End::Failed;
                        }
                    }
                }
                Some(Err(e)) => {
                    let _ = self.send(Bytes::from(ApiError::from_request(&e).sse_event())).await;
                    break End::Failed;
                }
                Some(Ok(chunk)) => match self.process(chunk).await {
                    Ok(out) => {
                        let mut gone = false;
                        for c in out {
                            let event = format!("data: {}\n\n", c.to_json());
                            if !self.send(Bytes::from(event)).await {
                                gone = true;
                                break;
                            }
                        }
                        if gone {
                            break End::Cut;
                        }
                    }
                    Err(e) => {
                        let _ = self.send(Bytes::from(e.sse_event())).await;
                        break End::Cut;
                    }
                },
            }
        };
        if let End::Cut = end {
            // Stop the provider now (a plugin's instance is discarded, an
            // upstream's connection closed), then let the end hooks see the end.
            drop(stream);
            if let Err(e) = self.host.on_stream_end(&self.ctx, self.spent.clone()).await {
                tracing::warn!(request_id = %self.ctx.info().request_id, "on-stream-end after a cut stream: {e}");
            }
            tracing::debug!(request_id = %self.ctx.info().request_id, "stream cut: client gone or deadline");
        }
        drop(self.held);
    }

    /// Sends `bytes` to the client; `false` when the client went away or
    /// did not take them before the request deadline (a client that stops
    /// reading must not hold its stream, and its permit, for ever).
    async fn send(&self, bytes: Bytes) -> bool {
        matches!(tokio::time::timeout_at(self.deadline, self.tx.send(bytes)).await, Ok(Ok(())))
    }

    /// One chunk from the hooks → the chunks to send.
    async fn process(&mut self, mut chunk: ChatChunk) -> Result<Vec<ChatChunk>, ApiError> {
        let had_calls = self.assembler.absorb(&mut chunk);
        if let Some(text) = chunk.choices.iter().find(|c| c.index == 0).and_then(|c| c.delta.text()) {
            self.round_text.push_str(text);
        }
        let mut out = Vec::new();
        let mut changed = had_calls;
        let finished: Vec<u32> =
            chunk.choices.iter().filter(|c| c.finish_reason().is_some()).map(|c| c.index).collect();
        for index in finished {
            let calls = self.assembler.take(index);
            if calls.is_empty() {
                continue;
            }
            let decided = tools::decide(&self.host, &self.ctx, calls).await.map_err(|e| ApiError::from_request(&e))?;
            if !decided.run.is_empty() {
                out.push(tools::calls_chunk(&chunk, index, &decided.run));
            }
            let choice: &mut ChunkChoice =
                chunk.choices.iter_mut().find(|c| c.index == index).expect("finished choice");
            if index == 0 && !decided.answered.is_empty() && self.model_behind && self.round < self.max_rounds {
                let text = Some(self.round_text.clone()).filter(|t| !t.is_empty());
                self.follow_up = Some(decided.follow_up(text));
                // The answer goes on in the next round.
                choice.finish_reason = None;
                changed = true;
                continue;
            }
            let mut note = decided.denial_note();
            if !decided.answered.is_empty() {
                let why_not = if self.model_behind {
                    format!("the limit of {} tool rounds was reached", self.max_rounds)
                } else {
                    "a plugin answered this request, there is no model to continue with".to_string()
                };
                note = format!("{note} [tool calls answered by plugins were not run: {why_not}]").trim().to_string();
            }
            if decided.run.is_empty() {
                choice.finish_reason = Some(Nullable::Value("stop".into()));
            }
            if !note.is_empty() {
                let delta = Delta { content: Some(Nullable::Value(note)), ..Default::default() };
                out.push(tools::chunk_like(&chunk, index, delta));
            }
        }
        let mut usage_changed = changed;
        if let Some(Nullable::Value(usage)) = &chunk.usage {
            if self.follow_up.is_some() {
                // Counted into the final round's usage.
                add_usage(&mut self.spent, Some(usage));
                chunk.usage = None;
                usage_changed = true;
            } else if let Some(before) = self.spent.take() {
                let mut total = Some(before);
                add_usage(&mut total, Some(usage));
                chunk.usage = total.map(Nullable::Value);
            }
        }
        if !self.include_usage && chunk.usage.is_some() {
            chunk.usage = None;
            usage_changed = true;
        }
        // A role chunk of a later round says nothing new.
        if self.round > 0 {
            for c in &mut chunk.choices {
                if c.delta.role == Some(Nullable::Value(Role::Assistant)) {
                    c.delta.role = None;
                }
            }
        }
        let emptied = usage_changed || self.round > 0;
        if !(emptied && tools::is_empty_chunk(&chunk)) {
            out.push(chunk);
        }
        Ok(out)
    }
}
