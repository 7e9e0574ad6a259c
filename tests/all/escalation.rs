//! No escalation: a plugin never gets to write what the loader reads (a
//! plugin root, its own manifest or component, the state file, the compile
//! cache, the policy file), a plugin that appears at run time is held for the
//! operator's approval, and so is a new version that gains grants, unless
//! the policy approves exactly those grants ahead. Real compiled plugins
//! (`sandbox-probe` attempts the writes), real files; every test checks that
//! another plugin keeps serving and that the host stayed bounded.

use std::path::Path;
use std::time::Duration;

use plugbox_host::{HostBuilder, PluginEventKind, PluginState, Policy, ReloadOutcome, RequestContext};
use tokio::sync::broadcast::Receiver;

use crate::bounds::{Bounds, MIB};
use crate::hostile::*;
use crate::*;

const WAIT: Duration = Duration::from_secs(20);

fn builder() -> HostBuilder {
    crate::builder()
}

async fn wait_for(rx: &mut Receiver<plugbox_host::PluginEvent>, what: &str, pred: impl Fn(&PluginEventKind) -> bool) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e.kind) => return,
                Ok(e) => seen.push(e.to_string()),
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no `{what}` event within {WAIT:?}; saw {seen:#?}"));
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.push((e.clone(), std::fs::read(&e).unwrap()));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[tokio::test]
async fn sidecar_and_embedded_plugins_cannot_write_into_the_plugin_root() {
    let before = Bounds::now();
    let dir = PluginDir::new();
    with_ok(&dir);
    // The escalation found: write a new plugin (`evil.yaml`) into the root.
    let side_ops = ["write:/root-s/evil.yaml", "write:/root-s/ok/plugin.yaml", "preopens"];
    let side = probe(
        "side",
        "0.1.0",
        "{ filesystem: [{ host: ./, guest: /root-s, access: read-write }], data-dir: false }",
        &side_ops,
    );
    std::fs::write(dir.path().join("side.yaml"), &side).unwrap();
    std::fs::copy(plugbox_artifacts::SANDBOX_PROBE, dir.path().join("side.wasm")).unwrap();
    let packed_ops = ["write:/root-e/evil.yaml", "list:/root-e"];
    let packed_manifest =
        probe("packed", "0.1.0", "{ filesystem: [{ host: ./, guest: /root-e, access: read-write }] }", &packed_ops);
    let wasm = std::fs::read(plugbox_artifacts::SANDBOX_PROBE).unwrap();
    std::fs::write(dir.path().join("packed.wasm"), plugbox_host::loader::pack(&wasm, &packed_manifest)).unwrap();
    let files = snapshot(dir.path());

    // Default policy: the directory holding a sidecar or packed plugin is the
    // shared root, not its own: no grant there at all.
    let host = builder().build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let ctx = serve_one(&host).await;
    assert_eq!(outcome(&ctx, "preopens"), "ok:", "no directory at all");
    for op in ["write:/root-s/evil.yaml", "write:/root-s/ok/plugin.yaml", "write:/root-e/evil.yaml", "list:/root-e"] {
        assert!(outcome(&ctx, op).starts_with("err:"), "{op}: {}", outcome(&ctx, op));
    }
    for p in ["side", "packed"] {
        let d = denied(&host, p);
        assert!(d.contains("read-write") && d.contains("not allowed by policy"), "{p}: {d}");
    }

    // Even a policy that allows the root read-write does not make it writable.
    let policy = Policy { filesystem_roots: vec![dir.path().to_path_buf()], ..Default::default() };
    let host = builder().policy(policy).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    let ctx = serve_one(&host).await;
    for op in ["write:/root-s/evil.yaml", "write:/root-s/ok/plugin.yaml", "write:/root-e/evil.yaml"] {
        assert!(outcome(&ctx, op).starts_with("err:"), "{op}: {}", outcome(&ctx, op));
    }
    let root = dir.path().canonicalize().unwrap();
    for p in ["side", "packed"] {
        let d = denied(&host, p);
        assert!(
            d.contains(&format!("refused for plugin `{p}`: overlaps the plugin root `{}`", root.display()))
                && d.contains("rule: no escalation"),
            "{p}: {d}"
        );
    }
    assert_eq!(snapshot(dir.path()), files, "nothing in the plugin root changed");
    assert!(host.plugin("evil").is_none());
    before.assert_within(64, 256 * MIB);
}

#[tokio::test]
async fn a_directory_plugin_cannot_rewrite_its_own_manifest_or_component() {
    let before = Bounds::now();
    let dir = PluginDir::new();
    with_ok(&dir);
    let ops = [
        "write:/self/plugin.yaml",
        "write:/self/plugin.wasm",
        "write:/self/new.wasm",
        "write:/self-rw/plugin.yaml",
        "read:/self/plugin.yaml",
    ];
    let manifest = probe(
        "probe",
        "0.1.0",
        "{ filesystem: [{ host: ./, guest: /self, access: read }, { host: ./, guest: /self-rw, access: read-write }] }",
        &ops,
    );
    let own = dir.add("probe", plugbox_artifacts::SANDBOX_PROBE, &manifest);
    let files = snapshot(dir.path());

    for policy in [Policy::default(), Policy { filesystem_roots: vec![own.clone()], ..Default::default() }] {
        let host = builder().policy(policy).build().unwrap();
        host.load_dir(dir.path()).await.unwrap();
        let ctx = serve_one(&host).await;
        assert!(outcome(&ctx, "read:/self/plugin.yaml").starts_with("ok:name: probe"), "read-only is granted");
        for op in &ops[..4] {
            assert!(outcome(&ctx, op).starts_with("err:"), "{op}: {}", outcome(&ctx, op));
        }
        let d = denied(&host, "probe");
        assert!(d.contains("-> `/self-rw` (read-write): refused for plugin `probe`"), "{d}");
        assert!(!d.contains("`/self` "), "the read-only grant stays: {d}");
        let caps = host.plugin("probe").unwrap().capabilities().clone();
        assert_eq!(caps.preopens.len(), 1);
        assert_eq!(caps.preopens[0].guest, "/self");
        assert_eq!(snapshot(dir.path()), files, "the manifest and component are untouched");
        // And the host never swapped anything in.
        assert_eq!(host.reload_dir(dir.path()).await.unwrap().names(|o| *o == ReloadOutcome::Unchanged).len(), 2);
    }
    before.assert_within(64, 256 * MIB);
}

#[tokio::test]
async fn a_read_write_policy_root_around_what_the_loader_reads_is_refused() {
    let before = Bounds::now();
    let outer = tempfile::tempdir().unwrap();
    let plugins = outer.path().join("plugins");
    let cache = outer.path().join("cache");
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    let dir = PluginDir { dir: tempfile::tempdir_in(&plugins).unwrap() };
    with_ok(&dir);
    let grant = format!(
        "{{ filesystem: [{{ host: {:?}, guest: /outer, access: read-write }}, \
         {{ host: {:?}, guest: /scratch, access: read-write }}] }}",
        outer.path(),
        scratch.path()
    );
    let ops = ["write:/outer/evil.txt", "write:/scratch/fine.txt"];
    dir.add("probe", plugbox_artifacts::SANDBOX_PROBE, &probe("probe", "0.1.0", &grant, &ops));
    let policy = Policy {
        filesystem_roots: vec![outer.path().to_path_buf(), scratch.path().to_path_buf()],
        ..Default::default()
    };

    // The plugin root lies inside the granted directory.
    let host = builder().policy(policy.clone()).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    let ctx = serve_one(&host).await;
    assert!(outcome(&ctx, "write:/outer/evil.txt").starts_with("err:"));
    assert_eq!(outcome(&ctx, "write:/scratch/fine.txt"), "ok:written", "a directory apart stays writable");
    let d = denied(&host, "probe");
    let root = dir.path().canonicalize().unwrap();
    assert!(d.contains(&format!("overlaps the plugin root `{}`", root.display())), "{d}");
    assert!(!outer.path().join("evil.txt").exists());

    // The compile cache lies inside it (plugins elsewhere).
    let elsewhere = PluginDir::new();
    with_ok(&elsewhere);
    elsewhere.add("probe", plugbox_artifacts::SANDBOX_PROBE, &probe("probe", "0.1.0", &grant, &ops));
    let host = builder().cache_dir(Some(cache.clone())).policy(policy).build().unwrap();
    host.load_dir(elsewhere.path()).await.unwrap();
    let ctx = serve_one(&host).await;
    assert!(outcome(&ctx, "write:/outer/evil.txt").starts_with("err:"));
    let d = denied(&host, "probe");
    assert!(d.contains(&format!("overlaps `{}`, which the host reads", cache.display())), "{d}");
    assert!(!outer.path().join("evil.txt").exists());
    before.assert_within(64, 256 * MIB);
}

#[tokio::test]
async fn a_plugin_root_added_where_a_loaded_plugin_may_write_is_refused() {
    let shared = tempfile::tempdir().unwrap();
    let dir = PluginDir::new();
    with_ok(&dir);
    let grant = format!("{{ filesystem: [{{ host: {:?}, guest: /shared, access: read-write }}] }}", shared.path());
    dir.add("writer", plugbox_artifacts::SANDBOX_PROBE, &probe("writer", "0.1.0", &grant, &["write:/shared/x"]));
    let policy = Policy { filesystem_roots: vec![shared.path().to_path_buf()], ..Default::default() };
    let host = builder().policy(policy).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    assert_eq!(outcome(&serve_one(&host).await, "write:/shared/x"), "ok:written", "granted before");

    // The directory `writer` may write becomes (a parent of) a plugin directory: refused.
    let inside = shared.path().join("plugins");
    std::fs::create_dir_all(&inside).unwrap();
    for attempt in [host.load_dir(&inside).await.map(|_| ()), host.reload_dir(shared.path()).await.map(|_| ())] {
        let e = attempt.unwrap_err().to_string();
        assert!(e.contains("plugin `writer`: may write") && e.contains("rule: no escalation"), "{e}");
    }
    assert!(host.status("writer").is_some());
    serve_one(&host).await;
}

#[tokio::test]
async fn data_directories_live_outside_every_plugin_root() {
    let dir = PluginDir::new();
    with_ok(&dir);
    let ops = ["write:/plugin-data/state.txt"];
    dir.add("probe", plugbox_artifacts::SANDBOX_PROBE, &probe("probe", "0.1.0", "[write_files]", &ops));
    let inside = dir.path().join("data");
    let host = builder().data_root(&inside).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    let ctx = serve_one(&host).await;
    assert!(outcome(&ctx, "write:/plugin-data/state.txt").starts_with("err:"));
    let d = denied(&host, "probe");
    assert!(d.contains("data directory: the data root") && d.contains("overlaps the plugin root"), "{d}");
    assert!(!inside.exists(), "nothing created inside the plugin root");

    let outside = tempfile::tempdir().unwrap();
    let root = outside.path().join("data");
    let host = builder().data_root(&root).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    let ctx = serve_one(&host).await;
    assert_eq!(outcome(&ctx, "write:/plugin-data/state.txt"), "ok:written");
    use std::os::unix::fs::PermissionsExt;
    for d in [root.clone(), root.join("probe")] {
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_dropped_into_a_watched_directory_is_held_until_approved() {
    let before = Bounds::now();
    let dir = PluginDir::new();
    with_ok(&dir);
    let host = builder().build().unwrap();
    let mut events = host.subscribe();
    let watcher = plugbox_host::Watcher::start(
        &host,
        dir.path(),
        plugbox_host::WatchOptions {
            debounce: Duration::from_millis(50),
            settle: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(host.plugin("ok").is_some(), "the first load of a directory is not held");

    // Dropped in at run time, asking for nothing: held all the same.
    let mut new = scripted("dropped", 60, "modify", "continue");
    new = new.replace("permissions: { messages: write, kv: true }", "permissions: { messages: write }");
    dir.add("dropped", plugbox_artifacts::SCRIPTED, &new);
    wait_for(&mut events, "held for approval", |k| matches!(k, PluginEventKind::HeldForApproval { .. })).await;
    assert!(host.plugin("dropped").is_none());
    let status = host.status("dropped").unwrap();
    assert_eq!(status.state, PluginState::Pending);
    assert!(status.pending.unwrap().permissions.to_string().contains("messages `none` -> `write`"));
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]", "held: it does not serve");
    assert_eq!(host.pending_approvals().len(), 1);

    assert!(matches!(host.approve("dropped").await.unwrap(), ReloadOutcome::Loaded { .. }));
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok] [dropped]", "approved: it serves");
    assert!(host.pending_approvals().is_empty());
    watcher.stop().await;
    before.assert_within(64, 256 * MIB);
}

#[tokio::test]
async fn an_upgrade_gaining_messages_write_and_a_host_secret_is_held() {
    // SAFETY: set once, before any host reads it; only this test names it.
    unsafe { std::env::set_var("PLUGBOX_ESCALATION_SECRET", "hunter2") };
    let before = Bounds::now();
    let dir = PluginDir::new();
    with_ok(&dir);
    let ops = ["env:PLUGBOX_ESCALATION_SECRET"];
    let up = dir.add("up", plugbox_artifacts::SANDBOX_PROBE, &probe("up", "1.0.0", "{ messages: read }", &ops));
    let greedy = probe("up", "2.0.0", "{ messages: write, env: [PLUGBOX_ESCALATION_SECRET] }", &ops);

    // Default: held; the old version keeps serving and never sees the secret.
    let host = builder().build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    std::fs::write(up.join("plugin.yaml"), &greedy).unwrap();
    assert_eq!(host.reload_plugin("up").await.unwrap(), ReloadOutcome::PendingApproval);
    let ctx = serve_one(&host).await;
    assert!(outcome(&ctx, ops[0]).starts_with("err:"), "{}", outcome(&ctx, ops[0]));
    assert_eq!(host.plugin("up").unwrap().manifest().version.to_string(), "1.0.0");
    let pending = host.status("up").unwrap().pending.unwrap();
    assert_eq!(pending.permissions.to_string(), "gains: messages `read` -> `write`, env `PLUGBOX_ESCALATION_SECRET`");

    // A policy approving only part of it: still held.
    std::fs::write(up.join("plugin.yaml"), probe("up", "1.0.0", "{ messages: read }", &ops)).unwrap();
    let partial: Policy = serde_norway::from_str("approval: { auto-approve: { up: { messages: write } } }").unwrap();
    let host = builder().policy(partial).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    std::fs::write(up.join("plugin.yaml"), &greedy).unwrap();
    assert_eq!(host.reload_plugin("up").await.unwrap(), ReloadOutcome::PendingApproval);
    assert!(outcome(&serve_one(&host).await, ops[0]).starts_with("err:"));

    // A policy approving exactly these grants: swapped in.
    std::fs::write(up.join("plugin.yaml"), probe("up", "1.0.0", "{ messages: read }", &ops)).unwrap();
    let exact: Policy = serde_norway::from_str(
        "approval:\n  auto-approve:\n    up: { messages: write, env: [PLUGBOX_ESCALATION_SECRET] }\n",
    )
    .unwrap();
    let host = builder().policy(exact).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    std::fs::write(up.join("plugin.yaml"), &greedy).unwrap();
    assert!(matches!(host.reload_plugin("up").await.unwrap(), ReloadOutcome::Reloaded { .. }));
    assert_eq!(outcome(&serve_one(&host).await, ops[0]), "ok:hunter2");
    before.assert_within(64, 256 * MIB);
}

#[test]
fn plugbox_check_takes_the_data_root_from_a_flag_or_the_environment() {
    let dir = PluginDir::new();
    let own = dir.add("probe", plugbox_artifacts::SANDBOX_PROBE, &probe("probe", "0.1.0", "[write_files]", &[]));
    let outside = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: Option<&Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_plugbox"));
        cmd.arg("check").args(args).arg(&own);
        cmd.env("PLUGBOX_CACHE_DIR", std::env::temp_dir().join("plugbox-test-cache")).env_remove("PLUGBOX_POLICY");
        match env {
            Some(p) => cmd.env("PLUGBOX_DATA_DIR", p),
            None => cmd.env_remove("PLUGBOX_DATA_DIR"),
        };
        let o = cmd.output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    // Inside the plugin's own directory (which the loader reads): refused.
    let inside = own.join("data");
    let out = run(&["--data-dir", inside.to_str().unwrap()], None);
    assert!(out.contains("NOT granted: data directory: the data root") && out.contains("rule: no escalation"), "{out}");
    assert!(!inside.exists());
    // Outside every plugin directory, from the environment: granted, 0700.
    let root = outside.path().join("data");
    let out = run(&[], Some(&root));
    assert!(out.contains("/plugin-data") && !out.contains("NOT granted: data directory"), "{out}");
    assert!(root.join("probe").is_dir());
}
