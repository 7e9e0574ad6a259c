//! Devices: built-in probes, device plugins, device hooks, the probe cache,
//! admission, interface plugins with a loopback model server, and
//! `plugbox devices`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use plugbox_host::devices::{DeviceOptions, GpuBackend, GpuError, GpuReading, GpuSource};
use plugbox_host::models::{ModelSet, RouteError};
use plugbox_host::{BreakerConfig, BreakerState, DeviceKind, Host, ModelConfig, Policy};
use serde_json::json;

use crate::bounds::{Bounds, MIB, assert_fast};
use crate::*;

/// GPUs with the given (total, free) MiB; counts how often it is asked.
struct FakeGpu {
    gpus: Vec<(u64, u64)>,
    counted: Arc<AtomicUsize>,
}

impl GpuBackend for FakeGpu {
    fn name(&self) -> &str {
        "fake"
    }
    fn device_count(&self) -> Result<u32, GpuError> {
        self.counted.fetch_add(1, Ordering::SeqCst);
        Ok(self.gpus.len() as u32)
    }
    fn read(&self, index: u32) -> Result<GpuReading, GpuError> {
        let (total, free) = self.gpus[index as usize];
        Ok(GpuReading {
            index,
            name: format!("Fake GPU {index}"),
            uuid: format!("GPU-fake-{index}"),
            memory_total_bytes: total * MIB,
            memory_free_bytes: free * MIB,
            memory_used_bytes: (total - free) * MIB,
            utilization_percent: Some(10),
            temperature_c: Some(50),
        })
    }
}

fn options(gpus: &[(u64, u64)], counted: &Arc<AtomicUsize>) -> DeviceOptions {
    DeviceOptions {
        system: false,
        gpu: GpuSource::Backend(Arc::new(FakeGpu { gpus: gpus.to_vec(), counted: counted.clone() })),
        cache_ttl: Duration::ZERO,
        ..DeviceOptions::default()
    }
}

/// Manifest of the `device-scripted` fixture as plugin `name`.
fn device_scripted(name: &str, priority: i32, on_error: &str, probe: &str, hook: &str, target: &str) -> String {
    format!(
        "name: {name}\nversion: 0.1.0\nhooks: [device-probe, on-device-probe]\npriority: {priority}\n\
         on-error: {on_error}\nlimits: {{ timeout: 100ms, memory: 16MiB }}\nconfig:\n\
         \x20 tag: {{ type: string, default: {name} }}\n  probe: {{ type: string, default: {probe} }}\n\
         \x20 hook: {{ type: string, default: {hook} }}\n  target: {{ type: string, default: \"{target}\" }}\n\
         \x20 total_mb: {{ type: integer, default: 8000 }}\n  free_mb: {{ type: integer, default: 6000 }}\n"
    )
}

fn example_manifest(name: &str) -> String {
    std::fs::read_to_string(crate::loader::manifest_of(name)).unwrap()
}

fn example_wasm(name: &str) -> &'static str {
    plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == name).unwrap().wasm
}

/// A host with a fake GPU (no sysinfo) and `plugins` (name, wasm, manifest).
async fn device_host(gpus: &[(u64, u64)], plugins: &[(&str, &str, String)]) -> (Host, PluginDir) {
    let counted = Arc::new(AtomicUsize::new(0));
    load(builder().devices(options(gpus, &counted)), plugins).await
}

async fn load(b: plugbox_host::HostBuilder, plugins: &[(&str, &str, String)]) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    for (name, wasm, manifest) in plugins {
        dir.add(name, wasm, manifest);
    }
    let host = b.build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (host, dir)
}

fn annotation<'a>(d: &'a plugbox_host::DeviceReport, key: &str) -> Option<&'a str> {
    plugbox_host::devices::annotation(d, key)
}

#[tokio::test]
async fn builtin_probes_report_cpu_memory_and_an_honest_gpu_line() {
    // The defaults: sysinfo and NVML, exactly what `plugbox devices` uses.
    let host = host();
    let s = host.probe_devices().await;
    let cpu = s.device("cpu").expect("a cpu report");
    assert_eq!(cpu.kind, DeviceKind::Cpu);
    assert!(annotation(cpu, "threads").is_some() && annotation(cpu, "load").is_some(), "{cpu:?}");
    let mem = s.device("memory").expect("a memory report");
    assert!(mem.online && mem.memory_total_mb > 0 && mem.memory_free_mb <= mem.memory_total_mb);
    let nvml_problem = s.problems.iter().find(|p| p.source == "builtin:nvml");
    let gpus = s.adjusted.iter().filter(|d| d.source == "builtin:nvml").count();
    match nvml_problem {
        Some(p) => {
            eprintln!("no NVIDIA driver here: {}", p.message);
            assert!(p.message.starts_with("NVML not available"), "{p}");
            assert_eq!(gpus, 0);
        }
        None => eprintln!("NVML available: {gpus} GPU(s)"),
    }
    // The rest works whatever NVML said; the raw readings are all there.
    assert_eq!(s.raw, s.adjusted);
}

