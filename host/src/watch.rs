//! Watching a plugin directory and applying changes as they happen.
//!
//! [`Host::watch`] (or [`Watcher::start`]) loads what is in the directory,
//! then follows it: a recursive `notify` watcher, debounced, maps each file
//! event to the plugin it concerns — anything inside `plugins/<name>/` means
//! that directory plugin, `x.wasm` and its `x.yaml` sidecar mean plugin
//! `x.wasm`, a lone packed `.wasm` means itself — and each batch of events is
//! applied as [`Host::reload_dir`] would, but only for the plugins concerned:
//! added plugins load, changed ones reload (validate, then swap), removed or
//! renamed ones unload or move. See [`crate::reload`] for the guarantees.
//!
//! Real file systems: events are debounced (a burst of writes gives one
//! batch); a plugin's manifest and component are read only once their size,
//! modification time and inode are the same across two checks
//! ([`WatchOptions::settle`] apart); a version that does not parse is retried
//! a few times (it may still be being written) before the failure is
//! reported; files whose content did not change are not reloaded. Writing to
//! a hidden or `.tmp`/`.part`/`~` file and renaming it into place (what
//! editors and careful installers do) and `cp` over the old file both work.
//! The directory's state file (`.plugbox-state.yaml`) is watched too, so
//! `plugbox disable NAME` takes effect in a running host.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::reload::{ReloadReport, SettleOptions, SyncOptions};

/// Timing of a [`Watcher`].
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Quiet time after the last event on a file before it is acted on.
    pub debounce: Duration,
    /// Time between the two checks that a plugin's files stopped changing.
    pub settle: Duration,
    /// How often a version that fails to parse (maybe still being written) is
    /// read again, backing off, before the failure is reported.
    pub retries: u32,
    /// Longest wait for files that keep changing before reading them anyway.
    pub max_wait: Duration,
}

impl Default for WatchOptions {
    /// 150 ms debounce, 100 ms settle checks, 3 retries, 30 s at most.
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(150),
            settle: Duration::from_millis(100),
            retries: 3,
            max_wait: Duration::from_secs(30),
        }
    }
}

/// A running watch of one plugin directory. Dropping it stops watching
/// (prefer [`Watcher::stop`], which waits for a change being applied).
pub struct Watcher {
    root: PathBuf,
    debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    initial: Option<ReloadReport>,
}

impl Host {
    /// Loads the plugins of `dir` and keeps the host in line with it as files
    /// change, with [`WatchOptions::default`]. See [`WatchOptions`].
    pub async fn watch(&self, dir: &Path) -> Result<Watcher> {
        Watcher::start(self, dir, WatchOptions::default()).await
    }
}

fn watch_error(path: &Path, e: notify::Error) -> Error {
    Error::io(path, std::io::Error::other(format!("cannot watch: {e}")))
}

