//! Hostile device plugins and hooks: floods, oversized fields, failing
//! hooks; each attack next to well-behaved bystanders that keep being served.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use plugbox_host::devices::DeviceOptions;
use plugbox_host::{BreakerConfig, BreakerState, ModelConfig};

use crate::bounds::{Bounds, MIB, assert_fast};
use crate::devices::{annotation, device_host, device_scripted, example_manifest, example_wasm, load, options};
use crate::*;

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
