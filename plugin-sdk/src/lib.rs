//! # plugbox-sdk: write plugbox plugins in Rust
//!
//! A plugbox plugin is a WebAssembly component (built for `wasm32-wasip2`) that
//! exports the `plugbox:plugin@0.2.0` interfaces. With this crate a plugin is one
//! type implementing [`Plugin`] (override only the hooks you need; every hook has
//! a harmless default) and one [`export!`] line.
//!
//! ## A complete plugin
//!
//! This plugin tags the last user message with the caller's name, counts
//! requests per caller in its key/value store, and refuses callers that are
//! over a quota.
//!
//! ```rust
//! use plugbox_sdk::{Access, AccessError, Config, LlmError, Plugin, PreAction, Request, kv};
//! use std::time::Duration;
//!
//! struct Quota {
//!     max_per_hour: i64,
//! }
//!
//! impl Plugin for Quota {
//!     fn init(config: Config) -> Result<Self, String> {
//!         let max_per_hour = config.get_i64("max_per_hour")?.unwrap_or(100);
//!         if max_per_hour <= 0 {
//!             return Err(format!("config `max_per_hour` must be positive, got `{max_per_hour}`"));
//!         }
//!         Ok(Quota { max_per_hour })
//!     }
//!
//!     fn pre_request(&mut self, req: &Request) -> Result<PreAction, String> {
//!         let caller = req.caller_or("anonymous");
//!         let used = kv::increment(&format!("quota:{caller}"), 1, Some(Duration::from_secs(3600)))
//!             .map_err(|e| format!("kv increment failed: {e}"))?;
//!         if used > self.max_per_hour {
//!             plugbox_sdk::log::warn!("caller `{caller}` is over its quota ({used} requests)");
//!             let error = LlmError::rate_limited("hourly quota exceeded", Duration::from_secs(60));
//!             return Ok(PreAction::Fail(error));
//!         }
//!         // Only what is asked for crosses into the plugin: a role, then one text.
//!         if let Some(i) = req.last_user_index() {
//!             let text = req.text(i)?.unwrap_or_default();
//!             req.set_text(i, &format!("[{caller}] {text}"))?;
//!         }
//!         Ok(PreAction::Continue)
//!     }
//! }
//!
//! plugbox_sdk::export!(Quota);
//! // Put plugin.yaml into the component, so the .wasm can be deployed on its own:
//! // plugbox_sdk::embed_manifest!("../plugin.yaml");
//!
//! # fn main() {
//! // Off wasm, requests are in-memory stand-ins with the host's permission
//! // rules, and the host imports are served in-process (see `testing`), so
//! // plugins are unit tested with a plain `cargo test`:
//! let mut plugin = Quota::init(Config::from_json(r#"{"max_per_hour": 1}"#).unwrap()).unwrap();
//! let req = Request::builder("gpt-4o").user("hi").caller("alice").access(Access::Write).build();
//! assert_eq!(plugin.pre_request(&req).unwrap(), PreAction::Continue);
//! assert_eq!(req.text(0).unwrap().as_deref(), Some("[alice] hi"));
//! assert!(matches!(plugin.pre_request(&req).unwrap(), PreAction::Fail(_)));
//!
//! // With `messages: read` the edit is refused, as the host would refuse it:
//! plugbox_sdk::testing::reset();
//! let read_only = Request::builder("gpt-4o").user("hi").access(Access::Read).build();
//! let err = plugin.pre_request(&read_only).unwrap_err();
//! assert!(err.contains("needs `messages: write`"), "{err}");
//! # let _ = AccessError::OutOfRange;
//! # }
//! ```
//!
//! The crate of such a plugin is a `cdylib` built with
//! `cargo build --release --target wasm32-wasip2`; the result in
//! `target/wasm32-wasip2/release/<crate>.wasm` is already a component.
//!
//! ## How plugins run
//!
//! * The host calls `init` once per **instance** with the effective config (the
//!   manifest's defaults merged with the operator's values) and then calls hooks on
//!   that instance. It keeps a small pool of instances and may create and discard
//!   them at any time (a trap or timeout discards one). So the value your plugin
//!   keeps in `self` is per instance: use it for config and caches that may be
//!   lost, and the [`kv`] store for state that must be shared (counters, rate
//!   limits, caches shared across instances and, with a Redis backend, replicas).
//! * Only the hooks listed under `hooks:` in the manifest are called. The
//!   component exports every interface of the world; the defaults of the others
//!   are never reached.
//! * The request, response, chunks and tool calls stay in the host. A hook gets
//!   a handle ([`Request`], [`Response`], [`Chunk`], [`StreamEnd`],
//!   [`ToolCallRef`]) and reads only what it asks for, so a hook that reads
//!   nothing costs about one bare call. Edits are `&self` methods, checked by
//!   the host against the manifest's `permissions.messages` ([`Access`]) when
//!   they are made: a refused edit returns an [`AccessError`] and leaves the
//!   data unchanged; `Denied` and `TooLarge` also count the call as a plugin
//!   failure.
//! * A hook returning `Err(String)` is a plugin failure: the host applies the
//!   plugin's `on-error` policy (`fail-open` skips the plugin for that call).
//!   `AccessError` converts into `String`, so `?` works in hooks. A deliberate
//!   refusal is an [`LlmError`] inside an action instead ([`PreAction::Fail`],
//!   [`PostAction::Fail`]). A panic traps the instance.
//! * `Respond` actions and providers answer with OpenAI JSON, built with
//!   [`Completion`] and [`CompletionChunk`]. A provider's [`ChunkStream`] is
//!   pulled chunk by chunk as the client takes them.
//!
//! ## Host imports
//!
//! [`log`], [`context`] (the current request's shared key/value map), [`kv`] (the
//! plugin's own persistent store, needs `permissions.kv: true`) and [`devices`].
//! WASI clocks and random are always available (`std::time::SystemTime`,
//! `std::time::Instant` work).
//!
//! ## Testing off wasm
//!
//! When compiled for any target other than `wasm32`, [`Request`] and the other
//! handles are in-memory stand-ins built with builders
//! (`Request::builder`, `Response::builder`, `Chunk::builder`,
//! `StreamEnd::new`, `ToolCallRef::new`) that apply the host's permission
//! rules, and the import wrappers talk to an in-process stand-in: logs go to
//! stderr and are recorded, `context` and `kv` are thread-local maps.
//! `testing` resets and inspects them, and `testing::run_stream` plays a
//! stream through a plugin's `on_chunk` / `on_stream_end` as the host does
//! (drops, holds and merges included).