#[tokio::test]
async fn sysfs_gpu_reads_only_the_granted_fixture_tree() {
    let sysfs = Path::new(plugbox_artifacts::REPO_ROOT).join("tests/fixtures-data/sysfs");
    let manifest = example_manifest("sysfs-gpu").replace("host: /sys,", &format!("host: {},", sysfs.display()));
    let policy = Policy { filesystem_roots: vec![sysfs.clone()], ..Policy::default() };
    let counted = Arc::new(AtomicUsize::new(0));
    let b = builder().policy(policy).devices(options(&[], &counted));
    let (host, _d) = load(b, &[("sysfs-gpu", example_wasm("sysfs-gpu"), manifest)]).await;
    let s = host.probe_devices().await;
    assert!(s.problems.is_empty(), "{:?}", s.problems);

    let card1 = s.device("sysfs:card1").expect("card1");
    assert_eq!(card1.name, "AMD Radeon RX 6800 XT");
    assert_eq!((card1.memory_total_mb, card1.memory_used_mb, card1.memory_free_mb), (16368, 2048, 14320));
    assert_eq!((card1.utilization, card1.temperature_c), (Some(12.0), Some(45.0)));
    assert_eq!(card1.source, "plugin:sysfs-gpu");
    assert_eq!(annotation(card1, "pci-id"), Some("0x1002:0x73bf"));
    let card3 = s.device("sysfs:card3").expect("card3");
    assert_eq!(card3.name, "AMD GPU 0x744c");
    assert_eq!((card3.memory_total_mb, card3.memory_free_mb), (24560, 4080));
    // Garbled figures: reported, offline, with the reason.
    let card2 = s.device("sysfs:card2").expect("card2");
    assert!(!card2.online);
    assert!(annotation(card2, "error").unwrap().contains("not a number"), "{card2:?}");
    // The Intel iGPU has no VRAM files; connectors and render nodes are not cards.
    for absent in ["sysfs:card0", "sysfs:card1-DP-1", "sysfs:renderD128"] {
        assert!(s.device(absent).is_none(), "{absent}");
    }
    // card9 is a symlink out of the grant (to tests/fixtures-data/outside,
    // where a 24 GiB card's files are): the sandbox refuses to follow it.
    let card9 = s.device("sysfs:card9").expect("card9 is listed");
    assert!(!card9.online && card9.memory_total_mb == 0, "followed a symlink out of the grant: {card9:?}");
    let error = annotation(card9, "error").unwrap();
    assert!(error.starts_with("cannot read `/sys/class/drm/card9/device/mem_info_vram_total`"), "{error}");
    assert_eq!(s.hooks[0].action, "reported 4");
}

#[tokio::test]
async fn sysfs_gpu_without_a_grant_sees_nothing() {
    // The shipped manifest grants /sys, which the default policy refuses.
    let (host, _d) = device_host(&[], &[("sysfs-gpu", example_wasm("sysfs-gpu"), example_manifest("sysfs-gpu"))]).await;
    let plugin = host.plugin("sysfs-gpu").unwrap();
    assert!(plugin.capabilities().preopens.is_empty());
    assert!(plugin.capabilities().denied[0].contains("not allowed by policy"), "{:?}", plugin.capabilities().denied);
    let s = host.probe_devices().await;
    assert!(s.adjusted.is_empty());
    assert_eq!(s.problems.len(), 1);
    let p = &s.problems[0];
    assert_eq!(p.source, "plugin:sysfs-gpu");
    assert!(p.message.contains("cannot read `/sys/class/drm`"), "{p}");

    // Granted the tree, but pointed outside it: still nothing.
    let sysfs = Path::new(plugbox_artifacts::REPO_ROOT).join("tests/fixtures-data/sysfs");
    let manifest = example_manifest("sysfs-gpu")
        .replace("host: /sys,", &format!("host: {},", sysfs.display()))
        .replace("default: /sys/class/drm", "default: /etc");
    let policy = Policy { filesystem_roots: vec![sysfs], ..Policy::default() };
    let counted = Arc::new(AtomicUsize::new(0));
    let b = builder().policy(policy).devices(options(&[], &counted));
    let (host, _d) = load(b, &[("sysfs-gpu", example_wasm("sysfs-gpu"), manifest)]).await;
    let s = host.probe_devices().await;
    assert!(s.adjusted.is_empty());
    assert!(s.problems[0].message.contains("cannot read `/etc`"), "{:?}", s.problems);
}

#[tokio::test]
async fn device_hooks_run_in_priority_order_and_the_raw_reading_is_kept() {
    // memory-reserve (priority 10, 1024 MiB headroom) and a hook that halves
    // free memory: the order decides the result.
    let gpus = [(24576, 20480)];
    for (halve_priority, expected) in [(100, (20480 - 1024) / 2), (1, 20480 / 2 - 1024)] {
        let (host, _d) = device_host(
            &gpus,
            &[
                ("memory-reserve", example_wasm("memory-reserve"), example_manifest("memory-reserve")),
                (
                    "halve",
                    plugbox_artifacts::DEVICE_SCRIPTED,
                    device_scripted("halve", halve_priority, "fail-open", "none", "halve", ""),
                ),
            ],
        )
        .await;
        let s = host.probe_devices().await;
        let gpu = s.device("gpu:0").unwrap();
        assert_eq!(gpu.memory_free_mb, expected, "halve at priority {halve_priority}");
        assert_eq!(s.raw_device("gpu:0").unwrap().memory_free_mb, 20480);
        assert_eq!(annotation(gpu, "memory-reserve.headroom-mb"), Some("1024"));
        let order: Vec<&str> =
            s.hooks.iter().filter(|h| h.hook == "on-device-probe").map(|h| h.plugin.as_str()).collect();
        let want = if halve_priority == 100 { ["memory-reserve", "halve"] } else { ["halve", "memory-reserve"] };
        assert_eq!(order, want);
        assert!(s.hooks.iter().all(|h| h.action == "changed 1" || h.action == "reported 0"), "{:?}", s.hooks);
    }
}

