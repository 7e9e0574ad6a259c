//! Python plugins (componentize-py, `plugin-sdk/python`) through the same
//! pipeline as the Rust ones: the ported examples give the same outputs as
//! their Rust versions for the same inputs, the sandbox holds for Python
//! (timeouts, memory limit, no files, env or network unless granted), and
//! `plugbox new --lang python` scaffolds a plugin that builds with the
//! documented command and works with `plugbox check` and `plugbox call`.
//!
//! The plugins are built here with the pinned componentize-py
//! (`tools::tools()`); each build is cached under the target directory, keyed
//! by a hash of everything that goes into it, so reruns are quick.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugbox_host::{ModelSet, Policy, RequestContext, ToolCall};
use serde_json::json;

use crate::devices::{annotation, example_manifest, example_wasm, load, options};
use crate::interfaces::{Behaviour, ModelServer};
use crate::*;

fn root() -> &'static Path {
    Path::new(plugbox_artifacts::REPO_ROOT)
}

/// The arguments of the one build command of a Python plugin (run in the
/// plugin's directory), given where plugbox's `wit/` and `plugin-sdk/python` are.
pub fn componentize_args(wit: &Path, sdk: &Path, out: &Path) -> Vec<String> {
    [
        "-d",
        &wit.display().to_string(),
        "-d",
        &sdk.join("wit").display().to_string(),
        "-w",
        "plugbox:python/plugin",
        "--import-interface-name",
        "plugbox:plugin/types@0.2.0=types",
        "componentize",
        "app",
        "-p",
        ".",
        "-p",
        &sdk.display().to_string(),
        "-o",
        &out.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every file under `dir` (sorted, `__pycache__` skipped) into `h`.
fn hash_tree(dir: &Path, h: &mut DefaultHasher) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.file_name().is_some_and(|n| n == "__pycache__") {
            continue;
        }
        if p.is_dir() {
            hash_tree(&p, h);
        } else {
            p.file_name().hash(h);
            std::fs::read(&p).unwrap().hash(h);
        }
    }
}

