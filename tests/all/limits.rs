//! Limits and fault isolation: memory cap, stack overflow, garbage output,
//! traps in init. Each test also checks the host keeps serving other plugins.

use std::time::Duration;

use plugbox_host::{FailureKind, RequestContext};

use crate::bounds::{Bounds, MIB};
use crate::*;

fn bomb_manifest(name: &str, wasm_hooks: &str, extra: &str) -> String {
    // Room for the 16 MiB output of `garbage` in `huge` mode, but not for a bomb.
    let memory = if name == "garbage" { "64MiB" } else { "16MiB" };
    format!(
        "name: {name}\nversion: 0.1.0\nhooks: [{wasm_hooks}]\npriority: 5\non-error: fail-open\n\
         limits: {{ memory: {memory}, timeout: 2s }}\npermissions: {{ messages: write }}\n{extra}"
    )
}

async fn assert_still_serving(host: &plugbox_host::Host) {
    let resp = host.run_request(&RequestContext::new("m"), request("still there?"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: still there? [ok]");
}

async fn host_with(name: &str, wasm: &str, manifest: String) -> (plugbox_host::Host, PluginDir) {
    let dir = PluginDir::new();
    dir.add(name, wasm, &manifest);
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 1, "modify", "continue"));
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (host, dir)
}

fn failure_of(ctx: &RequestContext, plugin: &str) -> String {
    ctx.trace().into_iter().find(|t| t.plugin == plugin).map(|t| t.action).unwrap_or_default()
}

#[tokio::test]
async fn memory_bomb_hits_the_cap() {
    let (host, _d) = host_with("bomb", plugbox_artifacts::MEMORY_BOMB, bomb_manifest("bomb", "pre-request", "")).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]");
    let action = failure_of(&ctx, "bomb");
    assert!(
        action.contains(&FailureKind::MemoryLimit(16 * 1024 * 1024).to_string()),
        "expected the memory cap, got `{action}`"
    );
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack_safely() {
    let (host, _d) =
        host_with("deep", plugbox_artifacts::STACK_OVERFLOW, bomb_manifest("deep", "pre-request", "")).await;
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, request("hi"), echo).await.unwrap();
    let action = failure_of(&ctx, "deep");
    assert!(action.contains("overflowed its stack"), "got `{action}`");
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn garbage_outputs_are_refused() {
    for (mode, expect) in [
        ("huge", "max-output"),
        ("bad-json", "not valid JSON"),
    ] {
        let manifest = bomb_manifest(
            "garbage",
            "pre-request, post-response",
            &format!("config:\n  mode: {{ type: string, default: {mode} }}\n"),
        );
        let (host, _d) = host_with("garbage", plugbox_artifacts::GARBAGE, manifest).await;
        let ctx = RequestContext::new("m");
        let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
        assert_eq!(text(&resp), "echo: hi [ok]", "mode {mode}");
        let action = failure_of(&ctx, "garbage");
        assert!(action.contains(expect), "mode {mode}: got `{action}`");
        assert_still_serving(&host).await;
    }
}

#[tokio::test]
async fn a_request_cannot_be_left_without_messages() {
    let manifest = bomb_manifest(
        "garbage",
        "pre-request, post-response",
        "config:\n  mode: { type: string, default: empty-messages }\n",
    );
    let (host, _d) = host_with("garbage", plugbox_artifacts::GARBAGE, manifest).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]");
    let error = ctx.get("garbage.error").unwrap_or_default();
    assert!(error.contains("Invalid") && error.contains("cannot be left empty"), "the guest saw: {error}");
    assert!(!failure_of(&ctx, "garbage").starts_with("failed"), "an invalid edit is not a failure: {:?}", ctx.trace());
}

#[tokio::test]
async fn garbage_answers_from_post_hooks_are_refused() {
    for (mode, expect) in
        [("no-choices", "has no choices"), ("bad-json-response", "not valid JSON"), ("huge-response", "max-output")]
    {
        let manifest = bomb_manifest(
            "garbage",
            "pre-request, post-response",
            &format!("config:\n  mode: {{ type: string, default: {mode} }}\n"),
        );
        let (host, _d) = host_with("garbage", plugbox_artifacts::GARBAGE, manifest).await;
        let ctx = RequestContext::new("m");
        let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
        assert_eq!(text(&resp), "echo: hi [ok]", "mode {mode}");
        let actions: Vec<String> =
            ctx.trace().into_iter().filter(|t| t.plugin == "garbage").map(|t| t.action).collect();
        assert!(actions.iter().any(|a| a.starts_with("failed-open:") && a.contains(expect)), "{mode}: {actions:?}");
        assert_still_serving(&host).await;
    }
}

