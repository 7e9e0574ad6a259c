//! JavaScript plugins: built from source with the pinned componentize-js
//! (`tools::tools()`), against the same WIT, run through the same pipeline as
//! the Rust plugins and held to the same rules: the ported `system-prompt`
//! and `rate-limit` pass the Rust versions' behaviour tests, hostile code is
//! contained, nothing is granted by default, hot reload, `plugbox check`,
//! `call` and `new --lang js` work.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use plugbox_host::{ChatMessage, ErrorKind, FailureKind, Host, RequestContext, RequestError};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::*;

/// The flags every JavaScript plugin is built with: no `fetch` (wasi:http)
/// and no incoming-handler export, so the component imports only what the
/// host gives a plugin with no grants.
pub const JS_BUILD_FLAGS: &[&str] = &["--disable", "http", "fetch-event"];

fn repo() -> &'static Path {
    Path::new(plugbox_artifacts::REPO_ROOT)
}

/// The component built from the JavaScript plugin `source` (relative to the
/// repository root) for the `plugin` world, or for the world in the file
/// `world` (a fixture's own world that includes it). Built once per change of
/// its inputs (source, SDK, WIT, tool versions): the result is cached under
/// the target directory by a hash of them, so reruns are quick.
pub fn js_component(source: &str, world: Option<&str>) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let tools = crate::tools::tools();
    let mut inputs: Vec<PathBuf> = vec![repo().join(source), repo().join("plugin-sdk/js/plugbox.js")];
    let mut wit: Vec<PathBuf> = std::fs::read_dir(plugbox_artifacts::WIT_DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wit"))
        .collect();
    wit.sort();
    inputs.extend(wit.iter().cloned());
    if let Some(w) = world {
        inputs.push(repo().join(w));
    }
    let mut hash = Sha256::new();
    for input in &inputs {
        hash.update(input.to_string_lossy().as_bytes());
        hash.update(std::fs::read(input).unwrap_or_else(|e| panic!("reading `{}`: {e}", input.display())));
    }
    hash.update(std::fs::read(tools.dir.join("installed")).unwrap_or_default());
    hash.update(JS_BUILD_FLAGS.join(" "));
    let key: String = hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("js-components");
    std::fs::create_dir_all(&out_dir).unwrap();
    let name = Path::new(source).parent().and_then(|p| p.file_name()).unwrap().to_string_lossy().into_owned();
    let out = out_dir.join(format!("{name}-{key}.wasm"));

    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if out.exists() {
        return out;
    }
    let (wit_dir, world_name) = match world {
        None => (PathBuf::from(plugbox_artifacts::WIT_DIR), "plugin".to_string()),
        Some(w) => {
            // The fixture's world, with plugbox's WIT and jco's WASI WIT as deps.
            let dir = out_dir.join(format!("wit-{name}-{key}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("deps/plugbox")).unwrap();
            std::fs::copy(repo().join(w), dir.join("world.wit")).unwrap();
            for f in &wit {
                std::fs::copy(f, dir.join("deps/plugbox").join(f.file_name().unwrap())).unwrap();
            }
            copy_dir(&tools.wasi_wit(), &dir.join("deps"));
            let text = std::fs::read_to_string(repo().join(w)).unwrap();
            let world_name = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("world ").map(|r| r.trim_end_matches('{').trim().to_string()))
                .unwrap_or_else(|| panic!("no world in `{w}`"));
            (dir, world_name)
        }
    };
    let tmp = out.with_extension("wasm.tmp");
    let output = Command::new(tools.componentize_js())
        .arg(source)
        .arg("--wit")
        .arg(&wit_dir)
        .args(["--world-name", &world_name])
        .args(JS_BUILD_FLAGS)
        .arg("-o")
        .arg(&tmp)
        // Module imports (the SDK) resolve inside the working directory.
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| {
            panic!("running `{}` (install it with scripts/install-test-tools): {e}", tools.componentize_js().display())
        });
    assert!(
        output.status.success(),
        "componentize-js failed to build `{source}`:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    // Builds of earlier versions of this plugin are stale now.
    for entry in std::fs::read_dir(&out_dir).unwrap().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let stale = (file.starts_with(&format!("{name}-")) && file.ends_with(".wasm"))
            || file.starts_with(&format!("wit-{name}-"));
        if stale && !file.contains(&key) {
            let _ = std::fs::remove_dir_all(entry.path()).or_else(|_| std::fs::remove_file(entry.path()));
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading `{}`: {e}", from.display())) {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A JavaScript example plugin (`example-plugins/js/<name>`): its component and manifest.
pub fn js_example(name: &str) -> (PathBuf, String) {
    let wasm = js_component(&format!("example-plugins/js/{name}/plugin.js"), None);
    let manifest = std::fs::read_to_string(repo().join(format!("example-plugins/js/{name}/plugin.yaml"))).unwrap();
    (wasm, manifest)
}

/// Loads plugins (name, component, manifest) with per-plugin config.
async fn load(plugins: &[(&str, PathBuf, String)], config: &[(&str, serde_json::Value)]) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    for (name, wasm, manifest) in plugins {
        dir.add(name, wasm.to_str().unwrap(), manifest);
    }
    let mut b = builder();
    for (name, values) in config {
        b = b.plugin_config(*name, values.as_object().unwrap().clone());
    }
    let host = b.build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (host, dir)
}

async fn js_examples(names: &[&str], config: &[(&str, serde_json::Value)]) -> (Host, PluginDir) {
    let plugins: Vec<(&str, PathBuf, String)> = names
        .iter()
        .map(|n| {
            let (wasm, manifest) = js_example(n);
            (*n, wasm, manifest)
        })
        .collect();
    load(&plugins, config).await
}

/// A provider that reports what it received.
async fn capture(req: std::sync::Arc<plugbox_host::ChatRequest>) -> plugbox_host::Outcome {
    let all: Vec<String> = req.messages.iter().map(|m| format!("{}:{}", m.role, message_text(m))).collect();
    Ok(response(&all.join("|")))
}

fn action_of(ctx: &RequestContext, plugin: &str) -> String {
    ctx.trace().into_iter().find(|t| t.plugin == plugin).map(|t| t.action).unwrap_or_default()
}

/// The interfaces a component imports (its top-level import names).
fn component_imports(wasm: &Path) -> Vec<String> {
    let bytes = std::fs::read(wasm).unwrap();
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload.unwrap() {
            wasmparser::Payload::ModuleSection { .. } | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    names.push(import.unwrap().name.name.to_string());
                }
            }
            _ => {}
        }
    }
    names
}

