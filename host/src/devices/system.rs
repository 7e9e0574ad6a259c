//! CPU and system memory, from `sysinfo`.
//!
//! Two reports: `cpu` (model, cores, load; no memory figures) and `memory`
//! (system RAM: total, free = available to new allocations, used). A model
//! that runs on the CPU needs the `memory` device for its RAM.

use std::time::Instant;

use parking_lot::Mutex;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use crate::bindings::types::{DeviceKind, DeviceReport};

const MIB: u64 = 1024 * 1024;

/// The source of the built-in CPU and memory reports.
pub const SYSINFO_SOURCE: &str = "builtin:sysinfo";

/// Keeps one `sysinfo::System` so that CPU usage is measured between probes.
pub(crate) struct SystemProbe {
    system: Mutex<Option<(System, Instant)>>,
}

impl SystemProbe {
    pub(crate) fn new() -> Self {
        SystemProbe { system: Mutex::new(None) }
    }

    /// Reads CPU and memory. Blocking: the first call waits sysinfo's minimum
    /// interval (200 ms) so that CPU usage is a measurement, not a zero.
    pub(crate) fn probe(&self) -> Result<Vec<DeviceReport>, String> {
        let mut guard = self.system.lock();
        if guard.is_none() {
            let kinds = RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::everything())
                .with_memory(MemoryRefreshKind::nothing().with_ram());
            let system = System::new_with_specifics(kinds).map_err(|e| format!("sysinfo: {e}"))?;
            *guard = Some((system, Instant::now()));
        }
        let (system, last) = guard.as_mut().expect("set above");
        let since = last.elapsed();
        if since < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since);
        }
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage().with_frequency());
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        *last = Instant::now();
        Ok(vec![cpu_report(system), memory_report(system)])
    }
}

fn cpu_report(system: &System) -> DeviceReport {
    let cpus = system.cpus();
    let brand = cpus.first().map(|c| c.brand().trim()).filter(|b| !b.is_empty());
    let name = brand.map(str::to_string).unwrap_or_else(|| format!("{} CPU", System::cpu_arch()));
    let mut annotations = vec![("threads".to_string(), cpus.len().to_string())];
    if let Ok(cores) = System::physical_core_count() {
        annotations.push(("cores".into(), cores.to_string()));
    }
    if let Ok(load) = System::load_average() {
        annotations.push(("load".into(), format!("{:.2} {:.2} {:.2}", load.one, load.five, load.fifteen)));
    }
    if let Some(mhz) = cpus.first().map(|c| c.frequency()).filter(|f| *f > 0) {
        annotations.push(("mhz".into(), mhz.to_string()));
    }
    DeviceReport {
        id: "cpu".into(),
        kind: DeviceKind::Cpu,
        name,
        online: true,
        memory_total_mb: 0,
        memory_free_mb: 0,
        memory_used_mb: 0,
        utilization: Some(system.global_cpu_usage().clamp(0.0, 100.0)),
        temperature_c: None,
        source: SYSINFO_SOURCE.into(),
        annotations,
    }
}

fn memory_report(system: &System) -> DeviceReport {
    let total = system.total_memory() / MIB;
    // "Available" (what a new process can get without swapping), not "free"
    // (which leaves out reclaimable page cache).
    let free = (system.available_memory() / MIB).min(total);
    DeviceReport {
        id: "memory".into(),
        kind: DeviceKind::Memory,
        name: "System memory".into(),
        online: total > 0,
        memory_total_mb: total,
        memory_free_mb: free,
        memory_used_mb: total - free,
        utilization: (total > 0).then(|| ((total - free) as f32 / total as f32 * 100.0).clamp(0.0, 100.0)),
        temperature_c: None,
        source: SYSINFO_SOURCE.into(),
        annotations: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_a_cpu_and_memory() {
        let reports = SystemProbe::new().probe().expect("sysinfo works on Linux");
        let cpu = reports.iter().find(|r| r.id == "cpu").expect("a cpu report");
        assert_eq!(cpu.kind, DeviceKind::Cpu);
        assert!(!cpu.name.is_empty());
        let threads: usize = cpu.annotations.iter().find(|(k, _)| k == "threads").unwrap().1.parse().unwrap();
        assert!(threads >= 1);
        assert!(cpu.utilization.is_some_and(|u| (0.0..=100.0).contains(&u)));
        let mem = reports.iter().find(|r| r.id == "memory").expect("a memory report");
        assert!(mem.online);
        assert!(mem.memory_total_mb > 0);
        assert!(mem.memory_free_mb <= mem.memory_total_mb);
        assert_eq!(mem.memory_free_mb + mem.memory_used_mb, mem.memory_total_mb);
    }
}
