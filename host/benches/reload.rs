//! Hot reload latency: from the moment a plugin's file is replaced to the
//! first request served by the new version, p50 and p95 over repeated runs.
//!
//! Run with `cargo bench -p plugbox-host --bench reload` (release profile).
//! `RELOAD_BENCH_RUNS=n` changes the number of runs per scenario (default 40;
//! the compile scenario does a quarter as many).
//!
//! Scenarios, each on a running host with a watcher ([`WatchOptions::default`]:
//! 150 ms debounce, 100 ms settle check) unless said otherwise:
//!
//! - `watch/manifest-edit`: `plugin.yaml` rewritten (temp file + rename) with a
//!   new version and config; the component comes from the compile cache.
//! - `watch/new-component`: the `.wasm` replaced by new bytes (temp + rename),
//!   so the new version is compiled with Cranelift before it is swapped in.
//! - `watch/manifest-edit-fast`: as the first, with 20 ms debounce and 20 ms
//!   settle: what the watcher's own waiting costs.
//! - `explicit/reload_plugin`: no watcher; `Host::reload_plugin` right after
//!   the edit (read, validate, initialise, swap: the floor).
//!
//! "Served by the new version": a request loop (one request per millisecond)
//! sees the new version's tag in the answer.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugbox_host::{ChatMessage, ChatRequest, ChatResponse, Host, HostBuilder, Outcome, RequestContext, WatchOptions};

fn request() -> ChatRequest {
    ChatRequest::new("bench", vec![ChatMessage::user("hi")])
}

/// Answers with the text of the request's last message.
async fn echo(req: Arc<ChatRequest>) -> Outcome {
    let text = req.messages.last().and_then(|m| m.text()).map(|t| t.into_owned()).unwrap_or_default();
    Ok(ChatResponse::text("b", &req.model, text))
}

fn manifest(version: &str) -> String {
    format!(
        "name: hot\nversion: {version}\nhooks: [pre-request]\npermissions: {{ messages: write }}\n\
         config:\n  tag: {{ type: string, default: \"v{version}\" }}\n  pre: {{ type: string, default: modify }}\n"
    )
}

fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Sends requests until one is answered by version `version`; panics after 60 s.
async fn until_served_by(host: &Host, version: &str) {
    let wanted = format!("[v{version}]");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp = host.run_request(&RequestContext::new("bench"), request(), echo).await.unwrap();
        if resp.choices[0].message.text().is_some_and(|t| t.ends_with(&wanted)) {
            return;
        }
        assert!(Instant::now() < deadline, "version {version} never served");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Change {
    Manifest,
    Component,
}

struct Scenario {
    name: &'static str,
    change: Change,
    watch: Option<WatchOptions>,
    runs: usize,
}

async fn run(s: &Scenario, cache: &Path, salt: u128) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("hot");
    std::fs::create_dir(&d).unwrap();
    std::fs::copy(plugbox_artifacts::SCRIPTED, d.join("plugin.wasm")).unwrap();
    std::fs::write(d.join("plugin.yaml"), manifest("0.0.0")).unwrap();
    let host = HostBuilder::new().cache_dir(Some(cache.to_path_buf())).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    let watcher = match s.watch {
        Some(o) => Some(plugbox_host::Watcher::start(&host, dir.path(), o).await.unwrap()),
        None => None,
    };
    let wasm = std::fs::read(plugbox_artifacts::SCRIPTED).unwrap();
    let mut times = Vec::with_capacity(s.runs);
    for i in 1..=s.runs {
        let version = format!("1.0.{i}");
        // Prepare the new bytes before the clock starts.
        let component = (s.change == Change::Component)
            .then(|| plugbox_host::loader::pack(&wasm, &format!("# bench {salt} {i}\n")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        if let Some(bytes) = &component {
            write_atomic(&d.join("plugin.wasm"), bytes);
        }
        write_atomic(&d.join("plugin.yaml"), manifest(&version).as_bytes());
        if s.watch.is_none() {
            host.reload_plugin("hot").await.unwrap();
        }
        until_served_by(&host, &version).await;
        times.push(started.elapsed());
    }
    if let Some(w) = watcher {
        w.stop().await;
    }
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; accept and ignore harness flags.
    let runs: usize = std::env::var("RELOAD_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let profile = if cfg!(debug_assertions) { "dev (debug assertions on)" } else { "release" };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let salt = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let fast =
        WatchOptions { debounce: Duration::from_millis(20), settle: Duration::from_millis(20), ..Default::default() };
    let scenarios = [
        Scenario { name: "watch/manifest-edit", change: Change::Manifest, watch: Some(WatchOptions::default()), runs },
        Scenario {
            name: "watch/new-component",
            change: Change::Component,
            watch: Some(WatchOptions::default()),
            runs: (runs / 4).max(4),
        },
        Scenario { name: "watch/manifest-edit-fast", change: Change::Manifest, watch: Some(fast), runs },
        Scenario { name: "explicit/reload_plugin", change: Change::Manifest, watch: None, runs },
    ];
    println!("reload latency: file replaced -> first request served by the new version ({profile} build)");
    println!("{:<28} {:>5} {:>10} {:>10} {:>10} {:>10}", "scenario", "runs", "p50", "p95", "min", "max");
    for s in &scenarios {
        let mut times = rt.block_on(run(s, cache.path(), salt));
        times.sort();
        println!(
            "{:<28} {:>5} {:>10} {:>10} {:>10} {:>10}",
            s.name,
            times.len(),
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 95.0)),
            ms(times[0]),
            ms(*times.last().unwrap())
        );
    }
}