#[test]
fn js_components_import_only_what_a_plugin_is_given() {
    // Built with `--disable http fetch-event`: no wasi:http, no sockets; the
    // rest is what the host links for every plugin (with no directory and no
    // environment unless granted).
    let allowed = [
        "plugbox:plugin/",
        "wasi:io/",
        "wasi:clocks/",
        "wasi:random/",
        "wasi:cli/stdin@",
        "wasi:cli/stdout@",
        "wasi:cli/stderr@",
        "wasi:cli/terminal-",
        "wasi:filesystem/",
    ];
    for name in ["system-prompt", "rate-limit"] {
        let (wasm, _) = js_example(name);
        let imports = component_imports(&wasm);
        assert!(imports.iter().any(|i| i.starts_with("plugbox:plugin/llm@0.2")), "{name}: {imports:?}");
        for import in &imports {
            assert!(allowed.iter().any(|a| import.starts_with(a)), "{name} imports `{import}`: {imports:?}");
        }
    }
}

// ------------------------------------------------------------- system-prompt

#[tokio::test]
async fn js_system_prompt_is_added_once() {
    let (host, _d) = js_examples(&["system-prompt"], &[("system-prompt", json!({"prompt": "Be brief."}))]).await;
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), capture).await.unwrap();
    assert_eq!(text(&resp), "system:Be brief.|user:hi");
    // Already present: not added twice.
    let mut req = request("hi");
    req.messages.insert(0, ChatMessage::system("Be brief."));
    let resp = host.run_request(&RequestContext::new("m"), req, capture).await.unwrap();
    assert_eq!(text(&resp), "system:Be brief.|user:hi");
}