/// Builds the Python plugin in `dir` (its `app.py` and modules) with
/// componentize-py and returns the component's path; cached by input hash.
pub fn build_python(dir: &Path) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let tools = tools::tools();
    let sdk = root().join("plugin-sdk/python");
    let wit = root().join("wit");
    let mut h = DefaultHasher::new();
    for d in [dir, &sdk, &wit] {
        hash_tree(d, &mut h);
    }
    std::fs::read(tools.dir.join("installed")).unwrap_or_default().hash(&mut h);
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-plugins");
    std::fs::create_dir_all(&cache).unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let out = cache.join(format!("{name}-{:016x}.wasm", h.finish()));
    // One build at a time: componentize-py is heavy and the cores are few.
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if out.exists() {
        return out;
    }
    let tmp = out.with_extension("wasm.part");
    let o = Command::new(tools.componentize_py())
        .args(componentize_args(&wit, &sdk, &tmp))
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tools.componentize_py().display()));
    assert!(
        o.status.success(),
        "componentize-py failed for {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// The Python port of example `name` (`example-plugins/python/<name>`):
/// its component and manifest.
fn py_example(name: &str) -> (String, String) {
    let dir = root().join("example-plugins/python").join(name);
    let wasm = build_python(&dir);
    (wasm.display().to_string(), std::fs::read_to_string(dir.join("plugin.yaml")).unwrap())
}

/// A host running one plugin.
async fn one(b: plugbox_host::HostBuilder, name: &str, wasm: &str, manifest: String) -> (Host, PluginDir) {
    load(b, &[(name, wasm, manifest)]).await
}

/// A provider that reports every message it received.
async fn capture(req: Arc<ChatRequest>) -> plugbox_host::Outcome {
    let all: Vec<String> = req.messages.iter().map(|m| serde_json::to_string(m).unwrap()).collect();
    Ok(response(&all.join("\n")))
}

/// What pii-redact does to a request, a response and a stream, on `host`.
async fn pii_run(host: &Host) -> Vec<String> {
    let mut seen = Vec::new();
    let prompts = [
        "mail bob.smith@example.org or call +1 (415) 555-0100 now",
        "card 4111 1111 1111 1111, thanks",
        "Grüße an jörg@exämple.de oder +49 30 1234567 ✓",
        "on 2024-01-15 at 10:30, host 192.168.100.200, pi is 3.14159265",
        "no personal data here",
    ];
    for prompt in prompts {
        let ctx = RequestContext::new("m");
        let resp = host.run_request(&ctx, request(prompt), capture).await.unwrap();
        seen.push(text(&resp));
        seen.push(format!("count={:?} trace={:?}", ctx.get("pii-redact.count"), ctx.trace()[0].action));
    }
    // An assistant message with tool-call arguments to mask.
    let mut req = request("pay it");
    req.messages.insert(
        0,
        serde_json::from_value(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "pay", "arguments": "{\"card\":\"4111 1111 1111 1111\"}"}}
        ]}))
        .unwrap(),
    );
    let ctx = RequestContext::new("m");
    seen.push(text(&host.run_request(&ctx, req, capture).await.unwrap()));
    seen.push(format!("{:?}", ctx.get("pii-redact.count")));
    // Responses.
    let ctx = RequestContext::new("m");
    let resp = host
        .run_request(&ctx, request("hello"), |_| async { Ok(response("write to admin@corp.example or 555-123-4567")) })
        .await
        .unwrap();
    seen.push(text(&resp));
    seen.push(format!("{:?}", ctx.get("pii-redact.count")));
    // A stream with a card and an address split across chunks.
    let ctx = RequestContext::new("m");
    let mut out = Vec::new();
    for piece in
        ["Your card", " is 4111", " 1111 11", "11 1111", ", and mail", " bob@exa", "mple.com", " ok, call +1 555"]
    {
        out.extend(host.on_chunk(&ctx, chunk(piece)).await.unwrap());
    }
    out.extend(host.on_stream_end(&ctx, None).await.unwrap());
    seen.push(out.iter().map(delta).collect::<Vec<_>>().join("|"));
    seen.push(format!("{:?}", ctx.get("pii-redact.count")));
    seen
}

#[tokio::test]
async fn pii_redact_in_python_does_what_the_rust_one_does() {
    let (py_wasm, py_manifest) = py_example("pii-redact");
    let rust_manifest = example_manifest("pii-redact").replace("timeout: 50ms", "timeout: 2s");
    let (rust, _a) = one(builder(), "pii-redact", example_wasm("pii-redact"), rust_manifest).await;
    let (py, _b) = one(builder(), "pii-redact", &py_wasm, py_manifest.replace("timeout: 200ms", "timeout: 2s")).await;
    let expected = pii_run(&rust).await;
    let got = pii_run(&py).await;
    assert_eq!(got, expected);
    // And they do their job (not merely the same thing).
    assert!(expected[0].contains("mail [EMAIL] or call [PHONE] now"), "{expected:?}");
    assert!(expected.contains(&"Your card| is [CARD], and mail| [EMAIL] ok, call +1 555".to_string()), "{expected:?}");
    assert_eq!(py.plugin("pii-redact").unwrap().stats().errors, 0);

    // Without `messages: write` both fail closed the same way.
    let read_only = |m: &str| m.replace("messages: write", "messages: read");
    let (rust, _c) =
        one(builder(), "pii-redact", example_wasm("pii-redact"), read_only(&example_manifest("pii-redact"))).await;
    let (py, _d) = one(builder(), "pii-redact", &py_wasm, read_only(&py_manifest)).await;
    for host in [&rust, &py] {
        let err = host.run_request(&RequestContext::new("m"), request("bob@example.com"), capture).await.unwrap_err();
        assert!(err.to_string().contains("pii-redact"), "{err}");
        assert!(err.to_string().contains("needs `messages: write`"), "{err}");
    }
}