impl Watcher {
    /// Starts watching `dir` (recursively), then loads or reloads what is in
    /// it, so no change made meanwhile is missed. Plugins already loaded from
    /// `dir` whose files did not change are left alone.
    pub async fn start(host: &Host, dir: &Path, options: WatchOptions) -> Result<Watcher> {
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut debouncer = new_debouncer(options.debounce, None, move |result: DebounceEventResult| {
            let _ = tx.send(result);
        })
        .map_err(|e| watch_error(&root, e))?;
        debouncer.watch(&root, RecursiveMode::Recursive).map_err(|e| watch_error(&root, e))?;
        let initial = host.reload_dir(&root).await?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(host.clone(), root.clone(), rx, stop_rx, options));
        tracing::info!(dir = %root.display(), "watching for plugin changes");
        Ok(Watcher { root, debouncer: Some(debouncer), stop: Some(stop_tx), task: Some(task), initial: Some(initial) })
    }

    /// The watched directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the initial load did (once; `None` afterwards).
    pub fn take_initial_report(&mut self) -> Option<ReloadReport> {
        self.initial.take()
    }

    /// Stops watching, after the change being applied (if any) is done.
    pub async fn stop(mut self) {
        drop(self.debouncer.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Reads only: the host's own reads of plugin files must not look like changes.
fn is_read_only(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(a) if !matches!(a, AccessKind::Close(AccessMode::Write)))
}

/// Inside a hidden, temporary or backup file or directory (discovery ignores those).
fn ignored_path(root: &Path, path: &Path) -> bool {
    match path.strip_prefix(root) {
        Ok(rel) => rel.components().any(|c| c.as_os_str().to_str().is_none_or(crate::loader::ignored)),
        Err(_) => true,
    }
}

async fn run(
    host: Host,
    root: PathBuf,
    mut rx: mpsc::UnboundedReceiver<DebounceEventResult>,
    mut stop: oneshot::Receiver<()>,
    options: WatchOptions,
) {
    let sync = SyncOptions {
        settle: Some(SettleOptions { interval: options.settle, retries: options.retries, max_wait: options.max_wait }),
        ..Default::default()
    };
    loop {
        let first = tokio::select! {
            _ = &mut stop => break,
            r = rx.recv() => match r { Some(r) => r, None => break },
        };
        // Everything that queued up while the last batch was applied goes in one batch.
        let mut results = vec![first];
        while let Ok(more) = rx.try_recv() {
            results.push(more);
        }
        let mut paths = BTreeSet::new();
        let mut rescan = false;
        for result in results {
            match result {
                Ok(events) => {
                    for event in events {
                        rescan |= event.need_rescan();
                        if !is_read_only(&event.kind) {
                            paths.extend(event.event.paths.iter().cloned());
                        }
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!(dir = %root.display(), "file watch error: {e}; rescanning");
                    }
                    rescan = true;
                }
            }
        }
        let state_files: Vec<PathBuf> = paths.iter().filter(|p| host.inner.reload.is_state_file(p)).cloned().collect();
        paths.retain(|p| !ignored_path(&root, p) && p.as_path() != root);
        if paths.is_empty() && state_files.is_empty() && !rescan {
            continue;
        }
        tracing::debug!(dir = %root.display(), ?paths, rescan, "plugin files changed");
        let _guard = host.inner.reload.sync.lock().await;
        for file in &state_files {
            host.apply_state_file(file).await;
        }
        if paths.is_empty() && !rescan {
            continue;
        }
        let touched: Vec<PathBuf> = paths.into_iter().collect();
        match host.sync_root(&root, (!rescan).then_some(touched.as_slice()), &sync).await {
            Ok(report) => {
                for (name, outcome) in &report.changes {
                    tracing::debug!(plugin = %name, ?outcome, "watch");
                }
                for f in report.failed.iter().filter(|f| matches!(f.error, Error::Manifest(_))) {
                    tracing::debug!("{f}");
                }
            }
            Err(e) => tracing::warn!(dir = %root.display(), "cannot rescan: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    #[test]
    fn the_hosts_own_reads_are_not_changes() {
        assert!(is_read_only(&EventKind::Access(AccessKind::Open(AccessMode::Read))));
        assert!(is_read_only(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(!is_read_only(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(!is_read_only(&EventKind::Modify(ModifyKind::Any)));
        assert!(!is_read_only(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn temporary_and_hidden_files_are_ignored() {
        let root = Path::new("/p");
        assert!(ignored_path(root, Path::new("/p/a/.plugin.yaml.swp")));
        assert!(ignored_path(root, Path::new("/p/a/plugin.yaml~")));
        assert!(ignored_path(root, Path::new("/p/x.wasm.part")));
        assert!(ignored_path(root, Path::new("/p/.git/index")));
        assert!(ignored_path(root, Path::new("/elsewhere/x.wasm")));
        assert!(!ignored_path(root, Path::new("/p/a/plugin.yaml")));
        assert!(!ignored_path(root, Path::new("/p/x.wasm")));
    }
}
