//! Guest log lines (the `log` import and stdout/stderr): bounded, rate limited,
//! and never written inside the hook.
//!
//! A plugin's line is truncated to [`LogLimits::max_line`] (with a marker),
//! checked against the plugin's token buckets (lines and bytes per second,
//! with bursts), and handed to one host-wide bounded queue that a background
//! thread (`plugbox-log`) drains into `tracing`. When a bucket is empty or the
//! queue is full (more than [`QUEUE_LINES`] lines or [`QUEUE_BYTES`] bytes
//! waiting), the line is dropped and counted in the plugin's
//! `log_lines_dropped`. So a slow log reader or a flooding plugin never holds
//! a hook, and host memory for waiting lines stays bounded.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;

/// Most lines waiting in the host-wide queue.
pub const QUEUE_LINES: usize = 8192;
/// Most bytes of text waiting in the host-wide queue.
pub const QUEUE_BYTES: usize = 8 << 20;

/// How much one plugin may log.
///
/// Defaults ([`LogLimits::DEFAULT`]): 100 lines per second with bursts of
/// 1,000, 256 KiB per second with bursts of 1 MiB, 16 KiB per line. The
/// operator's policy sets other values (`resources.log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LogLimits {
    /// Sustained lines per second.
    pub lines_per_second: u32,
    /// Lines that may be logged at once after a quiet period.
    pub burst: u32,
    /// Sustained bytes per second.
    pub bytes_per_second: u64,
    /// Bytes that may be logged at once after a quiet period.
    pub byte_burst: u64,
    /// Longest line kept; longer ones are cut and marked `[truncated N bytes]`.
    pub max_line: u64,
}

impl LogLimits {
    /// 100 lines/s (burst 1,000), 256 KiB/s (burst 1 MiB), 16 KiB per line.
    pub const DEFAULT: LogLimits = LogLimits {
        lines_per_second: 100,
        burst: 1000,
        bytes_per_second: 256 << 10,
        byte_burst: 1 << 20,
        max_line: 16 << 10,
    };
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits::DEFAULT
    }
}

/// The level of a guest line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

struct Line {
    plugin: Arc<str>,
    stream: Option<&'static str>,
    level: Level,
    text: String,
    dispatch: tracing::Dispatch,
}

struct Queue {
    tx: SyncSender<Line>,
    bytes: Arc<AtomicUsize>,
}

fn queue() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<Line>(QUEUE_LINES);
        let bytes = Arc::new(AtomicUsize::new(0));
        let drained = bytes.clone();
        std::thread::Builder::new()
            .name("plugbox-log".into())
            .spawn(move || {
                for line in rx {
                    drained.fetch_sub(line.text.len(), Ordering::Relaxed);
                    tracing::dispatcher::with_default(&line.dispatch, || write(&line));
                }
            })
            .expect("spawn the plugbox-log thread");
        Queue { tx, bytes }
    })
}

fn write(line: &Line) {
    let plugin = &*line.plugin;
    let text = &line.text;
    match (line.level, line.stream) {
        (_, Some(stream)) => tracing::info!(target: "plugbox::guest", plugin, stream, "{text}"),
        (Level::Trace, None) => tracing::trace!(target: "plugbox::guest", plugin, "{text}"),
        (Level::Debug, None) => tracing::debug!(target: "plugbox::guest", plugin, "{text}"),
        (Level::Info, None) => tracing::info!(target: "plugbox::guest", plugin, "{text}"),
        (Level::Warn, None) => tracing::warn!(target: "plugbox::guest", plugin, "{text}"),
        (Level::Error, None) => tracing::error!(target: "plugbox::guest", plugin, "{text}"),
    }
}

struct Buckets {
    lines: f64,
    bytes: f64,
    at: Instant,
}

/// One plugin's log: its limits, token buckets and drop counter, shared by all
/// its instances.
pub(crate) struct PluginLog {
    plugin: Arc<str>,
    limits: LogLimits,
    buckets: Mutex<Buckets>,
    dropped: AtomicU64,
    /// Whether a "dropping lines" warning is owed (logged once per quiet period).
    warned: std::sync::atomic::AtomicBool,
}

impl PluginLog {
    pub(crate) fn new(plugin: Arc<str>, limits: LogLimits) -> Self {
        let buckets = Buckets { lines: f64::from(limits.burst), bytes: limits.byte_burst as f64, at: Instant::now() };
        PluginLog {
            plugin,
            limits,
            buckets: Mutex::new(buckets),
            dropped: AtomicU64::new(0),
            warned: Default::default(),
        }
    }

