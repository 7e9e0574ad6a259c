//! Hot reload with real files, real compiled plugins and a running host:
//! replacement under load, in-flight requests, broken upgrades, deletion,
//! renames, slow writes, editor saves, bursts, enable/disable, approval.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use plugbox_host::Grant;
use plugbox_host::reload::PluginStates;
use plugbox_host::{
    Host, HostBuilder, PipelineConfig, PluginEvent, PluginEventKind, PluginState, ReloadOutcome, RequestContext,
    WatchOptions,
};
use tokio::sync::broadcast::Receiver;

use crate::*;

/// Generous: the suite runs on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(20);

/// The `scripted` fixture as plugin `name`, version `version`: its pre hook
/// appends ` [<tag>]` to the prompt and its post hook ` [post:<tag>]` to the
/// answer, so a response says which version ran each half. Fail-closed: any
/// failure of the plugin fails the request.
fn manifest(name: &str, version: &str, tag: &str, permissions: &str) -> String {
    format!(
        "name: {name}\nversion: {version}\nhooks: [pre-request, post-response]\npriority: 1\non-error: fail-closed\n\
         limits: {{ timeout: 10s, memory: 16MiB, instances: 8 }}\npermissions: {{ messages: write{permissions} }}\n\
         config:\n  tag: {{ type: string, default: \"{tag}\" }}\n  pre: {{ type: string, default: modify }}\n\
         \x20 post: {{ type: string, default: modify }}\n  init: {{ type: string, default: ok }}\n"
    )
}

fn builder() -> HostBuilder {
    crate::builder().pipeline(PipelineConfig {
        pre_hook_timeout: Duration::from_secs(10),
        post_hook_timeout: Duration::from_secs(10),
        ..Default::default()
    })
}

fn fast() -> WatchOptions {
    WatchOptions { debounce: Duration::from_millis(50), settle: Duration::from_millis(50), ..Default::default() }
}

/// Writes `contents` to `path` the way careful tools do: a hidden temp file
/// beside it, then rename.
fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The scripted component with an extra custom section: same code, new bytes.
fn variant(n: usize) -> Vec<u8> {
    let wasm = std::fs::read(plugbox_artifacts::SCRIPTED).unwrap();
    plugbox_host::loader::pack(&wasm, &format!("# build {n}\n"))
}

/// Sends "hi" through the pipeline; returns (pre tag, post tag).
async fn tags(host: &Host) -> Result<(String, String), String> {
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.map_err(|e| e.to_string())?;
    parse_tags(&text(&resp))
}

fn parse_tags(text: &str) -> Result<(String, String), String> {
    // "echo: hi [<pre>] [post:<post>]"
    let rest = text.strip_prefix("echo: hi [").ok_or_else(|| format!("unexpected answer {text:?}"))?;
    let (pre, rest) = rest.split_once("] [post:").ok_or_else(|| format!("unexpected answer {text:?}"))?;
    let post = rest.strip_suffix(']').ok_or_else(|| format!("unexpected answer {text:?}"))?;
    Ok((pre.to_string(), post.to_string()))
}

/// Waits for the first event matching `pred`; fails with what came instead.
async fn wait_for(rx: &mut Receiver<PluginEvent>, what: &str, pred: impl Fn(&PluginEvent) -> bool) -> PluginEvent {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(e) => seen.push(e.to_string()),
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no `{what}` event within {WAIT:?}; saw {seen:#?}"))
}

fn reloaded_to(version: &str) -> impl Fn(&PluginEvent) -> bool + '_ {
    move |e| matches!(&e.kind, PluginEventKind::Reloaded { new_version, .. } if new_version.to_string() == version)
}

