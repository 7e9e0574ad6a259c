//! `plugbox demo`: the example plugins at work on a few requests, with the
//! echo provider plugin answering (no network, no API key).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, stream};
use plugbox_host::{
    ChatChunk, ChatMessage, ChatRequest, Host, HostBuilder, PluginEvent, PluginEventKind, RequestContext, RequestError,
    Role,
};
use serde_json::json;

/// Lays out the bundled example plugins in the three forms the loader accepts.
#[cfg(feature = "demo-plugins")]
fn bundled_plugins(dir: &Path) -> Result<()> {
    for a in plugbox_artifacts::EXAMPLES {
        let wasm_name = format!("{}.wasm", a.name);
        match a.name {
            // A lone .wasm: its manifest is embedded by the SDK.
            "hello-world" => {
                std::fs::copy(a.wasm, dir.join(&wasm_name))?;
            }
            // A .wasm with a .yaml beside it.
            "logging" => {
                std::fs::copy(a.wasm, dir.join(&wasm_name))?;
                std::fs::copy(a.manifest, dir.join(format!("{}.yaml", a.name)))?;
            }
            // A directory with plugin.yaml.
            _ => {
                let d = dir.join(a.name);
                std::fs::create_dir_all(&d)?;
                std::fs::copy(a.wasm, d.join(&wasm_name))?;
                std::fs::copy(a.manifest, d.join("plugin.yaml"))?;
            }
        }
    }
    Ok(())
}

#[cfg(not(feature = "demo-plugins"))]
fn bundled_plugins(_dir: &Path) -> Result<()> {
    bail!("this binary was built without the example plugins: run `cargo demo`, or pass --plugins DIR")
}

/// The bundled example plugins laid out in a new temporary directory
/// (`plugbox serve --examples`); it is removed when dropped.
pub fn bundled_plugins_dir() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("plugbox-examples-").tempdir()?;
    bundled_plugins(dir.path())?;
    Ok(dir)
}

/// A plugin that traps on every call, dropped in to show fail-open isolation.
#[cfg(feature = "demo-plugins")]
fn flaky_plugin(dir: &Path) -> Result<PathBuf> {
    let d = dir.join("flaky");
    std::fs::create_dir_all(&d)?;
    std::fs::copy(plugbox_artifacts::SCRIPTED, d.join("scripted.wasm"))?;
    std::fs::write(d.join("plugin.yaml"), flaky_manifest("0.0.1", "trap", "none"))?;
    Ok(d)
}

fn flaky_manifest(version: &str, pre: &str, messages: &str) -> String {
    format!(
        "name: flaky\nversion: {version}\ndescription: a buggy plugin that panics in pre-request\n\
         hooks: [pre-request, post-response]\npriority: 25\non-error: fail-open\n\
         permissions: {{ messages: {messages} }}\n\
         config:\n  tag: {{ type: string, default: flaky }}\n  pre: {{ type: string, default: {pre} }}\n  post: {{ type: string, default: continue }}\n"
    )
}

