//! What an adversarial test checks after an attack: the host process kept its
//! descriptors, resident memory and latency within bounds.
//!
//! ```text
//! let before = Bounds::now();
//! /* run the attack, then a request through a well-behaved plugin */
//! before.assert_within(32, 64 * MIB);
//! ```

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// Open descriptors of this process (`/proc/self/fd`).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).expect("read /proc/self/fd")
}

/// Resident memory of this process in bytes (`VmRSS` in `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value");
    kib * 1024
}

/// Descriptor count and resident memory at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub fds: usize,
    pub rss: u64,
}

impl Bounds {
    pub fn now() -> Self {
        Bounds { fds: fd_count(), rss: rss_bytes() }
    }

    /// Asserts that, since `self`, the process gained at most `fds` descriptors
    /// and `rss` bytes of resident memory. Other tests run in parallel in this
    /// process, so the slack must cover them; an attack that leaks grows far past it.
    pub fn assert_within(&self, fds: usize, rss: u64) {
        let now = Bounds::now();
        assert!(now.fds <= self.fds + fds, "descriptors grew from {} to {} (allowed: +{fds})", self.fds, now.fds);
        assert!(
            now.rss <= self.rss + rss,
            "resident memory grew from {} MiB to {} MiB (allowed: +{} MiB)",
            self.rss / MIB,
            now.rss / MIB,
            rss / MIB
        );
    }
}

/// Asserts that `elapsed` stayed under `limit`, naming what was measured. Use
/// generous limits (a deadline plus scheduling slack on a loaded machine): this
/// catches a host held for seconds, not a slow microsecond.
pub fn assert_fast(what: &str, elapsed: std::time::Duration, limit: std::time::Duration) {
    assert!(elapsed <= limit, "{what} took {elapsed:?} (bound: {limit:?})");
}
