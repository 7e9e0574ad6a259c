//! The async workers stay free: the host's file-system work (discovering
//! and reading plugins, the state file, resolving grants, setting up a watch)
//! runs on tokio's blocking pool. These tests run on a current-thread runtime
//! (`#[tokio::test]`'s default), where one blocking call on the worker stops
//! every task, and make one such call slow on purpose: the state file is a
//! named pipe that answers each reader only after a delay.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plugbox_host::PluginState;
use plugbox_host::reload::PluginStates;

use crate::deadlines::ticker;
use crate::*;

/// How long the state file keeps each reader waiting.
const DELAY: Duration = Duration::from_millis(500);

/// A named pipe at `path` that gives `text` to each reader `DELAY` after it
/// opens the pipe, until dropped.
struct SlowFile {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl SlowFile {
    fn new(path: &Path, text: &'static str) -> SlowFile {
        let made = std::process::Command::new("mkfifo").arg(path).status().expect("run mkfifo");
        assert!(made.success(), "mkfifo {}", path.display());
        let (stop, served) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (fifo, stopping, count) = (path.to_path_buf(), stop.clone(), served.clone());
        let writer = std::thread::spawn(move || {
            loop {
                // Blocks until a reader opens the pipe.
                let Ok(mut pipe) = std::fs::OpenOptions::new().write(true).open(&fifo) else { return };
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(DELAY);
                if pipe.write_all(text.as_bytes()).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                drop(pipe);
                std::thread::sleep(Duration::from_millis(50)); // let the reader close its end
            }
        });
        SlowFile { path: path.to_path_buf(), stop, served, writer: Some(writer) }
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for SlowFile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblocks the writer if it waits for a reader (unless the pipe was
        // replaced by a regular file meanwhile: then it waits for nobody).
        let is_fifo = std::fs::symlink_metadata(&self.path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_fifo()
        });
        if is_fifo {
            let _ = std::fs::File::open(&self.path);
        }
        if let Some(writer) = self.writer.take()
            && is_fifo
        {
            let _ = writer.join();
        }
    }
}

#[tokio::test]
async fn a_slow_state_file_never_stalls_the_runtime() {
    let dir = PluginDir::new();
    dir.add("a", plugbox_artifacts::SCRIPTED, &scripted("a", 1, "continue", "continue"));
    dir.add("b", plugbox_artifacts::SCRIPTED, &scripted("b", 2, "continue", "continue"));
    let state = SlowFile::new(&PluginStates::path_in(dir.path()), "disabled: [b]\n");
    let host = host();

    let (ticks, gap, task) = ticker();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    // Discovery, then the state file (read once, then cached), then loading.
    let report = host.load_dir(dir.path()).await.unwrap();
    assert_eq!(
        (report.loaded.as_slice(), report.disabled.as_slice()),
        (&["a".to_string()][..], &["b".to_string()][..])
    );
    // A reload reads the state file again.
    host.reload_dir(dir.path()).await.unwrap();
    // Disabling reads it and writes it (the write replaces the pipe).
    host.disable("a").await.unwrap();
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(10)).await; // the ticker notes the last gap
    let (ticks, gap) = (ticks.load(Ordering::Relaxed), gap.load(Ordering::Relaxed));
    task.abort();

    assert_eq!(state.served(), 3, "the state file was read three times");
    assert!(took >= DELAY * 3, "each read waited for the pipe: {took:?}");
    assert!(gap < 300, "the runtime stalled for {gap} ms ({ticks} ticks in {took:?})");
    assert!(ticks as u128 >= took.as_millis() / 5 / 4, "only {ticks} ticks in {took:?}");
    assert!(host.is_disabled("a") && host.is_disabled("b"));
    assert_eq!(host.status("a").unwrap().state, PluginState::Disabled);
    let saved = PluginStates::load(&PluginStates::path_in(dir.path())).unwrap();
    assert_eq!(saved.disabled.into_iter().collect::<Vec<_>>(), ["a", "b"]);
}