#[tokio::test]
async fn device_hooks_mark_offline_filter_and_admission_says_why() {
    let (host, _d) = device_host(
        &[(24576, 20480), (24576, 20480), (8192, 8192)],
        &[
            ("memory-reserve", example_wasm("memory-reserve"), example_manifest("memory-reserve")),
            (
                "take-down",
                plugbox_artifacts::DEVICE_SCRIPTED,
                device_scripted("take-down", 20, "fail-open", "none", "offline", "gpu:1"),
            ),
            (
                "hide",
                plugbox_artifacts::DEVICE_SCRIPTED,
                device_scripted("hide", 30, "fail-open", "none", "filter", "gpu:2"),
            ),
        ],
    )
    .await;
    let s = host.probe_devices().await;
    assert!(!s.device("gpu:1").unwrap().online);
    assert!(s.device("gpu:2").is_none());
    assert!(s.raw_device("gpu:2").is_some(), "the raw reading is never lost");

    let model = |name: &str, device: &str, mb: u64| {
        let mut m = ModelConfig::new(name, "chat");
        m.required_devices.push(device.into());
        m.memory_mb.insert(device.into(), mb);
        m
    };
    assert!(host.admit(&model("small", "gpu:0", 8000)).await.admitted);
    let a = host.admit(&model("big", "gpu:0", 20000)).await;
    assert_eq!(
        a.to_string(),
        "model `big` is refused: model `big` needs 20000 MiB on `gpu:0`, which has 19456 MiB free (20480 MiB before device hooks)"
    );
    assert_eq!(
        host.admit(&model("m", "gpu:1", 1)).await.reasons(),
        ["device `gpu:1` is offline: taken offline by take-down"]
    );
    assert_eq!(
        host.admit(&model("m", "gpu:2", 1)).await.reasons(),
        ["device `gpu:2` was filtered out by a device hook"]
    );
    assert_eq!(host.admit(&model("m", "gpu:7", 1)).await.reasons(), ["no device `gpu:7` is reported"]);
}

#[tokio::test]
async fn memory_reserve_marks_a_device_offline_below_its_minimum() {
    let counted = Arc::new(AtomicUsize::new(0));
    let config = json!({"headroom_mb": 2048, "offline_below_mb": 10000, "kinds": "gpu"});
    let b = builder()
        .devices(options(&[(24576, 20480), (24576, 8192)], &counted))
        .plugin_config("memory-reserve", config.as_object().unwrap().clone());
    let (host, _d) =
        load(b, &[("memory-reserve", example_wasm("memory-reserve"), example_manifest("memory-reserve"))]).await;
    let s = host.probe_devices().await;
    let roomy = s.device("gpu:0").unwrap();
    assert!(roomy.online);
    assert_eq!((roomy.memory_free_mb, annotation(roomy, "memory-reserve.raw-free-mb")), (18432, Some("20480")));
    let tight = s.device("gpu:1").unwrap();
    assert!(!tight.online);
    assert_eq!(
        annotation(tight, "offline-reason"),
        Some("memory-reserve: 6144 MiB free after a 2048 MiB headroom, below the 10000 MiB minimum")
    );
    assert!(s.raw_device("gpu:1").unwrap().online);
}

#[tokio::test]
async fn a_failing_fail_open_hook_is_skipped() {
    for action in ["error", "trap", "loop"] {
        let (host, _d) = device_host(
            &[(24576, 20480)],
            &[
                (
                    "broken",
                    plugbox_artifacts::DEVICE_SCRIPTED,
                    device_scripted("broken", 1, "fail-open", "none", action, ""),
                ),
                ("memory-reserve", example_wasm("memory-reserve"), example_manifest("memory-reserve")),
            ],
        )
        .await;
        let s = host.probe_devices().await;
        let gpu = s.device("gpu:0").unwrap();
        assert!(gpu.online, "{action}");
        assert_eq!(gpu.memory_free_mb, 19456, "{action}: the next hook still ran");
        assert_eq!(s.problems.len(), 1, "{action}: {:?}", s.problems);
        assert_eq!(s.problems[0].source, "plugin:broken");
        let trace = s.hooks.iter().find(|h| h.plugin == "broken" && h.hook == "on-device-probe").unwrap();
        assert!(trace.action.starts_with("failed-open: "), "{action}: {trace:?}");
        if action == "loop" {
            assert!(trace.action.contains("timed out"), "{trace:?}");
        }
    }
}

#[tokio::test]
async fn a_failing_fail_closed_hook_takes_every_device_offline() {
    let (host, _d) = device_host(
        &[(24576, 20480)],
        &[
            (
                "strict",
                plugbox_artifacts::DEVICE_SCRIPTED,
                device_scripted("strict", 1, "fail-closed", "ok", "trap", ""),
            ),
            ("memory-reserve", example_wasm("memory-reserve"), example_manifest("memory-reserve")),
        ],
    )
    .await;
    let s = host.probe_devices().await;
    assert_eq!(s.adjusted.len(), 2); // gpu:0 and the plugin's own strict:dev0
    for d in &s.adjusted {
        assert!(!d.online, "{d:?}");
        let reason = annotation(d, "offline-reason").unwrap();
        assert!(reason.starts_with("device hook `strict` failed (fail-closed): trapped"), "{reason}");
    }
    // The probe failed, naming the plugin and the hook.
    let failed = s.failed.as_ref().expect("the probe failed");
    assert_eq!((failed.plugin.as_str(), failed.hook), ("strict", "on-device-probe"));
    assert!(failed.to_string().starts_with("plugin `strict` failed in `on-device-probe`: trapped"), "{failed}");
    // The chain stopped: memory-reserve did not run. The raw readings are intact.
    assert!(!s.hooks.iter().any(|h| h.plugin == "memory-reserve"));
    assert!(s.raw.iter().all(|d| d.online && d.annotations.iter().all(|(k, _)| k != "offline-reason")));
    let mut m = ModelConfig::new("m", "chat");
    m.required_devices.push("gpu:0".into());
    let a = host.admit(&m).await;
    assert!(!a.admitted);
    assert!(a.reasons()[0].starts_with("device `gpu:0` is offline: device hook `strict` failed (fail-closed)"), "{a}");
}

#[tokio::test]
async fn hooks_may_not_invent_devices_or_change_their_kind() {
    for (action, needle) in
        [("invent", "was not in the reports it was given"), ("rekind", "`kind` and `source` may not be changed")]
    {
        let (host, _d) = device_host(
            &[(1000, 500)],
            &[(
                "sly",
                plugbox_artifacts::DEVICE_SCRIPTED,
                device_scripted("sly", 1, "fail-open", "none", action, "gpu:0"),
            )],
        )
        .await;
        let s = host.probe_devices().await;
        assert_eq!(s.adjusted, s.raw, "{action}: the invalid output was not used");
        assert!(s.problems[0].message.contains(needle), "{action}: {:?}", s.problems);
        assert_eq!(host.plugin("sly").unwrap().stats().errors, 1);
    }
}

