//! Safe wrappers for the host's imports.
//!
//! On `wasm32` they call the host. Anywhere else they use an in-process
//! stand-in ([`testing`]) so that plugins can be unit tested natively.

pub mod context;
pub mod devices;
pub mod kv;
pub mod log;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
