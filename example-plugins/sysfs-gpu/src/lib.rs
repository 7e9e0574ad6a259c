//! Device plugin: reports GPUs the host cannot see through NVML, from the
//! AMD-style files of a sysfs tree (`amdgpu` exposes them):
//!
//! ```text
//! <root>/card<N>/device/mem_info_vram_total   bytes
//! <root>/card<N>/device/mem_info_vram_used    bytes
//! <root>/card<N>/device/gpu_busy_percent      optional, 0-100
//! <root>/card<N>/device/product_name          optional
//! <root>/card<N>/device/vendor, device        optional, PCI ids (0x1002 = AMD)
//! <root>/card<N>/device/hwmon/hwmon*/temp1_input   optional, millidegrees C
//! ```
//!
//! The plugin sees only what its manifest's `permissions.filesystem` grants
//! read-only, and the operator's policy allows (a grant outside the plugin's
//! own directory needs `filesystem-roots`). On a real machine the entries of
//! `/sys/class/drm` are symlinks into `/sys/devices`, so the grant is `/sys`
//! (read-only) and `root` is `/sys/class/drm`; symlinks that stay inside the
//! grant are followed, none can lead out of it.
//!
//! A card without the two memory files (an Intel iGPU, a connector entry) is
//! skipped; a card whose files cannot be read or make no sense is reported
//! offline with an `error` annotation. Ids are `sysfs:card<N>`.
//!
//! Config: `root` (default `/sys/class/drm`), a guest path.

use std::fs;
use std::path::{Path, PathBuf};

use plugbox_sdk::{Config, DeviceKind, DeviceReport, Plugin};

plugbox_sdk::embed_manifest!("../../../manifests/sysfs-gpu.yaml");

const MIB: u64 = 1024 * 1024;

struct SysfsGpu {
    root: PathBuf,
}

/// A sysfs value: absent, unreadable/garbled, or a number.
enum Value {
    Missing,
    Bad(String),
    Num(u64),
}

fn read_num(path: &Path) -> Value {
    match fs::read_to_string(path) {
        Ok(text) => {
            let t = text.trim();
            let parsed = match t.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => t.parse().ok(),
            };
            match parsed {
                Some(n) => Value::Num(n),
                None => Value::Bad(format!("`{}` holds `{t}`, not a number", path.display())),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Missing,
        Err(e) => Value::Bad(format!("cannot read `{}`: {e}", path.display())),
    }
}

fn read_text(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The first `hwmon*/temp1_input` under `device`, in degrees C.
fn temperature(device: &Path) -> Option<f32> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(device.join("hwmon")).ok()?.flatten().map(|e| e.path()).collect();
    dirs.sort();
    dirs.iter().find_map(|d| match read_num(&d.join("temp1_input")) {
        Value::Num(milli) => Some(milli as f32 / 1000.0),
        _ => None,
    })
}

fn card_number(name: &str) -> Option<u32> {
    name.strip_prefix("card")?.parse().ok()
}

impl SysfsGpu {
    fn card(&self, n: u32) -> Option<DeviceReport> {
        let device = self.root.join(format!("card{n}")).join("device");
        let total = read_num(&device.join("mem_info_vram_total"));
        let used = read_num(&device.join("mem_info_vram_used"));
        let vendor = read_text(&device.join("vendor"));
        let pci = read_text(&device.join("device"));
        let name =
            read_text(&device.join("product_name")).unwrap_or_else(|| match (vendor.as_deref(), pci.as_deref()) {
                (Some("0x1002"), Some(d)) => format!("AMD GPU {d}"),
                (Some(v), Some(d)) => format!("GPU {v}:{d}"),
                _ => format!("GPU card{n}"),
            });
        let mut report = DeviceReport::new(format!("sysfs:card{n}"), DeviceKind::Gpu, name, "plugin:sysfs-gpu");
        let problem = match (total, used) {
            (Value::Missing, Value::Missing) => return None,
            (Value::Num(t), Value::Num(u)) if u <= t => {
                report.memory_total_mb = t / MIB;
                report.memory_used_mb = u.div_ceil(MIB).min(report.memory_total_mb);
                report.memory_free_mb = report.memory_total_mb - report.memory_used_mb;
                None
            }
            (Value::Num(t), Value::Num(u)) => Some(format!("VRAM used ({u} bytes) exceeds total ({t} bytes)")),
            (Value::Bad(e), _) | (_, Value::Bad(e)) => Some(e),
            (Value::Missing, _) => Some("`mem_info_vram_total` is missing".to_string()),
            (_, Value::Missing) => Some("`mem_info_vram_used` is missing".to_string()),
        };
        if let Some(e) = problem {
            report.online = false;
            report.annotate("error", e);
            return Some(report);
        }
        if let Value::Num(busy) = read_num(&device.join("gpu_busy_percent")) {
            report.utilization = Some(busy.min(100) as f32);
        }
        report.temperature_c = temperature(&device);
        if let (Some(v), Some(d)) = (vendor, pci) {
            report.annotate("pci-id", format!("{v}:{d}"));
        }
        report.annotate("sysfs-path", device.display().to_string());
        Some(report)
    }
}

impl Plugin for SysfsGpu {
    fn init(config: Config) -> Result<Self, String> {
        let root = config.get_str("root")?.unwrap_or("/sys/class/drm");
        if !root.starts_with('/') {
            return Err(format!("config `root` must be an absolute guest path, got `{root}`"));
        }
        Ok(SysfsGpu { root: PathBuf::from(root) })
    }

    fn probe(&mut self) -> Result<Vec<DeviceReport>, String> {
        let entries = fs::read_dir(&self.root).map_err(|e| {
            format!(
                "cannot read `{}`: {e} (grant it read-only in the manifest's `permissions.filesystem`; \
                 outside the plugin's directory the operator's policy must allow it)",
                self.root.display()
            )
        })?;
        let mut cards: Vec<u32> =
            entries.flatten().filter_map(|e| card_number(&e.file_name().to_string_lossy())).collect();
        cards.sort_unstable();
        Ok(cards.into_iter().filter_map(|n| self.card(n)).collect())
    }
}

plugbox_sdk::export!(SysfsGpu);