/// Events received so far, without waiting.
fn drain(rx: &mut Receiver<PluginEvent>) -> Vec<PluginEvent> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// One plugin `hot` in the directory form, loaded and watched.
async fn watched(options: WatchOptions) -> (Host, PluginDir, plugbox_host::Watcher, Receiver<PluginEvent>, PathBuf) {
    let dir = PluginDir::new();
    let d = dir.add("hot", plugbox_artifacts::SCRIPTED, &manifest("hot", "1.0.0", "v1.0.0", ""));
    let host = builder().build().unwrap();
    let mut events = host.subscribe();
    let watcher = plugbox_host::Watcher::start(&host, dir.path(), options).await.unwrap();
    assert_eq!(tags(&host).await.unwrap(), ("v1.0.0".into(), "v1.0.0".into()));
    let initial: Vec<String> = drain(&mut events).iter().map(|e| e.to_string()).collect();
    assert!(initial.len() == 1 && initial[0].starts_with("loaded `hot` 1.0.0 from"), "{initial:?}");
    (host, dir, watcher, events, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_replacements_under_load_lose_no_request() {
    let (host, _dir, watcher, mut events, d) = watched(fast()).await;
    let drained = Arc::new(AtomicUsize::new(0));
    let counter = {
        let (mut rx, drained) = (host.subscribe(), drained.clone());
        tokio::spawn(async move {
            while let Ok(e) = rx.recv().await {
                if matches!(e.kind, PluginEventKind::Drained { .. }) {
                    drained.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (host, stop) = (host.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failures, mut versions) = (0usize, Vec::new(), Vec::<u64>::new());
            while !stop.load(Ordering::Relaxed) {
                match tags(&host).await {
                    Ok((pre, post)) if pre == post => {
                        ok += 1;
                        let patch = pre.rsplit('.').next().unwrap().parse().unwrap();
                        if versions.last() != Some(&patch) {
                            versions.push(patch);
                        }
                    }
                    Ok((pre, post)) => failures.push(format!("mixed versions: pre {pre}, post {post}")),
                    Err(e) => failures.push(e),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, failures, versions)
        }));
    }
    for i in 1..=50u64 {
        let version = format!("1.0.{i}");
        write_atomic(&d.join("plugin.yaml"), manifest("hot", &version, &format!("v{version}"), ""));
        if i % 10 == 0 {
            // Every tenth time the component changes too (a real compile).
            write_atomic(&d.join("plugin.wasm"), variant(i as usize));
        }
        wait_for(&mut events, &format!("reloaded to {version}"), reloaded_to(&version)).await;
    }
    // Let the clients run on the last version for a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (ok, failures, versions) = c.await.unwrap();
        assert!(
            failures.is_empty(),
            "{} failed requests, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "a client went back to an older version: {versions:?}");
        assert_eq!(versions.last(), Some(&50), "{versions:?}");
        total += ok;
    }
    assert!(total > 0);
    assert_eq!(tags(&host).await.unwrap(), ("v1.0.50".into(), "v1.0.50".into()));
    // Every replaced version drains and gets `shutdown`.
    let all_drained = async {
        while drained.load(Ordering::SeqCst) < 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, all_drained)
        .await
        .unwrap_or_else(|_| panic!("{} of 50 drained", drained.load(Ordering::SeqCst)));
    watcher.stop().await;
    counter.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_request_finishes_on_the_version_it_started_with() {
    let (host, _dir, watcher, mut events, d) = watched(fast()).await;
    let old = host.plugin("hot").unwrap();
    let weak_old = Arc::downgrade(&old);
    drop(old);

    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let h = host.clone();
    let request = tokio::spawn(async move {
        let provider = |req: std::sync::Arc<plugbox_host::ChatRequest>| async move {
            started_tx.send(()).unwrap();
            release_rx.await.unwrap();
            echo(req).await
        };
        let resp = h.run_request(&RequestContext::new("m"), request("hi"), provider).await.unwrap();
        text(&resp).to_string()
    });
    started_rx.await.unwrap(); // the old version's pre hook has run

    write_atomic(&d.join("plugin.yaml"), manifest("hot", "2.0.0", "v2", ""));
    wait_for(&mut events, "reloaded to 2.0.0", reloaded_to("2.0.0")).await;
    assert_eq!(tags(&host).await.unwrap(), ("v2".into(), "v2".into()), "new requests see the new version");
    assert!(
        !drain(&mut events).iter().any(|e| matches!(e.kind, PluginEventKind::Drained { .. })),
        "the old version must not be shut down while a request uses it"
    );
    assert!(!weak_old.upgrade().unwrap().is_shut_down());

    release_tx.send(()).unwrap();
    assert_eq!(request.await.unwrap(), "echo: hi [v1.0.0] [post:v1.0.0]", "post hooks ran on the old version");
    let e = wait_for(&mut events, "drained", |e| matches!(e.kind, PluginEventKind::Drained { .. })).await;
    assert!(matches!(&e.kind, PluginEventKind::Drained { version } if version.to_string() == "1.0.0"));
    assert!(weak_old.upgrade().is_none_or(|p| p.is_shut_down()));
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upgrade_keeps_the_old_version_serving() {
    let (host, _dir, watcher, mut events, d) = watched(fast()).await;
    let failed = |e: &PluginEvent| matches!(e.kind, PluginEventKind::Failed { .. });

    // Not a component.
    write_atomic(&d.join("plugin.wasm"), b"\0asm\x0d\0\x01\0 not really");
    let e = wait_for(&mut events, "failed", failed).await;
    let PluginEventKind::Failed { error, serving, .. } = &e.kind else { unreachable!() };
    assert_eq!(e.plugin, "hot");
    assert!(error.contains("not a valid WebAssembly component"), "{error}");
    assert_eq!(serving.as_ref().map(|v| v.to_string()).as_deref(), Some("1.0.0"));
    assert_eq!(tags(&host).await.unwrap().0, "v1.0.0", "the old version still serves");
    let status = host.status("hot").unwrap();
    assert_eq!(status.state, PluginState::Active);
    assert!(status.last_error.unwrap().message.contains("not a valid WebAssembly component"));

    // A manifest with an error, and one whose plugin fails to initialise.
    std::fs::copy(plugbox_artifacts::SCRIPTED, d.join("plugin.wasm")).unwrap();
    write_atomic(&d.join("plugin.yaml"), manifest("hot", "1.1.0", "v1.1.0", "").replace("priority", "priorty"));
    let e = wait_for(&mut events, "failed", failed).await;
    assert!(e.to_string().contains("unknown field `priorty`"), "{e}");
    write_atomic(
        &d.join("plugin.yaml"),
        manifest("hot", "1.2.0", "v1.2.0", "").replace("default: ok", "default: fail"),
    );
    let e = wait_for(&mut events, "failed", failed).await;
    assert!(e.to_string().contains("init failed"), "{e}");
    assert_eq!(tags(&host).await.unwrap().0, "v1.0.0");

    // Fixed: the new version loads and the error is cleared.
    write_atomic(&d.join("plugin.yaml"), manifest("hot", "1.3.0", "v1.3.0", ""));
    wait_for(&mut events, "reloaded to 1.3.0", reloaded_to("1.3.0")).await;
    assert_eq!(tags(&host).await.unwrap().0, "v1.3.0");
    assert!(host.status("hot").unwrap().last_error.is_none());
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_loads_deleting_unloads_and_renaming_moves() {
    let (host, dir, watcher, mut events, d) = watched(fast()).await;

    // Add a sidecar plugin: .yaml first, then the .wasm copied in.
    std::fs::write(
        dir.path().join("side.yaml"),
        manifest("side", "0.1.0", "side", "").replace("priority: 1", "priority: 2"),
    )
    .unwrap();
    std::fs::copy(plugbox_artifacts::SCRIPTED, dir.path().join("side.wasm")).unwrap();
    // It appeared at run time: held until approved, then it serves.
    let e = wait_for(&mut events, "held side", |e| matches!(e.kind, PluginEventKind::HeldForApproval { .. })).await;
    assert_eq!(e.plugin, "side");
    assert_eq!(host.status("side").unwrap().state, PluginState::Pending);
    assert_eq!(tags(&host).await.unwrap(), ("v1.0.0".into(), "v1.0.0".into()), "`side` must not serve yet");
    assert!(matches!(host.approve("side").await.unwrap(), ReloadOutcome::Loaded { .. }));
    let e = wait_for(&mut events, "loaded side", |e| matches!(e.kind, PluginEventKind::Loaded { .. })).await;
    assert_eq!(e.plugin, "side");
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [v1.0.0] [side] [post:side] [post:v1.0.0]");

    // Rename the directory: the plugin moves without ever being absent.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let client = {
        let (host, stop, served) = (host.clone(), stop.clone(), served.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
                assert!(text(&resp).contains("[v1.0.0]"), "plugin `hot` missing during the rename: {}", text(&resp));
                served.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let moved = dir.path().join("hot-renamed");
    std::fs::rename(&d, &moved).unwrap();
    wait_for(&mut events, "reloaded from the new place", |e| matches!(e.kind, PluginEventKind::Reloaded { .. })).await;
    assert_eq!(host.status("hot").unwrap().source.unwrap().file_name().unwrap(), "hot-renamed");
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    assert!(served.load(Ordering::Relaxed) > 0);
    assert!(
        !drain(&mut events).iter().any(|e| matches!(e.kind, PluginEventKind::Unloaded { .. })),
        "a rename is not an unload"
    );

    // Delete: unloaded; requests go on without it.
    std::fs::remove_dir_all(&moved).unwrap();
    let e = wait_for(&mut events, "unloaded", |e| matches!(e.kind, PluginEventKind::Unloaded { .. })).await;
    assert_eq!(e.plugin, "hot");
    assert!(host.plugin("hot").is_none());
    std::fs::remove_file(dir.path().join("side.wasm")).unwrap();
    wait_for(&mut events, "unloaded", |e| matches!(e.kind, PluginEventKind::Unloaded { .. })).await;
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi");
    assert!(host.statuses().is_empty(), "{:?}", host.statuses());
    watcher.stop().await;
}

/// Writes `bytes` to `path` in `chunks` pieces, `pause` apart (a slow copy),
/// on a thread; `done` is set once the last byte is written.
fn slow_write(path: PathBuf, bytes: Vec<u8>, chunks: usize, pause: Duration) -> Arc<AtomicBool> {
    use std::io::Write;
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let mut f = std::fs::File::create(path).unwrap();
        for (i, chunk) in bytes.chunks(bytes.len().div_ceil(chunks)).enumerate() {
            if i > 0 {
                std::thread::sleep(pause);
            }
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
        }
        flag.store(true, Ordering::SeqCst);
    });
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_writes_are_not_loaded_early() {
    let (host, dir, watcher, mut events, d) = watched(fast()).await;
    let pause = Duration::from_millis(150);

    // A new plugin whose component arrives slowly.
    let slow = dir.path().join("slow");
    std::fs::create_dir(&slow).unwrap();
    std::fs::write(
        slow.join("plugin.yaml"),
        manifest("slow", "1.0.0", "slow", "").replace("priority: 1", "priority: 2"),
    )
    .unwrap();
    let bytes = std::fs::read(plugbox_artifacts::SCRIPTED).unwrap();
    let done = slow_write(slow.join("plugin.wasm"), bytes, 10, pause);
    while !done.load(Ordering::SeqCst) {
        let loaded = host.plugin("slow").is_some();
        assert!(!loaded || done.load(Ordering::SeqCst), "loaded before its component was fully written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New at run time: held for approval (complete), then approved.
    let e = wait_for(&mut events, "held", |e| matches!(e.kind, PluginEventKind::HeldForApproval { .. })).await;
    assert_eq!(e.plugin, "slow");
    assert!(matches!(host.approve("slow").await.unwrap(), ReloadOutcome::Loaded { .. }));
    let e = wait_for(&mut events, "loaded", |e| matches!(e.kind, PluginEventKind::Loaded { .. })).await;
    assert_eq!(e.plugin, "slow");

    // The component of a loaded plugin rewritten in place, slowly: the old
    // version serves until the new one is complete.
    let old = host.plugin("hot").unwrap().fingerprint();
    let done = slow_write(d.join("plugin.wasm"), variant(1000), 10, pause);
    while !done.load(Ordering::SeqCst) {
        let swapped = host.plugin("hot").unwrap().fingerprint() != old;
        assert!(!swapped || done.load(Ordering::SeqCst), "swapped before the write was complete");
        let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
        assert_eq!(text(&resp), "echo: hi [v1.0.0] [slow] [post:slow] [post:v1.0.0]");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(&mut events, "reloaded", reloaded_to("1.0.0")).await;
    assert_ne!(host.plugin("hot").unwrap().fingerprint(), old);
    let failures: Vec<String> = drain(&mut events)
        .iter()
        .filter(|e| matches!(e.kind, PluginEventKind::Failed { .. }))
        .map(|e| e.to_string())
        .collect();
    assert!(failures.is_empty(), "a file being written is not a failure: {failures:?}");
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_saves_and_cp_over_the_old_file_both_reload() {
    let (host, _dir, watcher, mut events, d) = watched(fast()).await;
    // An editor: write a temp file, rename it over plugin.yaml.
    write_atomic(&d.join("plugin.yaml"), manifest("hot", "1.1.0", "edited", ""));
    wait_for(&mut events, "reloaded to 1.1.0", reloaded_to("1.1.0")).await;
    assert_eq!(tags(&host).await.unwrap().0, "edited");
    // An editor leaving a backup and a swap file beside it: ignored.
    std::fs::write(d.join("plugin.yaml~"), "junk").unwrap();
    std::fs::write(d.join(".plugin.yaml.swp"), "junk").unwrap();
    // `cp` over the old files (truncate and write in place).
    let new_manifest = dir_file(&manifest("hot", "1.2.0", "copied", ""));
    std::fs::copy(new_manifest.path(), d.join("plugin.yaml")).unwrap();
    wait_for(&mut events, "reloaded to 1.2.0", reloaded_to("1.2.0")).await;
    assert_eq!(tags(&host).await.unwrap().0, "copied");
    let before = host.plugin("hot").unwrap().fingerprint();
    let wasm = dir_file_bytes(&variant(2000));
    std::fs::copy(wasm.path(), d.join("plugin.wasm")).unwrap();
    wait_for(&mut events, "reloaded", reloaded_to("1.2.0")).await;
    assert_ne!(host.plugin("hot").unwrap().fingerprint(), before);
    assert!(!drain(&mut events).iter().any(|e| matches!(e.kind, PluginEventKind::Failed { .. })));
    watcher.stop().await;
}

fn dir_file(text: &str) -> tempfile::NamedTempFile {
    dir_file_bytes(text.as_bytes())
}

fn dir_file_bytes(bytes: &[u8]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_gives_one_reload_of_the_final_state() {
    // A long settle time, so that a writer thread descheduled for a moment on
    // a busy machine still counts as one burst.
    let options = WatchOptions { settle: Duration::from_millis(400), ..fast() };
    let (host, _dir, watcher, mut events, d) = watched(options).await;
    for i in 1..=10 {
        std::fs::write(d.join("plugin.yaml"), manifest("hot", &format!("1.1.{i}"), &format!("burst{i}"), "")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let e = wait_for(&mut events, "reloaded", |e| matches!(e.kind, PluginEventKind::Reloaded { .. })).await;
    assert!(reloaded_to("1.1.10")(&e), "the first reload must be of the final state: {e}");
    assert_eq!(tags(&host).await.unwrap().0, "burst10");
    // Whatever events the burst still produces find nothing new to load.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let more: Vec<String> = drain(&mut events)
        .iter()
        .filter(|e| matches!(e.kind, PluginEventKind::Reloaded { .. } | PluginEventKind::Failed { .. }))
        .map(|e| e.to_string())
        .collect();
    assert!(more.is_empty(), "one burst, one reload: {more:?}");
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_enable_persist_across_hosts_and_reach_a_running_host() {
    let dir = PluginDir::new();
    dir.add("a", plugbox_artifacts::SCRIPTED, &manifest("a", "1.0.0", "a", ""));
    dir.add("b", plugbox_artifacts::SCRIPTED, &manifest("b", "1.0.0", "b", "").replace("priority: 1", "priority: 2"));
    let host = builder().build().unwrap();
    let mut events = host.subscribe();
    host.load_dir(dir.path()).await.unwrap();
    host.disable("a").await.unwrap();
    wait_for(&mut events, "disabled", |e| matches!(e.kind, PluginEventKind::Disabled) && e.plugin == "a").await;
    assert!(host.plugin("a").is_none() && host.is_disabled("a"));
    assert_eq!(host.status("a").unwrap().state, PluginState::Disabled);
    let state = PluginStates::path_in(dir.path());
    assert!(PluginStates::load(&state).unwrap().disabled.contains("a"));

    // A new host (a restart) keeps it disabled.
    let host2 = builder().build().unwrap();
    let report = host2.load_dir(dir.path()).await.unwrap();
    assert_eq!(report.loaded, ["b"]);
    assert_eq!(report.disabled, ["a"]);
    assert_eq!(host2.status("a").unwrap().state, PluginState::Disabled);
    let outcome = host2.enable("a").await.unwrap();
    assert!(matches!(outcome, Some(ReloadOutcome::Loaded { .. })), "{outcome:?}");
    assert!(host2.plugin("a").is_some());
    drop((host, host2));
    let host3 = builder().build().unwrap();
    assert_eq!(host3.load_dir(dir.path()).await.unwrap().loaded, ["a", "b"]);

    // The state file edited by another process (`plugbox disable b`) while
    // host3 watches the directory.
    let mut events = host3.subscribe();
    let watcher = host3.watch(dir.path()).await.unwrap();
    PluginStates::update(&state, |s| {
        s.disabled.insert("b".into());
    })
    .unwrap();
    wait_for(&mut events, "disabled b", |e| matches!(e.kind, PluginEventKind::Disabled) && e.plugin == "b").await;
    assert!(host3.plugin("b").is_none());
    PluginStates::update(&state, |s| {
        s.disabled.remove("b");
    })
    .unwrap();
    wait_for(&mut events, "loaded b", |e| matches!(e.kind, PluginEventKind::Loaded { .. }) && e.plugin == "b").await;
    // A disabled plugin's files may change: it stays unloaded.
    host3.disable("a").await.unwrap();
    write_atomic(&dir.path().join("a/plugin.yaml"), manifest("a", "1.1.0", "a", ""));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(host3.plugin("a").is_none());
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaining_permissions_is_reported_and_can_require_approval() {
    let dir = PluginDir::new();
    let d = dir.add("p", plugbox_artifacts::SCRIPTED, &manifest("p", "1.0.0", "v1", ""));
    let more = ", kv: true, network: [api.example.com:443]";

    // Without approval: swapped in, the difference reported.
    let host = builder().require_approval_for_new_permissions(false).build().unwrap();
    let mut events = host.subscribe();
    host.load_dir(dir.path()).await.unwrap();
    std::fs::write(d.join("plugin.yaml"), manifest("p", "2.0.0", "v2", more)).unwrap();
    let outcome = host.reload_dir(dir.path()).await.unwrap();
    assert_eq!(outcome.names(|o| matches!(o, ReloadOutcome::Reloaded { .. })), ["p"]);
    let e = wait_for(&mut events, "reloaded", reloaded_to("2.0.0")).await;
    let PluginEventKind::Reloaded { permissions, .. } = &e.kind else { unreachable!() };
    assert_eq!(permissions.added, [Grant::Kv, Grant::Network { pattern: "api.example.com:443".into() }]);
    assert!(e.to_string().contains("gains: kv (own namespace), network `api.example.com:443`"), "{e}");

    // With it (the default): the new version waits; the old one serves.
    std::fs::write(d.join("plugin.yaml"), manifest("p", "1.0.0", "v1", "")).unwrap();
    let host = builder().build().unwrap();
    let mut events = host.subscribe();
    host.load_dir(dir.path()).await.unwrap();
    std::fs::write(d.join("plugin.yaml"), manifest("p", "2.0.0", "v2", more)).unwrap();
    assert_eq!(host.reload_plugin("p").await.unwrap(), ReloadOutcome::PendingApproval);
    let e = wait_for(&mut events, "approval required", |e| matches!(e.kind, PluginEventKind::ApprovalRequired { .. }))
        .await;
    assert!(e.to_string().contains("gains: kv (own namespace), network `api.example.com:443`"), "{e}");
    assert_eq!(tags(&host).await.unwrap().0, "v1");
    let status = host.status("p").unwrap();
    assert_eq!(status.version.unwrap().to_string(), "1.0.0");
    assert_eq!(status.pending.unwrap().version.to_string(), "2.0.0");
    // Rescanning does not build it again, nor swap it in.
    let report = host.reload_dir(dir.path()).await.unwrap();
    assert_eq!(report.names(|o| *o == ReloadOutcome::PendingApproval), ["p"]);
    assert_eq!(tags(&host).await.unwrap().0, "v1");

    let outcome = host.approve("p").await.unwrap();
    assert!(matches!(outcome, ReloadOutcome::Reloaded { .. }), "{outcome:?}");
    assert_eq!(tags(&host).await.unwrap().0, "v2");
    assert!(host.plugin("p").unwrap().capabilities().kv);
    assert!(host.approve("p").await.is_err(), "nothing left to approve");

    // Giving permissions up needs no approval.
    std::fs::write(d.join("plugin.yaml"), manifest("p", "3.0.0", "v3", "")).unwrap();
    assert!(matches!(host.reload_plugin("p").await.unwrap(), ReloadOutcome::Reloaded { .. }));
    assert_eq!(tags(&host).await.unwrap().0, "v3");
}

#[tokio::test]
async fn explicit_reload_without_a_watcher() {
    let dir = PluginDir::new();
    let a = dir.add("a", plugbox_artifacts::SCRIPTED, &manifest("a", "1.0.0", "a", ""));
    dir.add("b", plugbox_artifacts::SCRIPTED, &manifest("b", "1.0.0", "b", "").replace("priority: 1", "priority: 2"));
    let host = builder().require_approval_for_new_plugins(false).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();

    std::fs::write(a.join("plugin.yaml"), manifest("a", "1.1.0", "a2", "")).unwrap();
    std::fs::remove_dir_all(dir.path().join("b")).unwrap();
    dir.add("c", plugbox_artifacts::SCRIPTED, &manifest("c", "1.0.0", "c", "").replace("priority: 1", "priority: 3"));
    let report = host.reload_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut changes: Vec<String> = report.changes.iter().map(|(n, o)| format!("{n}: {o:?}")).collect();
    changes.sort();
    assert_eq!(
        changes,
        [
            "a: Reloaded { old_version: Version { major: 1, minor: 0, patch: 0 }, new_version: Version { major: 1, minor: 1, patch: 0 } }",
            "b: Unloaded",
            "c: Loaded { version: Version { major: 1, minor: 0, patch: 0 } }",
        ]
    );
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [a2] [c] [post:c] [post:a2]");
    // Nothing changed: nothing reloaded. A forced reload of one plugin works.
    let report = host.reload_dir(dir.path()).await.unwrap();
    assert_eq!(report.names(|o| *o == ReloadOutcome::Unchanged), ["a", "c"]);
    assert!(matches!(host.reload_plugin("c").await.unwrap(), ReloadOutcome::Reloaded { .. }));
    // The manifest renames a plugin: a new identity, held until approved;
    // then the new name replaces the old one.
    let c = dir.path().join("c");
    std::fs::write(c.join("plugin.yaml"), manifest("c2", "1.0.0", "c2", "").replace("priority: 1", "priority: 3"))
        .unwrap();
    let report = host.reload_dir(dir.path()).await.unwrap();
    assert_eq!(report.names(|o| *o == ReloadOutcome::PendingApproval), ["c"], "reported under the serving name");
    assert!(host.pending_approvals().iter().any(|(n, p)| n == "c2" && p.permissions.to_string().contains("name `c`")));
    assert!(host.plugin("c").is_some() && host.plugin("c2").is_none(), "held: the old name serves");
    assert!(matches!(host.approve("c2").await.unwrap(), ReloadOutcome::Loaded { .. }));
    assert!(host.plugin("c").is_none() && host.plugin("c2").is_some());
    // A broken version is refused and the old one kept.
    std::fs::write(a.join("plugin.wasm"), b"not wasm").unwrap();
    assert!(host.reload_plugin("a").await.is_err());
    assert_eq!(host.plugin("a").unwrap().manifest().version.to_string(), "1.1.0");
    assert!(host.reload_plugin("nope").await.is_err());
}

fn plugbox(args: &[&str]) -> String {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_plugbox"))
        .args(args)
        .env("PLUGBOX_CACHE_DIR", crate::cache_dir())
        .env_remove("PLUGBOX_POLICY")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn serve_reloads_on_sighup_and_obeys_disable_and_approve_from_the_cli() {
    let dir = PluginDir::new();
    let d = dir.add("hot", plugbox_artifacts::SCRIPTED, &manifest("hot", "1.0.0", "v1", ""));
    let path = dir.path().to_str().unwrap();
    let mut serve =
        crate::ServeProcess::start(&["--plugins", path, "--no-watch", "--require-approval", "--listen", "127.0.0.1:0"]);
    serve.expect("loaded `hot` 1.0.0");
    let row = serve.expect("hot ");
    assert!(row.contains("1.0.0") && row.contains("active"), "{row}");
    serve.expect("plugbox serve: listening on http://127.0.0.1:");

    // Without a watcher, a change waits for SIGHUP; gaining kv needs approval.
    std::fs::write(d.join("plugin.yaml"), manifest("hot", "2.0.0", "v2", ", kv: true")).unwrap();
    serve.signal("HUP");
    serve.expect("approval required for `hot` 1.0.0 -> 2.0.0 (gains: kv (own namespace))");
    serve.expect("version 2.0.0 waits for approval");
    let out = plugbox(&["approve", "hot", "--plugins", path]);
    assert!(out.contains("approved `hot` 2.0.0"), "{out}");
    serve.signal("HUP");
    serve.expect("reloaded `hot` 1.0.0 -> 2.0.0 (gains: kv (own namespace))");

    // A plugin dropped in while serving is held, shown as pending, and loads once approved.
    dir.add(
        "dropped",
        plugbox_artifacts::SCRIPTED,
        &manifest("dropped", "1.0.0", "d", "").replace("priority: 1", "priority: 2"),
    );
    serve.signal("HUP");
    serve.expect("held `dropped` 1.0.0");
    let row = serve.expect("dropped ");
    assert!(row.contains("pending"), "{row}");
    let out = plugbox(&["approve", "dropped", "--plugins", path]);
    assert!(out.contains("approved `dropped` 1.0.0"), "{out}");
    serve.signal("HUP");
    serve.expect("loaded `dropped` 1.0.0");

    let out = plugbox(&["disable", "hot", "--plugins", path]);
    assert!(out.contains("disabled `hot`"), "{out}");
    serve.signal("HUP");
    serve.expect("disabled `hot`");
    let list = plugbox(&["list", "--plugins", path]);
    assert!(list.lines().any(|l| l.starts_with("hot ") && l.contains("disabled")), "{list}");
    plugbox(&["enable", "hot", "--plugins", path]);
    serve.signal("HUP");
    serve.expect("loaded `hot` 2.0.0");

    serve.signal("INT");
    serve.expect("stopping");
    let status = serve.child.wait().unwrap();
    assert!(status.success(), "{status}");
}
