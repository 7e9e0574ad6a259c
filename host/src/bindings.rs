//! Host-side bindings of the `plugbox:plugin` WIT package.
//!
//! The generated code stays private to the crate; `lib.rs` re-exports the
//! plain WIT records (device reports, errors, health) that are part of the
//! host API. The request, response, chunk, stream end and tool call of
//! interface `llm` are host resources backed by the entry types of
//! [`crate::imports::llm`]; their methods are synchronous, never trace, and
//! lower only what they return. The `context` import (the request's shared
//! map) is synchronous and untraced too: both are on every hook's hot path.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: {
        // Getters and edits of the host-owned LLM data: plain synchronous
        // calls (trappable only so that a stale handle traps instead of
        // panicking), no tracing span per call.
        "plugbox:plugin/llm": trappable,
        // The request's context map: a lock and a map lookup, never waits.
        "plugbox:plugin/context": trappable,
        default: async | trappable | tracing,
    },
    exports: { default: async },
    with: {
        "plugbox:plugin/llm.request": crate::imports::llm::RequestEntry,
        "plugbox:plugin/llm.response": crate::imports::llm::ResponseEntry,
        "plugbox:plugin/llm.chunk": crate::imports::llm::ChunkEntry,
        "plugbox:plugin/llm.stream-end": crate::imports::llm::StreamEndEntry,
        "plugbox:plugin/llm.tool-call-ref": crate::imports::llm::ToolCallEntry,
    },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub(crate) use exports::plugbox::plugin::{
    device_hooks, device_probe, endpoint, lifecycle, provider, request_hooks, stream_hooks, tool_hooks,
};
pub(crate) use plugbox::plugin::{context, devices, kv, llm, log, types};