#[tokio::test]
async fn failing_init_refuses_the_plugin_and_not_the_others() {
    let dir = PluginDir::new();
    let mut bad = scripted("bad-init", 2, "continue", "continue");
    bad = bad.replace("init: { type: string, default: ok }", "init: { type: string, default: fail }");
    dir.add("bad-init", plugbox_artifacts::SCRIPTED, &bad);
    let mut trap = scripted("trap-init", 3, "continue", "continue");
    trap = trap.replace("init: { type: string, default: ok }", "init: { type: string, default: trap }");
    dir.add("trap-init", plugbox_artifacts::SCRIPTED, &trap);
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 1, "modify", "continue"));
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert_eq!(report.loaded, ["ok"]);
    let errors: Vec<String> = report.failed.iter().map(|f| f.to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("plugin `bad-init`: init failed")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("plugin `trap-init`: init failed: trapped")), "{errors:?}");
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn concurrent_requests_share_a_bounded_pool() {
    let dir = PluginDir::new();
    let manifest = scripted("ok", 1, "modify", "continue").replace("timeout: 100ms", "timeout: 2s, instances: 2");
    dir.add("ok", plugbox_artifacts::SCRIPTED, &manifest);
    let host = host();
    host.load_dir(dir.path()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let resp = host.run_request(&RequestContext::new("m"), request(&format!("r{i}")), echo).await.unwrap();
            assert_eq!(text(&resp), format!("echo: r{i} [ok]"));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let p = host.plugin("ok").unwrap();
    assert!(p.stats().instances_created <= 2, "pool grew past its limit: {:?}", p.stats());
    assert_eq!(p.stats().calls, 32);
}

#[tokio::test]
async fn a_memory_bomb_in_init_is_told_apart_by_the_limiter() {
    let dir = PluginDir::new();
    let manifest = bomb_manifest("bomb", "pre-request", "config:\n  in_init: { type: boolean, default: true }\n");
    dir.add("bomb", plugbox_artifacts::MEMORY_BOMB, &manifest);
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 1, "modify", "continue"));
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert_eq!(report.loaded, ["ok"]);
    let error = report.failed[0].to_string();
    let cap = FailureKind::MemoryLimit(16 * 1024 * 1024).to_string();
    assert!(error.contains("plugin `bomb`") && error.contains(&cap), "{error}");
    assert_still_serving(&host).await;
}

/// The `memory-bomb` fixture that takes `mib` MiB in every call and keeps it
/// (wasm memory never shrinks), as plugin `grow`.
fn grower(mib: u32) -> String {
    format!(
        "name: grow\nversion: 0.1.0\nhooks: [pre-request]\npriority: 5\non-error: fail-open\n\
         limits: {{ memory: 160MiB, timeout: 20s, instances: 2 }}\npermissions: {{ messages: none }}\n\
         config:\n  mib: {{ type: integer, default: {mib} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_that_grew_are_not_kept_resident() {
    let (host, _d) = host_with("grow", plugbox_artifacts::MEMORY_BOMB, grower(100)).await;
    let before = Bounds::now();
    // 8 calls in waves of two (which keeps the peak small for the other
    // tests in this process), each taking 100 MiB of its instance: 8
    // instances grow to 100+ MiB.
    for wave in 0..4 {
        let calls: Vec<_> = (0..2)
            .map(|i| {
                let host = host.clone();
                tokio::spawn(async move {
                    let ctx = RequestContext::new("m");
                    let resp = host.run_request(&ctx, request(&format!("r{wave}{i}")), echo).await.unwrap();
                    assert_eq!(text(&resp), format!("echo: r{wave}{i} [ok]"));
                    assert_eq!(failure_of(&ctx, "grow"), "continue", "the call itself succeeded");
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap();
        }
    }
    let grow = host.plugin("grow").unwrap();
    let stats = grow.stats();
    assert!(stats.instances_evicted >= 8, "every grown instance is dropped after its call: {stats:?}");
    assert!(stats.pooled_bytes < 16 * MIB, "{stats:?}");
    // Grown instances were resident during the calls; none is kept after.
    before.assert_within(32, 96 * MIB);
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn idle_instances_expire() {
    let host = builder().idle_instance_ttl(Duration::from_millis(30)).build().unwrap();
    let dir = PluginDir::new();
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 1, "modify", "continue"));
    host.load_dir(dir.path()).await.unwrap();
    let ok = host.plugin("ok").unwrap();
    assert_eq!(ok.idle_instances(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while ok.idle_instances() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ok.idle_instances(), 0, "expired after the idle TTL");
    assert_eq!(ok.pooled_bytes(), 0);
    assert!(ok.stats().instances_evicted >= 1);
    assert_eq!(host.pooled_instance_bytes(), 0);
    // The next call makes an instance within its own deadline.
    assert_still_serving(&host).await;
    // ...and pools it again (with the one the background warmer made meanwhile).
    assert!((1..=2).contains(&ok.idle_instances()), "{} idle", ok.idle_instances());
}

#[tokio::test]
async fn pooled_memory_stays_within_the_host_budget() {
    // What one idle `scripted` instance holds.
    let (probe, _d) = scripted_host(&[("probe", scripted("probe", 1, "continue", "continue"))]).await;
    let one = probe.plugin("probe").unwrap().pooled_bytes();
    assert!(one > 0);

    // Room for two and a half: loading a third drops the oldest idle instance.
    let budget = one * 5 / 2;
    let host = builder().pooled_memory_budget(budget).build().unwrap();
    let dir = PluginDir::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        dir.add(name, plugbox_artifacts::SCRIPTED, &scripted(name, i as i32, "continue", "continue"));
        host.load_plugin(&dir.path().join(name)).await.unwrap();
        assert!(host.pooled_instance_bytes() <= budget, "after {name}: {}", host.pooled_instance_bytes());
    }
    let idle = |n: &str| host.plugin(n).unwrap().idle_instances();
    assert_eq!((idle("a"), idle("b"), idle("c")), (0, 1, 1), "the oldest idle instance went first");
    assert_eq!(host.plugin("a").unwrap().stats().instances_evicted, 1);
    // Every plugin still answers (`a` on an instance made for the call).
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(ctx.get("trace").as_deref(), Some("pre:a,pre:b,pre:c,post:c,post:b,post:a"));
    assert!(host.pooled_instance_bytes() <= budget);
}