#[tokio::test]
async fn js_instance_serves_thousands_of_calls() {
    // One long-lived SpiderMonkey instance, reused for every call (the pool
    // keeps it warm): its heap is collected as it goes, nothing traps.
    let (wasm, manifest) = js_example("system-prompt");
    let manifest = manifest.replace("instances: 4", "instances: 1").replace("timeout: 50ms", "timeout: 2s");
    let (host, _d) =
        load(&[("system-prompt", wasm, manifest)], &[("system-prompt", json!({"prompt": "Be brief."}))]).await;
    for i in 0..5000 {
        let resp = host.run_request(&RequestContext::new("m"), request(&format!("q{i}")), capture).await.unwrap();
        assert_eq!(text(&resp), format!("system:Be brief.|user:q{i}"));
    }
    let stats = host.plugin("system-prompt").unwrap().stats();
    assert_eq!((stats.calls, stats.errors, stats.traps, stats.timeouts), (5000, 0, 0, 0), "{stats:?}");
    assert_eq!(stats.instances_created, 1, "{stats:?}");
}

#[tokio::test]
async fn js_system_prompt_positions() {
    let own = || {
        let mut req = request("hi");
        req.messages.insert(0, ChatMessage::system("own"));
        req
    };
    for (position, expect) in [
        ("first", "system:be brief|system:own|user:hi"),
        ("after-system", "system:own|system:be brief|user:hi"),
        ("last", "system:own|user:hi|system:be brief"),
    ] {
        let config = json!({"prompt": "be brief", "position": position});
        let (host, _d) = js_examples(&["system-prompt"], &[("system-prompt", config)]).await;
        let resp = host.run_request(&RequestContext::new("m"), own(), capture).await.unwrap();
        assert_eq!(text(&resp), expect, "position {position}");
    }
}

#[tokio::test]
async fn js_system_prompt_config_errors_fail_the_load() {
    let (wasm, manifest) = js_example("system-prompt");
    for (config, needle) in [(json!({}), "prompt"), (json!({"prompt": "x", "position": "middle"}), "`middle`")] {
        let dir = PluginDir::new();
        dir.add("system-prompt", wasm.to_str().unwrap(), &manifest);
        let host = builder().plugin_config("system-prompt", config.as_object().unwrap().clone()).build().unwrap();
        let report = host.load_dir(dir.path()).await.unwrap();
        assert_eq!(report.failed.len(), 1, "{config}");
        let error = report.failed[0].to_string();
        assert!(error.contains(needle) && error.contains("system-prompt"), "{error}");
    }
}

#[tokio::test]
async fn js_system_prompt_needs_write() {
    // The same plugin granted only `read`: its insert is refused, the request
    // goes on unchanged (fail-open), and the refusal names the JSON path.
    let (wasm, manifest) = js_example("system-prompt");
    let manifest = manifest.replace("messages: write", "messages: read");
    let (host, _d) =
        load(&[("system-prompt", wasm, manifest)], &[("system-prompt", json!({"prompt": "Be brief."}))]).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), capture).await.unwrap();
    assert_eq!(text(&resp), "user:hi");
    let action = action_of(&ctx, "system-prompt");
    assert!(action.contains("`$.messages[0]` needs `messages: write`"), "{action}");
}

// ------------------------------------------------------------- rate-limit

#[tokio::test]
async fn js_rate_limit_allows_a_burst_per_caller() {
    let (host, _d) = js_examples(&["rate-limit"], &[("rate-limit", json!({"rps": 0.001, "burst": 2}))]).await;
    let send = |caller: &'static str| {
        let host = host.clone();
        async move {
            let ctx = RequestContext::new("m").with_caller(caller);
            let outcome = host.run_request(&ctx, request("x"), echo).await;
            (outcome, ctx.get("rate-limit.remaining"))
        }
    };
    let (first, remaining) = send("alice").await;
    assert!(first.is_ok());
    assert_eq!(remaining.as_deref(), Some("1"));
    assert!(send("alice").await.0.is_ok());
    match send("alice").await {
        (Err(RequestError::Llm(e)), remaining) => {
            assert_eq!(e.kind, ErrorKind::RateLimited);
            assert!(!e.allow_fallback);
            assert!(e.retry_after_ms.is_some_and(|ms| ms > 0), "{e:?}");
            assert!(e.message.contains("`alice`"), "{}", e.message);
            assert_eq!(remaining.as_deref(), Some("0"));
        }
        (other, _) => panic!("expected rate limiting, got {other:?}"),
    }
    // Buckets are per caller; no caller is `anonymous`.
    assert!(send("bob").await.0.is_ok());
    assert!(host.run_request(&RequestContext::new("m"), request("x"), echo).await.is_ok());
    // The buckets are in the plugin's kv namespace, in the Rust version's format.
    let keys = host.kv().keys("rate-limit").await.unwrap();
    for key in ["bucket:alice", "bucket:bob", "bucket:anonymous"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
    let bucket = host.kv().get("rate-limit", "bucket:bob").await.unwrap().unwrap();
    assert_eq!(bucket.len(), 16);
    assert_eq!(f64::from_le_bytes(bucket[..8].try_into().unwrap()), 1.0);
}

