//! Host resources a hostile plugin tries to exhaust: its kv namespace, the
//! log, outgoing HTTP and its data directory. Each test checks that the
//! attack stopped at the plugin's limit, that the host's memory, descriptors
//! and latency stayed bounded, and that another plugin kept serving.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use plugbox_host::{Host, Policy, RequestContext};

use crate::bounds::{Bounds, MIB, assert_fast};
use crate::*;

fn hog_manifest(permissions: &str, limits: &str, ops: &[&str]) -> String {
    let ops: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
    format!(
        "name: hog\nversion: 0.1.0\nhooks: [pre-request]\npriority: 1\non-error: fail-open\n\
         limits: {limits}\npermissions: {permissions}\n\
         config:\n  ops: {{ type: array, default: [{}] }}\n",
        ops.join(", ")
    )
}

/// A plugin directory with the hog and a healthy `ok` plugin.
fn hog_dir(manifest: &str) -> PluginDir {
    let dir = PluginDir::new();
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 50, "modify", "continue"));
    dir.add("hog", plugbox_artifacts::RESOURCE_HOG, manifest);
    dir
}

/// One request: the hog attacks, `ok` must still do its job. Returns the
/// context with the hog's outcomes.
async fn attack(host: &Host) -> RequestContext {
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]", "the other plugin must keep serving");
    ctx
}

fn outcome(ctx: &RequestContext, op: &str) -> String {
    ctx.get(op).unwrap_or_else(|| panic!("op `{op}` did not run: {:?}", ctx.values()))
}

async fn loaded(host: &Host, dir: &Path) {
    let report = host.load_dir(dir).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
}

#[tokio::test]
async fn kv_flood_stops_at_the_quota() {
    // 512 MiB asked, in 256 KiB values (the largest allowed), by a plugin capped at 16 MiB of memory.
    let op = "kv-flood:536870912:262144";
    let dir = hog_dir(&hog_manifest("{ kv: true }", "{ timeout: 2s, memory: 16MiB, instances: 1 }", &[op]));
    let host = host();
    loaded(&host, dir.path()).await;
    let before = Bounds::now();
    for _ in 0..4 {
        let ctx = attack(&host).await;
        let out = outcome(&ctx, op);
        assert!(out.starts_with("err:stored "), "{out}");
        assert!(out.contains("over the `bytes` limit of 4194304 bytes"), "{out}");
    }
    let usage = host.kv().usage("hog").await.unwrap();
    assert!(usage.bytes <= 4 << 20, "{usage:?}");
    before.assert_within(64, 64 * MIB);

    // The operator's policy sets another quota for this plugin.
    let policy: Policy = serde_norway::from_str("plugins:\n  hog:\n    resources:\n      kv: { keys: 3 }\n").unwrap();
    let host = builder().policy(policy).build().unwrap();
    loaded(&host, dir.path()).await;
    let out = outcome(&attack(&host).await, op);
    assert!(
        out.starts_with("err:stored 786432: ") && out.contains("kv quota: `4` keys is over the `keys` limit of 3"),
        "{out}"
    );
    assert_eq!(host.plugin("hog").unwrap().resource_limits().kv.keys, 3);
}

#[tokio::test]
async fn keys_are_gone_after_uninstall_and_after_hot_reload_removes_the_files() {
    let ops = ["kv-flood:30:10", "disk-flood:/plugin-data:10:10"];
    let manifest = hog_manifest("{ kv: true, data-dir: true }", "{ timeout: 2s, instances: 1 }", &ops);
    let dir = hog_dir(&manifest);
    let data_root = tempfile::tempdir().unwrap();
    let host = builder().data_root(data_root.path()).build().unwrap();
    loaded(&host, dir.path()).await;
    let ctx = attack(&host).await;
    assert_eq!(outcome(&ctx, ops[0]), "ok:stored 30");
    assert_eq!(outcome(&ctx, ops[1]), "ok:wrote 10");
    assert_eq!(host.kv().keys("hog").await.unwrap().len(), 3);

    // Unload keeps the data ...
    host.unload("hog").await.unwrap();
    assert_eq!(host.kv().keys("hog").await.unwrap().len(), 3, "unload keeps kv data");
    assert!(data_root.path().join("hog").exists(), "unload keeps the data directory");
    // ... uninstall removes it.
    host.uninstall("hog").await.unwrap();
    assert!(host.kv().keys("hog").await.unwrap().is_empty(), "uninstall drops the kv namespace");
    assert!(!data_root.path().join("hog").exists(), "uninstall removes the data directory");
    assert!(host.plugin("hog").is_none());

    // Loaded again (explicitly: a plugin that reappears through hot reload
    // would wait for approval), it writes again; then its files are removed
    // and hot reload runs.
    host.load_plugin(&dir.path().join("hog")).await.unwrap();
    attack(&host).await;
    assert_eq!(host.kv().keys("hog").await.unwrap().len(), 3);
    std::fs::remove_dir_all(dir.path().join("hog")).unwrap();
    host.reload_dir(dir.path()).await.unwrap();
    assert!(host.plugin("hog").is_none());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host.kv().keys("hog").await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "hot reload removed the files but the kv keys stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    attack(&host).await;
}

