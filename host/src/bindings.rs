//! Host-side bindings of the `plugbox:plugin` WIT package.
//!
//! The generated code stays private to the crate (STYLE 7); `lib.rs` re-exports
//! the LLM-shaped data types, which are the public vocabulary of the host API.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async | trappable | tracing },
    exports: { default: async },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub(crate) use exports::plugbox::plugin::{
    device_hooks, device_probe, endpoint, lifecycle, provider, request_hooks, stream_hooks, tool_hooks,
};
pub(crate) use plugbox::plugin::{context, devices, kv, log, types};
