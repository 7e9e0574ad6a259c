//! Guest stdout/stderr, line-buffered into `tracing` events tagged with the plugin.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept before it is emitted anyway (a guest printing without
/// newlines cannot grow host memory without bound).
const MAX_LINE: usize = 4096;

/// A [`StdoutStream`] that turns each line a guest writes into a tracing event.
#[derive(Clone)]
pub(crate) struct LogWriter {
    plugin: Arc<str>,
    stream: &'static str,
}

impl LogWriter {
    pub(crate) fn new(plugin: Arc<str>, stream: &'static str) -> Self {
        LogWriter { plugin, stream }
    }
}

impl IsTerminal for LogWriter {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogWriter {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineSink { plugin: self.plugin.clone(), stream: self.stream, line: Vec::new() })
    }
}

struct LineSink {
    plugin: Arc<str>,
    stream: &'static str,
    line: Vec<u8>,
}

impl LineSink {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\n', '\r']);
        tracing::info!(target: "plugbox::guest", plugin = &*self.plugin, stream = self.stream, "{text}");
        self.line.clear();
    }
}

impl AsyncWrite for LineSink {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        for &b in buf {
            self.line.push(b);
            if b == b'\n' || self.line.len() >= MAX_LINE {
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
