//! Devices: what the host can run models on, and how much memory is free.
//!
//! A probe ([`Host::probe_devices`](crate::Host::probe_devices)) goes:
//!
//! 1. **Built-in probes**: CPU and system memory from `sysinfo`
//!    ([`SYSINFO_SOURCE`]); NVIDIA GPUs through NVML, loaded at run time
//!    ([`NvmlBackend`]). Without the NVIDIA driver the GPU probe says
//!    "NVML not available" (a [`ProbeProblem`]) and the rest works.
//! 2. **Device plugins** (hook `device-probe`), in priority order: devices the
//!    host cannot see itself, e.g. the `sysfs-gpu` example reading a sysfs tree
//!    it was granted read-only. The host sets each report's `source` to
//!    `plugin:<name>`; a report whose id another probe already reported is
//!    dropped (and said so).
//! 3. **Device hooks** (hook `on-device-probe`), in priority order: each sees
//!    the reports the previous one returned and may adjust memory figures,
//!    annotate, mark devices offline, or filter them out. It may not invent
//!    devices or change a device's `id`, `kind` or `source`, and `free` and
//!    `used` stay within `total`; breaking that is an invalid output.
//!
//! The result, a [`DeviceSnapshot`], keeps the **raw** reports (before hooks)
//! and the **adjusted** ones (after), every problem met, and what each hook
//! did. A failing device-probe plugin's devices are missing from that probe
//! (the problem says why). A failing device hook follows its `on-error`:
//! `fail-open` skips it (the reports stay as they were before it);
//! `fail-closed` stops the chain and marks every device offline, with an
//! `offline-reason` annotation naming the plugin, so that nothing is admitted
//! on figures a required hook did not vouch for. The raw readings are never
//! lost.
//!
//! Snapshots are cached for [`DeviceOptions::cache_ttl`] (2 s by default), so
//! that probing under load costs a lock and a clone of an `Arc`; loading or
//! unloading a plugin invalidates the cache. Concurrent callers of an expired
//! cache share one probe. The adjusted reports of the latest probe are what
//! plugins read through the `devices.list` import.

pub(crate) mod admission;
mod chain;
pub(crate) mod gpu;
mod system;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::bindings::types::DeviceReport;
use crate::registry::Snapshot;
pub use admission::{Admission, DeviceCheck};
pub use gpu::{GpuBackend, GpuError, GpuReading, NvmlBackend};
pub use system::SYSINFO_SOURCE;

/// How the host probes devices. See [`HostBuilder::devices`](crate::HostBuilder::devices).
#[derive(Clone)]
pub struct DeviceOptions {
    /// How long a probe result is reused. Default 2 s; zero probes every time.
    pub cache_ttl: Duration,
    /// Report CPU and system memory (`sysinfo`). Default on.
    pub system: bool,
    /// Where GPU readings come from. Default: NVML, loaded at run time.
    pub gpu: GpuSource,
    /// Upper bound on any device-probe or device-hook plugin call (the
    /// plugin's own `limits.timeout` applies when smaller). Default 1 s.
    pub hook_timeout: Duration,
}

/// Where the built-in GPU probe gets its readings.
#[derive(Clone)]
pub enum GpuSource {
    /// No built-in GPU probe.
    None,
    /// NVIDIA's NVML, loaded on the first probe.
    Nvml,
    /// A backend of the embedder's (or a test's) choosing.
    Backend(Arc<dyn GpuBackend>),
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            cache_ttl: Duration::from_secs(2),
            system: true,
            gpu: GpuSource::Nvml,
            hook_timeout: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for DeviceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gpu = match &self.gpu {
            GpuSource::None => "none".to_string(),
            GpuSource::Nvml => "nvml".to_string(),
            GpuSource::Backend(b) => format!("backend `{}`", b.name()),
        };
        f.debug_struct("DeviceOptions")
            .field("cache_ttl", &self.cache_ttl)
            .field("system", &self.system)
            .field("gpu", &gpu)
            .field("hook_timeout", &self.hook_timeout)
            .finish()
    }
}

/// Something that went wrong during a probe; the probe itself went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeProblem {
    /// `builtin:nvml`, `builtin:sysinfo`, or `plugin:<name>`.
    pub source: String,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for ProbeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

/// One plugin call of a probe, as the host saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceHookTrace {
    /// The plugin called.
    pub plugin: String,
    /// `device-probe` or `on-device-probe`.
    pub hook: &'static str,
    /// `reported 2`, `unchanged`, `changed 1, removed 1`,
    /// `failed-open: ...`, `failed-closed: ...`, `failed: ...`.
    pub action: String,
    /// How long the call took, in microseconds.
    pub micros: u64,
}

/// The result of one probe.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceSnapshot {
    /// Every report as the probes produced it, before device hooks.
    pub raw: Vec<DeviceReport>,
    /// The reports after device hooks: what admission and plugins use.
    pub adjusted: Vec<DeviceReport>,
    /// What went wrong (a missing driver, a failing plugin ...).
    pub problems: Vec<ProbeProblem>,
    /// The plugin calls made, in order.
    pub hooks: Vec<DeviceHookTrace>,
    /// When the probe ran, in milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// How long the probe took, in microseconds.
    pub took_micros: u64,
}

