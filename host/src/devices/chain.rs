//! Device plugins (`device-probe`) and device hooks (`on-device-probe`):
//! calls in priority order, output checks, and the `on-error` policy.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DeviceHookTrace, ProbeProblem};
use crate::bindings::types::DeviceReport;
use crate::manifest::{Hook, OnError};
use crate::pipeline::invoke;
use crate::plugin::{FailureKind, LoadedPlugin, PluginFailure};
use crate::registry::Snapshot;

/// Most devices one plugin may report, and most annotations per device.
pub(crate) const MAX_DEVICES: usize = 256;
pub(crate) const MAX_ANNOTATIONS: usize = 32;
/// Longest id, name, annotation key or value, in bytes.
pub(crate) const MAX_TEXT: usize = 1024;

/// The annotation that says why a device is offline.
pub const OFFLINE_REASON: &str = "offline-reason";

fn timeout_for(plugin: &LoadedPlugin, cap: Duration) -> Duration {
    plugin.limits().timeout.min(cap)
}

fn trace(plugin: &LoadedPlugin, hook: &'static str, action: impl Into<String>, started: Instant) -> DeviceHookTrace {
    DeviceHookTrace {
        plugin: plugin.name().to_string(),
        hook,
        action: action.into(),
        micros: started.elapsed().as_micros() as u64,
    }
}

fn invalid(plugin: &LoadedPlugin, hook: &'static str, message: String) -> PluginFailure {
    failed(plugin, hook, FailureKind::InvalidOutput(message))
}

/// A failure the host found in an answer (the call itself succeeded), counted
/// like the pipeline counts them.
fn failed(plugin: &LoadedPlugin, hook: &'static str, kind: FailureKind) -> PluginFailure {
    plugin.stats.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PluginFailure { plugin: plugin.name().to_string(), hook, kind }
}

/// Checks the fields every report must satisfy, whoever made it.
fn check_report(r: &DeviceReport) -> Result<(), String> {
    if r.id.is_empty() || r.id.len() > MAX_TEXT || r.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("device id `{}` must be 1-{MAX_TEXT} bytes without spaces", r.id.escape_debug()));
    }
    if r.name.len() > MAX_TEXT {
        return Err(format!("device `{}`: name longer than {MAX_TEXT} bytes", r.id));
    }
    if r.memory_free_mb > r.memory_total_mb || r.memory_used_mb > r.memory_total_mb {
        return Err(format!(
            "device `{}`: free ({}) and used ({}) MiB must not exceed total ({} MiB)",
            r.id, r.memory_free_mb, r.memory_used_mb, r.memory_total_mb
        ));
    }
    if r.annotations.len() > MAX_ANNOTATIONS {
        return Err(format!("device `{}`: more than {MAX_ANNOTATIONS} annotations", r.id));
    }
    if r.annotations.iter().any(|(k, v)| k.is_empty() || k.len() > MAX_TEXT || v.len() > MAX_TEXT) {
        return Err(format!(
            "device `{}`: annotation keys must be 1-{MAX_TEXT} bytes, values at most {MAX_TEXT}",
            r.id
        ));
    }
    Ok(())
}

/// Calls every device-probe plugin and appends its reports to `raw`.
pub(super) async fn run_device_plugins(
    registry: &Snapshot,
    cap: Duration,
    raw: &mut Vec<DeviceReport>,
    problems: &mut Vec<ProbeProblem>,
    traces: &mut Vec<DeviceHookTrace>,
) {
    for plugin in registry.chain(Hook::DeviceProbe) {
        let started = Instant::now();
        let source = format!("plugin:{}", plugin.name());
        let call = invoke::DeviceProbe { _marker: PhantomData };
        let outcome = match plugin.call(None, timeout_for(&plugin, cap), call).await {
            Ok(Ok(reports)) => accept_probe(&plugin, reports, raw),
            Ok(Err(message)) => Err(failed(&plugin, "device-probe", FailureKind::Error(message))),
            Err(f) => Err(f),
        };
        match outcome {
            Ok((added, dropped)) => {
                for id in &dropped {
                    problems.push(ProbeProblem {
                        source: source.clone(),
                        message: format!("device `{id}` is already reported by another probe; this report is ignored"),
                    });
                }
                traces.push(trace(&plugin, "device-probe", format!("reported {added}"), started));
            }
            Err(f) => {
                tracing::warn!(plugin = plugin.name(), "device probe failed: {f}");
                problems.push(ProbeProblem { source, message: f.kind.to_string() });
                traces.push(trace(&plugin, "device-probe", format!("failed: {}", f.kind), started));
            }
        }
    }
}

