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
//! On top of the budget: at most 1,024 reports per answer, 32 annotations per
//! report, and 1,024 bytes per string. An answer that breaks any of them is refused
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

pub(crate) mod admission;
mod chain;
pub(crate) mod gpu;
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

/// Real compiled plugins for the subsystems' unit tests: a host is used only
/// to compile and initialise them; the subsystems under test then run on a
/// registry snapshot of their own.
#[cfg(test)]
pub(crate) mod test_plugins {
    use std::sync::Arc;

    use crate::breaker::BreakerConfig;
    use crate::plugin::LoadedPlugin;
    use crate::registry::{Registry, Snapshot};

    /// Plugins compiled from `(wasm, manifest)` pairs; the directory they were
    /// read from lives as long as the result.
    pub(crate) async fn snapshot(
        plugins: &[(&str, String)],
        breaker: BreakerConfig,
    ) -> (Arc<Snapshot>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let host = crate::HostBuilder::new()
            .cache_dir(Some(std::env::temp_dir().join("plugbox-test-cache")))
            .circuit_breaker(breaker)
            .build()
            .unwrap();
        let registry = Registry::default();
        for (i, (wasm, manifest)) in plugins.iter().enumerate() {
            let d = dir.path().join(i.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(wasm, d.join("plugin.wasm")).unwrap();
            std::fs::write(d.join("plugin.yaml"), manifest).unwrap();
            let source = crate::loader::source_for_path(&d).unwrap();
            let plugin: Arc<LoadedPlugin> = host.prepare(&source).await.unwrap();
            registry.update(|p| p.insert(plugin.name().to_string(), plugin.clone()));
        }
        (registry.snapshot(), dir)
    }

    /// Manifest of the `device-scripted` fixture as plugin `name`, with
    /// `hooks` and string `config` values.
    pub(crate) fn scripted(name: &str, hooks: &str, on_error: &str, config: &[(&str, &str)]) -> String {
        let mut m = format!(
            "name: {name}\nversion: 0.1.0\nhooks: [{hooks}]\non-error: {on_error}\n\
             limits: {{ timeout: 1s, memory: 32MiB, max-output: 1KiB }}\nconfig:\n  tag: {{ type: string, default: {name} }}\n"
        );
        for (key, value) in config {
            let (ty, value) = match value.parse::<i64>() {
                Ok(n) => ("integer", n.to_string()),
                Err(_) => ("string", format!("\"{value}\"")),
            };
            m.push_str(&format!("  {key}: {{ type: {ty}, default: {value} }}\n"));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::test_plugins::{scripted, snapshot};
    use super::*;
    use crate::breaker::{BreakerConfig, BreakerState};

    struct Counting(Arc<AtomicUsize>);

    impl GpuBackend for Counting {
        fn name(&self) -> &str {
            "fake"
        }
        fn device_count(&self) -> Result<u32, GpuError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(1)
        }
        fn read(&self, index: u32) -> Result<GpuReading, GpuError> {
            Ok(GpuReading {
                index,
                name: "Fake".into(),
                uuid: "GPU-fake".into(),
                memory_total_bytes: 1000 << 20,
                memory_free_bytes: 800 << 20,
                memory_used_bytes: 200 << 20,
                utilization_percent: None,
                temperature_c: None,
            })
        }
    }

    fn subsystem(ttl: Duration, propagate_all: bool) -> (Devices, Arc<AtomicUsize>, DeviceReports) {
        let counted = Arc::new(AtomicUsize::new(0));
        let options = DeviceOptions {
            cache_ttl: ttl,
            system: false,
            gpu: GpuSource::Backend(Arc::new(Counting(counted.clone()))),
            hook_timeout: Duration::from_secs(5),
        };
        let published = DeviceReports::default();
        (Devices::new(options, propagate_all, published.clone()), counted, published)
    }

    #[tokio::test]
    async fn probes_are_cached_per_registry_snapshot_and_published() {
        let (devices, counted, published) = subsystem(Duration::from_secs(3600), false);
        let empty = Arc::new(Snapshot::default());
        let first = devices.probe(&empty, false).await;
        assert!(Arc::ptr_eq(&first, &devices.probe(&empty, false).await));
        assert_eq!(counted.load(Ordering::SeqCst), 1);
        assert_eq!(published.read().as_slice(), first.adjusted.as_slice());
        assert_eq!(first.adjusted[0].id, "gpu:0");
        // Another plugin set, or a forced probe: probed again.
        let other = Arc::new(Snapshot::default());
        assert!(!Arc::ptr_eq(&first, &devices.probe(&other, false).await));
        devices.probe(&other, true).await;
        assert_eq!(counted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn device_plugins_and_hooks_of_a_snapshot_run_in_order() {
        let wasm = plugbox_artifacts::DEVICE_SCRIPTED;
        let plugins = [
            (
                wasm,
                scripted(
                    "npu",
                    "device-probe",
                    "fail-open",
                    &[("probe", "ok"), ("total_mb", "100"), ("free_mb", "80")],
                ),
            ),
            (wasm, scripted("halve", "on-device-probe", "fail-open", &[("hook", "halve")])),
            (wasm, scripted("broken", "on-device-probe", "fail-open", &[("hook", "invent")])),
        ];
        let (registry, _dir) = snapshot(&plugins, BreakerConfig::default()).await;
        let (devices, _, _) = subsystem(Duration::ZERO, false);
        let s = devices.probe(&registry, false).await;
        assert!(s.failed.is_none());
        assert_eq!(s.raw_device("npu:dev0").unwrap().memory_free_mb, 80);
        assert_eq!(s.device("npu:dev0").unwrap().memory_free_mb, 40);
        assert_eq!(s.device("gpu:0").unwrap().memory_free_mb, 400);
        let actions: Vec<_> = s.hooks.iter().map(|h| format!("{} {}", h.plugin, h.action)).collect();
        assert_eq!(
            actions[..2],
            [
                "npu reported 1",
                "broken failed-open: invalid output: device `invented` was not in the reports it was given (hooks adjust devices; device-probe plugins add them)"
            ]
        );
        assert_eq!(actions[2], "halve changed 2");
        // The refused answer is one verdict: one error, one step towards the breaker.
        let stats = registry.plugins["broken"].stats();
        assert_eq!((stats.calls, stats.errors, stats.consecutive_failures), (1, 1, 1));
    }

    #[tokio::test]
    async fn one_on_error_decision_for_device_plugins_and_hooks() {
        let wasm = plugbox_artifacts::DEVICE_SCRIPTED;
        let breaker =
            BreakerConfig { threshold: 2, backoff: Duration::from_secs(60), max_backoff: Duration::from_secs(60) };
        // fail-open, but the host propagates every plugin error: fails closed.
        let plugins = [(wasm, scripted("strict", "on-device-probe", "fail-open", &[("hook", "error")]))];
        let (registry, _dir) = snapshot(&plugins, breaker).await;
        let (devices, _, _) = subsystem(Duration::ZERO, true);
        let s = devices.probe(&registry, false).await;
        let failed = s.failed.as_ref().unwrap();
        assert_eq!(failed.to_string(), "plugin `strict` failed in `on-device-probe`: strict failed on purpose");
        assert!(!s.device("gpu:0").unwrap().online);
        assert_eq!(
            annotation(s.device("gpu:0").unwrap(), chain::OFFLINE_REASON),
            Some("device hook `strict` failed (fail-closed): strict failed on purpose")
        );
        // The second failure trips the breaker; quarantined, it still fails closed.
        devices.probe(&registry, false).await;
        assert!(matches!(registry.plugins["strict"].stats().breaker, BreakerState::Open { .. }));
        let s = devices.probe(&registry, false).await;
        assert!(matches!(s.failed.as_ref().unwrap().kind, crate::failure::FailureKind::Quarantined(_)));
        assert_eq!(registry.plugins["strict"].stats().calls, 2);

        // Without propagation the same plugin is skipped.
        let (devices, _, _) = subsystem(Duration::ZERO, false);
        let plugins = [(wasm, scripted("lenient", "on-device-probe", "fail-open", &[("hook", "error")]))];
        let (registry, _dir) = snapshot(&plugins, BreakerConfig::default()).await;
        let s = devices.probe(&registry, false).await;
        assert!(s.failed.is_none() && s.device("gpu:0").unwrap().online);
        assert_eq!(s.hooks[0].action, "failed-open: lenient failed on purpose");
    }
}