#[tokio::test]
async fn js_rate_limit_config_is_checked() {
    let (wasm, manifest) = js_example("rate-limit");
    for config in [json!({"rps": 0}), json!({"burst": 0}), json!({"burst": 1.5})] {
        let dir = PluginDir::new();
        dir.add("rate-limit", wasm.to_str().unwrap(), &manifest);
        let host = builder().plugin_config("rate-limit", config.as_object().unwrap().clone()).build().unwrap();
        let report = host.load_dir(dir.path()).await.unwrap();
        assert_eq!(report.failed.len(), 1, "{config} was accepted");
    }
}

// ------------------------------------------------------------- next to Rust

#[tokio::test]
async fn js_and_rust_plugins_share_one_pipeline() {
    // rate-limit (JS, priority 5) → pii-redact (Rust) → system-prompt (JS, 30).
    let rust = plugbox_artifacts::example("pii-redact").unwrap();
    let (sp, sp_manifest) = js_example("system-prompt");
    let (rl, rl_manifest) = js_example("rate-limit");
    let (host, _d) = load(
        &[
            ("system-prompt", sp, sp_manifest),
            ("rate-limit", rl, rl_manifest),
            ("pii-redact", PathBuf::from(rust.wasm), std::fs::read_to_string(rust.manifest).unwrap()),
        ],
        &[("system-prompt", json!({"prompt": "Be brief."})), ("rate-limit", json!({"rps": 0.001, "burst": 1}))],
    )
    .await;
    let ctx = RequestContext::new("m").with_caller("carol");
    let resp = host.run_request(&ctx, request("mail bob.smith@example.org now"), capture).await.unwrap();
    let seen = text(&resp);
    assert!(seen.starts_with("system:Be brief.|user:mail "), "{seen}");
    assert!(!seen.contains("bob.smith@example.org"), "{seen}");
    let order: Vec<String> = ctx.trace().into_iter().map(|t| t.plugin).collect();
    let pre: Vec<&str> = order.iter().map(String::as_str).take(3).collect();
    assert_eq!(pre, ["rate-limit", "pii-redact", "system-prompt"], "{order:?}");
    // The JS limiter refuses carol's second request before any other plugin runs.
    let ctx = RequestContext::new("m").with_caller("carol");
    let err = host.run_request(&ctx, request("again"), capture).await.unwrap_err();
    assert!(matches!(err, RequestError::Llm(ref e) if e.kind == ErrorKind::RateLimited), "{err:?}");
}

// ------------------------------------------------------------- every hook

/// The `every-hook` fixture (every SDK hook doing something visible).
async fn every_hook() -> (Host, PluginDir) {
    let wasm = js_component("tests/fixtures-js/every-hook/plugin.js", None);
    let manifest = "name: every-hook\nversion: 0.1.0\n\
        hooks: [post-response, on-chunk, on-stream-end, on-tool-call, provider, device-probe, endpoint]\n\
        on-error: fail-closed\nlimits: { memory: 32MiB, timeout: 2s }\npermissions: { messages: write }\n";
    load(&[("every-hook", wasm, manifest.to_string())], &[]).await
}