#[tokio::test]
async fn sysfs_gpu_in_python_reports_what_the_rust_one_reports() {
    let sysfs = root().join("tests/fixtures-data/sysfs");
    let grant = |m: String| m.replace("host: /sys,", &format!("host: {},", sysfs.display()));
    let (py_wasm, py_manifest) = py_example("sysfs-gpu");
    let mut snapshots = Vec::new();
    for (wasm, manifest) in
        [(example_wasm("sysfs-gpu"), example_manifest("sysfs-gpu")), (&py_wasm, py_manifest.clone())]
    {
        let policy = Policy { filesystem_roots: vec![sysfs.clone()], ..Policy::default() };
        let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let b = builder().policy(policy).devices(options(&[], &counted));
        let (host, _d) = one(b, "sysfs-gpu", wasm, grant(manifest)).await;
        let s = host.probe_devices().await;
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        snapshots.push((s.adjusted.clone(), s.hooks[0].action.clone()));
    }
    assert_eq!(snapshots[1], snapshots[0]);
    let (reports, action) = &snapshots[1];
    assert_eq!(action, "reported 4");
    let card1 = reports.iter().find(|d| d.id == "sysfs:card1").unwrap();
    assert_eq!((card1.memory_total_mb, card1.memory_used_mb, card1.memory_free_mb), (16368, 2048, 14320));
    assert!(card1.online && card1.source == "plugin:sysfs-gpu");
    let card9 = reports.iter().find(|d| d.id == "sysfs:card9").unwrap();
    assert!(!card9.online, "followed a symlink out of the grant: {card9:?}");
    assert!(annotation(card9, "error").unwrap().starts_with("cannot read `/sys/class/drm/card9/device/"), "{card9:?}");

    // Without the grant (the default policy refuses /sys): nothing, and the same reason.
    let mut problems = Vec::new();
    for (wasm, manifest) in [(example_wasm("sysfs-gpu"), example_manifest("sysfs-gpu")), (&py_wasm, py_manifest)] {
        let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (host, _d) = one(builder().devices(options(&[], &counted)), "sysfs-gpu", wasm, manifest).await;
        let s = host.probe_devices().await;
        assert!(s.adjusted.is_empty());
        problems.push(s.problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>());
    }
    assert_eq!(problems[1], problems[0]);
    assert!(problems[1][0].contains("cannot read `/sys/class/drm`"), "{problems:?}");
}

fn models(url: &str) -> ModelSet {
    let src = format!("models:\n  qwen2.5-7b:\n    aliases: [qwen]\n    mode: chat\n    base-url: {url}\n");
    ModelSet::from_str(&src, Path::new("models.yaml")).unwrap()
}

/// What chat-mode answers for validation and health checks, on `host`.
async fn chat_run(host: &Host, up: &str, down: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let interfaces = host.interfaces().await;
    seen.push(format!("{} {:?}", interfaces[0].mode, interfaces[0].endpoints));
    let set = models(up);
    for path in ["/v1/chat/completions", "/v1/completions?x=1", "v1/chat/completions/", "/v1/embeddings", "/v1/audio"] {
        let v = host.validate_request(&set, path, "qwen").await.unwrap();
        seen.push(format!("{path}: {} {:?}", v.accepted, v.reason));
    }
    let second = Duration::from_secs(1);
    for (url, elapsed, timeout) in [
        (up, second, Duration::from_secs(300)),
        (down, Duration::from_millis(1500), Duration::from_secs(300)),
        (down, Duration::from_secs(300), Duration::from_secs(300)),
    ] {
        let h = host.check_model_health(&models(url), "qwen", elapsed, timeout).await.unwrap();
        seen.push(format!("{} {}", h.healthy, h.message));
    }
    seen
}