#[tokio::test]
async fn device_plugin_failures_are_reported_and_the_others_go_on() {
    let counted = Arc::new(AtomicUsize::new(0));
    let mut opts = options(&[(1000, 500)], &counted);
    opts.system = true; // so that `cpu` exists for the duplicate
    let mut plugins =
        vec![("npu", plugbox_artifacts::DEVICE_SCRIPTED, device_scripted("npu", 1, "fail-open", "ok", "continue", ""))];
    for bad in ["error", "trap", "loop", "duplicate", "bad"] {
        plugins.push((
            bad,
            plugbox_artifacts::DEVICE_SCRIPTED,
            device_scripted(bad, 2, "fail-open", bad, "continue", ""),
        ));
    }
    let (host, _d) = load(builder().devices(opts), &plugins).await;
    let s = host.probe_devices().await;
    let npu = s.device("npu:dev0").expect("the working plugin's device");
    assert_eq!(npu.source, "plugin:npu", "the host, not the plugin, names the source");
    assert_eq!((npu.kind, npu.memory_free_mb), (DeviceKind::Accelerator, 6000));
    assert_eq!(s.device("cpu").unwrap().source, "builtin:sysinfo", "a plugin cannot replace a device");
    assert!(s.device("gpu:0").is_some());
    let problem =
        |name: &str| s.problems.iter().find(|p| p.source == format!("plugin:{name}")).unwrap().message.clone();
    assert_eq!(problem("error"), "error cannot see its device");
    assert!(problem("trap").starts_with("trapped"), "{}", problem("trap"));
    assert!(problem("loop").starts_with("timed out"), "{}", problem("loop"));
    assert!(problem("duplicate").contains("device `cpu` is already reported"), "{}", problem("duplicate"));
    assert!(problem("bad").contains("must not exceed total"), "{}", problem("bad"));
}

#[tokio::test]
async fn probes_are_cached_shared_and_invalidated_by_plugin_changes() {
    let counted = Arc::new(AtomicUsize::new(0));
    let mut opts = options(&[(1000, 500)], &counted);
    opts.cache_ttl = Duration::from_secs(3600);
    let (host, dir) = load(builder().devices(opts), &[]).await;

    // Many concurrent callers, one probe.
    let results = futures_join(&host, 8).await;
    assert_eq!(counted.load(Ordering::SeqCst), 1);
    assert!(results.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    assert!(Arc::ptr_eq(&host.probe_devices().await, &results[0]));
    assert_eq!(counted.load(Ordering::SeqCst), 1);

    // A forced refresh probes again.
    let fresh = host.refresh_devices().await;
    assert!(!Arc::ptr_eq(&fresh, &results[0]));
    assert_eq!(counted.load(Ordering::SeqCst), 2);

    // Loading a device hook makes the cached result stale at once.
    let d = dir.add(
        "halve",
        plugbox_artifacts::DEVICE_SCRIPTED,
        &device_scripted("halve", 1, "fail-open", "none", "halve", ""),
    );
    host.load_plugin(&d).await.unwrap();
    let after = host.probe_devices().await;
    assert_eq!(counted.load(Ordering::SeqCst), 3);
    assert_eq!(after.device("gpu:0").unwrap().memory_free_mb, 250);
    host.unload("halve").await.unwrap();
    assert_eq!(host.probe_devices().await.device("gpu:0").unwrap().memory_free_mb, 500);
}

async fn futures_join(host: &Host, n: usize) -> Vec<Arc<plugbox_host::DeviceSnapshot>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let h = host.clone();
            tokio::spawn(async move { h.probe_devices().await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_devices_import_returns_the_latest_adjusted_reports() {
    let (host, _d) = device_host(
        &[(1000, 500), (1000, 500)],
        &[
            (
                "hide",
                plugbox_artifacts::DEVICE_SCRIPTED,
                device_scripted("hide", 1, "fail-open", "none", "filter", "gpu:1"),
            ),
            (
                "look",
                plugbox_artifacts::DEVICE_SCRIPTED,
                device_scripted("look", 2, "fail-open", "none", "annotate", ""),
            ),
        ],
    )
    .await;
    // Before any probe the host has no reports to give.
    let first = host.probe_devices().await;
    assert_eq!(annotation(first.device("gpu:0").unwrap(), "look.listed"), Some(""));
    // Then: the previous probe's adjusted reports (gpu:1 filtered out).
    let second = host.probe_devices().await; // cache_ttl is zero in device_host
    assert_eq!(annotation(second.device("gpu:0").unwrap(), "look.listed"), Some("gpu:0"));
}

// ---- adversarial device plugins and hooks --------------------------------

/// Manifest of the `device-scripted` fixture with more room to misbehave:
/// `limits` (YAML flow map) and extra `config` lines. It declares the hook it
/// attacks with only (`device-probe` unless `probe` is `none`), so that a
/// successful call of the other hook does not reset its breaker.
fn device_hostile(
    name: &str,
    on_error: &str,
    probe: &str,
    hook: &str,
    limits: &str,
    config: &[(&str, &str)],
) -> String {
    let hooks = if probe == "none" { "on-device-probe" } else { "device-probe" };
    let mut m = format!(
        "name: {name}\nversion: 0.1.0\nhooks: [{hooks}]\npriority: 5\non-error: {on_error}\n\
         limits: {limits}\nconfig:\n  tag: {{ type: string, default: {name} }}\n\
         \x20 probe: {{ type: string, default: {probe} }}\n  hook: {{ type: string, default: {hook} }}\n"
    );
    for (key, value) in config {
        m.push_str(&format!("  {key}: {{ type: integer, default: {value} }}\n"));
    }
    m
}

/// A well-behaved device plugin (`npu:dev0`) and memory-reserve, to show the
/// host kept serving next to an attacker.
fn bystanders() -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("npu", plugbox_artifacts::DEVICE_SCRIPTED, device_scripted("npu", 1, "fail-open", "ok", "continue", "")),
        ("memory-reserve", example_wasm("memory-reserve"), example_manifest("memory-reserve")),
    ]
}

fn assert_bystanders_served(s: &plugbox_host::DeviceSnapshot) {
    let npu = s.device("npu:dev0").expect("the well-behaved device plugin still reports");
    assert!(npu.online, "{npu:?}");
    assert_eq!(annotation(npu, "memory-reserve.headroom-mb"), Some("1024"), "memory-reserve still ran: {npu:?}");
}

fn problem_of<'a>(s: &'a plugbox_host::DeviceSnapshot, plugin: &str) -> &'a str {
    let source = format!("plugin:{plugin}");
    let found = s.problems.iter().find(|p| p.source == source);
    &found.unwrap_or_else(|| panic!("no problem from {plugin}: {:?}", s.problems)).message
}