impl DeviceSnapshot {
    /// The adjusted report of device `id`.
    pub fn device(&self, id: &str) -> Option<&DeviceReport> {
        self.adjusted.iter().find(|d| d.id == id)
    }
    /// The raw report of device `id`, as its probe produced it.
    pub fn raw_device(&self, id: &str) -> Option<&DeviceReport> {
        self.raw.iter().find(|d| d.id == id)
    }
    /// How old this snapshot is.
    pub fn age(&self) -> Duration {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.taken_at_ms))
    }
}

/// The value of annotation `key` of a report.
pub fn annotation<'a>(report: &'a DeviceReport, key: &str) -> Option<&'a str> {
    report.annotations.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

struct Cached {
    snapshot: Arc<DeviceSnapshot>,
    at: Instant,
    /// The plugin set the snapshot was taken with.
    registry: Weak<Snapshot>,
}

/// The host's probes and the probe cache.
pub(crate) struct DeviceState {
    options: DeviceOptions,
    system: Option<Arc<system::SystemProbe>>,
    gpu: Option<Arc<gpu::GpuProbe>>,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl DeviceState {
    pub(crate) fn new(options: DeviceOptions) -> Self {
        let gpu = match &options.gpu {
            GpuSource::None => None,
            GpuSource::Nvml => Some(Arc::new(gpu::GpuProbe::nvml())),
            GpuSource::Backend(b) => Some(Arc::new(gpu::GpuProbe::with_backend(b.clone()))),
        };
        DeviceState {
            system: options.system.then(|| Arc::new(system::SystemProbe::new())),
            gpu,
            options,
            cache: tokio::sync::Mutex::new(None),
        }
    }
}

impl crate::Host {
    /// Probes devices, or returns the cached result if it is younger than
    /// [`DeviceOptions::cache_ttl`] and the loaded plugins have not changed.
    ///
    /// ```no_run
    /// # async fn demo(host: plugbox_host::Host) {
    /// let devices = host.probe_devices().await;
    /// for d in &devices.adjusted {
    ///     println!("{} {}: {} MiB free", d.id, d.name, d.memory_free_mb);
    /// }
    /// for p in &devices.problems {
    ///     eprintln!("{p}"); // e.g. "builtin:nvml: NVML not available: ..."
    /// }
    /// # }
    /// ```
    pub async fn probe_devices(&self) -> Arc<DeviceSnapshot> {
        self.probe_devices_inner(false).await
    }

    /// Probes devices now, whatever the cache holds, and caches the result.
    pub async fn refresh_devices(&self) -> Arc<DeviceSnapshot> {
        self.probe_devices_inner(true).await
    }

    async fn probe_devices_inner(&self, force: bool) -> Arc<DeviceSnapshot> {
        let state = &self.inner.device_state;
        let registry = self.snapshot();
        // One probe at a time: callers arriving while it runs get its result.
        let mut cache = state.cache.lock().await;
        if !force
            && let Some(c) = &*cache
            && c.at.elapsed() < state.options.cache_ttl
            && Weak::ptr_eq(&c.registry, &Arc::downgrade(&registry))
        {
            return c.snapshot.clone();
        }
        let snapshot = Arc::new(self.probe_now(&registry).await);
        *self.inner.devices.write() = Arc::new(snapshot.adjusted.clone());
        *cache = Some(Cached { snapshot: snapshot.clone(), at: Instant::now(), registry: Arc::downgrade(&registry) });
        snapshot
    }

    #[tracing::instrument(name = "plugbox.devices.probe", skip_all)]
    async fn probe_now(&self, registry: &Snapshot) -> DeviceSnapshot {
        let started = Instant::now();
        let taken_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let state = &self.inner.device_state;
        let mut raw = Vec::new();
        let mut problems = Vec::new();

        let (sys, gpu) = (state.system.clone(), state.gpu.clone());
        let builtin = tokio::task::spawn_blocking(move || {
            let sys = sys.map(|s| s.probe());
            let gpu = gpu.map(|g| (g.source(), g.probe()));
            (sys, gpu)
        })
        .await;
        match builtin {
            Ok((sys, gpu)) => {
                match sys {
                    Some(Ok(reports)) => raw.extend(reports),
                    Some(Err(message)) => problems.push(ProbeProblem { source: SYSINFO_SOURCE.into(), message }),
                    None => {}
                }
                if let Some((source, (reports, problem))) = gpu {
                    raw.extend(reports);
                    if let Some(e) = problem {
                        problems.push(ProbeProblem { source, message: e.to_string() });
                    }
                }
            }
            Err(e) => problems.push(ProbeProblem { source: "builtin".into(), message: format!("probe panicked: {e}") }),
        }

        let mut hooks = Vec::new();
        let timeout = state.options.hook_timeout;
        chain::run_device_plugins(registry, timeout, &mut raw, &mut problems, &mut hooks).await;
        let propagate = self.inner.pipeline.propagate_plugin_errors;
        let adjusted = chain::run_device_hooks(registry, timeout, propagate, &raw, &mut problems, &mut hooks).await;
        DeviceSnapshot {
            raw,
            adjusted,
            problems,
            hooks,
            taken_at_ms,
            took_micros: started.elapsed().as_micros() as u64,
        }
    }
}
