//! Blocking work off the async workers.
//!
//! The host's async methods run on the embedder's tokio workers, which a
//! blocking system call stalls together with every task scheduled there (on a
//! current-thread runtime: all of them). So every file-system call made from
//! async code (discovering and reading plugins, canonicalising paths,
//! resolving grants and creating data directories, the state file, setting
//! up a watch) goes through [`run`], which moves it onto tokio's blocking
//! pool. Synchronous public functions (e.g. [`crate::loader::discover`])
//! stay synchronous: the rule is about the async paths of the host.

use crate::error::{Error, Result};

/// Runs `work` on tokio's blocking pool and waits for it without holding an
/// async worker. What `work` returns comes back unchanged (its own errors
/// included, e.g. the file and path of an I/O error). Fails with
/// [`Error::Engine`] only when `work` panicked (a bug, or a compiler panic on
/// a hostile component: the caller gets an error, not the panic) or the
/// runtime is shutting down and no longer runs blocking tasks.
pub(crate) async fn run<T, F>(work: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Engine(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::run;

    /// On a current-thread runtime, a timer task keeps ticking while `run`
    /// blocks for 300 ms: the work ran on another thread.
    #[test]
    fn the_runtime_keeps_running_while_blocking_work_runs() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ticks = Arc::new(AtomicU32::new(0));
            let counter = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
            let caller = std::thread::current().id();
            let worker = run(move || {
                std::thread::sleep(Duration::from_millis(300));
                std::thread::current().id()
            })
            .await
            .unwrap();
            ticker.abort();
            assert_ne!(worker, caller, "the work ran on the blocking pool");
            let n = ticks.load(Ordering::Relaxed);
            assert!(n >= 10, "the timer task ticked only {n} times in 300 ms");
        });
    }

    #[tokio::test]
    async fn errors_come_back_unchanged_and_a_panic_is_an_error() {
        let path = std::path::PathBuf::from("/nonexistent/plugbox-blocking-test");
        let shown = path.clone();
        let err = run(move || std::fs::read(&path).map_err(|e| crate::Error::io(&path, e))).await.unwrap().unwrap_err();
        assert!(matches!(&err, crate::Error::Io { path, .. } if *path == shown), "{err:?}");
        let panicked = run(|| -> u32 { panic!("boom") }).await.unwrap_err();
        assert!(matches!(&panicked, crate::Error::Engine(m) if m.contains("boom")), "{panicked:?}");
    }
}