#[tokio::test]
async fn js_provider_and_post_response() {
    let (host, _d) = every_hook().await;
    let resp = host.complete(&RequestContext::new("m"), "js-echo", &request("hi there")).await.unwrap();
    assert_eq!(text(&resp), "echo: hi there");
    let usage = &serde_json::to_value(&resp).unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 3, "{usage}");
    assert_eq!(usage["completion_tokens"], 3, "{usage}");
    assert_eq!(usage["total_tokens"], 6, "{usage}");

    // Post hook: edits the answer and a top-level field ...
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [js-post]");
    assert_eq!(serde_json::to_value(&resp).unwrap()["system_fingerprint"], "js");
    // ... and turns an error outcome into an answer.
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), failing).await.unwrap();
    assert_eq!(text(&resp), "recovered: upstream down");
}

#[tokio::test]
async fn js_provider_streams_through_the_stream_hooks() {
    use futures::StreamExt;
    let (host, _d) = every_hook().await;
    let chunks: Vec<_> = host.stream(&RequestContext::new("m"), "js-echo", request("one drop two")).collect().await;
    let text: String = chunks.iter().map(|c| delta(c.as_ref().unwrap())).collect();
    // `drop ` dropped, the rest upper-cased, the end hook's chunk appended.
    assert_eq!(text, "ONE TWO [js-end]");
    let finish = chunks.iter().filter_map(|c| c.as_ref().unwrap().choices.first()?.finish_reason.clone()).count();
    assert_eq!(finish, 1, "{chunks:?}");

    // The SDK's default stream: the whole `complete` answer, then its usage.
    let chunks: Vec<_> = host.stream(&RequestContext::new("m"), "js-echo", request("whole thing")).collect().await;
    let text: String = chunks.iter().map(|c| delta(c.as_ref().unwrap())).collect();
    assert_eq!(text, "ECHO: WHOLE THING [js-end]");
    let usage = chunks.iter().find_map(|c| serde_json::to_value(c.as_ref().unwrap()).unwrap().get("usage").cloned());
    assert_eq!(usage.as_ref().map(|u| u["total_tokens"].clone()), Some(json!(6)), "{chunks:?}");

    // A provider that refuses to start: its `LlmError` arrives whole.
    let first = host.stream(&RequestContext::new("m"), "js-echo", request("fail")).next().await.unwrap();
    match first {
        Err(RequestError::Llm(e)) => {
            assert_eq!(e.kind, ErrorKind::RateLimited);
            assert_eq!(e.retry_after_ms, Some(1500));
            assert_eq!(e.message, "slow down");
        }
        other => panic!("expected the provider's error, got {other:?}"),
    }
}

