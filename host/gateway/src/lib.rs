//! # plugbox-gateway
//!
//! An OpenAI-compatible LLM gateway in front of providers, where every
//! request, stream and tool call passes through plugbox's sandboxed plugins.
//! The `plugbox serve` command runs it; an embedder builds a [`Gateway`] over
//! its own [`plugbox_host::Host`] and serves [`Gateway::router`] itself.
//!
//! Rooms:
//!
//! * [`config`]: the gateway config file (YAML): listen address, providers,
//!   model routes, client API keys, limits; validated, hot-reloaded;
//! * [`upstream`]: OpenAI-compatible upstreams over HTTP (timeouts, retries,
//!   pooled connections, streams relayed as they arrive);
//! * [`routes`]: model alias → ordered providers, weights, fallback;
//! * the server: [`Gateway`] (router, serving with graceful shutdown,
//!   validate-then-swap config reloads), [`ApiError`] (OpenAI-shaped error
//!   bodies); inside it the door (concurrency limit, caller from the API key,
//!   body size), the chat pipeline for JSON and SSE (pre hooks, provider
//!   attempts with fallback, tool-call hooks and plugin-answered rounds, post
//!   or stream hooks), embeddings, models, health.
//!
//! docs/gateway.md describes the HTTP surface, the pipeline and the config.

#![warn(missing_docs)]

pub mod config;
pub mod routes;
pub mod upstream;

mod auth;
mod chat;
mod embeddings;
mod error;
mod models;
mod server;
mod sse;
mod state;
mod tools;

pub use error::ApiError;
pub use server::{Gateway, GatewayBuilder, REQUEST_ID_HEADER, ShutdownHandle};
