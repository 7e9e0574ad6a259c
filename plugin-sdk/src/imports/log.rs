//! Log through the host's `tracing`, tagged with the plugin's name.
//!
//! Functions take a message; the macros of the same names take `format!`
//! arguments:
//!
//! ```
//! use plugbox_sdk::log;
//! log::info("plain message");
//! let n = 3;
//! log::warn!("{n} retries left");
//! ```

use crate::LogLevel;

/// Log `message` at `level`.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::plugbox::plugin::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    super::testing::record_log(level, message);
}

/// Log at `trace` level.
pub fn trace(message: &str) {
    log(LogLevel::Trace, message)
}

/// Log at `debug` level.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message)
}

/// Log at `info` level.
pub fn info(message: &str) {
    log(LogLevel::Info, message)
}

/// Log at `warn` level.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message)
}

/// Log at `error` level.
pub fn error(message: &str) {
    log(LogLevel::Error, message)
}

/// Log a `format!` message at `trace` level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::log($crate::LogLevel::Trace, &::std::format!($($arg)*)) };
}

/// Log a `format!` message at `debug` level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::LogLevel::Debug, &::std::format!($($arg)*)) };
}

/// Log a `format!` message at `info` level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::LogLevel::Info, &::std::format!($($arg)*)) };
}

/// Log a `format!` message at `warn` level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::LogLevel::Warn, &::std::format!($($arg)*)) };
}

/// Log a `format!` message at `error` level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::LogLevel::Error, &::std::format!($($arg)*)) };
}

#[doc(inline)]
pub use crate::{debug, error, info, trace, warn};
