//! The resource limiter in every instance's store: enforces the plugin's
//! memory cap and a table-size cap, remembers when a grow was refused, and
//! tracks the instance's linear-memory size (what the instance pool counts).

use wasmtime::ResourceLimiter;

/// Most elements any one table of an instance may hold (each costs the host
/// a pointer). Compiled Rust plugins use a few hundred to a few thousand.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The limiter of one instance.
#[derive(Debug)]
pub(crate) struct InstanceLimiter {
    /// The plugin's memory cap: all linear memories of the instance together.
    memory_cap: usize,
    /// Linear memory of the instance now, in bytes.
    memory: usize,
    /// Growth approved but not yet confirmed (undone if the grow then fails).
    pending: usize,
    /// The size a refused grow asked for, once one was refused.
    memory_hit: Option<usize>,
    /// The element count a refused table grow asked for.
    table_hit: Option<usize>,
}

impl InstanceLimiter {
    pub(crate) fn new(memory_cap: u64) -> Self {
        InstanceLimiter {
            memory_cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
            memory: 0,
            pending: 0,
            memory_hit: None,
            table_hit: None,
        }
    }

    /// Bytes of linear memory the instance holds.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.memory
    }

    /// Whether a memory grow was refused because of the cap (the call that
    /// did it trapped at that point).
    pub(crate) fn memory_hit(&self) -> bool {
        self.memory_hit.is_some()
    }

    /// Whether a table grow was refused because of [`MAX_TABLE_ELEMENTS`].
    pub(crate) fn table_hit(&self) -> bool {
        self.table_hit.is_some()
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.memory.saturating_add(growth);
        if total > self.memory_cap {
            self.memory_hit = Some(total);
            // An error traps at the `memory.grow` (instead of handing the guest
            // a -1 it might ignore): the call fails with the memory limit.
            wasmtime::bail!("memory limit of {} bytes reached (asked for {total})", self.memory_cap);
        }
        self.memory = total;
        self.pending = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory = self.memory.saturating_sub(std::mem::take(&mut self.pending));
        Err(error)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.table_hit = Some(desired);
            wasmtime::bail!("table limit of {MAX_TABLE_ELEMENTS} elements reached (asked for {desired})");
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_growth_and_refuses_past_the_cap() {
        let mut l = InstanceLimiter::new(4 << 20);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(l.memory_growing(1 << 20, 3 << 20, None).unwrap());
        assert_eq!(l.memory_bytes(), 3 << 20);
        assert!(!l.memory_hit());
        assert!(l.memory_growing(3 << 20, 5 << 20, None).is_err());
        assert!(l.memory_hit());
        assert_eq!(l.memory_bytes(), 3 << 20, "a refused grow is not counted");
    }

    #[test]
    fn a_failed_grow_is_undone() {
        let mut l = InstanceLimiter::new(64 << 20);
        assert!(l.memory_growing(0, 2 << 20, None).unwrap());
        assert!(l.memory_growing(2 << 20, 6 << 20, Some(4 << 20)).unwrap());
        assert!(l.memory_grow_failed(wasmtime::format_err!("past maximum")).is_err());
        assert_eq!(l.memory_bytes(), 2 << 20);
        assert!(!l.memory_hit(), "not the plugin's cap");
    }

    #[test]
    fn caps_tables() {
        let mut l = InstanceLimiter::new(1 << 20);
        assert!(l.table_growing(0, 1000, None).unwrap());
        assert!(l.table_growing(1000, MAX_TABLE_ELEMENTS + 1, None).is_err());
        assert!(l.table_hit());
    }
}