#![warn(missing_docs)]

extern crate self as plugbox_sdk;

/// The raw `wit-bindgen` bindings of the `plugbox:plugin` world.
///
/// Prefer the re-exports at the crate root; these are here for what they do not
/// cover.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "plugbox_sdk::bindings",
        runtime_path: "plugbox_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
        additional_type_attributes: {
            "plugbox:plugin/types@0.2.0/role": [#[derive(::serde::Serialize, ::serde::Deserialize, Hash)] #[serde(rename_all = "kebab-case")]],
            "plugbox:plugin/types@0.2.0/usage": [#[derive(::serde::Serialize, ::serde::Deserialize, Eq, Default)]],
            "plugbox:plugin/types@0.2.0/error-kind": [#[derive(::serde::Serialize, ::serde::Deserialize, Hash)] #[serde(rename_all = "kebab-case")]],
            "plugbox:plugin/types@0.2.0/llm-error": [#[derive(::serde::Serialize, ::serde::Deserialize)]],
            "plugbox:plugin/types@0.2.0/tool-call": [#[derive(::serde::Serialize, ::serde::Deserialize, Eq)]],
            "plugbox:plugin/types@0.2.0/tool-call-fragment": [#[derive(::serde::Serialize, ::serde::Deserialize, Eq)]],
            "plugbox:plugin/types@0.2.0/access-error": [#[derive(Eq)]],
            "plugbox:plugin/types@0.2.0/device-kind": [#[derive(::serde::Serialize, ::serde::Deserialize)] #[serde(rename_all = "kebab-case")]],
            "plugbox:plugin/types@0.2.0/device-report": [#[derive(::serde::Serialize, ::serde::Deserialize)]],
            "plugbox:plugin/types@0.2.0/health": [#[derive(::serde::Serialize, ::serde::Deserialize)]],
        },
    });
}

mod access;
mod actions;
mod completion;
mod config;
mod export;
mod imports;
mod llm;
mod plugin;
mod stream;
mod types;

pub use access::{Access, AccessError};
pub use actions::{ChunkAction, PostAction, PreAction, ToolAction};
pub use completion::{
    ChunkChoice, ChunkDelta, Completion, CompletionChoice, CompletionChunk, CompletionMessage, CompletionToolCall,
    FunctionCall, completion_id, unix_now,
};
pub use config::Config;
pub use export::Adapter;
pub use imports::{context, devices, kv, log};
pub use llm::{Chunk, Request, Response, StreamEnd, ToolCallRef};
#[cfg(not(target_arch = "wasm32"))]
pub use llm::{ChunkBuilder, RequestBuilder, ResponseBuilder};
pub use plugin::Plugin;
pub use stream::ChunkStream;

#[cfg(not(target_arch = "wasm32"))]
pub use imports::testing;

pub use bindings::plugbox::plugin::kv::KvError;
pub use bindings::plugbox::plugin::types::{
    DeviceKind, DeviceReport, ErrorKind, Health, LlmError, LogLevel, Role, ToolCall, ToolCallFragment, Usage,
};

/// `serde_json`, re-exported for plugins that handle the JSON in `extra`
/// fields or their config (the SDK uses it already, so it costs nothing more).
pub use serde_json;

/// The version of the `plugbox:plugin` WIT package this SDK was built against.
pub const WIT_VERSION: &str = "0.2.0";

/// The name of the custom section [`embed_manifest!`] writes the manifest into.
pub const MANIFEST_SECTION: &str = "plugbox-manifest";

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}