    /// Lines dropped so far (rate limit or full queue).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes one line and its bytes from the buckets; `false` when either is empty.
    fn admit(&self, len: usize) -> bool {
        let l = &self.limits;
        let mut b = self.buckets.lock();
        let now = Instant::now();
        let secs = now.duration_since(b.at).as_secs_f64();
        b.at = now;
        b.lines = (b.lines + secs * f64::from(l.lines_per_second)).min(f64::from(l.burst));
        b.bytes = (b.bytes + secs * l.bytes_per_second as f64).min(l.byte_burst as f64);
        if b.lines < 1.0 || b.bytes < len as f64 {
            return false;
        }
        b.lines -= 1.0;
        b.bytes -= len as f64;
        true
    }

    fn drop_line(&self, rate_limited: bool) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            let l = &self.limits;
            let why = match rate_limited {
                true => format!(
                    "over the rate limit of {} lines/s (burst {}) and {} bytes/s (burst {})",
                    l.lines_per_second, l.burst, l.bytes_per_second, l.byte_burst
                ),
                false => "the host's log queue is full".to_string(),
            };
            tracing::warn!(plugin = &*self.plugin, "dropping log lines: {why} (counted in log_lines_dropped)");
        }
    }

    /// Queues one line; never blocks. `stream` is `stdout`/`stderr` for
    /// captured output, `None` for the `log` import.
    pub(crate) fn emit(&self, level: Level, stream: Option<&'static str>, text: &[u8]) {
        self.emit_cut(level, stream, text, 0)
    }

    /// Like [`emit`](Self::emit) for a line whose last `cut` bytes the caller
    /// already dropped.
    pub(crate) fn emit_cut(&self, level: Level, stream: Option<&'static str>, text: &[u8], cut: usize) {
        let max = usize::try_from(self.limits.max_line).unwrap_or(usize::MAX);
        // What the line will weigh once cut (the marker is not charged).
        if !self.admit(text.len().min(max)) {
            return self.drop_line(true);
        }
        let text = truncate(text, max, cut);
        let q = queue();
        if q.bytes.fetch_add(text.len(), Ordering::Relaxed) + text.len() > QUEUE_BYTES {
            q.bytes.fetch_sub(text.len(), Ordering::Relaxed);
            return self.drop_line(false);
        }
        let len = text.len();
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let line = Line { plugin: self.plugin.clone(), stream, level, text, dispatch };
        match q.tx.try_send(line) {
            Ok(()) => self.warned.store(false, Ordering::Relaxed),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                q.bytes.fetch_sub(len, Ordering::Relaxed);
                self.drop_line(false);
            }
        }
    }
}

/// `text` as UTF-8 (lossy), at most `max` bytes of it, with a marker when
/// cut (`already` bytes were cut before).
fn truncate(text: &[u8], max: usize, already: usize) -> String {
    if text.len() <= max && already == 0 {
        return String::from_utf8_lossy(text).into_owned();
    }
    let mut cut = max.min(text.len());
    // Do not split a UTF-8 sequence.
    while cut > 0 && cut < text.len() && (text[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    let dropped = text.len() - cut + already;
    format!("{} [truncated {dropped} bytes]", String::from_utf8_lossy(&text[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_with_a_marker_on_a_char_boundary() {
        assert_eq!(truncate(b"short", 16, 0), "short");
        assert_eq!(truncate(b"0123456789", 4, 0), "0123 [truncated 6 bytes]");
        assert_eq!(truncate("aé".as_bytes(), 2, 0), "a [truncated 2 bytes]");
        assert_eq!(truncate(b"0123", 4, 10), "0123 [truncated 10 bytes]");
    }

    #[test]
    fn rate_limit_drops_and_counts() {
        let limits =
            LogLimits { lines_per_second: 1, burst: 3, bytes_per_second: 1, byte_burst: 1 << 20, max_line: 64 };
        let log = PluginLog::new(Arc::from("flood"), limits);
        for _ in 0..10 {
            log.emit(Level::Info, None, b"line");
        }
        assert_eq!(log.dropped(), 7);
        let bytes = LogLimits { lines_per_second: 100, burst: 100, bytes_per_second: 1, byte_burst: 10, max_line: 64 };
        let log = PluginLog::new(Arc::from("bytes"), bytes);
        log.emit(Level::Info, None, b"0123456789");
        log.emit(Level::Info, None, b"x");
        assert_eq!(log.dropped(), 1);
    }
}