#[tokio::test]
async fn chat_mode_in_python_validates_and_checks_health_like_the_rust_one() {
    let (py_wasm, py_manifest) = py_example("chat-mode");
    let up = ModelServer::start(Behaviour::Healthy);
    let down = ModelServer::start(Behaviour::Status(503));
    let fast = json!({"check_timeout_ms": 300});
    let b = || builder().plugin_config("chat-mode", fast.as_object().unwrap().clone());
    let (rust, _a) = one(b(), "chat-mode", example_wasm("chat-mode"), example_manifest("chat-mode")).await;
    let (py, _b) = one(b(), "chat-mode", &py_wasm, py_manifest.clone()).await;
    let expected = chat_run(&rust, &up.url(), &down.url()).await;
    let got = chat_run(&py, &up.url(), &down.url()).await;
    assert_eq!(got, expected);
    assert!(got[6].starts_with("true model `qwen2.5-7b` is up at http://127.0.0.1:"), "{got:?}");
    assert!(got[8].contains("did not become healthy within 300s"), "{got:?}");
    // Both plugins reached the server (twice each: up, and down twice).
    assert_eq!(up.hits().len(), 2, "{:?}", up.hits());

    // Without a network grant the Python plugin cannot reach the server.
    let ungranted = py_manifest.replace("network: [127.0.0.1, localhost]", "network: []");
    let (py, _c) = one(b(), "chat-mode", &py_wasm, ungranted).await;
    let h = host_health(&py, &up.url()).await;
    assert!(!h.healthy);
    assert!(h.message.contains("network access to `127.0.0.1:") && h.message.contains("is not granted"), "{h:?}");
    assert_eq!(up.hits().len(), 2, "an ungranted request reached the server");
}

async fn host_health(host: &Host, url: &str) -> plugbox_host::Health {
    host.check_model_health(&models(url), "qwen", Duration::from_secs(1), Duration::from_secs(300)).await.unwrap()
}

/// The adversarial fixture's manifest with config `attack`.
fn hostile(attack: &str, limits: &str, extra: &str) -> String {
    format!(
        "name: hostile\nversion: 0.1.0\napi: \"^0.2\"\nhooks: [pre-request]\non-error: fail-open\n\
         limits: {{ {limits} }}\npermissions: {{ messages: read{extra} }}\n\
         config:\n  attack: {{ type: string, default: {attack} }}\n  url: {{ type: string, default: \"\" }}\n"
    )
}

fn hostile_wasm() -> String {
    build_python(&root().join("tests/fixtures-py/hostile")).display().to_string()
}

/// The `hostile` failure recorded in the trace of `ctx`.
fn failure(ctx: &RequestContext) -> String {
    ctx.trace().into_iter().find(|t| t.plugin == "hostile").map(|t| t.action).unwrap_or_default()
}

