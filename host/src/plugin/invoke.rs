//! One [`Invoke`] per hook: the typed call on a warm instance.

use std::future::Future;

use crate::bindings::types::{
    ChunkAction, LlmError, PostAction, PreAction, Request, RequestInfo, Response, StreamChunk, ToolAction, ToolCall,
    Usage,
};
use crate::budget::{MAX_STREAM_CHUNKS, OutputBudget};
use crate::plugin::{Invoke, Live};

fn missing(interface: &str) -> wasmtime::Error {
    wasmtime::format_err!("the component's `{interface}` exports were not loaded")
}

macro_rules! invoke {
    ($name:ident <$lt:lifetime> { $($field:ident : $ty:ty),* } -> $out:ty, $hook:literal,
     |$live:ident, $this:ident| $body:expr) => {
        pub(crate) struct $name<$lt> { $(pub(crate) $field: $ty),* }
        impl<$lt> Invoke for $name<$lt> {
            type Output = $out;
            const HOOK: &'static str = $hook;
            fn invoke<'a>(self, $live: &'a mut Live) -> impl Future<Output = wasmtime::Result<$out>> + Send + 'a
            where
                Self: 'a,
            {
                let $this = self;
                async move { $body }
            }
        }
    };
}

invoke!(PreRequest<'r> { info: &'r RequestInfo, req: &'r Request } -> Result<PreAction, String>, "pre-request",
|live, this| {
    let g = live.request.as_ref().ok_or_else(|| missing("request-hooks"))?;
    g.call_pre_request(&mut live.store, this.info, this.req).await
});

invoke!(PostResponse<'r> { info: &'r RequestInfo, outcome: Result<&'r Response, &'r LlmError> } -> Result<PostAction, String>, "post-response",
|live, this| {
    let g = live.request.as_ref().ok_or_else(|| missing("request-hooks"))?;
    g.call_post_response(&mut live.store, this.info, this.outcome).await
});

invoke!(OnChunk<'r> { info: &'r RequestInfo, chunk: &'r StreamChunk } -> Result<ChunkAction, String>, "on-chunk",
|live, this| {
    let g = live.stream.as_ref().ok_or_else(|| missing("stream-hooks"))?;
    g.call_on_chunk(&mut live.store, this.info, this.chunk).await
});

invoke!(OnStreamEnd<'r> { info: &'r RequestInfo, usage: Option<Usage> } -> Result<Vec<StreamChunk>, String>, "on-stream-end",
|live, this| {
    let g = live.stream.as_ref().ok_or_else(|| missing("stream-hooks"))?;
    g.call_on_stream_end(&mut live.store, this.info, this.usage).await
});

invoke!(OnToolCall<'r> { info: &'r RequestInfo, call: &'r ToolCall } -> Result<ToolAction, String>, "on-tool-call",
|live, this| {
    let g = live.tool.as_ref().ok_or_else(|| missing("tool-hooks"))?;
    g.call_on_tool_call(&mut live.store, this.info, this.call).await
});

invoke!(ProviderType<'r> { _marker: std::marker::PhantomData<&'r ()> } -> String, "provider-type",
|live, _this| {
    let g = live.provider.as_ref().ok_or_else(|| missing("provider"))?;
    g.call_provider_type(&mut live.store).await
});

invoke!(Complete<'r> { info: &'r RequestInfo, req: &'r Request } -> Result<Response, LlmError>, "complete",
|live, this| {
    let g = live.provider.as_ref().ok_or_else(|| missing("provider"))?;
    g.call_complete(&mut live.store, this.info, this.req).await
});

// Runs a whole provider stream on one instance and collects the chunks (the
// guest's `chunk-stream` resource lives in that instance). Every chunk is
// charged to `budget` as it arrives; the outer `Err` says why the stream was
// cut off (too many chunks, too many bytes). The call's deadline covers the
// whole stream.
invoke!(StreamAll<'r> { info: &'r RequestInfo, req: &'r Request, budget: OutputBudget } -> Result<Result<Vec<StreamChunk>, LlmError>, String>, "start-stream",
|live, this| {
    let g = live.provider.as_ref().ok_or_else(|| missing("provider"))?;
    let stream = match g.call_start_stream(&mut live.store, this.info, this.req).await? {
        Ok(s) => s,
        Err(e) => return Ok(Ok(Err(e))),
    };
    let mut budget = this.budget;
    let mut chunks = Vec::new();
    let result = loop {
        match g.chunk_stream().call_next(&mut live.store, stream).await? {
            Ok(Some(chunk)) => {
                let n = chunks.len();
                let charged = if n == MAX_STREAM_CHUNKS {
                    Err(format!("`$.stream` has more than {MAX_STREAM_CHUNKS} chunks; at most {MAX_STREAM_CHUNKS} are accepted"))
                } else {
                    budget.chunk(&format_args!("$.stream[{n}]"), &chunk)
                };
                if let Err(e) = charged {
                    break Ok(Err(e));
                }
                chunks.push(chunk);
            }
            Ok(None) => break Ok(Ok(Ok(chunks))),
            Err(e) => break Ok(Ok(Err(e))),
        }
    };
    stream.resource_drop_async(&mut live.store).await?;
    result
});