/// Checks a device plugin's reports and appends them; returns how many were
/// added and the ids dropped as duplicates of earlier probes.
fn accept_probe(
    plugin: &LoadedPlugin,
    mut reports: Vec<DeviceReport>,
    raw: &mut Vec<DeviceReport>,
) -> Result<(usize, Vec<String>), PluginFailure> {
    if reports.len() > MAX_DEVICES {
        return Err(invalid(plugin, "device-probe", format!("{} devices; at most {MAX_DEVICES}", reports.len())));
    }
    let mut own = HashSet::new();
    for r in &mut reports {
        check_report(r).map_err(|m| invalid(plugin, "device-probe", m))?;
        if !own.insert(r.id.clone()) {
            return Err(invalid(plugin, "device-probe", format!("device `{}` reported twice", r.id)));
        }
        // The host says who reported a device, not the plugin.
        r.source = format!("plugin:{}", plugin.name());
    }
    let mut dropped = Vec::new();
    let mut added = 0;
    for r in reports {
        if raw.iter().any(|d| d.id == r.id) {
            dropped.push(r.id);
        } else {
            raw.push(r);
            added += 1;
        }
    }
    Ok((added, dropped))
}

/// Passes `raw` through every device hook; returns the adjusted reports.
pub(super) async fn run_device_hooks(
    registry: &Snapshot,
    cap: Duration,
    propagate: bool,
    raw: &[DeviceReport],
    problems: &mut Vec<ProbeProblem>,
    traces: &mut Vec<DeviceHookTrace>,
) -> Vec<DeviceReport> {
    let mut current = raw.to_vec();
    for plugin in registry.chain(Hook::OnDeviceProbe) {
        let started = Instant::now();
        let call = invoke::OnDeviceProbe { reports: &current };
        let outcome = match plugin.call(None, timeout_for(&plugin, cap), call).await {
            Ok(Ok(out)) => check_hook_output(&plugin, &current, out),
            Ok(Err(message)) => Err(failed(&plugin, "on-device-probe", FailureKind::Error(message))),
            Err(f) => Err(f),
        };
        match outcome {
            Ok(out) => {
                traces.push(trace(&plugin, "on-device-probe", describe_change(&current, &out), started));
                current = out;
            }
            Err(f) if propagate || plugin.manifest().on_error == OnError::FailClosed => {
                tracing::warn!(plugin = plugin.name(), "device hook failed (fail-closed): {f}");
                problems
                    .push(ProbeProblem { source: format!("plugin:{}", plugin.name()), message: f.kind.to_string() });
                traces.push(trace(&plugin, "on-device-probe", format!("failed-closed: {}", f.kind), started));
                let reason = format!("device hook `{}` failed (fail-closed): {}", plugin.name(), f.kind);
                mark_all_offline(&mut current, &reason);
                break;
            }
            Err(f) => {
                tracing::warn!(plugin = plugin.name(), "device hook failed (fail-open): {f}");
                problems
                    .push(ProbeProblem { source: format!("plugin:{}", plugin.name()), message: f.kind.to_string() });
                traces.push(trace(&plugin, "on-device-probe", format!("failed-open: {}", f.kind), started));
            }
        }
    }
    current
}

fn mark_all_offline(reports: &mut [DeviceReport], reason: &str) {
    for r in reports {
        r.online = false;
        r.annotations.retain(|(k, _)| k != OFFLINE_REASON);
        r.annotations.push((OFFLINE_REASON.to_string(), reason.to_string()));
    }
}

/// A hook may change figures, `online`, `name` and annotations, and drop
/// devices; it may not add devices or change `id`, `kind` or `source`.
fn check_hook_output(
    plugin: &Arc<LoadedPlugin>,
    input: &[DeviceReport],
    output: Vec<DeviceReport>,
) -> Result<Vec<DeviceReport>, PluginFailure> {
    let bad = |m: String| invalid(plugin, "on-device-probe", m);
    let mut seen = HashSet::new();
    for r in &output {
        check_report(r).map_err(bad)?;
        let Some(before) = input.iter().find(|d| d.id == r.id) else {
            return Err(bad(format!(
                "device `{}` was not in the reports it was given (hooks adjust devices; device-probe plugins add them)",
                r.id
            )));
        };
        if !seen.insert(r.id.as_str()) {
            return Err(bad(format!("device `{}` returned twice", r.id)));
        }
        if before.kind != r.kind || before.source != r.source {
            return Err(bad(format!("device `{}`: `kind` and `source` may not be changed", r.id)));
        }
    }
    Ok(output)
}

fn describe_change(before: &[DeviceReport], after: &[DeviceReport]) -> String {
    let removed = before.len() - after.len();
    let changed = after.iter().filter(|a| before.iter().find(|b| b.id == a.id).is_some_and(|b| b != *a)).count();
    match (changed, removed) {
        (0, 0) => "unchanged".to_string(),
        (c, 0) => format!("changed {c}"),
        (0, r) => format!("removed {r}"),
        (c, r) => format!("changed {c}, removed {r}"),
    }
}
