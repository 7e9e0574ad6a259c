//! The pipeline room's facade: the [`Host`] methods that run a request's
//! hooks. Each picks the plugin set the request runs on (pinned at its first
//! hook call, so a reload in the middle never mixes versions) and hands the
//! work to [`Pipeline`].

use std::future::Future;
use std::sync::Arc;

use super::Host;
use crate::bindings::types::{ErrorKind, LlmError, Request, Response, StreamChunk, ToolCall, Usage};
use crate::manifest::Hook;
use crate::pipeline::{Outcome, Pipeline, PreStage, RequestContext, RequestError, ToolDecision};
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
    pub async fn pre_request(&self, ctx: &RequestContext, request: Request) -> PreStage {
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
    ) -> Result<Response, RequestError> {
        self.pipeline().post_response(ctx, stage, outcome).await
    }

    /// The whole pipeline: pre hooks, then `provider` unless a pre hook
    /// short-circuited or a fail-closed plugin failed, then post hooks.
    ///
    /// ```no_run
    /// # async fn demo(host: plugbox_host::Host, req: plugbox_host::Request) {
    /// use plugbox_host::{RequestContext, Response};
    /// let ctx = RequestContext::new("gpt-4o").with_caller("team-a");
    /// let result = host
    ///     .run_request(&ctx, req, |req| async move {
    ///         // call the real provider here
    ///         Ok(Response { id: "1".into(), model: req.model, choices: vec![], usage: None, extra: None })
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub async fn run_request<F, Fut>(
        &self,
        ctx: &RequestContext,
        request: Request,
        provider: F,
    ) -> Result<Response, RequestError>
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let plugins = self.request_plugins(ctx);
        self.pipeline().run_request(ctx, &plugins.request_chain, request, provider).await
    }

    /// Passes one streamed chunk through the `on-chunk` hooks in ascending
    /// priority. `Ok(None)` means a plugin dropped it.
    pub async fn on_chunk(
        &self,
        ctx: &RequestContext,
        chunk: StreamChunk,
    ) -> Result<Option<StreamChunk>, RequestError> {
        let chain = self.request_plugins(ctx).chain(Hook::OnChunk);
        self.pipeline().on_chunk(ctx, &chain, chunk).await
    }

    /// Runs the `on-stream-end` hooks; returns the chunks they append.
    pub async fn on_stream_end(
        &self,
        ctx: &RequestContext,
        usage: Option<Usage>,
    ) -> Result<Vec<StreamChunk>, RequestError> {
        let chain = self.request_plugins(ctx).chain(Hook::OnStreamEnd);
        self.pipeline().on_stream_end(ctx, &chain, usage).await
    }

    /// Asks the `on-tool-call` hooks, in ascending priority, about a tool call
    /// the model requested. The first deny or answer ends the chain; a rewrite
    /// is what the next plugin sees.
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
        request: &Request,
    ) -> Result<Response, RequestError> {
        let plugin = self.provider_plugin(ctx, provider_type)?;
        self.pipeline().complete(ctx, &plugin, request).await
    }

    /// Runs a provider plugin's stream to its end and returns the chunks
    /// (bounded in bytes, chunks and time: see [`Pipeline::complete_stream`]).
    pub async fn complete_stream(
        &self,
        ctx: &RequestContext,
        provider_type: &str,
        request: &Request,
    ) -> Result<Vec<StreamChunk>, RequestError> {
        let plugin = self.provider_plugin(ctx, provider_type)?;
        self.pipeline().complete_stream(ctx, &plugin, request).await
    }
}