#[tokio::test]
async fn a_device_plugin_flooding_reports_is_refused_and_counted_once() {
    let counted = Arc::new(AtomicUsize::new(0));
    let opts = DeviceOptions { hook_timeout: Duration::from_secs(10), ..options(&[(24576, 20480)], &counted) };
    let mut plugins = bystanders();
    plugins.push((
        "flood",
        plugbox_artifacts::DEVICE_SCRIPTED,
        device_hostile(
            "flood",
            "fail-open",
            "flood",
            "continue",
            "{ timeout: 5s, memory: 128MiB }",
            &[("count", "100000")],
        ),
    ));
    let (host, _d) = load(builder().devices(opts), &plugins).await;

    let first = host.probe_devices().await;
    let before = Bounds::now();
    let started = std::time::Instant::now();
    for round in 1..=3u64 {
        let s = if round == 1 { first.clone() } else { host.probe_devices().await };
        assert_eq!(problem_of(&s, "flood"), "invalid output: `$` has 100000 elements; at most 1024 are accepted");
        assert!(s.adjusted.iter().chain(&s.raw).all(|d| !d.id.starts_with("flood:")), "nothing of it was kept");
        assert_bystanders_served(&s);
        let stats = host.plugin("flood").unwrap().stats();
        // One verdict per call: one error, one step towards the breaker.
        assert_eq!((stats.calls, stats.errors, stats.traps), (round, round, 0), "{stats:?}");
        assert_eq!(stats.consecutive_failures, round as u32, "{stats:?}");
    }
    eprintln!(
        "two flooded probes: {:?}, resident memory {} -> {} MiB",
        started.elapsed(),
        before.rss / MIB,
        crate::bounds::rss_bytes() / MIB
    );
    assert_fast("two flooded probes", started.elapsed(), Duration::from_secs(30));
    before.assert_within(16, 96 * MIB);
}

#[tokio::test]
async fn device_reports_with_long_fields_are_refused_by_field_and_by_budget() {
    let long = device_hostile(
        "long",
        "fail-open",
        "long-name",
        "continue",
        "{ timeout: 1s, memory: 32MiB }",
        &[("big_bytes", "4194304")],
    );
    let error = device_hostile(
        "loud",
        "fail-open",
        "long-error",
        "continue",
        "{ timeout: 1s, memory: 32MiB, max-output: 64KiB }",
        &[("big_bytes", "1048576")],
    );
    // Annotations of 1,000 bytes each are within the per-string rule, but
    // not within a 1 KiB max-output.
    let annotate = device_hostile(
        "chatty",
        "fail-open",
        "none",
        "long-annotation",
        "{ timeout: 1s, memory: 32MiB, max-output: 1KiB }",
        &[("big_bytes", "1000")],
    );
    let mut plugins = bystanders();
    plugins.push(("long", plugbox_artifacts::DEVICE_SCRIPTED, long));
    plugins.push(("loud", plugbox_artifacts::DEVICE_SCRIPTED, error));
    plugins.push(("chatty", plugbox_artifacts::DEVICE_SCRIPTED, annotate));
    let (host, _d) = device_host(&[(24576, 20480)], &plugins).await;
    let before = Bounds::now();
    for _ in 0..3 {
        let s = host.probe_devices().await;
        assert_eq!(
            problem_of(&s, "long"),
            "invalid output: `$[0].name` is 4194304 bytes; at most 1024 bytes are accepted"
        );
        let loud = problem_of(&s, "loud");
        assert!(
            loud.starts_with("invalid output: output exceeds the plugin's max-output of 65536 bytes at `$.error`"),
            "{loud}"
        );
        let chatty = problem_of(&s, "chatty");
        assert!(
            chatty.starts_with(
                "invalid output: output exceeds the plugin's max-output of 1024 bytes at `$[0].annotations["
            ),
            "{chatty}"
        );
        assert!(
            s.adjusted.iter().all(|d| d.annotations.iter().all(|(k, _)| !k.starts_with("chatty."))),
            "refused whole"
        );
        assert!(s.device("long:dev0").is_none());
        assert_bystanders_served(&s);
        // No problem text is longer than the plugin's budget.
        assert!(
            s.problems.iter().all(|p| p.message.len() < 1024),
            "{:?}",
            s.problems.iter().map(|p| p.message.len()).collect::<Vec<_>>()
        );
    }
    for name in ["long", "loud", "chatty"] {
        let stats = host.plugin(name).unwrap().stats();
        assert_eq!((stats.calls, stats.errors), (3, 3), "{name}: {stats:?}");
    }
    before.assert_within(16, 64 * MIB);
}

