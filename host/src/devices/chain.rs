//! Device plugins (`device-probe`) and device hooks (`on-device-probe`): calls
//! in priority order, the answer checks (made inside the call, so stats and
//! the circuit breaker get one verdict per call), the output budget, and the
//! one on-error decision ([`LoadedPlugin::fails_closed`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DeviceHookTrace, ProbeProblem};
use crate::bindings::types::DeviceReport;
use crate::budget::OutputBudget;
use crate::failure::{FailureKind, PluginFailure};
use crate::plugin::{Invoke, Live, LoadedPlugin};

/// Most reports one answer (of a device plugin or a device hook) may hold.
pub(crate) const MAX_DEVICES: usize = 1024;
/// Most annotations one report may carry.
pub(crate) const MAX_ANNOTATIONS: usize = 32;
/// Longest id, name, source, annotation key or value, in bytes.
pub(crate) const MAX_TEXT: usize = 1024;

/// The annotation that says why a device is offline.
pub(crate) const OFFLINE_REASON: &str = "offline-reason";

fn missing(interface: &str) -> wasmtime::Error {
    wasmtime::format_err!("the component's `{interface}` exports were not loaded")
}

/// The `device-probe` call of a device plugin.
pub(crate) struct DeviceProbe;

impl Invoke for DeviceProbe {
    type Output = Result<Vec<DeviceReport>, String>;
    const HOOK: &'static str = "device-probe";
    async fn invoke<'a>(self, live: &'a mut Live) -> wasmtime::Result<Self::Output>
    where
        Self: 'a,
    {
        let g = live.device_probe.as_ref().ok_or_else(|| missing("device-probe"))?;
        g.call_probe(&mut live.store).await
    }
}

/// The `on-device-probe` call of a device hook.
pub(crate) struct OnDeviceProbe<'r> {
    pub(crate) reports: &'r [DeviceReport],
}

impl Invoke for OnDeviceProbe<'_> {
    type Output = Result<Vec<DeviceReport>, String>;
    const HOOK: &'static str = "on-device-probe";
    async fn invoke<'a>(self, live: &'a mut Live) -> wasmtime::Result<Self::Output>
    where
        Self: 'a,
    {
        let g = live.device_hooks.as_ref().ok_or_else(|| missing("device-hooks"))?;
        g.call_on_device_probe(&mut live.store, self.reports).await
    }
}

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

/// A string field of a report: charged to `budget` at `path`, at most
/// [`MAX_TEXT`] bytes (and at least `min`).
fn text(budget: &mut OutputBudget, path: &dyn std::fmt::Display, value: &str, min: usize) -> Result<(), String> {
    if value.len() < min || value.len() > MAX_TEXT {
        let what = if min > 0 { format!("1-{MAX_TEXT}") } else { format!("at most {MAX_TEXT}") };
        return Err(format!("`{path}` is {} bytes; {what} bytes are accepted", value.len()));
    }
    budget.text(path, value)
}

/// Charges one answer's reports to `budget` and checks the rules every report
/// must satisfy, whoever made it. Errors name the field by JSON path (`$` is
/// the list the plugin returned).
pub(crate) fn check_reports(budget: &mut OutputBudget, reports: &[DeviceReport]) -> Result<(), String> {
    budget.elements(&"$", reports.len(), MAX_DEVICES)?;
    for (i, r) in reports.iter().enumerate() {
        text(budget, &format_args!("$[{i}].id"), &r.id, 1)?;
        if r.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("`$[{i}].id`: device id `{}` must not contain spaces", r.id.escape_debug()));
        }
        text(budget, &format_args!("$[{i}].name"), &r.name, 0)?;
        text(budget, &format_args!("$[{i}].source"), &r.source, 0)?;
        if r.memory_free_mb > r.memory_total_mb || r.memory_used_mb > r.memory_total_mb {
            return Err(format!(
                "device `{}`: free ({}) and used ({}) MiB must not exceed total ({} MiB)",
                r.id, r.memory_free_mb, r.memory_used_mb, r.memory_total_mb
            ));
        }
        budget.elements(&format_args!("$[{i}].annotations"), r.annotations.len(), MAX_ANNOTATIONS)?;
        for (j, (k, v)) in r.annotations.iter().enumerate() {
            text(budget, &format_args!("$[{i}].annotations[{j}][0]"), k, 1)?;
            text(budget, &format_args!("$[{i}].annotations[{j}][1]"), v, 0)?;
        }
    }
    Ok(())
}

