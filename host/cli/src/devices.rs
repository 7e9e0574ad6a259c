//! `plugbox devices`: probe the devices (built-in probes, then the device
//! plugins and device hooks of `--plugins DIR`) and print a table, or JSON.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use plugbox_host::devices::{DeviceSnapshot, SYSINFO_SOURCE};
use plugbox_host::{DeviceKind, DeviceReport, HostBuilder};

pub async fn run(builder: HostBuilder, plugins: Option<&Path>, json: bool) -> Result<ExitCode> {
    let host = builder.build()?;
    if let Some(dir) = plugins {
        let report = host.load_dir(dir).await?;
        for f in &report.failed {
            eprintln!("warning: {f}");
        }
    }
    let snapshot = host.probe_devices().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&*snapshot)?);
    } else {
        print!("{}", table(&snapshot));
    }
    Ok(ExitCode::SUCCESS)
}

fn kind(k: DeviceKind) -> &'static str {
    match k {
        DeviceKind::Cpu => "cpu",
        DeviceKind::Memory => "memory",
        DeviceKind::Gpu => "gpu",
        DeviceKind::Accelerator => "accel",
        DeviceKind::Other => "other",
    }
}

fn mib(d: &DeviceReport, v: u64) -> String {
    if d.memory_total_mb == 0 { "-".into() } else { v.to_string() }
}

/// The table a person reads: one row per adjusted device (free memory shows
/// the raw figure too when a hook changed it), then annotations, the GPU
/// line and any problems.
pub fn table(s: &DeviceSnapshot) -> String {
    let header = ["ID", "KIND", "NAME", "STATE", "TOTAL MiB", "FREE MiB", "USED MiB", "UTIL", "TEMP", "SOURCE"];
    let mut rows: Vec<[String; 10]> = Vec::new();
    for d in &s.adjusted {
        let free = match s.raw_device(&d.id) {
            Some(raw) if raw.memory_free_mb != d.memory_free_mb => {
                format!("{} (raw {})", d.memory_free_mb, raw.memory_free_mb)
            }
            _ => mib(d, d.memory_free_mb),
        };
        rows.push([
            d.id.clone(),
            kind(d.kind).into(),
            d.name.clone(),
            if d.online { "online" } else { "offline" }.into(),
            mib(d, d.memory_total_mb),
            free,
            mib(d, d.memory_used_mb),
            d.utilization.map(|u| format!("{u:.0}%")).unwrap_or_else(|| "-".into()),
            d.temperature_c.map(|t| format!("{t:.0}°C")).unwrap_or_else(|| "-".into()),
            d.source.clone(),
        ]);
    }
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric = |i: usize| (4..=8).contains(&i);
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(
                |(i, c)| if numeric(i) { format!("{c:>w$}", w = widths[i]) } else { format!("{c:<w$}", w = widths[i]) },
            )
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(&header.map(String::from));
    for r in &rows {
        out.push_str(&line(r));
    }
    for d in s.adjusted.iter().filter(|d| !d.annotations.is_empty()) {
        let notes: Vec<String> = d.annotations.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("  {}: {}\n", d.id, notes.join(", ")));
    }
    let raw_only: Vec<&str> = s.raw.iter().filter(|r| s.device(&r.id).is_none()).map(|r| r.id.as_str()).collect();
    if !raw_only.is_empty() {
        out.push_str(&format!("filtered out by device hooks: {}\n", raw_only.join(", ")));
    }
    out.push_str(&gpu_line(s));
    if !s.problems.is_empty() {
        out.push_str("problems:\n");
        for p in &s.problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out
}

/// "NVIDIA GPUs: ..." so that a missing driver is never mistaken for no GPU.
fn gpu_line(s: &DeviceSnapshot) -> String {
    let nvml = s.problems.iter().find(|p| p.source == "builtin:nvml");
    let count = s.raw.iter().filter(|d| d.source == "builtin:nvml").count();
    match (nvml, count) {
        (Some(p), _) => format!("NVIDIA GPUs: unknown ({})\n", p.message),
        (None, 0) if s.raw.iter().any(|d| d.source == SYSINFO_SOURCE) => "NVIDIA GPUs: none (NVML loaded)\n".into(),
        (None, 0) => String::new(),
        (None, n) => format!("NVIDIA GPUs: {n}\n"),
    }
}