#[tokio::test]
async fn a_failing_device_hook_trips_the_breaker() {
    // An error the hook returns and an answer the host refuses both count.
    for action in ["error", "invent"] {
        let breaker =
            BreakerConfig { threshold: 3, backoff: Duration::from_secs(60), max_backoff: Duration::from_secs(60) };
        let counted = Arc::new(AtomicUsize::new(0));
        let b = builder().circuit_breaker(breaker).devices(options(&[(24576, 20480)], &counted));
        let mut plugins = bystanders();
        let limits = "{ timeout: 100ms, memory: 16MiB }";
        plugins.push((
            "flaky",
            plugbox_artifacts::DEVICE_SCRIPTED,
            device_hostile("flaky", "fail-open", "none", action, limits, &[]),
        ));
        let (host, _d) = load(b, &plugins).await;
        for round in 1..=3u64 {
            let s = host.probe_devices().await;
            assert_bystanders_served(&s);
            let stats = host.plugin("flaky").unwrap().stats();
            assert_eq!((stats.calls, stats.errors), (round, round), "{action}: {stats:?}");
        }
        let stats = host.plugin("flaky").unwrap().stats();
        assert!(matches!(stats.breaker, BreakerState::Open { .. }), "{action}: {stats:?}");
        // Quarantined: skipped without running (fail-open), the others serve.
        let s = host.probe_devices().await;
        let trace = s.hooks.iter().find(|h| h.plugin == "flaky" && h.hook == "on-device-probe").unwrap();
        assert!(trace.action.starts_with("failed-open: quarantined"), "{action}: {trace:?}");
        assert_bystanders_served(&s);
        assert_eq!(host.plugin("flaky").unwrap().stats().calls, 3, "{action}: the quarantined hook did not run");
    }
}

#[tokio::test]
async fn a_fail_closed_device_plugin_fails_the_probe_naming_it() {
    let mut plugins = bystanders();
    plugins.push((
        "required",
        plugbox_artifacts::DEVICE_SCRIPTED,
        device_scripted("required", 5, "fail-closed", "error", "continue", ""),
    ));
    let (host, _d) = device_host(&[(24576, 20480)], &plugins).await;
    let s = host.probe_devices().await;
    let failed = s.failed.as_ref().expect("the probe failed");
    assert_eq!(failed.to_string(), "plugin `required` failed in `device-probe`: required cannot see its device");
    for d in &s.adjusted {
        assert!(!d.online, "{d:?}");
        assert_eq!(
            annotation(d, "offline-reason"),
            Some("device plugin `required` failed (fail-closed): required cannot see its device")
        );
    }
    // No device hook ran on figures a required plugin did not vouch for.
    assert!(!s.hooks.iter().any(|h| h.hook == "on-device-probe"), "{:?}", s.hooks);
    assert!(s.raw.iter().all(|d| d.online), "the raw readings are intact");
    let trace = s.hooks.iter().find(|h| h.plugin == "required").unwrap();
    assert_eq!(trace.action, "failed-closed: required cannot see its device");
    let mut m = ModelConfig::new("m", "chat");
    m.required_devices.push("gpu:0".into());
    assert!(host.admit(&m).await.reasons()[0].contains("device plugin `required` failed (fail-closed)"));
}

// ---- interface plugins ---------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Healthy,
    Status(u16),
    /// Accepts the connection and never answers.
    Hang,
}