/// The verdict on an `err(..)` a plugin returned: its text is output too.
fn returned_error(budget: &mut OutputBudget, message: String) -> FailureKind {
    match budget.text(&"$.error", &message) {
        Ok(()) => FailureKind::Error(message),
        Err(e) => FailureKind::InvalidOutput(e),
    }
}

/// The answer of a device plugin, checked: its reports, their `source` set to
/// `plugin:<name>` (the host says who reported a device, not the plugin).
fn check_probe(
    plugin: &LoadedPlugin,
    answer: Result<Vec<DeviceReport>, String>,
) -> Result<Vec<DeviceReport>, FailureKind> {
    let mut budget = OutputBudget::new(plugin.limits().max_output);
    let mut reports = answer.map_err(|m| returned_error(&mut budget, m))?;
    check_reports(&mut budget, &reports).map_err(FailureKind::InvalidOutput)?;
    let mut own = HashSet::new();
    for r in &mut reports {
        if !own.insert(r.id.clone()) {
            return Err(FailureKind::InvalidOutput(format!("device `{}` reported twice", r.id)));
        }
        r.source = format!("plugin:{}", plugin.name());
    }
    Ok(reports)
}

/// The answer of a device hook, checked against what it was given: it may
/// change figures, `online`, `name` and annotations, and drop devices; it may
/// not add devices or change `id`, `kind` or `source`.
fn check_hook(
    plugin: &LoadedPlugin,
    input: &[DeviceReport],
    answer: Result<Vec<DeviceReport>, String>,
) -> Result<Vec<DeviceReport>, FailureKind> {
    let mut budget = OutputBudget::new(plugin.limits().max_output);
    let output = answer.map_err(|m| returned_error(&mut budget, m))?;
    check_hook_output(&mut budget, input, &output).map_err(FailureKind::InvalidOutput)?;
    Ok(output)
}

/// The rules of [`check_hook`], on plain data.
pub(crate) fn check_hook_output(
    budget: &mut OutputBudget,
    input: &[DeviceReport],
    output: &[DeviceReport],
) -> Result<(), String> {
    check_reports(budget, output)?;
    let mut seen = HashSet::new();
    for r in output {
        let Some(before) = input.iter().find(|d| d.id == r.id) else {
            return Err(format!(
                "device `{}` was not in the reports it was given (hooks adjust devices; device-probe plugins add them)",
                r.id
            ));
        };
        if !seen.insert(r.id.as_str()) {
            return Err(format!("device `{}` returned twice", r.id));
        }
        if before.kind != r.kind || before.source != r.source {
            return Err(format!("device `{}`: `kind` and `source` may not be changed", r.id));
        }
    }
    Ok(())
}

/// Records a failed call and makes the one on-error decision: `Some` when the
/// failure ends the probe.
fn on_failure(
    plugin: &LoadedPlugin,
    hook: &'static str,
    f: PluginFailure,
    propagate_all: bool,
    started: Instant,
    problems: &mut Vec<ProbeProblem>,
    traces: &mut Vec<DeviceHookTrace>,
) -> Option<PluginFailure> {
    let closed = plugin.fails_closed(propagate_all);
    let how = if closed { "failed-closed" } else { "failed-open" };
    tracing::warn!(plugin = plugin.name(), "{hook} failed ({how}): {f}");
    problems.push(ProbeProblem { source: format!("plugin:{}", plugin.name()), message: f.kind.to_string() });
    traces.push(trace(plugin, hook, format!("{how}: {}", f.kind), started));
    closed.then_some(f)
}

