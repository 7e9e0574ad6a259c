//! Device hook: keeps a headroom off the free memory of the devices it
//! watches, so that admission leaves room for the driver, the KV cache's
//! growth, or other tenants. For each device of a watched kind:
//!
//! * `memory_free_mb` -= `headroom_mb` (never below zero); `total` and `used`
//!   are left as measured;
//! * annotations `memory-reserve.headroom-mb` and `memory-reserve.raw-free-mb`
//!   say what was done;
//! * with `offline_below_mb` > 0, a device left with less than that is marked
//!   offline, with an `offline-reason`.
//!
//! Other devices pass unchanged. The raw figures stay in the host's probe
//! result whatever this hook does.
//!
//! Config: `headroom_mb` (default 1024), `kinds` (comma-separated device
//! kinds, default `gpu,accelerator`), `offline_below_mb` (default 0: never).

use plugbox_sdk::{Config, DeviceKind, DeviceReport, Plugin};

plugbox_sdk::embed_manifest!("../../../manifests/memory-reserve.yaml");

struct MemoryReserve {
    headroom_mb: u64,
    kinds: Vec<DeviceKind>,
    offline_below_mb: u64,
}

fn kind(name: &str) -> Result<DeviceKind, String> {
    Ok(match name.trim() {
        "cpu" => DeviceKind::Cpu,
        "memory" => DeviceKind::Memory,
        "gpu" => DeviceKind::Gpu,
        "accelerator" => DeviceKind::Accelerator,
        "other" => DeviceKind::Other,
        other => {
            return Err(format!(
                "config `kinds`: unknown device kind `{other}` (use cpu, memory, gpu, accelerator, other)"
            ));
        }
    })
}

fn non_negative(config: &Config, key: &str, default: i64) -> Result<u64, String> {
    let v = config.get_i64(key)?.unwrap_or(default);
    u64::try_from(v).map_err(|_| format!("config `{key}` must not be negative, got `{v}`"))
}

impl Plugin for MemoryReserve {
    fn init(config: Config) -> Result<Self, String> {
        let kinds = config
            .get_str("kinds")?
            .unwrap_or("gpu,accelerator")
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(kind)
            .collect::<Result<_, _>>()?;
        Ok(MemoryReserve {
            headroom_mb: non_negative(&config, "headroom_mb", 1024)?,
            kinds,
            offline_below_mb: non_negative(&config, "offline_below_mb", 0)?,
        })
    }

    fn on_device_probe(&mut self, mut reports: Vec<DeviceReport>) -> Result<Vec<DeviceReport>, String> {
        for d in reports.iter_mut().filter(|d| self.kinds.contains(&d.kind)) {
            let raw = d.memory_free_mb;
            d.memory_free_mb = raw.saturating_sub(self.headroom_mb);
            d.annotate("memory-reserve.headroom-mb", self.headroom_mb.to_string());
            d.annotate("memory-reserve.raw-free-mb", raw.to_string());
            if self.offline_below_mb > 0 && d.online && d.memory_free_mb < self.offline_below_mb {
                d.online = false;
                d.annotate(
                    "offline-reason",
                    format!(
                        "memory-reserve: {} MiB free after a {} MiB headroom, below the {} MiB minimum",
                        d.memory_free_mb, self.headroom_mb, self.offline_below_mb
                    ),
                );
            }
        }
        Ok(reports)
    }
}

plugbox_sdk::export!(MemoryReserve);