/// Waits (up to 30 s) for an event about `plugin` that `pred` accepts, printing events meanwhile.
async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<PluginEvent>,
    plugin: &str,
    pred: impl Fn(&PluginEventKind) -> bool,
) -> Result<()> {
    let wait = async {
        loop {
            let e = events.recv().await?;
            println!("    event: {e}");
            if e.plugin == plugin && pred(&e.kind) {
                return Ok::<_, anyhow::Error>(());
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), wait).await.context("no plugin event within 30 s")?
}

#[cfg(not(feature = "demo-plugins"))]
fn flaky_plugin(_dir: &Path) -> Result<PathBuf> {
    bail!("built without the example plugins")
}

fn request(text: &str) -> ChatRequest {
    ChatRequest { model: "demo-model".into(), messages: vec![ChatMessage::user(text)], ..Default::default() }
}

async fn send(host: &Host, caller: &str, text: &str) -> Result<()> {
    let ctx = RequestContext::new("demo-model").with_caller(caller).with_provider("echo");
    println!("> {caller}: {text:?}");
    let result = host
        .run_request(&ctx, request(text), |req| {
            let host = host.clone();
            let ctx = ctx.clone();
            async move {
                let system: Vec<String> = req
                    .messages
                    .iter()
                    .filter(|m| m.role == Role::System)
                    .filter_map(|m| m.text().map(|t| t.into_owned()))
                    .collect();
                if !system.is_empty() {
                    println!("    provider `echo` got system prompt {:?}", system.join(" "));
                }
                println!(
                    "    provider `echo` got user text {:?}",
                    req.messages.last().and_then(|m| m.text()).unwrap_or_default()
                );
                match host.complete(&ctx, "echo", &req).await {
                    Ok(r) => Ok(r),
                    Err(RequestError::Llm(e)) => Err(e),
                    Err(other) => Err(plugbox_host::LlmError {
                        kind: plugbox_host::ErrorKind::Provider,
                        message: other.to_string(),
                        allow_fallback: true,
                        retry_after_ms: None,
                    }),
                }
            }
        })
        .await;
    for t in ctx.trace() {
        println!("    {:<15} {:<14} {:<40} {:>6} us", t.plugin, t.hook, t.action, t.micros);
    }
    match result {
        Ok(resp) => {
            let text = resp.first_text().unwrap_or_default();
            let cached = resp.extra.values().any(|v| v.to_string().contains("hit"));
            println!("  < {text:?}{}", if cached { "   (served from response-cache)" } else { "" });
        }
        Err(e) => println!("  < error: {e}"),
    }
    println!();
    Ok(())
}

/// Prints each chunk of `chunks` as it arrives, with the time since `started`.
async fn print_stream(mut chunks: plugbox_host::ChunkStream, started: std::time::Instant) {
    while let Some(chunk) = chunks.next().await {
        let at = started.elapsed().as_micros();
        match chunk {
            Ok(c) => match (c.text_delta(), c.usage()) {
                (Some(t), _) => println!("    {at:>7} us  chunk {t:?}"),
                (None, Some(u)) => {
                    println!("    {at:>7} us  usage {} + {} tokens", u.prompt_tokens, u.completion_tokens)
                }
                (None, None) => {}
            },
            Err(e) => println!("    {at:>7} us  error: {e}"),
        }
    }
}

/// Streams: the echo provider's stream pulled chunk by chunk through the
/// `on-chunk` hooks, then an upstream's chunks (made up here) through the
/// same hooks, where pii-redact holds a card number split across chunks.
async fn streams(host: &Host) {
    let ctx = RequestContext::new("demo-model").with_caller("dave").with_provider("echo").with_streaming(true);
    let req = request("Streams arrive one word at a time.").with_stream(true).with_include_usage(true);
    println!("    the echo provider, pulled as the chunks are taken:");
    print_stream(host.stream(&ctx, "echo", req), std::time::Instant::now()).await;
    let upstream = ["Your card 4111 1111", " 1111 1111", " is on file."].map(|t| Ok(ChatChunk::text(t)));
    let ctx = RequestContext::new("demo-model").with_caller("dave").with_streaming(true);
    println!("    an upstream's three chunks; pii-redact holds the split card number until it is whole:");
    print_stream(host.filter_stream(&ctx, stream::iter(upstream)), std::time::Instant::now()).await;
    for t in ctx.trace().iter().filter(|t| t.plugin == "pii-redact") {
        println!("    {:<15} {:<14} {:<40} {:>6} us", t.plugin, t.hook, t.action, t.micros);
    }
    println!();
}

pub async fn run(builder: HostBuilder, plugins: Option<&Path>) -> Result<ExitCode> {
    let scratch = std::env::temp_dir().join(format!("plugbox-demo-{}", std::process::id()));
    let dir = match plugins {
        Some(p) => p.to_path_buf(),
        None => {
            let _ = std::fs::remove_dir_all(&scratch);
            // Plugins and their data directories apart: a data root inside a plugin root is refused.
            let plugins = scratch.join("plugins");
            std::fs::create_dir_all(&plugins)?;
            bundled_plugins(&plugins)?;
            plugins
        }
    };
    let obj = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let host = builder
        .plugin_config("system-prompt", obj(json!({ "prompt": "You are a concise assistant." })))
        .plugin_config("rate-limit", obj(json!({ "rps": 0.2, "burst": 3 })))
        .plugin_config("memory-reserve", obj(json!({ "kinds": "memory", "headroom_mb": 2048 })))
        .data_root(scratch.join("data"))
        .build()?;

    println!("plugbox demo: loading plugins from {}\n", dir.display());
    let report = host.load_dir(&dir).await.context("loading plugins")?;
    for p in host.plugins() {
        let hooks: Vec<&str> = p.manifest().hooks.iter().map(|h| h.as_str()).collect();
        println!(
            "  loaded {:<15} v{:<6} {:<10} priority {:>4}  {:<28} {:>6.1} ms ({:?})",
            p.name(),
            p.manifest().version.to_string(),
            format!("{:?}", p.source().form),
            p.manifest().priority,
            hooks.join(","),
            p.load_time().as_secs_f64() * 1000.0,
            p.compile_source()
        );
    }
    for f in &report.failed {
        println!("  FAILED {f}");
    }
    if host.provider("echo").is_none() {
        bail!("the echo provider plugin is not loaded");
    }
    println!();

    println!("1. personal data is redacted before the provider sees it; a system prompt is added");
    send(&host, "alice", "Hi! Mail me at alice@example.com or call +1 415 555 0100.").await?;
    println!("2. the same request again is answered by response-cache (the provider is not called)");
    send(&host, "alice", "Hi! Mail me at alice@example.com or call +1 415 555 0100.").await?;
    println!("3. bob sends 4 requests at once; rate-limit allows a burst of 3");
    for i in 1..=4 {
        send(&host, "bob", &format!("ping {i}")).await?;
    }
    let mut events = host.subscribe();
    let watcher = host.watch(&dir).await.context("watching the plugin directory")?;
    println!("4. hot reload: the plugin directory is watched. A buggy plugin (it panics) is copied in:");
    println!("   a plugin that appears at run time is held for approval; approved, it is loaded without a");
    println!("   restart, fails open, and the request is still served");
    let flaky = flaky_plugin(&dir)?;
    wait_event(&mut events, "flaky", |k| matches!(k, PluginEventKind::HeldForApproval { .. })).await?;
    println!("    operator: plugbox approve flaky");
    host.approve("flaky").await?;
    wait_event(&mut events, "flaky", |k| matches!(k, PluginEventKind::Loaded { .. })).await?;
    send(&host, "carol", "Does one bad plugin break the gateway?").await?;
    println!("5. its plugin.yaml is fixed in place (version 0.0.2: pre-request now modifies the prompt, so it");
    println!("   asks for `messages: write`): the new version is validated, then swapped in atomically, and");
    println!("   the permissions it gains wait for approval (the old version serves meanwhile)");
    let tmp = flaky.join(".plugin.yaml.tmp");
    std::fs::write(&tmp, flaky_manifest("0.0.2", "modify", "write"))?;
    std::fs::rename(&tmp, flaky.join("plugin.yaml"))?;
    wait_event(&mut events, "flaky", |k| matches!(k, PluginEventKind::ApprovalRequired { .. })).await?;
    println!("    operator: plugbox approve flaky");
    host.approve("flaky").await?;
    wait_event(&mut events, "flaky", |k| matches!(k, PluginEventKind::Reloaded { .. })).await?;
    send(&host, "carol", "Fixed without a restart?").await?;
    println!(
        "6. its directory is deleted: it is unloaded (WebAssembly plugins can be unloaded; Go .so plugins cannot)"
    );
    std::fs::remove_dir_all(&flaky)?;
    wait_event(&mut events, "flaky", |k| matches!(k, PluginEventKind::Unloaded { .. })).await?;
    watcher.stop().await;
    println!();

    println!("7. devices: the built-in probes, then the device hooks (memory-reserve keeps 2 GiB off free memory);");
    println!("   admission says whether a model fits, and why not");
    let snapshot = host.probe_devices().await;
    for d in &snapshot.adjusted {
        let raw = snapshot.raw_device(&d.id).map_or(d.memory_free_mb, |r| r.memory_free_mb);
        println!(
            "    {:<8} {:<16} {:>7} MiB total {:>7} MiB free (raw {raw})",
            d.id, d.name, d.memory_total_mb, d.memory_free_mb
        );
    }
    for p in &snapshot.problems {
        println!("    ({p})");
    }
    let mut model = plugbox_host::ModelConfig::new("big-model", "chat");
    model.required_devices = vec!["memory".into()];
    let free = snapshot.device("memory").map_or(0, |d| d.memory_free_mb);
    model.memory_mb.insert("memory".into(), free + 1024);
    println!("    {}", host.admit(&model).await);
    println!();

    println!("8. streaming, chunk by chunk: on-chunk hooks run as each chunk flows, on-stream-end at the end");
    streams(&host).await;

    println!("per-plugin counters:");
    println!("  {:<15} {:>6} {:>7} {:>6} {:>9} {:>10}", "plugin", "calls", "errors", "traps", "timeouts", "mean us");
    for p in host.plugins() {
        let s = p.stats();
        println!(
            "  {:<15} {:>6} {:>7} {:>6} {:>9} {:>10}",
            p.name(),
            s.calls,
            s.errors,
            s.traps,
            s.timeouts,
            s.mean_call_micros
        );
    }
    let metrics = host.kv().keys("metrics").await.unwrap_or_default();
    if !metrics.is_empty() {
        println!("\nwhat the metrics plugin stored in its kv namespace:");
        for key in metrics {
            if let Ok(Some(v)) = host.kv().get("metrics", &key).await {
                println!("  {key} = {}", String::from_utf8_lossy(&v));
            }
        }
    }
    host.unload_all().await;
    if plugins.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(ExitCode::SUCCESS)
}