/// Calls every device plugin of `chain` and appends its reports to `raw`. A
/// `fail-closed` failure stops the chain and is returned (the one that ended
/// the probe).
pub(crate) async fn run_device_plugins(
    chain: &[Arc<LoadedPlugin>],
    cap: Duration,
    propagate_all: bool,
    raw: &mut Vec<DeviceReport>,
    problems: &mut Vec<ProbeProblem>,
    traces: &mut Vec<DeviceHookTrace>,
) -> Option<PluginFailure> {
    for plugin in chain {
        let started = Instant::now();
        let checked = plugin.call_checked(None, timeout_for(plugin, cap), DeviceProbe, |a| check_probe(plugin, a));
        match checked.await {
            Ok(reports) => {
                let mut added = 0;
                for r in reports {
                    if raw.iter().any(|d| d.id == r.id) {
                        problems.push(ProbeProblem {
                            source: r.source,
                            message: format!(
                                "device `{}` is already reported by another probe; this report is ignored",
                                r.id
                            ),
                        });
                    } else {
                        raw.push(r);
                        added += 1;
                    }
                }
                traces.push(trace(plugin, "device-probe", format!("reported {added}"), started));
            }
            Err(f) => {
                if let Some(f) = on_failure(plugin, "device-probe", f, propagate_all, started, problems, traces) {
                    return Some(f);
                }
            }
        }
    }
    None
}

/// Passes `current` through every device hook of `chain`. A `fail-closed`
/// failure stops the chain and is returned; `current` is then what the
/// previous hooks made of it.
pub(crate) async fn run_device_hooks(
    chain: &[Arc<LoadedPlugin>],
    cap: Duration,
    propagate_all: bool,
    current: &mut Vec<DeviceReport>,
    problems: &mut Vec<ProbeProblem>,
    traces: &mut Vec<DeviceHookTrace>,
) -> Option<PluginFailure> {
    for plugin in chain {
        let started = Instant::now();
        let input: &[DeviceReport] = current;
        let call = OnDeviceProbe { reports: input };
        let checked = plugin.call_checked(None, timeout_for(plugin, cap), call, |a| check_hook(plugin, input, a));
        match checked.await {
            Ok(out) => {
                traces.push(trace(plugin, "on-device-probe", describe_change(current, &out), started));
                *current = out;
            }
            Err(f) => {
                if let Some(f) = on_failure(plugin, "on-device-probe", f, propagate_all, started, problems, traces) {
                    return Some(f);
                }
            }
        }
    }
    None
}

/// What a `fail-closed` failure does to a probe: every device offline, with an
/// [`OFFLINE_REASON`] naming the plugin, so that nothing is admitted on figures
/// a required plugin did not vouch for.
pub(crate) fn mark_all_offline(reports: &mut [DeviceReport], failure: &PluginFailure) {
    let reason = format!("{} `{}` failed (fail-closed): {}", kind_of(failure.hook), failure.plugin, failure.kind);
    for r in reports {
        r.online = false;
        r.annotations.retain(|(k, _)| k != OFFLINE_REASON);
        r.annotations.push((OFFLINE_REASON.to_string(), reason.clone()));
    }
}

fn kind_of(hook: &str) -> &'static str {
    if hook == DeviceProbe::HOOK { "device plugin" } else { "device hook" }
}