/// A loopback stand-in for a model server (OpenAI-style `/v1/models` and
/// `/v1/embeddings`). Records `METHOD PATH BODY` of each request.
struct ModelServer {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

impl ModelServer {
    fn start(behaviour: Behaviour) -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, behaviour, &seen));
            }
        });
        ModelServer { port, hits }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn hits(&self) -> Vec<String> {
        self.hits.lock().clone()
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, seen: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    seen.lock().push(format!("{method} {path} {body}").trim_end().to_string());
    let (status, payload) = match behaviour {
        Behaviour::Hang => {
            std::thread::sleep(Duration::from_secs(10));
            return;
        }
        Behaviour::Status(code) => (code, String::new()),
        Behaviour::Healthy => match (method, path) {
            ("GET", "/v1/models") => (200, json!({"object": "list", "data": [{"id": "qwen"}]}).to_string()),
            ("POST", "/v1/embeddings") => (200, json!({"data": [{"embedding": [0.1, 0.2, 0.3]}]}).to_string()),
            _ => (404, String::new()),
        },
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

fn models(chat_url: &str, embed_url: &str) -> ModelSet {
    let src = format!(
        "models:\n  qwen2.5-7b:\n    aliases: [qwen]\n    mode: chat\n    base-url: {chat_url}\n    required-devices: [gpu:0]\n    memory-mb: {{ gpu:0: 8192 }}\n\
         \x20 bge-m3:\n    aliases: [bge]\n    mode: embedding\n    base-url: {embed_url}\n\
         \x20 whisper:\n    mode: transcription\n"
    );
    ModelSet::from_str(&src, Path::new("models.yaml")).unwrap()
}

/// chat-mode and embedding-mode, with `check_timeout_ms` 300.
async fn interface_host(chat_manifest: Option<String>) -> (Host, PluginDir) {
    let fast = json!({"check_timeout_ms": 300});
    let b = builder()
        .plugin_config("chat-mode", fast.as_object().unwrap().clone())
        .plugin_config("embedding-mode", fast.as_object().unwrap().clone());
    let chat = chat_manifest.unwrap_or_else(|| example_manifest("chat-mode"));
    load(
        b,
        &[
            ("chat-mode", example_wasm("chat-mode"), chat),
            ("embedding-mode", example_wasm("embedding-mode"), example_manifest("embedding-mode")),
        ],
    )
    .await
}

#[tokio::test]
async fn interface_plugins_route_and_validate_requests_by_mode() {
    let (host, _d) = interface_host(None).await;
    let mut interfaces = host.interfaces().await;
    interfaces.sort_by(|a, b| a.mode.cmp(&b.mode));
    assert_eq!(interfaces[0].mode, "chat");
    assert_eq!(interfaces[0].endpoints, ["v1/chat/completions", "v1/completions"]);
    assert_eq!((interfaces[1].mode.as_str(), interfaces[1].plugin.as_str()), ("embedding", "embedding-mode"));

    let set = models("http://127.0.0.1:1", "http://127.0.0.1:1");
    let ok = host.validate_request(&set, "/v1/chat/completions", "qwen").await.unwrap();
    assert!(ok.accepted && ok.reason.is_none());
    assert_eq!((ok.model.as_str(), ok.requested.as_str(), ok.plugin.as_str()), ("qwen2.5-7b", "qwen", "chat-mode"));
    assert!(host.validate_request(&set, "/v1/completions?x=1", "qwen2.5-7b").await.unwrap().accepted);

    let refused = host.validate_request(&set, "/v1/embeddings", "qwen").await.unwrap();
    assert!(!refused.accepted);
    assert_eq!(
        refused.reason.as_deref(),
        Some("model `qwen` is a chat model: it serves v1/chat/completions and v1/completions, not `v1/embeddings`")
    );
    let refused = host.validate_request(&set, "/v1/chat/completions", "bge").await.unwrap();
    assert_eq!(refused.plugin, "embedding-mode");
    assert_eq!(
        refused.reason.as_deref(),
        Some("model `bge` is an embedding model: it serves only v1/embeddings, not `v1/chat/completions`")
    );
    assert!(host.validate_request(&set, "v1/embeddings", "bge-m3").await.unwrap().accepted);

    assert_eq!(
        host.validate_request(&set, "/v1/chat/completions", "gpt-9").await.unwrap_err(),
        RouteError::UnknownModel("gpt-9".into())
    );
    let e = host.validate_request(&set, "/v1/audio/transcriptions", "whisper").await.unwrap_err();
    assert_eq!(e.to_string(), "model `whisper` has mode `transcription`, but no loaded interface plugin implements it");
    assert_eq!(
        host.check_model_health(&set, "whisper", Duration::ZERO, Duration::from_secs(1)).await.unwrap_err(),
        RouteError::NoBaseUrl("whisper".into())
    );
}

#[tokio::test]
async fn health_checks_reach_a_loopback_model_server() {
    let (host, _d) = interface_host(None).await;
    let up = ModelServer::start(Behaviour::Healthy);
    let set = models(&up.url(), &up.url());
    let (elapsed, timeout) = (Duration::from_secs(1), Duration::from_secs(300));

    let h = host.check_model_health(&set, "qwen", elapsed, timeout).await.unwrap();
    assert!(h.healthy, "{}", h.message);
    assert_eq!(h.message, format!("model `qwen2.5-7b` is up at {} (HTTP 200, lists 1 model(s))", up.url()));
    let h = host.check_model_health(&set, "bge", elapsed, timeout).await.unwrap();
    assert!(h.healthy, "{}", h.message);
    assert_eq!(h.message, "model `bge-m3` embeds (dimension 3)");
    assert_eq!(
        up.hits(),
        ["GET /v1/models", r#"POST /v1/embeddings {"input":"plugbox health check","model":"bge-m3"}"#]
    );

    // Unhealthy status.
    let down = ModelServer::start(Behaviour::Status(503));
    let set = models(&down.url(), &down.url());
    let h = host.check_model_health(&set, "qwen", elapsed, timeout).await.unwrap();
    assert!(!h.healthy);
    assert_eq!(
        h.message,
        format!("model `qwen2.5-7b` not ready after 1.0s of 300s: {}/v1/models answered HTTP 503", down.url())
    );
    let h = host.check_model_health(&set, "bge", elapsed, timeout).await.unwrap();
    assert!(!h.healthy && h.message.ends_with("/v1/embeddings answered HTTP 503"), "{}", h.message);
    // Past the start-up timeout the verdict is final.
    let h = host.check_model_health(&set, "qwen", Duration::from_secs(301), timeout).await.unwrap();
    assert!(h.message.starts_with("model `qwen2.5-7b` did not become healthy within 300s: "), "{}", h.message);

    // A server that accepts and never answers.
    let hung = ModelServer::start(Behaviour::Hang);
    let set = models(&hung.url(), &hung.url());
    for model in ["qwen", "bge"] {
        let h = host.check_model_health(&set, model, elapsed, timeout).await.unwrap();
        assert!(!h.healthy);
        assert!(h.message.contains("did not answer in time"), "{model}: {}", h.message);
    }

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let set = models(&url, &url);
    let h = host.check_model_health(&set, "qwen", elapsed, timeout).await.unwrap();
    assert!(!h.healthy);
    assert!(h.message.ends_with("refused"), "{}", h.message);
}

/// Manifest of the `device-scripted` fixture as an interface plugin.
fn interface_scripted(name: &str, on_error: &str, config: &[(&str, &str)]) -> String {
    let mut m = format!(
        "name: {name}\nversion: 0.1.0\nhooks: [endpoint]\npriority: 5\non-error: {on_error}\n\
         limits: {{ timeout: 1s, memory: 32MiB, max-output: 1KiB }}\nconfig:\n  tag: {{ type: string, default: {name} }}\n"
    );
    for (key, value) in config {
        let ty = if value.parse::<i64>().is_ok() { "integer" } else { "string" };
        m.push_str(&format!("  {key}: {{ type: {ty}, default: {value} }}\n"));
    }
    m
}

#[tokio::test]
async fn interface_plugins_answering_past_their_budget_are_refused() {
    let big = ("big_bytes", "262144");
    let plugins = [
        ("chat-mode", example_wasm("chat-mode"), example_manifest("chat-mode")),
        (
            "open",
            plugbox_artifacts::DEVICE_SCRIPTED,
            interface_scripted("open", "fail-open", &[("mode", "open"), ("validate", "huge"), big]),
        ),
        (
            "closed",
            plugbox_artifacts::DEVICE_SCRIPTED,
            interface_scripted("closed", "fail-closed", &[("mode", "closed"), ("validate", "huge"), big]),
        ),
        (
            "wordy",
            plugbox_artifacts::DEVICE_SCRIPTED,
            interface_scripted("wordy", "fail-open", &[("mode", "wordy"), ("health", "huge"), big]),
        ),
        ("long", plugbox_artifacts::DEVICE_SCRIPTED, interface_scripted("long", "fail-open", &[("mode", "long"), big])),
        (
            "sprawl",
            plugbox_artifacts::DEVICE_SCRIPTED,
            interface_scripted("sprawl", "fail-open", &[("mode", "sprawl"), ("endpoints", "100000")]),
        ),
    ];
    let (host, _d) = load(builder(), &plugins).await;
    let src = "models:\n  qwen:\n    mode: chat\n  o:\n    mode: open\n  c:\n    mode: closed\n\
               \x20 w:\n    mode: wordy\n    base-url: http://127.0.0.1:1\n  l:\n    mode: long\n  s:\n    mode: sprawl\n";
    let set = ModelSet::from_str(src, Path::new("models.yaml")).unwrap();
    let before = Bounds::now();
    for _ in 0..3 {
        // fail-open: let through unvalidated, and said so.
        let v = host.validate_request(&set, "/v1/e0", "o").await.unwrap();
        assert!(v.accepted);
        let reason = v.reason.unwrap();
        assert!(reason.starts_with("not validated: plugin `open` failed in `validate-request`: invalid output: output exceeds the plugin's max-output of 1024 bytes at `$.error`"), "{reason}");
        assert!(reason.len() < 1024, "{}", reason.len());
        // fail-closed: an error naming the plugin.
        match host.validate_request(&set, "/v1/e0", "c").await.unwrap_err() {
            RouteError::Plugin(f) => {
                assert_eq!((f.plugin.as_str(), f.hook), ("closed", "validate-request"));
                assert!(f.to_string().contains("at `$.error`"), "{f}");
            }
            e => panic!("{e}"),
        }
        // A health message past the budget is an error, never healthy.
        let e = host.check_model_health(&set, "w", Duration::ZERO, Duration::from_secs(1)).await.unwrap_err();
        assert!(e.to_string().contains("at `$.message`"), "{e}");
        // Declarations past the budget: the plugin is left out of routing.
        for (model, mode) in [("l", "long"), ("s", "sprawl")] {
            assert!(
                matches!(host.validate_request(&set, "/v1/e0", model).await, Err(RouteError::NoInterface { .. })),
                "{mode}"
            );
        }
        // The others keep serving.
        assert!(host.validate_request(&set, "/v1/chat/completions", "qwen").await.unwrap().accepted);
    }
    let mut modes: Vec<String> = host.interfaces().await.into_iter().map(|i| i.mode).collect();
    modes.sort();
    assert_eq!(modes, ["chat", "closed", "open", "wordy"]);
    for (name, calls) in [("open", 3), ("closed", 3), ("wordy", 3)] {
        let stats = host.plugin(name).unwrap().stats();
        // One call for mode and endpoints (cached), then one per request: each refused answer counted once.
        assert_eq!((stats.calls, stats.errors), (calls + 1, calls), "{name}: {stats:?}");
    }
    assert_eq!(host.plugin("sprawl").unwrap().stats().errors, host.plugin("sprawl").unwrap().stats().calls);
    before.assert_within(16, 64 * MIB);
}

#[tokio::test]
async fn health_checks_to_hosts_not_granted_are_refused() {
    let granted = ModelServer::start(Behaviour::Healthy);
    let other = ModelServer::start(Behaviour::Healthy);
    // chat-mode may reach exactly one host:port.
    let manifest = example_manifest("chat-mode")
        .replace("network: [127.0.0.1, localhost]", &format!("network: [\"127.0.0.1:{}\"]", granted.port));
    let (host, _d) = interface_host(Some(manifest)).await;
    let chat = ModelConfig::new("qwen", "chat");
    let (elapsed, timeout) = (Duration::ZERO, Duration::from_secs(60));

    assert!(host.check_health_at(&chat, &granted.url(), elapsed, timeout).await.unwrap().healthy);
    for url in [other.url(), format!("http://localhost:{}", granted.port), "http://198.51.100.7:80".into()] {
        let h = host.check_health_at(&chat, &url, elapsed, timeout).await.unwrap();
        assert!(!h.healthy, "{url}");
        assert!(h.message.contains("is not granted to this plugin"), "{url}: {}", h.message);
    }
    assert!(other.hits().is_empty(), "the refused request never left the host");
    assert_eq!(granted.hits().len(), 1);
}

// ---- plugbox devices ---------------------------------------------------

fn plugbox_devices(args: &[&str]) -> (String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_plugbox"))
        .arg("devices")
        .args(args)
        .env("PLUGBOX_CACHE_DIR", crate::cache_dir())
        .env_remove("PLUGBOX_POLICY")
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "{err}");
    (out, err)
}

#[test]
fn plugbox_devices_prints_a_table_and_json() {
    let dir = PluginDir::new();
    dir.add("memory-reserve", example_wasm("memory-reserve"), &example_manifest("memory-reserve"));
    dir.add("npu", plugbox_artifacts::DEVICE_SCRIPTED, &device_scripted("npu", 1, "fail-open", "ok", "continue", ""));
    let plugins: PathBuf = dir.path().to_path_buf();

    let (table, _) = plugbox_devices(&["--plugins", plugins.to_str().unwrap()]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("FREE MiB") && header.ends_with("SOURCE"), "{table}");
    let row = |id: &str| {
        table.lines().find(|l| l.starts_with(&format!("{id} "))).unwrap_or_else(|| panic!("no `{id}` row:\n{table}"))
    };
    assert!(row("cpu").contains("builtin:sysinfo"));
    assert!(row("memory").contains("online"));
    assert!(row("npu:dev0").contains("4976 (raw 6000)") && row("npu:dev0").contains("plugin:npu"), "{table}");
    assert!(table.contains("  npu:dev0: memory-reserve.headroom-mb=1024"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("NVIDIA GPUs: ")), "an honest GPU line:\n{table}");

    let (json, _) = plugbox_devices(&["--plugins", plugins.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let find = |list: &str, id: &str| v[list].as_array().unwrap().iter().find(|d| d["id"] == id).cloned().unwrap();
    assert_eq!(find("raw", "npu:dev0")["memory_free_mb"], 6000);
    assert_eq!(find("adjusted", "npu:dev0")["memory_free_mb"], 4976);
    assert!(find("adjusted", "memory")["memory_total_mb"].as_u64().unwrap() > 0);
    assert_eq!(v["hooks"].as_array().unwrap().len(), 3, "{json}"); // npu probe, npu hook, memory-reserve
}
