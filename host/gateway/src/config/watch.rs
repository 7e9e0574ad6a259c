//! [`ConfigWatcher`]: follows a gateway config file and reads it again when
//! it changes, so that the server can validate, then swap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use parking_lot::Mutex;

use super::{ConfigError, GatewayConfig};

/// A running watch of one config file. Dropping it (or [`ConfigWatcher::stop`])
/// stops watching.
///
/// The file's directory is watched, not the file, so that editors that
/// write a temporary file and rename it into place, `cp`, and Kubernetes'
/// symlink swaps of mounted config maps are all seen. Events are debounced
/// (a burst of writes gives one read), and the file is used once two reads
/// 50 ms apart agree; a file that is missing or empty (being replaced or
/// written) is not read until the next change, and a text equal to the last
/// one read is not reported. Each report is the whole config, parsed
/// and validated, or why it was refused: the caller keeps its current config
/// on an error.
pub struct ConfigWatcher {
    path: PathBuf,
    debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
}

/// The quiet time after the last change before the file is read.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);

impl ConfigWatcher {
    /// Watches `path`; `on_change` is called (on the watcher's thread) with
    /// the file's new config each time its text changes.
    pub fn start<F>(path: &Path, on_change: F) -> Result<ConfigWatcher, ConfigError>
    where
        F: Fn(Result<GatewayConfig, ConfigError>) + Send + 'static,
    {
        ConfigWatcher::start_with(path, DEFAULT_DEBOUNCE, on_change)
    }

    /// [`ConfigWatcher::start`] with another debounce time.
    pub fn start_with<F>(path: &Path, debounce: Duration, on_change: F) -> Result<ConfigWatcher, ConfigError>
    where
        F: Fn(Result<GatewayConfig, ConfigError>) + Send + 'static,
    {
        let io = |source| ConfigError::Io { path: path.display().to_string(), source };
        let path = std::path::absolute(path).map_err(io)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        let name = path.file_name().map(|n| n.to_os_string());
        // The text last read: a change event that leaves it equal is no change.
        let last = Arc::new(Mutex::new(std::fs::read_to_string(&path).ok()));
        let file = path.clone();
        let mut debouncer = new_debouncer(debounce, None, move |result: DebounceEventResult| {
            let concerns_file = match &result {
                Ok(events) => events.iter().any(|e| {
                    e.need_rescan() || e.event.paths.iter().any(|p| p.file_name().map(|n| n.to_os_string()) == name)
                }),
                Err(_) => true,
            };
            if !concerns_file {
                return;
            }
            let text = match read_settled(&file) {
                Ok(Some(text)) => text,
                Ok(None) => {
                    // Removed, emptied, or between a rename's two steps: the next event reads it.
                    tracing::debug!(file = %file.display(), "config file is gone or empty for now");
                    return;
                }
                Err(source) => {
                    on_change(Err(ConfigError::Io { path: file.display().to_string(), source }));
                    return;
                }
            };
            {
                let mut last = last.lock();
                if last.as_deref() == Some(text.as_str()) {
                    return;
                }
                *last = Some(text.clone());
            }
            tracing::info!(file = %file.display(), "config file changed");
            on_change(GatewayConfig::from_str(&text, &file));
        })
        .map_err(|e| watch_error(&dir, e))?;
        debouncer.watch(&dir, RecursiveMode::NonRecursive).map_err(|e| watch_error(&dir, e))?;
        Ok(ConfigWatcher { path, debouncer: Some(debouncer) })
    }

    /// The watched file (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops watching.
    pub fn stop(mut self) {
        if let Some(d) = self.debouncer.take() {
            d.stop();
        }
    }
}

/// Time between the two reads that must agree before a changed file is used.
const SETTLE: Duration = Duration::from_millis(50);

/// How many times a file that keeps changing is read again before it is used.
const SETTLE_TRIES: u32 = 20;

/// The file's text once two reads [`SETTLE`] apart agree (a writer that
/// truncates, then writes, is not caught half way); `None` when it is
/// missing or empty.
fn read_settled(file: &Path) -> std::io::Result<Option<String>> {
    let read = || match std::fs::read_to_string(file) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let mut text = read()?;
    for _ in 0..SETTLE_TRIES {
        std::thread::sleep(SETTLE);
        let again = read()?;
        if again == text {
            break;
        }
        text = again;
    }
    Ok(text)
}

fn watch_error(dir: &Path, e: notify::Error) -> ConfigError {
    ConfigError::Io { path: dir.display().to_string(), source: std::io::Error::other(format!("cannot watch: {e}")) }
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher").field("path", &self.path).finish_non_exhaustive()
    }
}