#[tokio::test]
async fn a_python_infinite_loop_times_out_and_the_request_goes_on() {
    let wasm = hostile_wasm();
    let (host, _d) = one(builder(), "hostile", &wasm, hostile("loop", "memory: 64MiB, timeout: 200ms", "")).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi");
    assert!(failure(&ctx).contains("timed out"), "{:?}", ctx.trace());
    assert_eq!(host.plugin("hostile").unwrap().stats().timeouts, 1);
    // The plugin still answers the next request (with a fresh instance).
    let resp = host.run_request(&RequestContext::new("m"), request("again"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: again");
}

#[tokio::test]
async fn a_python_memory_bomb_stops_at_the_memory_limit() {
    let wasm = hostile_wasm();
    let (host, _d) = one(builder(), "hostile", &wasm, hostile("memory", "memory: 64MiB, timeout: 5s", "")).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi");
    let action = failure(&ctx);
    assert!(action.starts_with("failed-open:"), "{:?}", ctx.trace());
    assert!(action.contains("exceeded its memory limit of 67108864 bytes"), "{action}");
}

#[tokio::test]
async fn a_python_plugin_gets_no_files_env_or_network_unless_granted() {
    let server = ModelServer::start(Behaviour::Healthy);
    let wasm = hostile_wasm();
    let manifest = hostile("probe", "memory: 64MiB, timeout: 5s", "")
        .replace("default: \"\"", &format!("default: \"{}\"", server.url()));
    let (host, _d) = one(builder(), "hostile", &wasm, manifest).await;
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, request("hi"), echo).await.unwrap();
    let probe = |what: &str| ctx.get(&format!("probe:{what}")).unwrap_or_else(|| panic!("no probe:{what}"));
    for what in ["read-passwd", "read-relative", "list-root", "socket", "http"] {
        assert!(probe(what).starts_with("denied: "), "{what}: {}", probe(what));
    }
    assert_eq!(probe("env"), "ok: None");
    assert!(probe("http").contains("is not granted to this plugin"), "{}", probe("http"));
    assert!(server.hits().is_empty(), "a request reached the server: {:?}", server.hits());
    assert!(failure(&ctx) == "continue", "{:?}", ctx.trace());

    // Granted the server's host:port, the same plugin reaches it (and only that).
    let authority = server.url().trim_start_matches("http://").to_string();
    let manifest = hostile("probe", "memory: 64MiB, timeout: 5s", &format!(", network: [\"{authority}\"]"))
        .replace("default: \"\"", &format!("default: \"{}\"", server.url()));
    let (host, _e) = one(builder(), "hostile", &wasm, manifest).await;
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(ctx.get("probe:http").as_deref(), Some("ok: 200"));
    assert_eq!(server.hits(), ["GET /v1/models"]);
    assert!(probe_of(&ctx, "read-passwd").starts_with("denied: "));
}

fn probe_of(ctx: &RequestContext, what: &str) -> String {
    ctx.get(&format!("probe:{what}")).unwrap_or_default()
}

#[tokio::test]
async fn python_and_rust_plugins_run_in_one_pipeline() {
    // pii-redact in Python and system-prompt in Rust, on one request.
    let (py_wasm, py_manifest) = py_example("pii-redact");
    let sp = plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == "system-prompt").unwrap();
    let b =
        builder().plugin_config("system-prompt", json!({"prompt": "Reply to a@b.io."}).as_object().unwrap().clone());
    let (host, _d) = load(
        b,
        &[
            ("system-prompt", sp.wasm, std::fs::read_to_string(sp.manifest).unwrap()),
            ("pii-redact", &py_wasm, py_manifest.replace("timeout: 200ms", "timeout: 2s")),
        ],
    )
    .await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("I am bob@example.com"), capture).await.unwrap();
    let seen = text(&resp);
    assert!(seen.contains("Reply to [EMAIL].") && seen.contains("I am [EMAIL]"), "{seen}");
    let mut ran: Vec<String> = ctx.trace().into_iter().map(|t| t.plugin).collect();
    ran.sort();
    ran.dedup();
    assert_eq!(ran, ["pii-redact", "system-prompt"]);
    // Tool calls are left to the plugins that hook them: none here.
    let decision = host.on_tool_call(&ctx, ToolCall::function("c1", "f", "{}")).await.unwrap();
    assert!(matches!(decision, plugbox_host::ToolDecision::Run(_)), "{decision:?}");
}

/// Runs the `plugbox` binary (the CLI tests' runner).
use crate::cli::plugbox_stdin as plugbox;

