//! Waiting for files to stop changing before reading them, and telling
//! "still being written" failures from real ones.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;
use crate::plugin::{PluginSource, SourceForm};

/// How the watcher waits for a plugin's files to settle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SettleOptions {
    /// Time between the two checks of size and modification time.
    pub interval: Duration,
    /// How often a version that fails to parse is read again while its files
    /// stay unchanged (backing off: 2, 4, 8 ... intervals) before the failure
    /// is reported.
    pub retries: u32,
    /// Longest wait for files that keep changing; then they are read anyway.
    pub max_wait: Duration,
}

/// Size, modification time and (on Unix) inode of each of a plugin's files;
/// `None` for a file that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp(Vec<(PathBuf, Option<FileStamp>)>);

/// Length, modification time, inode.
type FileStamp = (u64, Option<SystemTime>, u64);

/// The files whose content makes up a plugin: its manifest and its component
/// (for the directory form, every `.wasm` directly inside it).
fn files_of(source: &PluginSource) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = source.manifest.iter().cloned().collect();
    match source.form {
        SourceForm::Directory => {
            let dir = source.manifest.as_deref().and_then(Path::parent).unwrap_or(&source.component);
            if let Ok(entries) = std::fs::read_dir(dir) {
                let mut wasm: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                    .collect();
                wasm.sort();
                files.extend(wasm);
            }
        }
        SourceForm::Sidecar | SourceForm::Embedded => files.push(source.component.clone()),
    }
    files
}

/// The current [`Stamp`] of `source`'s files, taken on the blocking pool.
pub(crate) async fn stamp(source: &PluginSource) -> Stamp {
    let source = source.clone();
    // Only a runtime shutting down fails this: an empty stamp then.
    crate::blocking::run(move || stamp_now(&source)).await.unwrap_or(Stamp(Vec::new()))
}

fn stamp_now(source: &PluginSource) -> Stamp {
    Stamp(
        files_of(source)
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).ok().map(|m| (m.len(), m.modified().ok(), inode(&m)));
                (f, meta)
            })
            .collect(),
    )
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Waits until two checks `interval` apart see the same stamp (or
/// `max_wait` passes), and returns it.
pub(crate) async fn wait_stable(source: &PluginSource, opts: &SettleOptions) -> Stamp {
    let started = Instant::now();
    let mut last = stamp(source).await;
    loop {
        tokio::time::sleep(opts.interval).await;
        let now = stamp(source).await;
        if now == last {
            return now;
        }
        if started.elapsed() >= opts.max_wait {
            tracing::warn!(path = %source.component.display(), "files still changing after {:?}; reading them anyway", opts.max_wait);
            return now;
        }
        last = now;
    }
}

/// Whether a failure could come from reading a file that was still being
/// written: a manifest that does not parse, a missing or unreadable file, or
/// bytes that are not (yet) a valid component. Init failures and conflicts
/// are real.
pub(crate) fn maybe_partial(e: &Error) -> bool {
    matches!(e, Error::Manifest(_) | Error::Io { .. } | Error::Component { .. })
}
