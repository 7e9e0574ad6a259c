//! The watcher's facade: starting a [`Watcher`] on a plugin directory and
//! applying its batches of file events. The watch itself lives in
//! [`crate::watch`], which does not depend on `Host`.

use std::path::Path;

use super::Host;
use crate::blocking;
use crate::error::{Error, Result};
use crate::reload::{SyncOptions, normalize};
use crate::watch::{Batch, WatchOptions, Watcher};

impl Host {
    /// Loads the plugins of `dir` and keeps the host in line with it as files
    /// change, with [`WatchOptions::default`]. See [`crate::watch`].
    pub async fn watch(&self, dir: &Path) -> Result<Watcher> {
        Watcher::start(self, dir, WatchOptions::default()).await
    }

    /// Applies one batch of a watcher: changed state files, then the plugins
    /// the changed paths concern.
    pub(super) async fn apply_watch_batch(&self, batch: Batch, sync: &SyncOptions) {
        let _guard = self.inner.reload.sync.lock().await;
        for file in &batch.state_files {
            self.apply_state_file(file).await;
        }
        if batch.touched.as_ref().is_some_and(|t| t.is_empty()) {
            return;
        }
        let root = &batch.root;
        match self.sync_root(root, batch.touched.as_deref(), sync).await {
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

impl Watcher {
    /// Starts watching `dir` (recursively), then loads or reloads what is in
    /// it, so no change made meanwhile is missed. Plugins already loaded from
    /// `dir` whose files did not change are left alone.
    pub async fn start(host: &Host, dir: &Path, options: WatchOptions) -> Result<Watcher> {
        // Canonicalising, setting up the recursive watch (it walks the tree)
        // and normalising the configured state file: on the blocking pool.
        let (owned, configured) = (dir.to_path_buf(), host.inner.reload.options.state_file.clone());
        let (root, (watching, queue), state_file) = blocking::run(move || {
            let root = owned.canonicalize().map_err(|e| Error::io(&owned, e))?;
            let started = Watcher::begin(&root, options)?;
            Ok::<_, Error>((root, started, configured.as_deref().map(normalize)))
        })
        .await??;
        let initial = host.reload_dir(&root).await?;
        let sync = crate::watch::sync_options(&options);
        let state_host = host.clone();
        let apply_host = host.clone();
        Ok(Watcher::spawn(
            root,
            watching,
            queue,
            initial,
            move |p| state_host.inner.reload.is_state_file(p, state_file.as_deref()),
            move |batch| {
                let (host, sync) = (apply_host.clone(), sync.clone());
                async move { host.apply_watch_batch(batch, &sync).await }
            },
        ))
    }
}
