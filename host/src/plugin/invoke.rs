//! One [`Invoke`] per hook: the typed call on a warm instance.
//!
//! The `llm` entries a hook gets are moved into the instance's resource
//! table for the call (the guest gets `borrow` handles to them) and taken
//! back after it, together with the call's [`CallRules`] (budget left, first
//! violation). Nothing is cloned on the way in or out.

use std::future::Future;

use wasmtime::component::{Resource, ResourceAny};

use crate::bindings::provider;
use crate::bindings::request_hooks::{PostAction, PreAction};
use crate::bindings::stream_hooks::ChunkAction;
use crate::bindings::tool_hooks::ToolAction;
use crate::bindings::types::LlmError;
use crate::imports::llm::{CallRules, ChunkEntry, RequestEntry, ResponseEntry, StreamEndEntry, ToolCallEntry};
use crate::plugin::{Invoke, Live};

fn missing(interface: &str) -> wasmtime::Error {
    wasmtime::format_err!("the component's `{interface}` exports were not loaded")
}

/// What a hook call gives back: its answer, the entry it could edit, and the
/// call's rules (budget spent, first violation).
pub(crate) struct Called<A, E> {
    pub(crate) answer: A,
    pub(crate) entry: E,
    pub(crate) rules: CallRules,
}

/// A borrow handle for an entry the host owns in the table.
fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(r.rep())
}

macro_rules! invoke {
    ($name:ident { $($field:ident : $ty:ty),* } -> $out:ty, $hook:literal,
     |$live:ident, $this:ident| $body:expr) => {
        pub(crate) struct $name { $(pub(crate) $field: $ty),* }
        impl Invoke for $name {
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

invoke!(PreRequest { req: RequestEntry, rules: CallRules } -> Called<Result<PreAction, String>, RequestEntry>, "pre-request",
|live, this| {
    let g = live.request.as_ref().ok_or_else(|| missing("request-hooks"))?;
    let state = live.store.data_mut();
    state.llm = this.rules;
    let req = state.table.push(this.req)?;
    let answer = g.call_pre_request(&mut live.store, borrow(&req)).await?;
    let state = live.store.data_mut();
    let entry = state.table.delete(req)?;
    Ok(Called { answer, entry, rules: std::mem::take(&mut state.llm) })
});

invoke!(PostResponse { req: RequestEntry, resp: ResponseEntry, rules: CallRules } -> Called<Result<PostAction, String>, ResponseEntry>, "post-response",
|live, this| {
    let g = live.request.as_ref().ok_or_else(|| missing("request-hooks"))?;
    let state = live.store.data_mut();
    state.llm = this.rules;
    let req = state.table.push(this.req)?;
    let resp = state.table.push(this.resp)?;
    let answer = g.call_post_response(&mut live.store, borrow(&req), borrow(&resp)).await?;
    let state = live.store.data_mut();
    let entry = state.table.delete(resp)?;
    state.table.delete(req)?;
    Ok(Called { answer, entry, rules: std::mem::take(&mut state.llm) })
});

invoke!(OnChunk { req: RequestEntry, chunk: ChunkEntry, rules: CallRules } -> Called<Result<ChunkAction, String>, ChunkEntry>, "on-chunk",
|live, this| {
    let g = live.stream.as_ref().ok_or_else(|| missing("stream-hooks"))?;
    let state = live.store.data_mut();
    state.llm = this.rules;
    let req = state.table.push(this.req)?;
    let chunk = state.table.push(this.chunk)?;
    let answer = g.call_on_chunk(&mut live.store, borrow(&req), borrow(&chunk)).await?;
    let state = live.store.data_mut();
    let entry = state.table.delete(chunk)?;
    state.table.delete(req)?;
    Ok(Called { answer, entry, rules: std::mem::take(&mut state.llm) })
});

invoke!(OnStreamEnd { req: RequestEntry, end: StreamEndEntry, rules: CallRules } -> Called<Result<(), String>, StreamEndEntry>, "on-stream-end",
|live, this| {
    let g = live.stream.as_ref().ok_or_else(|| missing("stream-hooks"))?;
    let state = live.store.data_mut();
    state.llm = this.rules;
    let req = state.table.push(this.req)?;
    let end = state.table.push(this.end)?;
    let answer = g.call_on_stream_end(&mut live.store, borrow(&req), borrow(&end)).await?;
    let state = live.store.data_mut();
    let entry = state.table.delete(end)?;
    state.table.delete(req)?;
    Ok(Called { answer, entry, rules: std::mem::take(&mut state.llm) })
});

invoke!(OnToolCall { req: RequestEntry, call: ToolCallEntry, rules: CallRules } -> Called<Result<ToolAction, String>, ToolCallEntry>, "on-tool-call",
|live, this| {
    let g = live.tool.as_ref().ok_or_else(|| missing("tool-hooks"))?;
    let state = live.store.data_mut();
    state.llm = this.rules;
    let req = state.table.push(this.req)?;
    let call = state.table.push(this.call)?;
    let answer = g.call_on_tool_call(&mut live.store, borrow(&req), borrow(&call)).await?;
    let state = live.store.data_mut();
    let entry = state.table.delete(call)?;
    state.table.delete(req)?;
    Ok(Called { answer, entry, rules: std::mem::take(&mut state.llm) })
});

invoke!(ProviderType {} -> String, "provider-type",
|live, _this| {
    let g = live.provider.as_ref().ok_or_else(|| missing("provider"))?;
    g.call_provider_type(&mut live.store).await
});

invoke!(Complete { req: RequestEntry, rules: CallRules } -> Called<Result<String, LlmError>, ()>, "complete",
|live, this| {
    let g = live.provider.as_ref().ok_or_else(|| missing("provider"))?;
    let state = live.store.data_mut();
    state.llm = this.rules;
    let req = state.table.push(this.req)?;
    let answer = g.call_complete(&mut live.store, borrow(&req)).await?;
    let state = live.store.data_mut();
    state.table.delete(req)?;
    Ok(Called { answer, entry: (), rules: std::mem::take(&mut state.llm) })
});

invoke!(StartStream { req: RequestEntry, rules: CallRules } -> Called<Result<ResourceAny, LlmError>, ()>, "start-stream",
|live, this| {
    let g = live.provider.as_ref().ok_or_else(|| missing("provider"))?;
    let state = live.store.data_mut();
    state.llm = this.rules;
    let req = state.table.push(this.req)?;
    let answer = g.call_start_stream(&mut live.store, borrow(&req)).await?;
    let state = live.store.data_mut();
    state.table.delete(req)?;
    Ok(Called { answer, entry: (), rules: std::mem::take(&mut state.llm) })
});

invoke!(NextChunk { stream: ResourceAny } -> Result<Option<String>, LlmError>, "start-stream",
|live, this| {
    let g: &provider::Guest = live.provider.as_ref().ok_or_else(|| missing("provider"))?;
    g.chunk_stream().call_next(&mut live.store, this.stream).await
});

invoke!(EndStream { stream: ResourceAny } -> (), "start-stream",
|live, this| {
    this.stream.resource_drop_async(&mut live.store).await
});