fn describe_change(before: &[DeviceReport], after: &[DeviceReport]) -> String {
    let removed = before.len().saturating_sub(after.len());
    let changed = after.iter().filter(|a| before.iter().find(|b| b.id == a.id).is_some_and(|b| b != *a)).count();
    match (changed, removed) {
        (0, 0) => "unchanged".to_string(),
        (c, 0) => format!("changed {c}"),
        (0, r) => format!("removed {r}"),
        (c, r) => format!("changed {c}, removed {r}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::DeviceKind;

    fn report(id: &str) -> DeviceReport {
        DeviceReport {
            id: id.into(),
            kind: DeviceKind::Gpu,
            name: "g".into(),
            online: true,
            memory_total_mb: 100,
            memory_free_mb: 50,
            memory_used_mb: 50,
            utilization: None,
            temperature_c: None,
            source: "builtin:test".into(),
            annotations: vec![],
        }
    }

    fn check(limit: u64, reports: &[DeviceReport]) -> Result<u64, String> {
        let mut b = OutputBudget::new(limit);
        check_reports(&mut b, reports).map(|()| b.used())
    }

    #[test]
    fn every_string_field_is_charged() {
        let mut r = report("gpu:0");
        r.annotations.push(("k".into(), "vvv".into()));
        // 16 (element) + 5 (id) + 1 (name) + 12 (source) + 16 (annotation) + 1 + 3.
        assert_eq!(check(u64::MAX, &[r.clone()]), Ok(16 + 5 + 1 + 12 + 16 + 1 + 3));
        let e = check(16 + 5 + 1 + 12 + 16 + 1 + 2, &[r]).unwrap_err();
        assert!(e.contains("at `$[0].annotations[0][1]`"), "{e}");
    }

    #[test]
    fn a_long_answer_is_refused_by_count_and_by_budget() {
        let many: Vec<_> = (0..MAX_DEVICES + 1).map(|i| report(&format!("d{i}"))).collect();
        assert_eq!(check(u64::MAX, &many).unwrap_err(), "`$` has 1025 elements; at most 1024 are accepted");
        let e = check(1024, &many[..64]).unwrap_err();
        assert!(e.starts_with("output exceeds the plugin's max-output of 1024 bytes at `$["), "{e}");
    }

    #[test]
    fn long_fields_name_their_path() {
        let mut r = report("gpu:0");
        r.name = "n".repeat(MAX_TEXT + 1);
        assert_eq!(
            check(u64::MAX, &[report("a"), r]).unwrap_err(),
            "`$[1].name` is 1025 bytes; at most 1024 bytes are accepted"
        );
        let mut r = report("gpu:0");
        r.annotations = (0..=MAX_ANNOTATIONS).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(check(u64::MAX, &[r]).unwrap_err(), "`$[0].annotations` has 33 elements; at most 32 are accepted");
        assert_eq!(check(u64::MAX, &[report("")]).unwrap_err(), "`$[0].id` is 0 bytes; 1-1024 bytes are accepted");
        assert!(check(u64::MAX, &[report("a b")]).unwrap_err().contains("must not contain spaces"));
        let mut r = report("gpu:0");
        r.memory_free_mb = 101;
        assert!(check(u64::MAX, &[r]).unwrap_err().contains("must not exceed total"));
    }

    #[test]
    fn hooks_may_adjust_but_not_invent_or_rekind() {
        let input = [report("a"), report("b")];
        let mut b = OutputBudget::new(u64::MAX);
        let mut adjusted = report("a");
        adjusted.memory_free_mb = 10;
        assert_eq!(check_hook_output(&mut b, &input, &[adjusted.clone()]), Ok(()));
        assert_eq!(describe_change(&input, &[adjusted]), "changed 1, removed 1");
        let e = check_hook_output(&mut b, &input, &[report("c")]).unwrap_err();
        assert!(e.contains("was not in the reports it was given"), "{e}");
        let mut rekind = report("a");
        rekind.kind = DeviceKind::Other;
        assert!(check_hook_output(&mut b, &input, &[rekind]).unwrap_err().contains("may not be changed"));
        assert!(check_hook_output(&mut b, &input, &[report("a"), report("a")]).unwrap_err().contains("twice"));
    }

    #[test]
    fn a_returned_error_is_output_too() {
        let mut b = OutputBudget::new(10);
        assert_eq!(returned_error(&mut b, "short".into()), FailureKind::Error("short".into()));
        match returned_error(&mut b, "x".repeat(100)) {
            FailureKind::InvalidOutput(e) => assert!(e.contains("at `$.error`"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fail_closed_marks_every_device_offline_naming_the_plugin() {
        let mut reports = vec![report("a"), report("b")];
        reports[0].annotations.push((OFFLINE_REASON.into(), "old".into()));
        let f =
            PluginFailure { plugin: "strict".into(), hook: "on-device-probe", kind: FailureKind::Error("no".into()) };
        mark_all_offline(&mut reports, &f);
        for r in &reports {
            assert!(!r.online);
            let reasons: Vec<_> = r.annotations.iter().filter(|(k, _)| k == OFFLINE_REASON).collect();
            assert_eq!(reasons.len(), 1);
            assert_eq!(reasons[0].1, "device hook `strict` failed (fail-closed): no");
        }
        let f = PluginFailure { hook: "device-probe", ..f };
        mark_all_offline(&mut reports, &f);
        assert_eq!(reports[0].annotations[0].1, "device plugin `strict` failed (fail-closed): no");
    }
}