#[tokio::test]
async fn js_tool_calls_are_denied_answered_and_rewritten() {
    use plugbox_host::{ToolCall, ToolDecision};
    let (host, _d) = every_hook().await;
    let ctx = RequestContext::new("m");
    let decide = |name: &str, args: &str| host.on_tool_call(&ctx, ToolCall::function("c1", name, args));
    assert_eq!(
        decide("rm", "{}").await.unwrap(),
        ToolDecision::Denied { plugin: "every-hook".into(), reason: "no rm".into() }
    );
    assert_eq!(
        decide("now", "{}").await.unwrap(),
        ToolDecision::Answered { plugin: "every-hook".into(), result: r#"{"time":42}"#.into() }
    );
    let ToolDecision::Run(call) = decide("read_file", r#"{"path":"/etc/passwd","lines":3}"#).await.unwrap() else {
        panic!("read_file must run")
    };
    let args: serde_json::Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(args, json!({"path": "/safe/etc/passwd", "lines": 3}));
    assert_eq!(decide("ls", "{}").await.unwrap(), ToolDecision::Run(ToolCall::function("c1", "ls", "{}")));
}

#[test]
fn js_device_and_endpoint_hooks_through_call() {
    let wasm = js_component("tests/fixtures-js/every-hook/plugin.js", None);
    let dir = PluginDir::new();
    let manifest = "name: every-hook\nversion: 0.1.0\nhooks: [device-probe, on-device-probe, endpoint]\n\
        limits: { memory: 32MiB, timeout: 2s }\n";
    let p = dir.add("every-hook", wasm.to_str().unwrap(), manifest);
    let p = p.to_str().unwrap();
    let o = plugbox(&["call", p, "device-probe"], Some("{}"));
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let device = &out["result"]["Ok"][0];
    assert_eq!(device["id"], "js:0", "{out}");
    assert_eq!(device["memory_total_mb"], 24576, "{out}");
    assert_eq!(device["utilization"], 12.5, "{out}");
    assert_eq!(device["annotations"], json!([["vendor", "js"]]), "{out}");

    // The device hook gets the host's reports and annotates each.
    let reports = r#"{"reports": [{"id": "gpu:0", "kind": "Gpu", "name": "G", "online": true, "memory_total_mb": 8192,
        "memory_free_mb": 8000, "memory_used_mb": 192, "utilization": null, "temperature_c": 40.5,
        "source": "builtin:nvml", "annotations": []}]}"#;
    let o = plugbox(&["call", p, "on-device-probe"], Some(reports));
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let device = &out["result"]["Ok"][0];
    assert_eq!(device["memory_total_mb"], 8192, "{out}");
    assert_eq!(device["temperature_c"], 40.5, "{out}");
    assert_eq!(device["annotations"], json!([["seen-by", "every-hook"]]), "{out}");

    let o = plugbox(&["call", p, "endpoint"], Some(r#"{"path": "/v1/embeddings", "model": "chat-model"}"#));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(out["result"]["Err"], "`chat-model` is a chat model: `/v1/embeddings` is not served", "{out}");
    let o = plugbox(&["call", p, "endpoint"], Some(r#"{"path": "/v1/chat/completions", "model": "chat-model"}"#));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(out["result"].get("Ok").is_some(), "{out}");
}

// ------------------------------------------------------------- hostile code

fn hostile_manifest(mode: &str, in_init: bool, timeout: &str) -> String {
    format!(
        "name: hostile\nversion: 0.1.0\nhooks: [pre-request]\npriority: 5\non-error: fail-open\n\
         limits: {{ memory: 32MiB, timeout: {timeout} }}\npermissions: {{ messages: none }}\n\
         config:\n  mode: {{ type: string, default: {mode} }}\n  in_init: {{ type: boolean, default: {in_init} }}\n"
    )
}

fn hostile() -> PathBuf {
    js_component("tests/fixtures-js/hostile/plugin.js", None)
}

/// The hostile fixture plus the Rust `scripted` plugin `ok` (which appends ` [ok]`).
async fn hostile_host(manifest: String) -> (Host, PluginDir, plugbox_host::LoadReport) {
    let dir = PluginDir::new();
    dir.add("hostile", hostile().to_str().unwrap(), &manifest);
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 1, "modify", "continue"));
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    (host, dir, report)
}

async fn assert_still_serving(host: &Host) {
    let resp = host.run_request(&RequestContext::new("m"), request("still there?"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: still there? [ok]");
}

#[tokio::test]
async fn js_infinite_loop_times_out() {
    let (host, _d, report) = hostile_host(hostile_manifest("loop", false, "200ms")).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]");
    let action = action_of(&ctx, "hostile");
    assert!(action.contains("timed out"), "{action}");
    assert_still_serving(&host).await;
    assert!(host.plugin("hostile").unwrap().stats().timeouts >= 1);
}

#[tokio::test]
async fn js_memory_bomb_hits_the_cap() {
    let (host, _d, report) = hostile_host(hostile_manifest("bomb", false, "10s")).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]");
    let action = action_of(&ctx, "hostile");
    let cap = FailureKind::MemoryLimit(32 * 1024 * 1024).to_string();
    assert!(action.contains(&cap), "expected the memory cap, got `{action}`");
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn js_misbehaving_init_fails_the_load_only() {
    for mode in ["bomb", "throw"] {
        let (host, _d, report) = hostile_host(hostile_manifest(mode, true, "10s")).await;
        assert_eq!(report.loaded, ["ok"], "{mode}");
        let error = report.failed[0].to_string();
        assert!(error.contains("plugin `hostile`"), "{error}");
        if mode == "throw" {
            assert!(error.contains("hostile fixture threw on purpose"), "{error}");
        }
        assert_still_serving(&host).await;
    }
}

#[tokio::test]
async fn js_thrown_error_is_a_plugin_failure() {
    let (host, _d, report) = hostile_host(hostile_manifest("throw", false, "10s")).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]");
    assert!(action_of(&ctx, "hostile").contains("hostile fixture threw on purpose"), "{}", action_of(&ctx, "hostile"));
    assert_eq!(host.plugin("hostile").unwrap().stats().errors, 1);
}

// ------------------------------------------------------------- sandbox

fn probe() -> PathBuf {
    js_component("tests/fixtures-js/sandbox-probe/plugin.js", Some("tests/fixtures-js/sandbox-probe/world.wit"))
}

fn probe_manifest(permissions: &str, ops: &[&str]) -> String {
    let ops: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
    format!(
        "name: probe\nversion: 0.1.0\nhooks: [pre-request]\npriority: 1\non-error: fail-open\n\
         limits: {{ timeout: 5s, memory: 32MiB }}\npermissions: {permissions}\n\
         config:\n  ops: {{ type: array, default: [{}] }}\n",
        ops.join(", ")
    )
}

/// Runs the probe (next to the Rust `ok` plugin) and returns each op's outcome.
async fn probe_ops(dir: &PluginDir) -> RequestContext {
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 50, "modify", "continue"));
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]", "the other plugin must keep working");
    assert_still_serving(&host).await;
    ctx
}

