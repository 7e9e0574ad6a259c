//! The same plugin in Rust, Python and JavaScript, measured in one run: the
//! `system-prompt` example (`example-plugins/system-prompt`, its Python port
//! `example-plugins/python/system-prompt`, its JavaScript port
//! `example-plugins/js/system-prompt`), each with its own manifest.
//!
//! Run with `cargo bench -p plugbox-host --bench languages`. It builds the
//! Python and JavaScript components with the pinned tools
//! (`scripts/install-test-tools`: componentize-py 0.25.1, componentize-js
//! 0.23; cached under the target directory by a hash of the inputs) and
//! prints, per language:
//!
//! - `size`: the component's size in bytes;
//! - `cold`: loading it with no compile cache (wasmtime compiles it), the
//!   median of 3 loads;
//! - `memory`: what one idle initialised instance adds to the process
//!   (`Private_Dirty` and `Rss` growth over 10 held instances, per instance).
//!   The pooling allocator maps a component's initial memory copy-on-write
//!   from one shared image, so only the pages an instance writes are its own
//!   (`Private_Dirty`); `Rss` also counts the image pages it touched;
//!
//! then criterion measures `load-warm/<lang>` (loading it from the compile
//! cache) and `hook/<lang>` (one pre-request call of the plugin through the
//! host, with a 4-message request: the hook reads the roles and the system
//! messages' text and inserts the system message).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use plugbox_host::{ChatMessage, ChatRequest, ChatResponse, Host, HostBuilder, Outcome, RequestContext, Role};
use sha2::{Digest, Sha256};

const LANGS: [&str; 3] = ["rust", "python", "js"];

fn repo() -> &'static Path {
    Path::new(plugbox_artifacts::REPO_ROOT)
}

