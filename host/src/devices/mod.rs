//! Devices: what the host can run models on, and how much memory is free.
//!
//! A probe ([`Host::probe_devices`](crate::Host::probe_devices)) goes:
//!
//! 1. **Built-in probes**: CPU and system memory from `sysinfo`
//!    ([`SYSINFO_SOURCE`]); NVIDIA GPUs through NVML, loaded at run time
//!    ([`gpu`]). Without the NVIDIA driver the GPU probe says
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
//! did.
//!
//! **Failures.** Every plugin call of a probe gets one verdict, made inside the
//! call: a trap, a timeout, an `err(..)` the plugin returned, or an answer the
//! host refuses (the rules above, or the output budget below) counts once in
//! the plugin's stats and once towards its circuit breaker. Then the plugin's
//! `on-error` decides, the same rule as every other chain
//! (`fail-closed`, or the host's `propagate_plugin_errors`, ends the operation):
//!
//! * `fail-open`: the plugin is skipped. A device plugin's devices are missing
//!   from that probe, a device hook leaves the reports as they were before it;
//!   the [`ProbeProblem`] says why.
//! * `fail-closed`: the probe fails. No further plugin runs, every adjusted
//!   report is offline with an `offline-reason` annotation naming the plugin
//!   (so that nothing is admitted on figures a required plugin did not vouch
//!   for), and [`DeviceSnapshot::failed`] holds the failure. The raw readings
//!   are never lost.
//!
//! **Output budget.** Everything a device plugin or device hook returns is
//! charged against its `limits.max-output` (one meter per call, by JSON path,
//! `$` being the list returned): every report, every string field (`id`,
//! `name`, `source`, annotation keys and values) and the text of an `err(..)`.
//! On top of the budget: at most [`MAX_DEVICES`] (1,024) reports per answer,
//! [`MAX_ANNOTATIONS`] (32) annotations per report, and [`MAX_TEXT`]
//! (1,024 bytes) per string. An answer that breaks any of them is refused
//! whole (an invalid output naming the field, e.g. `` `$[3].name` ``) before
//! the host keeps any of it.
//!
//! **Access.** Device plugins and device hooks see device reports only, never
//! a request or a message: the `messages` permission has no bearing on them.
//!
//! Snapshots are cached for [`DeviceOptions::cache_ttl`] (2 s by default), so
//! that probing under load costs a lock and a clone of an `Arc`; loading or
//! unloading a plugin invalidates the cache. Concurrent callers of an expired
//! cache share one probe. The adjusted reports of the latest probe are what
//! plugins read through the `devices.list` import.

pub mod admission;
mod chain;
pub mod gpu;
mod system;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::bindings::types::DeviceReport;
use crate::failure::PluginFailure;
use crate::imports::DeviceReports;
use crate::manifest::Hook;
use crate::registry::Snapshot;
pub use admission::{Admission, DeviceCheck};
pub(crate) use chain::{DeviceProbe, OnDeviceProbe};
pub use chain::{MAX_ANNOTATIONS, MAX_DEVICES, MAX_TEXT, OFFLINE_REASON};
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
    /// The failure of a `fail-closed` device plugin or device hook that failed
    /// this probe: every adjusted report is then offline, with an
    /// `offline-reason` annotation naming the plugin. `None` when no plugin
    /// failed closed.
    #[serde(serialize_with = "failure_text")]
    pub failed: Option<PluginFailure>,
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

fn failure_text<S: serde::Serializer>(f: &Option<PluginFailure>, s: S) -> Result<S::Ok, S::Error> {
    match f {
        Some(f) => s.serialize_some(&f.to_string()),
        None => s.serialize_none(),
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

/// The devices subsystem: the built-in probes, the device plugin and device
/// hook chains of a registry snapshot, and the probe cache. It knows nothing
/// of the host: give it a snapshot of the loaded plugins and it probes.
pub(crate) struct Devices {
    options: DeviceOptions,
    /// The host's `propagate_plugin_errors`: every plugin failure fails closed.
    propagate_all: bool,
    system: Option<Arc<system::SystemProbe>>,
    gpu: Option<Arc<gpu::GpuProbe>>,
    cache: tokio::sync::Mutex<Option<Cached>>,
    /// Where the adjusted reports of the latest probe go (the `devices.list` import).
    published: DeviceReports,
}

impl Devices {
    /// A subsystem probing as `options` says, publishing its adjusted reports
    /// to `published`.
    pub(crate) fn new(options: DeviceOptions, propagate_all: bool, published: DeviceReports) -> Self {
        let gpu = match &options.gpu {
            GpuSource::None => None,
            GpuSource::Nvml => Some(Arc::new(gpu::GpuProbe::nvml())),
            GpuSource::Backend(b) => Some(Arc::new(gpu::GpuProbe::with_backend(b.clone()))),
        };
        Devices {
            system: options.system.then(|| Arc::new(system::SystemProbe::new())),
            gpu,
            options,
            propagate_all,
            cache: tokio::sync::Mutex::new(None),
            published,
        }
    }

    /// Probes with the plugins of `registry`, or returns the cached result if
    /// it is younger than [`DeviceOptions::cache_ttl`], was taken with the same
    /// `registry`, and `force` is false.
    pub(crate) async fn probe(&self, registry: &Arc<Snapshot>, force: bool) -> Arc<DeviceSnapshot> {
        // One probe at a time: callers arriving while it runs get its result.
        let mut cache = self.cache.lock().await;
        if !force
            && let Some(c) = &*cache
            && c.at.elapsed() < self.options.cache_ttl
            && Weak::ptr_eq(&c.registry, &Arc::downgrade(registry))
        {
            return c.snapshot.clone();
        }
        let snapshot = Arc::new(self.probe_now(registry).await);
        *self.published.write() = Arc::new(snapshot.adjusted.clone());
        *cache = Some(Cached { snapshot: snapshot.clone(), at: Instant::now(), registry: Arc::downgrade(registry) });
        snapshot
    }

    #[tracing::instrument(name = "plugbox.devices.probe", skip_all)]
    async fn probe_now(&self, registry: &Snapshot) -> DeviceSnapshot {
        let started = Instant::now();
        let taken_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let mut raw = Vec::new();
        let mut problems = Vec::new();

        let (sys, gpu) = (self.system.clone(), self.gpu.clone());
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
        let (cap, propagate) = (self.options.hook_timeout, self.propagate_all);
        let probes = registry.chain(Hook::DeviceProbe);
        let mut failed = chain::run_device_plugins(&probes, cap, propagate, &mut raw, &mut problems, &mut hooks).await;
        let mut adjusted = raw.clone();
        if failed.is_none() {
            let chain = registry.chain(Hook::OnDeviceProbe);
            failed = chain::run_device_hooks(&chain, cap, propagate, &mut adjusted, &mut problems, &mut hooks).await;
        }
        if let Some(f) = &failed {
            chain::mark_all_offline(&mut adjusted, f);
        }
        DeviceSnapshot {
            raw,
            adjusted,
            problems,
            hooks,
            failed,
            taken_at_ms,
            took_micros: started.elapsed().as_micros() as u64,
        }
    }
}
