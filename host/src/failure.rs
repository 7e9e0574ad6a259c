//! [`PluginFailure`]: why one hook call of one plugin did not produce a usable
//! result. A leaf module: the error type, the pool and every hook chain use it.

use std::time::Duration;

/// Why a hook call did not produce a usable result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin `{plugin}` failed in `{hook}`: {kind}")]
pub struct PluginFailure {
    /// Name of the plugin that failed.
    pub plugin: String,
    /// The hook (WIT export name) that was being called.
    pub hook: &'static str,
    /// What went wrong.
    pub kind: FailureKind,
}

/// The ways a plugin call fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureKind {
    /// The hook returned `err(..)`: the plugin reports its own failure.
    #[error("{0}")]
    Error(String),
    /// The guest trapped (panic, unreachable, out-of-bounds access ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The call ran past its wall-clock deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The guest tried to grow its memory past the plugin's cap.
    #[error("exceeded its memory limit of {0} bytes")]
    MemoryLimit(u64),
    /// The call used up its fuel budget (`limits.fuel`).
    #[error("used up its fuel budget")]
    FuelExhausted,
    /// The guest exhausted its wasm stack (deep recursion).
    #[error("overflowed its stack")]
    StackOverflow,
    /// The hook answered with something the host refuses (bad JSON, changes it
    /// has no permission for, oversize output ...).
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    /// The call left a host resource of the plugin over its limit (its data
    /// directory over its disk quota); the message names the limit.
    #[error("over a resource limit: {0}")]
    ResourceLimit(String),
    /// Every instance was busy for the whole deadline.
    #[error("all {0} instances busy until the deadline")]
    Busy(u32),
    /// The plugin failed too often in a row and is quarantined for a while.
    #[error("quarantined after repeated failures ({0:?} left)")]
    Quarantined(Duration),
}