fn target_tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// The pinned tools (installed on first use, like the test suite does).
fn tools_dir() -> PathBuf {
    let dir = std::env::var_os("PLUGBOX_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join(".tools"));
    let script = repo().join("scripts/install-test-tools");
    let out = Command::new("bash").arg(&script).arg(&dir).output().expect("run scripts/install-test-tools");
    assert!(
        out.status.success(),
        "`bash {} {}` failed (needs python3 with venv, node >= 18 and npm):\n{}",
        script.display(),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// A hash of every file under `paths` and of `extra`.
fn inputs_key(paths: &[PathBuf], extra: &[u8]) -> String {
    fn walk(p: &Path, h: &mut Sha256) {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
            entries.sort();
            for e in entries.iter().filter(|e| !e.ends_with("__pycache__")) {
                walk(e, h);
            }
        } else {
            h.update(p.to_string_lossy().as_bytes());
            h.update(std::fs::read(p).unwrap());
        }
    }
    let mut h = Sha256::new();
    for p in paths {
        walk(p, &mut h);
    }
    h.update(extra);
    h.finalize().iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// Runs `cmd` (which writes `out`) unless `out` exists.
fn build_once(out: &Path, what: &str, cmd: &mut Command) -> PathBuf {
    if !out.exists() {
        let tmp = out.with_extension("part");
        let o = cmd.arg("-o").arg(&tmp).output().unwrap_or_else(|e| panic!("running the {what} build: {e}"));
        assert!(
            o.status.success(),
            "{what} build failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::rename(&tmp, out).unwrap();
    }
    out.to_path_buf()
}

/// The component and manifest of `system-prompt` in `lang`.
fn component(lang: &str, tools: &Path) -> (PathBuf, String) {
    let cache = target_tmp().join("languages-bench");
    std::fs::create_dir_all(&cache).unwrap();
    let stamp = std::fs::read(tools.join("installed")).unwrap_or_default();
    match lang {
        "rust" => {
            let a = plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == "system-prompt").unwrap();
            (PathBuf::from(a.wasm), std::fs::read_to_string(a.manifest).unwrap())
        }
        "python" => {
            let dir = repo().join("example-plugins/python/system-prompt");
            let sdk = repo().join("plugin-sdk/python");
            let key = inputs_key(&[dir.clone(), sdk.clone(), repo().join("wit")], &stamp);
            let out = cache.join(format!("python-{key}.wasm"));
            let mut cmd = Command::new(tools.join("venv/bin/componentize-py"));
            cmd.arg("-d").arg(repo().join("wit")).arg("-d").arg(sdk.join("wit"));
            cmd.args(["-w", "plugbox:python/plugin", "--import-interface-name", "plugbox:plugin/types@0.2.0=types"]);
            cmd.args(["componentize", "app", "-p", "."]).arg("-p").arg(&sdk).current_dir(&dir);
            let wasm = build_once(&out, "componentize-py", &mut cmd);
            (wasm, std::fs::read_to_string(dir.join("plugin.yaml")).unwrap())
        }
        "js" => {
            let dir = repo().join("example-plugins/js/system-prompt");
            let key = inputs_key(&[dir.clone(), repo().join("plugin-sdk/js"), repo().join("wit")], &stamp);
            let out = cache.join(format!("js-{key}.wasm"));
            let mut cmd = Command::new(tools.join("node_modules/.bin/componentize-js"));
            cmd.arg("example-plugins/js/system-prompt/plugin.js").arg("--wit").arg(repo().join("wit"));
            cmd.args(["--world-name", "plugin", "--disable", "http", "fetch-event"]).current_dir(repo());
            let wasm = build_once(&out, "componentize-js", &mut cmd);
            (wasm, std::fs::read_to_string(dir.join("plugin.yaml")).unwrap())
        }
        other => unreachable!("{other}"),
    }
}

/// A plugin directory holding the plugin of `lang` as `system-prompt`.
fn plugin_dir(wasm: &Path, manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("system-prompt");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(wasm, d.join("plugin.wasm")).unwrap();
    std::fs::write(d.join("plugin.yaml"), manifest).unwrap();
    dir
}

fn builder() -> HostBuilder {
    let prompt = serde_json::json!({"prompt": "Be brief."});
    HostBuilder::new()
        .cache_dir(Some(target_tmp().join("plugbox-bench-cache")))
        .plugin_config("system-prompt", prompt.as_object().unwrap().clone())
}

fn request() -> ChatRequest {
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(4);
    ChatRequest::new(
        "bench",
        vec![
            ChatMessage::system(format!("You are terse. {filler}")),
            ChatMessage::user(format!("Hi. {filler}")),
            ChatMessage::new(Role::Assistant, format!("Noted. {filler}")),
            ChatMessage::user(format!("And now? {filler}")),
        ],
    )
}

async fn provider(req: Arc<ChatRequest>) -> Outcome {
    Ok(ChatResponse::text("b", &req.model, "ok"))
}

/// A field of `/proc/self/smaps_rollup`, in KiB.
fn rollup_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").expect("read /proc/self/smaps_rollup");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{field}` in smaps_rollup"))
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tools = tools_dir();
    let built: Vec<(&str, PathBuf, String)> = LANGS
        .iter()
        .map(|lang| {
            let (wasm, manifest) = component(lang, &tools);
            (*lang, wasm, manifest)
        })
        .collect();

    let mut hosts: Vec<(&str, Host, tempfile::TempDir)> = Vec::new();
    for (lang, wasm, manifest) in &built {
        let dir = plugin_dir(wasm, manifest);
        let path = dir.path().join("system-prompt");
        let size = std::fs::metadata(wasm).unwrap().len();

        // Cold: no compile cache, wasmtime compiles the component.
        let mut cold: Vec<Duration> = (0..3)
            .map(|_| {
                let host = builder().cache_dir(None).build().unwrap();
                let started = Instant::now();
                rt.block_on(host.load_plugin(&path)).unwrap();
                started.elapsed()
            })
            .collect();
        cold.sort();

        // Memory: 10 idle, initialised instances held at once.
        let host = builder().build().unwrap();
        rt.block_on(host.load_plugin(&path)).unwrap();
        let plugin = host.plugin("system-prompt").unwrap();
        for _ in 0..3 {
            rt.block_on(plugin.instantiate_fresh()).unwrap();
        }
        let (dirty, rss) = (rollup_kib("Private_Dirty"), rollup_kib("Rss"));
        let started = Instant::now();
        let held: Vec<_> = (0..10).map(|_| rt.block_on(plugin.instantiate_held()).unwrap()).collect();
        let per_create = started.elapsed() / 10;
        let per_dirty = rollup_kib("Private_Dirty").saturating_sub(dirty) as f64 / 10.0;
        let per_rss = rollup_kib("Rss").saturating_sub(rss) as f64 / 10.0;
        drop(held);
        drop(plugin);
        println!(
            "languages/{lang}: size {size} bytes ({:.1} MiB); cold load {:.0?} (median of 3); \
             memory {per_dirty:.0} KiB Private_Dirty, {per_rss:.0} KiB Rss per idle instance; \
             {per_create:.2?} to create and initialise one",
            size as f64 / (1024.0 * 1024.0),
            cold[1]
        );
        // The plugin works: the system message is there.
        let resp = rt.block_on(host.run_request(&RequestContext::new("bench"), request(), |req| async move {
            let first = req.messages[0].text().map(|t| t.into_owned()).unwrap_or_default();
            Ok(ChatResponse::text("b", &req.model, &first))
        }));
        assert_eq!(resp.unwrap().first_text().as_deref(), Some("Be brief."), "{lang}");
        hosts.push((lang, host, dir));
    }

    let mut g = c.benchmark_group("load-warm");
    g.sample_size(10);
    for (lang, _, dir) in &hosts {
        let path = dir.path().join("system-prompt");
        let host = builder().build().unwrap();
        g.bench_function(*lang, |b| {
            b.to_async(&rt).iter(|| async {
                host.load_plugin(&path).await.unwrap();
                host.unload("system-prompt").await.unwrap();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("hook");
    let req = request();
    for (lang, host, _) in &hosts {
        g.bench_function(*lang, |b| {
            b.to_async(&rt).iter(|| async {
                let ctx = RequestContext::new("bench");
                host.run_request(&ctx, req.clone(), provider).await.unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(languages, benches);
criterion_main!(languages);
