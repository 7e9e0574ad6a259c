//! Helpers shared by the adversarial tests (escalation.rs, variants.rs): the
//! `sandbox-probe` manifest, the well-behaved plugin each test keeps an eye
//! on, and reading what the probes reported.

use std::time::{Duration, Instant};

use plugbox_host::{Host, RequestContext};

use crate::bounds::assert_fast;
use crate::*;

/// `sandbox-probe` as plugin `name` asking for `permissions`, attempting `ops`.
pub fn probe(name: &str, version: &str, permissions: &str, ops: &[&str]) -> String {
    let ops: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
    format!(
        "name: {name}\nversion: {version}\nhooks: [pre-request]\npriority: 1\non-error: fail-open\n\
         limits: {{ timeout: 2s }}\npermissions: {permissions}\n\
         config:\n  ops: {{ type: array, default: [{}] }}\n",
        ops.join(", ")
    )
}

/// The healthy plugin every test keeps an eye on: appends ` [ok]` to the prompt.
pub fn with_ok(dir: &PluginDir) {
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 50, "modify", "continue"));
}

/// One request; checks `ok` served it; returns the context (the probes' outcomes).
pub async fn serve_one(host: &Host) -> RequestContext {
    let ctx = RequestContext::new("m");
    let started = Instant::now();
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_fast("a request", started.elapsed(), Duration::from_secs(10));
    assert!(text(&resp).starts_with("echo: hi") && text(&resp).contains("[ok]"), "`ok` must keep serving: {resp:?}");
    ctx
}

/// What the probe reported for `op` (it records each op's outcome in the request context).
pub fn outcome(ctx: &RequestContext, op: &str) -> String {
    ctx.get(op).unwrap_or_else(|| panic!("op `{op}` did not run: {:?}\n{:?}", ctx.values(), ctx.trace()))
}

/// What `plugin` asked for and was not granted, one line each.
pub fn denied(host: &Host, plugin: &str) -> String {
    host.plugin(plugin).unwrap_or_else(|| panic!("`{plugin}` not loaded")).capabilities().denied.join("\n")
}