#[tokio::test]
async fn log_flood_is_dropped_and_counted_without_stretching_the_hook() {
    // 8 MiB through the log import and 2 MiB on stdout, per call, with a 200 ms deadline.
    let ops = ["log-flood:8388608:16384", "print-flood:2097152:8192"];
    let dir = hog_dir(&hog_manifest("{}", "{ timeout: 200ms, memory: 64MiB, instances: 1 }", &ops));
    let host = host();
    loaded(&host, dir.path()).await;
    let before = Bounds::now();
    let mut finished = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let ctx = attack(&host).await;
        // The deadline holds whatever the log does: writing lines never happens inside the hook.
        assert_fast("a request through a log-flooding plugin", started.elapsed(), Duration::from_secs(1));
        if let Some(out) = ctx.get(ops[1]) {
            assert_eq!(out, "ok:logged 2097152");
            assert_eq!(outcome(&ctx, ops[0]), "ok:logged 8388608");
            finished += 1;
        }
    }
    let stats = host.plugin("hog").unwrap().stats();
    assert_eq!(stats.timeouts + finished, 5, "{stats:?}");
    // Each call sends 512 + 256 lines; the byte burst (1 MiB) lets only a few dozen through.
    assert!(stats.log_lines_dropped > 5 * 400, "{stats:?}");
    before.assert_within(64, 64 * MIB);
}

#[tokio::test]
async fn pending_outgoing_requests_are_capped_and_not_kept_by_idle_instances() {
    // A listener that never answers (nor accepts): requests to it stay pending.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/never");
    let permissions = format!("{{ network: [\"127.0.0.1:{port}\"] }}");

    // Over the per-plugin cap (8) the guest gets an HTTP error.
    let flood = format!("http-hold:{url}:20");
    let dir = hog_dir(&hog_manifest(&permissions, "{ timeout: 2s, instances: 1 }", &[&flood]));
    let capped = host();
    loaded(&capped, dir.path()).await;
    let out = outcome(&attack(&capped).await, &flood);
    assert!(out.starts_with("err:accepted 8: ") && out.contains("ConnectionLimitReached"), "{out}");
    drop(capped);

    // Pooled instances keeping pending requests across hundreds of calls.
    let hold = format!("http-hold:{url}:4");
    let dir = hog_dir(&hog_manifest(&permissions, "{ timeout: 2s, instances: 2 }", &[&hold]));
    let host = host();
    loaded(&host, dir.path()).await;
    let before = Bounds::now();
    for _ in 0..200 {
        let out = outcome(&attack(&host).await, &hold);
        assert!(out.starts_with("ok:accepted") || out.contains("ConnectionLimitReached"), "{out}");
    }
    // Aborted requests close their sockets on the runtime's next turn.
    tokio::time::sleep(Duration::from_millis(200)).await;
    before.assert_within(64, 64 * MIB);
    let stats = host.plugin("hog").unwrap().stats();
    assert!(stats.instances_discarded >= 200, "an instance holding requests is not pooled: {stats:?}");
    // Idle now: at most the fresh instance the background warmer made, which
    // holds no request (the descriptor bound above would show it).
    assert!(host.plugin("hog").unwrap().idle_instances() <= 1);
    drop(listener);
}

#[tokio::test]
async fn data_dir_flood_stops_at_the_quota() {
    let op = "disk-flood:/plugin-data:4194304:65536";
    let dir = hog_dir(&hog_manifest("[write_files]", "{ timeout: 2s, instances: 2 }", &[op]));
    let data_root = tempfile::tempdir().unwrap();
    let policy: Policy = serde_norway::from_str("resources:\n  data-dir: 1MiB\n").unwrap();
    let host = builder().policy(policy).data_root(data_root.path()).build().unwrap();
    loaded(&host, dir.path()).await;
    let size = || -> u64 {
        std::fs::read_dir(data_root.path().join("hog")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
    };

    // The first call overshoots by what it wrote, fails, and loses its instance.
    let ctx = attack(&host).await;
    assert_eq!(outcome(&ctx, op), "ok:wrote 4194304");
    let stats = host.plugin("hog").unwrap().stats();
    assert_eq!(stats.errors, 1, "the call that went over the quota fails: {stats:?}");
    // Later instances get the directory read-only: the flood stops there.
    for _ in 0..3 {
        let out = outcome(&attack(&host).await, op);
        assert!(out.starts_with("err:wrote 0: "), "{out}");
    }
    assert_eq!(size(), 4 << 20, "nothing written after the quota was passed");
    let snapshot = host.plugin("hog").unwrap().stats();
    assert_eq!(snapshot.errors, 4, "{snapshot:?}");

    // Back under the quota, the directory is writable again.
    for entry in std::fs::read_dir(data_root.path().join("hog")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    attack(&host).await; // measured again: under quota, read-write for the next instances
    assert_eq!(outcome(&attack(&host).await, op), "ok:wrote 4194304");
}