fn outcome(ctx: &RequestContext, op: &str) -> String {
    ctx.get(op).unwrap_or_else(|| panic!("op `{op}` did not run: {:?}", ctx.values()))
}

#[tokio::test]
async fn js_nothing_is_granted_by_default() {
    let server = crate::sandbox::Server::start();
    let url = format!("http:http://127.0.0.1:{}/hello", server.port);
    let ops = ["preopens", "envs", "read:/etc/passwd", url.as_str(), "kv-get:x"];
    let dir = PluginDir::new();
    dir.add("probe", probe().to_str().unwrap(), &probe_manifest("{}", &ops));
    let ctx = probe_ops(&dir).await;
    assert_eq!(outcome(&ctx, "preopens"), "ok:", "no directories");
    assert_eq!(outcome(&ctx, "envs"), "ok:", "no environment");
    assert!(outcome(&ctx, "read:/etc/passwd").starts_with("err:"), "{}", outcome(&ctx, "read:/etc/passwd"));
    assert!(outcome(&ctx, &url).contains("HTTP-request-denied"), "{}", outcome(&ctx, &url));
    assert!(outcome(&ctx, "kv-get:x").contains("kv access denied"), "{}", outcome(&ctx, "kv-get:x"));
}

#[tokio::test]
async fn js_file_grant_holds_and_escapes_fail() {
    let ops = ["preopens", "read:/data/hello.txt", "read:/data/../plugin.yaml", "read:/data/link-abs"];
    let dir = PluginDir::new();
    let manifest = probe_manifest("{ filesystem: [{ host: ./data, guest: /data, access: read }] }", &ops);
    let plugin_dir = dir.add("probe", probe().to_str().unwrap(), &manifest);
    let data = plugin_dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("hello.txt"), "granted").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("link-abs")).unwrap();
    let ctx = probe_ops(&dir).await;
    assert_eq!(outcome(&ctx, "preopens"), "ok:/data");
    assert_eq!(outcome(&ctx, "read:/data/hello.txt"), "ok:granted");
    for op in ["read:/data/../plugin.yaml", "read:/data/link-abs"] {
        assert!(outcome(&ctx, op).starts_with("err:"), "{op}: {}", outcome(&ctx, op));
    }
}

#[tokio::test]
async fn js_kv_calls_with_the_grant() {
    let ops = [
        "kv-get:a",
        "kv-set:a=one",
        "kv-get:a",
        "kv-cas:a=two=three",
        "kv-cas:a=one=two",
        "kv-get:a",
        "kv-incr:n",
        "kv-incr:n",
        "kv-incr:a",
        "kv-del:a",
        "kv-del:a",
    ];
    let dir = PluginDir::new();
    dir.add("probe", probe().to_str().unwrap(), &probe_manifest("{ kv: true }", &ops));
    let ctx = probe_ops(&dir).await;
    let keys = [
        "kv-get:a",
        "kv-set:a=one",
        "kv-get:a#2",
        "kv-cas:a=two=three",
        "kv-cas:a=one=two",
        "kv-get:a#3",
        "kv-incr:n",
        "kv-incr:n#2",
        "kv-incr:a",
        "kv-del:a",
        "kv-del:a#2",
    ];
    let outcomes: Vec<String> = keys.iter().map(|k| outcome(&ctx, k)).collect();
    let expected = [
        "ok:none",
        "ok:set",
        "ok:one",
        "ok:false",
        "ok:true",
        "ok:two",
        "ok:5",
        "ok:10",
        "err:the stored value is not an integer",
        "ok:true",
        "ok:false",
    ];
    assert_eq!(outcomes, expected);
}