#[test]
fn plugbox_new_python_builds_with_the_printed_command_and_checks_and_calls() {
    let parent = tempfile::tempdir().unwrap();
    let o = plugbox(&["new", "long-guard", "--lang", "python", "--dir", &parent.path().display().to_string()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    let dir = parent.path().join("long-guard");
    // The build command `plugbox new` prints, run as printed (with the pinned componentize-py).
    let command = printed.lines().map(str::trim).find(|l| l.starts_with("componentize-py ")).expect(&printed);
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let build = Command::new(tools::tools().componentize_py()).args(&args).current_dir(&dir).output().unwrap();
    assert!(build.status.success(), "`{command}` failed:\n{}", String::from_utf8_lossy(&build.stderr));
    assert!(dir.join("plugin.wasm").exists());

    let d = dir.display().to_string();
    let check = plugbox(&["check", &d], None);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("long-guard 0.1.0") && report.contains("pre-request"), "{report}");
    assert!(report.contains("memory 64 MiB"), "{report}");

    // `plugbox call` with the sample input, then with a prompt over the limit.
    let sample = plugbox(&["call", &d, "pre-request", "--sample"], None);
    assert!(sample.status.success(), "{}", String::from_utf8_lossy(&sample.stderr));
    let sample = String::from_utf8_lossy(&sample.stdout).to_string();
    let o = plugbox(&["call", &d, "pre-request"], Some(&sample));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"]["Ok"], "Continue", "{v}");
    assert_eq!(v["context"]["long-guard.prompt_chars"], "26", "{v}");
    let o = plugbox(&["call", &d, "pre-request", "--config", r#"{"max_chars": 10}"#], Some(&sample));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fail = v["result"]["Ok"]["Fail"].to_string();
    assert!(fail.contains("the prompt is too long: 26 characters, at most 10 allowed"), "{v}");

    // A bad config refuses the load with the plugin's own message.
    let o = plugbox(&["call", &d, "pre-request", "--config", r#"{"max_chars": 0}"#], Some(&sample));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("config `max_chars` must be positive, got `0`"), "{o:?}");
}

#[tokio::test]
async fn python_plugins_hot_reload_and_a_broken_upgrade_keeps_the_old_version() {
    let (py_wasm, py_manifest) = py_example("pii-redact");
    let manifest = py_manifest.replace("timeout: 200ms", "timeout: 2s");
    let dir = PluginDir::new();
    let d = dir.add("pii-redact", &py_wasm, &manifest);
    let host = builder().build().unwrap();
    assert!(host.load_dir(dir.path()).await.unwrap().failed.is_empty());
    let masked = |host: Host| async move {
        let resp = host.run_request(&RequestContext::new("m"), request("mail bob@example.com"), capture).await.unwrap();
        text(&resp)
    };
    assert!(masked(host.clone()).await.contains("mail [EMAIL]"));

    // A new version with another mask: reloaded, and the new instances use it.
    let v2 =
        manifest.replace("version: 0.1.0", "version: 0.2.0").replace("default: \"[EMAIL]\"", "default: \"<mail>\"");
    std::fs::write(d.join("plugin.yaml"), &v2).unwrap();
    let report = host.reload_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(matches!(report.changes[0].1, plugbox_host::ReloadOutcome::Reloaded { .. }), "{:?}", report.changes);
    assert!(masked(host.clone()).await.contains("mail <mail>"));

    // An upgrade whose Python init raises is refused; 0.2.0 keeps serving.
    let (sysfs_wasm, _) = py_example("sysfs-gpu");
    std::fs::copy(&sysfs_wasm, d.join("plugin.wasm")).unwrap();
    let v3 = v2.replace("version: 0.2.0", "version: 0.3.0")
        + "  root:\n    type: string\n    default: relative/path\n    description: a bad root\n";
    std::fs::write(d.join("plugin.yaml"), v3).unwrap();
    let report = host.reload_dir(dir.path()).await.unwrap();
    let failed = report.failed.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n");
    assert!(failed.contains("config `root` must be an absolute guest path, got `relative/path`"), "{failed}");
    assert_eq!(host.plugin("pii-redact").unwrap().manifest().version.to_string(), "0.2.0");
    assert!(masked(host.clone()).await.contains("mail <mail>"));
}

#[tokio::test]
async fn system_prompt_in_python_inserts_what_the_rust_one_inserts() {
    let (py_wasm, py_manifest) = py_example("system-prompt");
    let mut results = Vec::new();
    for (wasm, manifest) in
        [(example_wasm("system-prompt"), example_manifest("system-prompt")), (py_wasm.as_str(), py_manifest)]
    {
        let mut seen = Vec::new();
        for position in ["first", "after-system", "last"] {
            let config = json!({"prompt": "Be brief.", "position": position});
            let b = builder().plugin_config("system-prompt", config.as_object().unwrap().clone());
            let manifest = manifest.replace("timeout: 20ms", "timeout: 2s");
            let (host, _d) = one(b, "system-prompt", wasm, manifest).await;
            let mut with_own = request("hi");
            with_own.messages.insert(0, ChatMessage::system("Own rules."));
            let mut already = request("hi");
            already.messages.insert(0, ChatMessage::system("Be brief."));
            for req in [request("hi"), with_own, already] {
                seen.push(text(&host.run_request(&RequestContext::new("m"), req, capture).await.unwrap()));
            }
        }
        // A bad position refuses the load with the plugin's own message.
        let config = json!({"prompt": "x", "position": "middle"});
        let b = builder().plugin_config("system-prompt", config.as_object().unwrap().clone());
        let dir = PluginDir::new();
        dir.add("system-prompt", wasm, &manifest);
        let report = b.build().unwrap().load_dir(dir.path()).await.unwrap();
        seen.push(report.failed[0].to_string().rsplit(": ").next().unwrap().to_string());
        results.push(seen);
    }
    assert_eq!(results[1], results[0]);
    assert!(results[0][0].starts_with(r#"{"role":"system","content":"Be brief."}"#), "{:?}", results[0]);
    assert_eq!(results[0].last().unwrap(), "config `position` must be `first`, `after-system` or `last`, got `middle`");
}

#[tokio::test]
async fn every_hook_kind_works_from_python() {
    use futures::StreamExt;
    let wasm = build_python(&root().join("tests/fixtures-py/all-hooks")).display().to_string();
    let manifest = |name: &str, hooks: &str, extra: &str| {
        format!(
            "name: {name}\nversion: 0.1.0\napi: \"^0.2\"\nhooks: [{hooks}]\non-error: fail-closed\n\
             limits: {{ memory: 64MiB, timeout: 2s }}\npermissions: {{ messages: write{extra} }}\n"
        )
    };
    let (host, _d) = load(
        builder(),
        &[
            ("py-provider", &wasm, manifest("py-provider", "provider", "")),
            (
                "py-hooks",
                &wasm,
                manifest("py-hooks", "post-response, on-chunk, on-stream-end, on-tool-call", ", kv: true"),
            ),
        ],
    )
    .await;

    // Provider: complete, a deliberate error, and a stream through the stream hooks.
    let ctx = RequestContext::new("m");
    let resp = host.complete(&ctx, "py-echo", &request("one two three")).await.unwrap();
    assert_eq!(text(&resp), "one two three");
    assert_eq!(resp.usage().unwrap().completion_tokens, 3);
    match host.complete(&ctx, "py-echo", &request("fail")).await {
        Err(plugbox_host::RequestError::Llm(e)) => {
            assert_eq!(
                (e.kind, e.message.as_str(), e.retry_after_ms),
                (plugbox_host::ErrorKind::RateLimited, "slow down", Some(1500))
            )
        }
        other => panic!("expected a rate-limited error, got {other:?}"),
    }
    let chunks: Vec<_> = host.stream(&ctx, "py-echo", request("one two three")).collect().await;
    let chunks: Vec<_> = chunks.into_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(chunks.iter().map(delta).collect::<String>(), "ONE TWO THREE [end]");

    // Post-response: the kv store counts, a field is set, an answer replaces the outcome.
    for n in 1..=2 {
        let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
        assert_eq!(serde_json::to_value(&resp).unwrap()["system_fingerprint"], format!("calls={n}"));
    }
    let resp = host.run_request(&RequestContext::new("m"), request("x"), |_| async { Ok(response("recover")) }).await;
    assert_eq!(text(&resp.unwrap()), "recovered by python");

    // Tool calls: denied, answered, edited.
    let decide = |call: ToolCall| {
        let host = host.clone();
        async move { host.on_tool_call(&RequestContext::new("m"), call).await.unwrap() }
    };
    match decide(ToolCall::function("c1", "rm", "{}")).await {
        plugbox_host::ToolDecision::Denied { plugin, reason } => {
            assert_eq!((plugin.as_str(), reason.as_str()), ("py-hooks", "no rm"))
        }
        other => panic!("{other:?}"),
    }
    match decide(ToolCall::function("c2", "clock", "{}")).await {
        plugbox_host::ToolDecision::Answered { result, .. } => assert_eq!(result, r#"{"time": "noon"}"#),
        other => panic!("{other:?}"),
    }
    match decide(ToolCall::function("c3", "search", r#"{"q":"rust"}"#)).await {
        plugbox_host::ToolDecision::Run(call) => {
            assert_eq!(call, ToolCall::function("c3", "web_search", r#"{"q": "rust", "safe": true}"#))
        }
        other => panic!("{other:?}"),
    }
}
