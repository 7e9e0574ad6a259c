//! Devices: built-in probes, device plugins, device hooks, the probe cache,
//! admission, and `plugbox devices`. Hostile device plugins are in
//! `devices_adversarial.rs`, interface plugins in `interfaces.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plugbox_host::devices::{DeviceOptions, GpuBackend, GpuError, GpuReading, GpuSource};
use plugbox_host::{DeviceKind, Host, ModelConfig, Policy};
use serde_json::json;

use crate::bounds::MIB;
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

pub(crate) fn options(gpus: &[(u64, u64)], counted: &Arc<AtomicUsize>) -> DeviceOptions {
    DeviceOptions {
        system: false,
        gpu: GpuSource::Backend(Arc::new(FakeGpu { gpus: gpus.to_vec(), counted: counted.clone() })),
        cache_ttl: Duration::ZERO,
        ..DeviceOptions::default()
    }
}

/// Manifest of the `device-scripted` fixture as plugin `name`.
pub(crate) fn device_scripted(
    name: &str,
    priority: i32,
    on_error: &str,
    probe: &str,
    hook: &str,
    target: &str,
) -> String {
    format!(
        "name: {name}\nversion: 0.1.0\nhooks: [device-probe, on-device-probe]\npriority: {priority}\n\
         on-error: {on_error}\nlimits: {{ timeout: 100ms, memory: 16MiB }}\nconfig:\n\
         \x20 tag: {{ type: string, default: {name} }}\n  probe: {{ type: string, default: {probe} }}\n\
         \x20 hook: {{ type: string, default: {hook} }}\n  target: {{ type: string, default: \"{target}\" }}\n\
         \x20 total_mb: {{ type: integer, default: 8000 }}\n  free_mb: {{ type: integer, default: 6000 }}\n"
    )
}

pub(crate) fn example_manifest(name: &str) -> String {
    std::fs::read_to_string(crate::loader::manifest_of(name)).unwrap()
}

pub(crate) fn example_wasm(name: &str) -> &'static str {
    plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == name).unwrap().wasm
}

/// A host with a fake GPU (no sysinfo) and `plugins` (name, wasm, manifest).
pub(crate) async fn device_host(gpus: &[(u64, u64)], plugins: &[(&str, &str, String)]) -> (Host, PluginDir) {
    let counted = Arc::new(AtomicUsize::new(0));
    load(builder().devices(options(gpus, &counted)), plugins).await
}

pub(crate) async fn load(b: plugbox_host::HostBuilder, plugins: &[(&str, &str, String)]) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    for (name, wasm, manifest) in plugins {
        dir.add(name, wasm, manifest);
    }
    let host = b.build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (host, dir)
}

pub(crate) fn annotation<'a>(d: &'a plugbox_host::DeviceReport, key: &str) -> Option<&'a str> {
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
