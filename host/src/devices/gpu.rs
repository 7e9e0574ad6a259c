//! GPUs: the [`GpuBackend`] trait, its NVML implementation, and the mapping
//! of readings to [`DeviceReport`]s (tested with a fake backend).
//!
//! NVML (`libnvidia-ml.so.1`) is loaded at run time, the first time the host
//! probes. On a machine without the NVIDIA driver the load fails; the probe
//! logs "NVML not available" once, keeps that answer (it does not retry the
//! load on every probe), and every probe result carries it as a
//! [`ProbeProblem`](super::ProbeProblem) so that tables and the admin API show
//! an honest GPU line. Everything else works as usual.

use std::sync::{Arc, OnceLock};

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;

use crate::bindings::types::{DeviceKind, DeviceReport};

const MIB: u64 = 1024 * 1024;

/// Why a GPU backend could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// The backend cannot be used on this machine at all (no driver, no
    /// library). Reported once per probe as a problem, never as a panic.
    #[error("{0}")]
    Unavailable(String),
    /// One query failed (a device fell off the bus, the driver is busy ...).
    #[error("{0}")]
    Query(String),
}

/// One GPU as a backend reads it. Memory in bytes, as drivers report it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    /// The backend's index of the device (`gpu:<index>` in reports).
    pub index: u32,
    /// The device's product name, as the driver reports it.
    pub name: String,
    /// A stable identifier (NVML's `GPU-...` UUID).
    pub uuid: String,
    /// Total device memory, in bytes.
    pub memory_total_bytes: u64,
    /// Free device memory, in bytes.
    pub memory_free_bytes: u64,
    /// Used device memory, in bytes.
    pub memory_used_bytes: u64,
    /// Percent of time the GPU was busy over the driver's last sample period.
    pub utilization_percent: Option<u32>,
    /// Temperature in degrees Celsius; `None` when the driver does not report it.
    pub temperature_c: Option<u32>,
}

/// A source of GPU readings: NVML in production ([`NvmlBackend`]), a fake in
/// tests, or an embedder's own (e.g. a remote agent's figures).
///
/// Calls block (NVML queries take microseconds to milliseconds); the host
/// runs them off the async threads.
pub trait GpuBackend: Send + Sync + 'static {
    /// The backend's name, used in report sources (`builtin:<name>`).
    fn name(&self) -> &str;
    /// How many GPUs there are, or [`GpuError::Unavailable`].
    fn device_count(&self) -> Result<u32, GpuError>;
    /// Reads GPU `index` (0-based, below [`device_count`](GpuBackend::device_count)).
    fn read(&self, index: u32) -> Result<GpuReading, GpuError>;
}

