//! Admission: may a model run on the devices as they are now reported?
//!
//! A model ([`ModelConfig`]) names the devices it needs and the memory it
//! needs on each. It is admitted when every required device is reported
//! (after device hooks), online, and has at least that much free memory.
//! Otherwise the [`Admission`] says, per device, why not: the building block a
//! gateway uses to refuse a request or send it elsewhere.

use serde::Serialize;

use super::{DeviceSnapshot, annotation, chain::OFFLINE_REASON};
use crate::bindings::types::DeviceReport;
use crate::models::ModelConfig;

/// The verdict on one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Admission {
    /// The model's name.
    pub model: String,
    /// Whether every required device allows the model.
    pub admitted: bool,
    /// One entry per required device, in the model's order.
    pub checks: Vec<DeviceCheck>,
}

/// What one required device allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceCheck {
    /// The required device's id (`gpu:0`, `memory` ...).
    pub device: String,
    /// MiB the model needs there (0 when it only needs the device).
    pub required_mb: u64,
    /// MiB free after device hooks, when the device is reported.
    pub free_mb: Option<u64>,
    /// MiB free as the probe read it, before device hooks.
    pub raw_free_mb: Option<u64>,
    /// Why this device does not allow the model; `None` when it does.
    pub refusal: Option<String>,
}

impl Admission {
    /// The refusals, one line per device that does not allow the model.
    pub fn reasons(&self) -> Vec<&str> {
        self.checks.iter().filter_map(|c| c.refusal.as_deref()).collect()
    }
}

impl std::fmt::Display for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.admitted {
            write!(f, "model `{}` is admitted", self.model)
        } else {
            write!(f, "model `{}` is refused: {}", self.model, self.reasons().join("; "))
        }
    }
}

/// Decides on `model` against a probe's adjusted reports (the raw ones are
/// used only to say what the hooks changed).
pub fn check(model: &ModelConfig, devices: &DeviceSnapshot) -> Admission {
    let checks: Vec<DeviceCheck> = model
        .required_devices
        .iter()
        .map(|id| {
            let required_mb = model.memory_mb.get(id).copied().unwrap_or(0);
            let raw_free_mb = devices.raw_device(id).map(|d| d.memory_free_mb);
            let (free_mb, refusal) = match devices.device(id) {
                Some(d) => (Some(d.memory_free_mb), refuse(&model.name, d, required_mb, raw_free_mb)),
                None => (None, Some(missing(id, devices.raw_device(id).is_some()))),
            };
            DeviceCheck { device: id.clone(), required_mb, free_mb, raw_free_mb, refusal }
        })
        .collect();
    Admission { model: model.name.clone(), admitted: checks.iter().all(|c| c.refusal.is_none()), checks }
}

fn missing(id: &str, filtered: bool) -> String {
    if filtered {
        format!("device `{id}` was filtered out by a device hook")
    } else {
        format!("no device `{id}` is reported")
    }
}

fn refuse(model: &str, d: &DeviceReport, required_mb: u64, raw_free_mb: Option<u64>) -> Option<String> {
    if !d.online {
        let why = annotation(d, OFFLINE_REASON).map(|r| format!(": {r}")).unwrap_or_default();
        return Some(format!("device `{}` is offline{why}", d.id));
    }
    if required_mb == 0 {
        return None;
    }
    if d.memory_total_mb == 0 {
        let hint = if d.id == "cpu" { " (system RAM is the `memory` device)" } else { "" };
        return Some(format!(
            "device `{}` reports no memory, but model `{model}` needs {required_mb} MiB there{hint}",
            d.id
        ));
    }
    if d.memory_free_mb < required_mb {
        let adjusted = match raw_free_mb {
            Some(raw) if raw != d.memory_free_mb => format!(" ({raw} MiB before device hooks)"),
            _ => String::new(),
        };
        return Some(format!(
            "model `{model}` needs {required_mb} MiB on `{}`, which has {} MiB free{adjusted}",
            d.id, d.memory_free_mb
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::DeviceKind;

    fn gpu(id: &str, total: u64, free: u64) -> DeviceReport {
        DeviceReport {
            id: id.into(),
            kind: DeviceKind::Gpu,
            name: "g".into(),
            online: true,
            memory_total_mb: total,
            memory_free_mb: free,
            memory_used_mb: total - free,
            utilization: None,
            temperature_c: None,
            source: "test".into(),
            annotations: vec![],
        }
    }

    fn snapshot(raw: Vec<DeviceReport>, adjusted: Vec<DeviceReport>) -> DeviceSnapshot {
        DeviceSnapshot { raw, adjusted, problems: vec![], hooks: vec![], failed: None, taken_at_ms: 0, took_micros: 0 }
    }

    fn model(devices: &[(&str, u64)]) -> ModelConfig {
        let mut m = ModelConfig::new("llama", "chat");
        for (id, mb) in devices {
            m.required_devices.push(id.to_string());
            m.memory_mb.insert(id.to_string(), *mb);
        }
        m
    }

    #[test]
    fn admitted_when_every_device_has_room() {
        let s = snapshot(vec![gpu("gpu:0", 24000, 20000)], vec![gpu("gpu:0", 24000, 20000)]);
        let a = check(&model(&[("gpu:0", 8000)]), &s);
        assert!(a.admitted, "{a}");
        assert_eq!(a.to_string(), "model `llama` is admitted");
    }

    #[test]
    fn refusals_say_why() {
        let mut offline = gpu("gpu:1", 24000, 24000);
        offline.online = false;
        offline.annotations.push((OFFLINE_REASON.into(), "maintenance".into()));
        let raw = vec![gpu("gpu:0", 24000, 9000), offline.clone(), gpu("gpu:2", 8000, 8000), gpu("cpu", 0, 0)];
        let adjusted = vec![gpu("gpu:0", 24000, 7000), offline, gpu("cpu", 0, 0)];
        let m = model(&[("gpu:0", 8000), ("gpu:1", 1), ("gpu:2", 1), ("gpu:9", 1), ("cpu", 100)]);
        let a = check(&m, &snapshot(raw, adjusted));
        assert!(!a.admitted);
        assert_eq!(
            a.reasons(),
            vec![
                "model `llama` needs 8000 MiB on `gpu:0`, which has 7000 MiB free (9000 MiB before device hooks)",
                "device `gpu:1` is offline: maintenance",
                "device `gpu:2` was filtered out by a device hook",
                "no device `gpu:9` is reported",
                "device `cpu` reports no memory, but model `llama` needs 100 MiB there (system RAM is the `memory` device)",
            ]
        );
        assert_eq!(a.checks[0].free_mb, Some(7000));
        assert_eq!(a.checks[0].raw_free_mb, Some(9000));
    }

    #[test]
    fn a_device_needed_without_memory_only_has_to_be_online() {
        let s = snapshot(vec![gpu("npu", 0, 0)], vec![gpu("npu", 0, 0)]);
        assert!(check(&model(&[("npu", 0)]), &s).admitted);
    }
}
