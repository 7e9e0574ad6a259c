//! # plugbox-host
//!
//! A WebAssembly-sandboxed plugin host for LLM services. Plugins are
//! WebAssembly components (built for `wasm32-wasip2` against the
//! `plugbox:plugin` WIT package) described by a `plugin.yaml` manifest. The
//! host grants each plugin exactly the capabilities its manifest declares and
//! the operator's [`Policy`] allows, keeps a pool of warm instances per
//! plugin, and runs their hooks around LLM provider calls with a deadline and
//! a memory cap per call.
//!
//! ```no_run
//! use plugbox_host::{ChatMessage, ChatRequest, ChatResponse, HostBuilder, RequestContext};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let host = HostBuilder::new().build()?;
//! let report = host.load_dir("plugins".as_ref()).await?;
//! for failure in &report.failed {
//!     eprintln!("{failure}"); // one broken plugin never stops the others
//! }
//!
//! // Any OpenAI Chat Completions body; fields the host does not model are kept.
//! let request = ChatRequest::from_json(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"top_k":5}"#)?;
//! let ctx = RequestContext::new("gpt-4o").with_caller("team-a");
//! let response = host
//!     .run_request(&ctx, request, |req| async move {
//!         // Call your provider with the request as the plugins passed it on.
//!         let text = req.messages.last().and_then(ChatMessage::text).unwrap_or_default().into_owned();
//!         Ok(ChatResponse::text("r1", &req.model, text))
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Streams: [`Host::stream`] pulls a provider plugin's chunks one by one and
//! [`Host::filter_stream`] takes chunks from elsewhere; both run the
//! `on-chunk` hooks as chunks flow and the `on-stream-end` hooks at the end.
//!
//! Everything an embedder uses is re-exported here: [`Host`] and
//! [`HostBuilder`], [`Policy`] (what plugins may be granted), the pipeline
//! rules on [`Host::run_request`], hot reload ([`Host::watch`],
//! [`PluginEvent`]). The public modules are those with more to offer than a
//! type or two: [`manifest`] (`plugin.yaml`), [`loader`] (plugin directory
//! forms, packing a manifest into a component), [`reload`] (the state file of
//! a plugin directory), [`devices`] (probes and GPU backends) and [`models`]
//! (model configs and endpoint routing).
//!
//! This crate has no command-line dependencies and builds no guests: the
//! `plugbox` command is the separate `plugbox` crate.

#![warn(missing_docs)]

#[allow(missing_docs)]
mod bindings;
mod blocking;
mod breaker;
mod budget;
mod capability;
pub mod devices;
mod devtools;
mod engine;
mod error;
mod events;
mod failure;
mod host;
mod imports;
#[cfg(test)]
mod layering;
pub mod loader;
pub mod manifest;
pub mod models;
pub mod openai;
mod pipeline;
mod plugin;
mod policy;
mod registry;
pub mod reload;
mod watch;

pub use breaker::{BreakerConfig, BreakerState};
pub use capability::{Capabilities, CapabilityDiff, Grant, Preopen};
pub use devices::{Admission, DeviceOptions, DeviceSnapshot, GpuBackend};
pub use engine::{CompileSource, EngineOptions};
pub use engine::{DEFAULT_POOLED_INSTANCES, InstancePooling};
pub use error::{Error, Result};
pub use events::{PluginEvent, PluginEventKind};
pub use failure::{FailureKind, PluginFailure};
pub use host::{Host, HostBuilder, LoadFailure, LoadReport};
pub use imports::kv::{
    DEFAULT_MEMORY_KV_LIMIT, KvError, KvFuture, KvQuota, KvStore, KvUsage, MEMORY_KV_ENTRY_COST, MemoryKv,
};
pub use imports::resources::ResourceLimits;
pub use imports::{HttpLimits, LogLimits};
pub use manifest::{Hook, Manifest};
pub use models::{ModelConfig, ModelSet};
pub use openai::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, Choice, ChunkChoice, ContentPart, Delta, MessageContent,
    Nullable, Role, Tool, ToolCall, ToolCallDelta, Usage,
};
pub use pipeline::streams::merge_chunk;
pub use pipeline::{
    ChunkStream, ContextLimits, HookTrace, Outcome, Pipeline, PipelineConfig, PreStage, RequestContext, RequestError,
    RequestInfo, ToolDecision,
};
#[doc(hidden)]
pub use plugin::HeldInstance;
pub use plugin::{
    DEFAULT_IDLE_TTL, DEFAULT_POOLED_MEMORY_BUDGET, INIT_TIMEOUT, LoadedPlugin, MAX_POOLED_GROWTH, PoolOptions,
    SHUTDOWN_BUDGET, StatsSnapshot,
};
pub use policy::{ApprovalPolicy, ApprovedGrants, PluginPolicy, Policy};
pub use registry::{Category, Snapshot};
pub use reload::{PluginState, PluginStatus, ReloadOutcome, ReloadReport};
pub use watch::{WatchOptions, Watcher};

/// The plain records of the `plugbox:plugin` WIT package that are part of
/// the host API (errors, device reports, health, log levels).
pub use bindings::types::{DeviceKind, DeviceReport, ErrorKind, Health, LlmError, LogLevel};

/// The version of the `plugbox:plugin` WIT package this host implements.
pub const WIT_VERSION: semver::Version = semver::Version::new(0, 2, 0);
