//! Guest stdout/stderr, line-buffered into the plugin's log (see [`super::log`]):
//! truncated, rate limited and queued, never written inside the hook.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::guest_log::{Level, PluginLog};

/// A [`StdoutStream`] that turns each line a guest writes into a log line of its plugin.
#[derive(Clone)]
pub(crate) struct LogWriter {
    log: Arc<PluginLog>,
    stream: &'static str,
    max_line: usize,
}

impl LogWriter {
    pub(crate) fn new(log: Arc<PluginLog>, stream: &'static str, max_line: u64) -> Self {
        LogWriter { log, stream, max_line: usize::try_from(max_line).unwrap_or(usize::MAX) }
    }
}

impl IsTerminal for LogWriter {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogWriter {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineSink { writer: self.clone(), line: Vec::new(), cut: 0 })
    }
}

struct LineSink {
    writer: LogWriter,
    /// The current line, at most `max_line` bytes of it (a guest printing
    /// without newlines cannot grow host memory without bound).
    line: Vec<u8>,
    /// Bytes of the current line past `max_line`, dropped.
    cut: usize,
}

impl LineSink {
    fn emit(&mut self) {
        if self.line.is_empty() && self.cut == 0 {
            return;
        }
        while self.line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            self.line.pop();
        }
        self.writer.log.emit_cut(Level::Info, Some(self.writer.stream), &self.line, self.cut);
        self.line.clear();
        self.cut = 0;
    }
}

impl AsyncWrite for LineSink {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let max = self.writer.max_line;
        for piece in buf.split_inclusive(|b| *b == b'\n') {
            let room = max.saturating_sub(self.line.len());
            let keep = piece.len().min(room);
            self.line.extend_from_slice(&piece[..keep]);
            self.cut += piece.len() - keep;
            if piece.ends_with(b"\n") {
                self.emit();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineSink {
    fn drop(&mut self) {
        self.emit();
    }
}