/// Maps a backend's readings to reports. A GPU that cannot be read is
/// reported offline with an `error` annotation (it exists, but nothing may be
/// scheduled on it); a backend that is unavailable yields no reports and the
/// error.
pub fn gpu_reports(backend: &dyn GpuBackend) -> (Vec<DeviceReport>, Option<GpuError>) {
    let source = format!("builtin:{}", backend.name());
    let count = match backend.device_count() {
        Ok(n) => n,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let reports = (0..count)
        .map(|index| match backend.read(index) {
            Ok(r) => reading_to_report(&r, &source),
            Err(e) => DeviceReport {
                id: format!("gpu:{index}"),
                kind: DeviceKind::Gpu,
                name: format!("GPU {index}"),
                online: false,
                memory_total_mb: 0,
                memory_free_mb: 0,
                memory_used_mb: 0,
                utilization: None,
                temperature_c: None,
                source: source.clone(),
                annotations: vec![("error".into(), e.to_string())],
            },
        })
        .collect();
    (reports, None)
}

/// One reading as a report: `gpu:<index>`, memory in MiB (rounded down), the
/// UUID as an annotation.
pub fn reading_to_report(r: &GpuReading, source: &str) -> DeviceReport {
    let total = r.memory_total_bytes / MIB;
    // Free and used are rounded down separately; keep them within total.
    let free = (r.memory_free_bytes / MIB).min(total);
    let used = (r.memory_used_bytes / MIB).min(total);
    DeviceReport {
        id: format!("gpu:{}", r.index),
        kind: DeviceKind::Gpu,
        name: r.name.clone(),
        online: true,
        memory_total_mb: total,
        memory_free_mb: free,
        memory_used_mb: used,
        utilization: r.utilization_percent.map(|u| u.min(100) as f32),
        temperature_c: r.temperature_c.map(|t| t as f32),
        source: source.to_string(),
        annotations: vec![("uuid".into(), r.uuid.clone()), ("index".into(), r.index.to_string())],
    }
}

/// NVIDIA GPUs through NVML, loaded at run time.
pub struct NvmlBackend {
    nvml: Nvml,
}

impl NvmlBackend {
    /// Loads `libnvidia-ml.so.1` and initialises NVML.
    ///
    /// # Errors
    ///
    /// [`GpuError::Unavailable`] ("NVML not available: ...") when the library
    /// or the driver is missing.
    pub fn load() -> Result<NvmlBackend, GpuError> {
        Nvml::init()
            .map(|nvml| NvmlBackend { nvml })
            .map_err(|e| GpuError::Unavailable(format!("NVML not available: {e}")))
    }
}

impl GpuBackend for NvmlBackend {
    fn name(&self) -> &str {
        "nvml"
    }

    fn device_count(&self) -> Result<u32, GpuError> {
        self.nvml.device_count().map_err(|e| GpuError::Query(format!("NVML device count: {e}")))
    }

    fn read(&self, index: u32) -> Result<GpuReading, GpuError> {
        let q =
            |what: &str, e: nvml_wrapper::error::NvmlError| GpuError::Query(format!("NVML {what} of GPU {index}: {e}"));
        let device = self.nvml.device_by_index(index).map_err(|e| q("handle", e))?;
        let memory = device.memory_info().map_err(|e| q("memory", e))?;
        Ok(GpuReading {
            index,
            name: device.name().map_err(|e| q("name", e))?,
            uuid: device.uuid().map_err(|e| q("uuid", e))?,
            memory_total_bytes: memory.total,
            memory_free_bytes: memory.free,
            memory_used_bytes: memory.used,
            // Not every GPU supports these; their absence is not an error.
            utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
            temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
        })
    }
}

/// The built-in GPU probe: a backend chosen at build time, or NVML loaded
/// lazily once.
pub(crate) struct GpuProbe {
    backend: OnceLock<Result<Arc<dyn GpuBackend>, GpuError>>,
}

impl GpuProbe {
    /// NVML, loaded on first use.
    pub(crate) fn nvml() -> Self {
        GpuProbe { backend: OnceLock::new() }
    }

    /// A given backend (tests, embedders).
    pub(crate) fn with_backend(backend: Arc<dyn GpuBackend>) -> Self {
        let probe = GpuProbe { backend: OnceLock::new() };
        let _ = probe.backend.set(Ok(backend));
        probe
    }

    /// Reads every GPU. Blocking.
    pub(crate) fn probe(&self) -> (Vec<DeviceReport>, Option<GpuError>) {
        let backend = self.backend.get_or_init(|| {
            let loaded = NvmlBackend::load().map(|b| Arc::new(b) as Arc<dyn GpuBackend>);
            match &loaded {
                Ok(_) => tracing::info!("NVML loaded: NVIDIA GPUs will be probed"),
                // Said once: the load is not retried on every probe.
                Err(e) => tracing::warn!("{e}; no NVIDIA GPUs will be reported"),
            }
            loaded
        });
        match backend {
            Ok(b) => gpu_reports(b.as_ref()),
            Err(e) => (Vec::new(), Some(e.clone())),
        }
    }

    /// The source name reports and problems use.
    pub(crate) fn source(&self) -> String {
        match self.backend.get() {
            Some(Ok(b)) => format!("builtin:{}", b.name()),
            _ => "builtin:nvml".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Vec<Result<GpuReading, GpuError>>);

    impl GpuBackend for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn device_count(&self) -> Result<u32, GpuError> {
            Ok(self.0.len() as u32)
        }
        fn read(&self, index: u32) -> Result<GpuReading, GpuError> {
            self.0[index as usize].clone()
        }
    }

    struct Missing;

    impl GpuBackend for Missing {
        fn name(&self) -> &str {
            "nvml"
        }
        fn device_count(&self) -> Result<u32, GpuError> {
            Err(GpuError::Unavailable("NVML not available: no driver".into()))
        }
        fn read(&self, _: u32) -> Result<GpuReading, GpuError> {
            unreachable!("never asked when the count fails")
        }
    }

    fn reading(index: u32) -> GpuReading {
        GpuReading {
            index,
            name: "NVIDIA A10".into(),
            uuid: format!("GPU-{index:08}"),
            memory_total_bytes: 24 * 1024 * MIB,
            memory_free_bytes: 20 * 1024 * MIB + 512 * 1024, // 20 GiB and half a MiB
            memory_used_bytes: 4 * 1024 * MIB - 512 * 1024,
            utilization_percent: Some(37),
            temperature_c: Some(61),
        }
    }

    #[test]
    fn readings_map_to_reports_in_mib() {
        let (reports, problem) = gpu_reports(&Fake(vec![Ok(reading(0)), Ok(reading(1))]));
        assert_eq!(problem, None);
        assert_eq!(reports.len(), 2);
        let r = &reports[1];
        assert_eq!(r.id, "gpu:1");
        assert_eq!(r.kind, DeviceKind::Gpu);
        assert_eq!(r.name, "NVIDIA A10");
        assert!(r.online);
        assert_eq!((r.memory_total_mb, r.memory_free_mb, r.memory_used_mb), (24576, 20480, 4095));
        assert_eq!(r.utilization, Some(37.0));
        assert_eq!(r.temperature_c, Some(61.0));
        assert_eq!(r.source, "builtin:fake");
        assert!(r.annotations.contains(&("uuid".into(), "GPU-00000001".into())));
    }

    #[test]
    fn an_unreadable_gpu_is_reported_offline_with_the_error() {
        let lost = Err(GpuError::Query("NVML memory of GPU 1: GPU is lost".into()));
        let (reports, problem) = gpu_reports(&Fake(vec![Ok(reading(0)), lost]));
        assert_eq!(problem, None);
        assert!(reports[0].online);
        assert!(!reports[1].online);
        assert_eq!(reports[1].id, "gpu:1");
        assert_eq!(reports[1].annotations, vec![("error".into(), "NVML memory of GPU 1: GPU is lost".into())]);
    }

    #[test]
    fn odd_driver_figures_are_clamped() {
        let mut r = reading(0);
        r.memory_free_bytes = r.memory_total_bytes * 2;
        r.utilization_percent = Some(250);
        let report = reading_to_report(&r, "builtin:fake");
        assert_eq!(report.memory_free_mb, report.memory_total_mb);
        assert_eq!(report.utilization, Some(100.0));
    }

    #[test]
    fn an_unavailable_backend_is_a_problem_not_a_panic() {
        let (reports, problem) = gpu_reports(&Missing);
        assert!(reports.is_empty());
        assert_eq!(problem, Some(GpuError::Unavailable("NVML not available: no driver".into())));
        let probe = GpuProbe::with_backend(Arc::new(Missing));
        assert!(probe.probe().1.is_some());
        assert_eq!(probe.source(), "builtin:nvml");
    }

    /// The real NVML path. On a machine with the driver it must list GPUs; on
    /// one without (like CI here) it must say "NVML not available", not panic.
    #[test]
    fn real_nvml_loads_or_says_it_is_not_available() {
        let probe = GpuProbe::nvml();
        let (reports, problem) = probe.probe();
        match problem {
            Some(GpuError::Unavailable(message)) => {
                eprintln!("real NVML path could not run here (no NVIDIA driver): {message}");
                assert!(message.starts_with("NVML not available"), "{message}");
                assert!(reports.is_empty());
                // Asked again: the same answer, from the cached load.
                let (again, problem) = probe.probe();
                assert!(again.is_empty());
                assert_eq!(problem, Some(GpuError::Unavailable(message)));
            }
            Some(GpuError::Query(message)) => panic!("NVML loaded but could not count GPUs: {message}"),
            None => {
                eprintln!("real NVML path ran: {} GPU(s)", reports.len());
                for r in &reports {
                    assert!(r.id.starts_with("gpu:"), "{r:?}");
                    assert_eq!(r.source, "builtin:nvml");
                    assert!(!r.online || r.memory_total_mb > 0, "{r:?}");
                }
            }
        }
    }
}
