//! The pipeline room's facade: the [`Host`] methods that run a request's
//! hooks. Each picks the plugin set the request runs on (pinned at its first
//! hook call, so a reload in the middle never mixes versions) and hands the
//! work to [`Pipeline`].

use std::future::Future;
use std::sync::Arc;

use futures_core::Stream;

use super::Host;
use crate::bindings::types::{ErrorKind, LlmError};
use crate::manifest::Hook;
use crate::openai::{ChatChunk, ChatRequest, ChatResponse, ToolCall, Usage};
use crate::pipeline::streams::{StreamFrom, chunk_stream};
use crate::pipeline::{ChunkStream, Outcome, Pipeline, PreStage, RequestContext, RequestError, ToolDecision};
use crate::plugin::LoadedPlugin;
use crate::registry::Snapshot;

impl Host {
    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline::new(&self.inner.pipeline)
    }

    /// The plugin set `ctx` runs on.
    fn request_plugins(&self, ctx: &RequestContext) -> Arc<Snapshot> {
        self.pipeline().bind(ctx, || self.snapshot())
    }

    /// The pre stage over the host's current request plugins.
    pub async fn pre_request(&self, ctx: &RequestContext, request: ChatRequest) -> PreStage {
        let plugins = self.request_plugins(ctx);
        self.pipeline().pre_stage(ctx, &plugins.request_chain, request).await
    }

    /// Runs the post-response hooks of the plugins `stage` reached, in reverse
    /// order, on `outcome`; returns the final outcome.
    pub async fn post_response(
        &self,
        ctx: &RequestContext,
        stage: PreStage,
        outcome: Outcome,
    ) -> Result<ChatResponse, RequestError> {
        self.pipeline().post_response(ctx, stage, outcome).await
    }

    /// The whole pipeline: pre hooks, then `provider` (with the request as
    /// the pre hooks passed it on, shared with the post hooks) unless a pre
    /// hook short-circuited or a fail-closed plugin failed, then post hooks.
    ///
    /// ```no_run
    /// # async fn demo(host: plugbox_host::Host, req: plugbox_host::ChatRequest) {
    /// use plugbox_host::{ChatResponse, RequestContext};
    /// let ctx = RequestContext::new("gpt-4o").with_caller("team-a");
    /// let result = host
    ///     .run_request(&ctx, req, |req| async move {
    ///         // call the real provider here
    ///         Ok(ChatResponse::text("1", &req.model, "hello"))
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub async fn run_request<F, Fut>(
        &self,
        ctx: &RequestContext,
        request: ChatRequest,
        provider: F,
    ) -> Result<ChatResponse, RequestError>
    where
        F: FnOnce(Arc<ChatRequest>) -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let plugins = self.request_plugins(ctx);
        self.pipeline().run_request(ctx, &plugins.request_chain, request, provider).await
    }

    /// Passes one streamed chunk through the `on-chunk` hooks in ascending
    /// priority. `Ok(None)` means a plugin dropped it or holds it back (to
    /// be merged into the next chunk; see [`Host::on_stream_end`]).
    pub async fn on_chunk(&self, ctx: &RequestContext, chunk: ChatChunk) -> Result<Option<ChatChunk>, RequestError> {
        let chain = self.request_plugins(ctx).chain(Hook::OnChunk);
        self.pipeline().on_chunk(ctx, &chain, chunk).await
    }

    /// Ends a stream: text still held back is offered to its holder once
    /// more (`last()` true) and flushed through the later `on-chunk` hooks;
    /// then the `on-stream-end` hooks run. Returns the flushed chunks, then
    /// the chunks the hooks append.
    pub async fn on_stream_end(
        &self,
        ctx: &RequestContext,
        usage: Option<Usage>,
    ) -> Result<Vec<ChatChunk>, RequestError> {
        let plugins = self.request_plugins(ctx);
        let (chunks, ends) = (plugins.chain(Hook::OnChunk), plugins.chain(Hook::OnStreamEnd));
        self.pipeline().on_stream_end(ctx, &chunks, &ends, usage).await
    }

    /// Asks the `on-tool-call` hooks, in ascending priority, about a tool call
    /// the model requested. The first deny or answer ends the chain; an
    /// edited call is what the next plugin sees.
    pub async fn on_tool_call(&self, ctx: &RequestContext, call: ToolCall) -> Result<ToolDecision, RequestError> {
        let chain = self.request_plugins(ctx).chain(Hook::OnToolCall);
        self.pipeline().on_tool_call(ctx, &chain, call).await
    }

    fn provider_plugin(&self, ctx: &RequestContext, provider_type: &str) -> Result<Arc<LoadedPlugin>, RequestError> {
        self.request_plugins(ctx).providers.get(provider_type).cloned().ok_or_else(|| {
            RequestError::Llm(LlmError {
                kind: ErrorKind::NotFound,
                message: crate::Error::NotFound(format!("provider:{provider_type}")).to_string(),
                allow_fallback: true,
                retry_after_ms: None,
            })
        })
    }

    /// Calls the provider plugin of `provider_type` for a complete response.
    pub async fn complete(
        &self,
        ctx: &RequestContext,
        provider_type: &str,
        request: &ChatRequest,
    ) -> Result<ChatResponse, RequestError> {
        let plugin = self.provider_plugin(ctx, provider_type)?;
        self.pipeline().complete(ctx, &plugin, Arc::new(request.clone())).await
    }

    /// Streams the answer of the provider plugin of `provider_type` to
    /// `request`, chunk by chunk as the caller pulls them: each pull is one
    /// `next` call on the instance that holds the provider's stream (checked
    /// out of the pool for the stream's life), then the `on-chunk` hooks; at
    /// the end, held text is flushed and the `on-stream-end` hooks run.
    ///
    /// The stream is bounded by [`PipelineConfig::stream_timeout`] (its total
    /// deadline: each `next` gets what is left of it) and
    /// [`PipelineConfig::stream_max_bytes`] (chunk JSON, in total); each chunk
    /// is also charged to the provider's `max-output`. An error ends it.
    ///
    /// [`PipelineConfig::stream_timeout`]: crate::PipelineConfig::stream_timeout
    /// [`PipelineConfig::stream_max_bytes`]: crate::PipelineConfig::stream_max_bytes
    pub fn stream(&self, ctx: &RequestContext, provider_type: &str, request: ChatRequest) -> ChunkStream {
        let request = Arc::new(request);
        ctx.set_request(request.clone());
        let from = match self.provider_plugin(ctx, provider_type) {
            Ok(plugin) => StreamFrom::Plugin(plugin, request),
            Err(e) => StreamFrom::Error(e),
        };
        self.chunk_stream(ctx, from)
    }

    /// Runs the stream hooks over chunks from elsewhere (an OpenAI-compatible
    /// upstream the gateway reads): `on-chunk` as each chunk arrives, held
    /// text flushed and `on-stream-end` at its end, within the same deadline
    /// and byte cap as [`Host::stream`] (upstream chunks are charged their
    /// text). The hooks see the request the pre stage passed on.
    pub fn filter_stream<S>(&self, ctx: &RequestContext, upstream: S) -> ChunkStream
    where
        S: Stream<Item = Result<ChatChunk, RequestError>> + Send + 'static,
    {
        self.chunk_stream(ctx, StreamFrom::Upstream(Box::pin(upstream)))
    }

    fn chunk_stream(&self, ctx: &RequestContext, from: StreamFrom) -> ChunkStream {
        let plugins = self.request_plugins(ctx);
        let (chunks, ends) = (plugins.chain(Hook::OnChunk), plugins.chain(Hook::OnStreamEnd));
        chunk_stream(&self.inner.pipeline, ctx, chunks, ends, from)
    }
}
