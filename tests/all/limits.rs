//! Limits and fault isolation: memory cap, stack overflow, garbage output,
//! traps in init. Each test also checks the host keeps serving other plugins.

use plugbox_host::{FailureKind, RequestContext};

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
        ("huge", "exceeds the plugin's max-output"),
        ("bad-json-extra", "`$.extra` is not valid JSON"),
        ("empty-messages", "modified request has no messages"),
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
async fn empty_choices_from_post_hook_are_refused() {
    let manifest = bomb_manifest(
        "garbage",
        "pre-request, post-response",
        "config:\n  mode: { type: string, default: no-choices }\n",
    );
    let (host, _d) = host_with("garbage", plugbox_artifacts::GARBAGE, manifest).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]");
    let actions: Vec<String> = ctx.trace().into_iter().filter(|t| t.plugin == "garbage").map(|t| t.action).collect();
    assert!(actions.iter().any(|a| a.contains("response has no choices")), "{actions:?}");
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