// ------------------------------------------------------------- hot reload

#[tokio::test]
async fn js_plugins_hot_reload() {
    let (wasm, manifest) = js_example("system-prompt");
    let versioned = |version: &str, prompt: &str| {
        manifest
            .replace("version: 0.1.0", &format!("version: {version}"))
            .replace("    required: true\n", &format!("    default: {prompt}\n"))
    };
    let dir = PluginDir::new();
    let plugin = dir.add("system-prompt", wasm.to_str().unwrap(), &versioned("0.1.0", "one"));
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), capture).await.unwrap();
    assert_eq!(text(&resp), "system:one|user:hi");

    // A new version replaces it.
    std::fs::write(plugin.join("plugin.yaml"), versioned("0.2.0", "two")).unwrap();
    let report = host.reload_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), capture).await.unwrap();
    assert_eq!(text(&resp), "system:two|user:hi");

    // A broken upgrade (its `init` refuses the config) leaves 0.2.0 serving.
    let broken = versioned("0.3.0", "three").replace("default: first", "default: middle");
    std::fs::write(plugin.join("plugin.yaml"), broken).unwrap();
    let report = host.reload_dir(dir.path()).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{:?}", report.changes);
    assert!(report.failed[0].to_string().contains("`middle`"), "{}", report.failed[0]);
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), capture).await.unwrap();
    assert_eq!(text(&resp), "system:two|user:hi");
    assert_eq!(host.plugin("system-prompt").unwrap().manifest().version.to_string(), "0.2.0");
}

// ------------------------------------------------------------- the CLI

/// Runs the `plugbox` binary (the CLI tests' runner).
use crate::cli::plugbox_stdin as plugbox;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn js_check_and_call_work() {
    let (wasm, manifest) = js_example("rate-limit");
    let dir = PluginDir::new();
    let p = dir.add("rate-limit", wasm.to_str().unwrap(), &manifest);
    let o = plugbox(&["check", p.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    for needle in ["rate-limit 0.1.0", "pre-request", "memory 32 MiB", "messages   none", "network    none"] {
        assert!(s.contains(needle), "missing `{needle}` in:\n{s}");
    }

    let input = r#"{"info": {"request_id": "r1", "model": "m", "provider": "p", "streaming": false, "caller": "dave"}, "req": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}"#;
    let config = r#"{"rps": 0.001, "burst": 1}"#;
    let o = plugbox(&["call", p.to_str().unwrap(), "pre-request", "--config", config], Some(input));
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(out["result"]["Ok"], "Continue", "{out}");
    assert_eq!(out["context"]["rate-limit.remaining"], "0", "{out}");
}

#[test]
fn js_scaffold_builds_checks_and_calls() {
    let parent = tempfile::tempdir().unwrap();
    let o = plugbox(&["new", "my-js-plugin", "--lang", "js", "--dir", parent.path().to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let project = parent.path().join("my-js-plugin");
    let build = std::fs::read_to_string(project.join("package.json")).unwrap();
    assert!(build.contains("componentize-js plugin.js"), "{build}");
    // The documented build, with the pinned componentize-js.
    let tools = crate::tools::tools();
    let output = Command::new(tools.componentize_js())
        .args(["plugin.js", "--wit", "wit", "--world-name", "plugin"])
        .args(JS_BUILD_FLAGS)
        .args(["-o", "plugin.wasm"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let o = plugbox(&["check", project.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("my-js-plugin 0.1.0"), "{}", stdout(&o));
    let input = r#"{"req": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}"#;
    let o = plugbox(&["call", project.to_str().unwrap(), "pre-request"], Some(input));
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(out["result"]["Ok"], "Continue", "{out}");
    let messages = &out["edited"]["messages"];
    assert_eq!(messages[0]["role"], "system", "{out}");
    assert_eq!(messages[1]["content"], "hi", "{out}");
}
