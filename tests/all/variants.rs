//! Variants of the attacks the other adversarial tests try, written the way a
//! hostile plugin author would try them next: the same classes (escalation,
//! message access, output budget, host resources) through a door next to the
//! one already tested. Real compiled plugins (`sandbox-probe`,
//! `resource-hog`, `hostile-output`), real files; each test checks that a
//! well-behaved plugin keeps serving and that the host stayed bounded.

use std::time::{Duration, Instant};

use plugbox_host::{
    BreakerConfig, BreakerState, Host, HostBuilder, Policy, ReloadOutcome, RequestContext,
};

use crate::bounds::{Bounds, MIB, assert_fast};
use crate::hostile::*;
use crate::*;

/// `resource-hog` as plugin `hog` with `permissions`, running `ops`.
fn hog(permissions: &str, ops: &[&str]) -> String {
    let ops: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
    format!(
        "name: hog\nversion: 0.1.0\nhooks: [pre-request]\non-error: fail-open\n\
         limits: {{ timeout: 5s, instances: 1 }}\npermissions: {permissions}\n\
         config:\n  ops: {{ type: array, default: [{}] }}\n",
        ops.join(", ")
    )
}

/// The `hostile-output` fixture as plugin `hostile` doing `attack`.
fn hostile(attack: &str, messages: &str, max_output: &str, size: usize) -> String {
    let fixture = std::fs::read_to_string(plugbox_artifacts::fixture("hostile-output").unwrap().manifest).unwrap();
    fixture
        .replace("name: hostile-output", "name: hostile")
        .replace("messages: none", &format!("messages: {messages}"))
        .replace("max-output: 1KiB", &format!("max-output: {max_output}"))
        .replace("attack: { type: string, default: none", &format!("attack: {{ type: string, default: {attack}"))
        .replace("size: { type: integer, default: 4194304", &format!("size: {{ type: integer, default: {size}"))
}

async fn load(builder: HostBuilder, dir: &PluginDir) -> Host {
    let host = builder.build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "load failures: {:?}", report.failed);
    host
}

// ---- escalation ------------------------------------------------------------

/// A policy root that holds the data root would let one plugin write (and
/// read) another plugin's private data directory: no grant may overlap the
/// data root, read-only or read-write; each plugin sees its own data only at
/// `/plugin-data`.
#[tokio::test]
async fn a_grant_over_the_data_root_cannot_reach_another_plugins_data() {
    let before = Bounds::now();
    let outer = tempfile::tempdir().unwrap();
    let data_root = outer.path().join("data");
    std::fs::create_dir_all(data_root.join("victim")).unwrap();
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add(
        "victim",
        plugbox_artifacts::SANDBOX_PROBE,
        &probe("victim", "0.1.0", "[write_files]", &["write:/plugin-data/secret.txt"]),
    );
    let grants = format!(
        "{{ filesystem: [{{ host: {:?}, guest: /v, access: read-write }}, {{ host: {:?}, guest: /o, access: read }}] }}",
        data_root.join("victim"),
        outer.path()
    );
    let ops = ["write:/v/secret.txt", "read:/o/data/victim/secret.txt", "list:/o"];
    dir.add("thief", plugbox_artifacts::SANDBOX_PROBE, &probe("thief", "0.1.0", &grants, &ops));
    let policy = Policy { filesystem_roots: vec![outer.path().to_path_buf()], ..Default::default() };
    let host = load(builder().policy(policy).data_root(&data_root), &dir).await;

    serve_one(&host).await; // `victim` writes its secret (after `thief`, by name)
    assert_eq!(std::fs::read_to_string(data_root.join("victim/secret.txt")).unwrap(), "written by sandbox-probe");
    let ctx = serve_one(&host).await;
    for op in &ops {
        assert!(outcome(&ctx, op).starts_with("err:"), "{op}: {}", outcome(&ctx, op));
    }
    let d = denied(&host, "thief");
    let root = data_root.canonicalize().unwrap();
    for guest in ["/v", "/o"] {
        assert!(
            d.lines()
                .any(|l| l.contains(&format!("-> `{guest}`"))
                    && l.contains(&format!("the data root `{}`", root.display()))),
            "{guest}: {d}"
        );
    }
    assert!(host.plugin("thief").unwrap().capabilities().preopens.is_empty());
    before.assert_within(64, 256 * MIB);
}

/// A plugin whose new version names itself after another plugin (one that is
/// not loaded right now) would take over that plugin's kv namespace, data
/// directory, policy section and approvals: an upgrade that changes the name
/// is held for the operator, whatever else it gains.
#[tokio::test]
async fn an_upgrade_that_renames_itself_after_another_plugin_is_held() {
    let before = Bounds::now();
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add("victim", plugbox_artifacts::SANDBOX_PROBE, &probe("victim", "0.1.0", "{ kv: true }", &["kv-set:secret"]));
    let evil =
        dir.add("evil", plugbox_artifacts::SANDBOX_PROBE, &probe("evil", "0.1.0", "{ kv: true }", &["kv-get:secret"]));
    let host = load(builder(), &dir).await;
    serve_one(&host).await;
    assert_eq!(outcome(&serve_one(&host).await, "kv-get:secret"), "ok:absent", "its own namespace");
    host.unload("victim").await.unwrap(); // the namespace stays, for when it comes back

    std::fs::write(evil.join("plugin.yaml"), probe("victim", "0.2.0", "{ kv: true }", &["kv-get:secret"])).unwrap();
    assert_eq!(host.reload_plugin("evil").await.unwrap(), ReloadOutcome::PendingApproval);
    assert_eq!(outcome(&serve_one(&host).await, "kv-get:secret"), "ok:absent", "the old version serves");
    assert!(host.plugin("victim").is_none());
    let pending = host.status("victim").unwrap().pending.unwrap();
    assert!(pending.permissions.to_string().contains("name `evil` -> `victim`"), "{}", pending.permissions);

    // Approved by the operator: it serves under the new name, in place of `evil`.
    assert!(matches!(
        host.approve("victim").await.unwrap(),
        ReloadOutcome::Reloaded { .. } | ReloadOutcome::Loaded { .. }
    ));
    assert!(host.plugin("evil").is_none(), "the renamed files no longer serve as `evil`");
    assert_eq!(outcome(&serve_one(&host).await, "kv-get:secret"), "ok:x");
    before.assert_within(64, 256 * MIB);
}

// ---- message access --------------------------------------------------------

/// Tool definitions are message data: a `none` plugin may count them but
/// not read them (the read is refused and is a failure of its call), and
/// the provider gets them back intact either way.
#[tokio::test]
async fn a_plugin_without_message_access_does_not_read_tool_definitions() {
    let tool = plugbox_host::Tool::function("bill", "internal: call the billing API", serde_json::json!({"k": 1}));
    for messages in ["none", "read"] {
        let dir = PluginDir::new();
        with_ok(&dir);
        dir.add("hostile", plugbox_artifacts::HOSTILE_OUTPUT, &hostile("read", messages, "1KiB", 0));
        let host = load(builder(), &dir).await;
        let req = request("hi").with_tool(tool.clone());
        let ctx = RequestContext::new("m");
        let seen_by_provider = std::sync::Arc::new(parking_lot::Mutex::new(None));
        let seen = seen_by_provider.clone();
        let resp = host
            .run_request(&ctx, req, move |r: plugbox_host::ChatRequest| {
                *seen.lock() = r.tools.clone();
                echo(r)
            })
            .await
            .unwrap();
        assert_eq!(text(&resp), "echo: hi [ok]");
        let seen_tools = ctx.get("seen-tools");
        if messages == "none" {
            assert_eq!(seen_tools, None, "{messages}");
            let error = ctx.get("error").unwrap_or_default();
            assert!(error.starts_with("denied:") && error.contains("`$.tools`"), "{messages}: {error}");
            let action = ctx.trace().into_iter().find(|t| t.plugin == "hostile").unwrap().action;
            assert!(action.starts_with("failed-open:"), "{action}");
        } else {
            let seen_tools = seen_tools.unwrap_or_default();
            assert!(seen_tools.contains("internal: call the billing API"), "{messages}: {seen_tools}");
        }
        assert_eq!(*seen_by_provider.lock(), Some(vec![tool.clone()]), "{messages}: the provider gets the real definitions");
    }
}

// ---- output budget ---------------------------------------------------------

/// Many tiny context entries cost the host far more than their bytes: every
/// entry is charged on top of its key and value, so a flood of empty keys
/// stops after a few thousand.
#[tokio::test]
async fn a_flood_of_empty_context_keys_is_refused_early() {
    let before = Bounds::now();
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add("hostile", plugbox_artifacts::HOSTILE_OUTPUT, &hostile("context-keys", "none", "1KiB", 500_000));
    let host = load(builder(), &dir).await;
    for _ in 0..3 {
        let ctx = serve_one(&host).await;
        let action = ctx.trace().into_iter().find(|t| t.plugin == "hostile").unwrap().action;
        assert!(action.starts_with("failed-open:") && action.contains("context write refused"), "{action}");
        let entries = ctx.values().len();
        assert!(entries < 20_000, "{entries} entries");
        assert!(ctx.context_bytes() < MIB as usize);
    }
    before.assert_within(64, 128 * MIB);
}

/// A parameter set through `set-param` is JSON checked by the host: a wide
/// one made of tiny values costs the host no more than its bytes and passes
/// on; a deep one is refused as invalid (the guest sees `invalid`, nothing
/// changes, and it is not a failure). A plugin is charged for what it
/// changes, not for what it passes on: the plugin after one that filled the
/// request up to its own budget is not pushed past a smaller one.
#[tokio::test]
async fn wide_and_deep_params_are_checked_without_building_them() {
    let dir = PluginDir::new();
    dir.add(
        "ok",
        plugbox_artifacts::SCRIPTED,
        &scripted("ok", 50, "modify", "continue")
            .replace("{ timeout: 100ms, memory: 16MiB }", "{ timeout: 2s, memory: 64MiB }"),
    );
    dir.add("hostile", plugbox_artifacts::HOSTILE_OUTPUT, &hostile("deep-param", "none", "1MiB", 100_000));
    let wide = hostile("wide-param", "none", "8MiB", 6 << 20).replace("name: hostile", "name: wide").replace(
        "hooks: [pre-request, post-response, on-chunk, on-stream-end, on-tool-call, provider]",
        "hooks: [pre-request]",
    );
    dir.add("wide", plugbox_artifacts::HOSTILE_OUTPUT, &wide);
    let host = load(builder(), &dir).await;
    for _ in 0..3 {
        let ctx = RequestContext::new("m");
        let started = Instant::now();
        let param = std::sync::Arc::new(parking_lot::Mutex::new(0usize));
        let seen = param.clone();
        let resp = host
            .run_request(&ctx, request("hi"), move |r: plugbox_host::ChatRequest| {
                *seen.lock() = r.extra.get("a").map_or(0, |a| a.to_string().len());
                echo(r)
            })
            .await
            .unwrap();
        assert_fast("a wide and a deep parameter", started.elapsed(), Duration::from_secs(10));
        let trace = ctx.trace();
        let action = |p: &str| trace.iter().find(|t| t.plugin == p).unwrap().action.clone();
        let error = ctx.get("error").unwrap_or_default();
        assert!(error.starts_with("invalid:"), "the deep parameter is refused as invalid: {error}");
        assert!(!action("hostile").starts_with("failed"), "an invalid value is not a failure: {trace:?}");
        assert!(!action("wide").starts_with("failed"), "{trace:?}");
        assert!(!action("ok").starts_with("failed"), "`ok` (max-output 4 MiB) passes the 6 MiB parameter on: {trace:?}");
        assert_eq!(text(&resp), "echo: hi [ok]");
        assert!(*param.lock() >= 6 << 20, "the wide parameter is valid and passes on");
    }
    assert_eq!(host.plugin("hostile").unwrap().stats().errors, 0);
}

// ---- host resources --------------------------------------------------------

/// A data directory nested deeper than a path can name cannot be measured:
/// it counts as over its quota (the call fails, the directory turns
/// read-only), so nesting is no way around the disk quota.
#[tokio::test]
async fn a_data_directory_too_deep_to_measure_is_over_its_quota() {
    let before = Bounds::now();
    let flood = "disk-flood:/plugin-data:4194304:65536";
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add("hog", plugbox_artifacts::RESOURCE_HOG, &hog("[write_files]", &["mkdir-deep:30", flood]));
    let data_root = tempfile::tempdir().unwrap();
    let policy: Policy = serde_norway::from_str("resources:\n  data-dir: 1MiB\n").unwrap();
    let host = load(builder().policy(policy).data_root(data_root.path()), &dir).await;

    let ctx = serve_one(&host).await;
    assert_eq!(outcome(&ctx, "mkdir-deep:30"), "ok:made 30");
    let stats = host.plugin("hog").unwrap().stats();
    assert_eq!(stats.errors, 1, "the call that left an unmeasurable directory fails: {stats:?}");
    for _ in 0..3 {
        let out = outcome(&serve_one(&host).await, flood);
        assert!(out.starts_with("err:wrote 0: "), "read-only from now on: {out}");
    }
    let written: u64 = std::fs::read_dir(data_root.path().join("hog"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert_eq!(written, 4 << 20, "nothing written after the first call");
    host.uninstall("hog").await.unwrap();
    assert!(!data_root.path().join("hog").exists(), "uninstall removes even a deep directory");
    before.assert_within(64, 256 * MIB);
}

// ---- deadlines under churn ---------------------------------------------------

/// Hot reload swaps in versions whose `init` spins for 1.5 s, again and
/// again, on a current-thread runtime (one async worker for everything). The
/// instance a new version gets at load is made on a blocking thread, so the
/// reload never holds the request path: requests through `ok` and through the
/// version still serving answer within their own deadlines meanwhile, and each
/// version serves until the next one is swapped in.
#[tokio::test]
async fn a_spinning_init_under_hot_reload_churn_does_not_hold_requests() {
    let before = Bounds::now();
    let host = builder().build().unwrap();
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add("churn", plugbox_artifacts::SLOW_INIT, &crate::deadlines::slow("churn", "50ms", 2, &[]));
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    for round in 1..=3 {
        let manifest = crate::deadlines::slow("churn", "50ms", 2, &[("init_ms", "1500")])
            .replace("version: 0.1.0", &format!("version: 0.1.{round}"));
        std::fs::write(dir.path().join("churn/plugin.yaml"), manifest).unwrap();
        let reload = {
            let (host, path) = (host.clone(), dir.path().to_path_buf());
            tokio::spawn(async move { host.reload_dir(&path).await })
        };
        let started = Instant::now();
        let mut served = 0;
        while !reload.is_finished() {
            // Timed around the pause too: a worker held by the reload shows up
            // as a late wake-up as much as a slow request.
            let t = Instant::now();
            serve_one(&host).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_fast(
                "a request while a version with a spinning init loads",
                t.elapsed(),
                Duration::from_millis(500),
            );
            served += 1;
        }
        let changes = reload.await.unwrap().unwrap();
        assert_eq!(changes.names(|o| matches!(o, ReloadOutcome::Reloaded { .. })), ["churn"], "round {round}");
        assert!(
            started.elapsed() >= Duration::from_millis(1400),
            "the new version's init ran: {:?}",
            started.elapsed()
        );
        assert!(served >= 5, "round {round}: requests were served while the version loaded ({served})");
        assert_eq!(host.plugin("churn").unwrap().manifest().version.to_string(), format!("0.1.{round}"));
    }
    before.assert_within(64, 256 * MIB);
}

/// 64 calls fail at once (each sleeps 50 ms, then traps): the breaker trips
/// once, with its first back-off (before: each later group of five failures
/// tripped it again and doubled the back-off, up to its maximum); every call
/// is counted once in the stats. When the back-off ends, 64 calls at once let
/// exactly one probe run; its failure opens the breaker for twice as long.
#[tokio::test]
async fn concurrent_failures_trip_the_breaker_once_and_half_open_lets_one_probe_through() {
    let before = Bounds::now();
    let backoff = Duration::from_millis(800);
    let breaker = BreakerConfig { threshold: 5, backoff, max_backoff: Duration::from_secs(60) };
    let host = builder().circuit_breaker(breaker).build().unwrap();
    let dir = PluginDir::new();
    with_ok(&dir);
    let manifest = crate::deadlines::slow("flaky", "2s", 32, &[("pre", "sleep-trap")]);
    dir.add("flaky", plugbox_artifacts::SLOW_INIT, &manifest);
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let mut events = host.subscribe();

    let burst = |host: Host| async move {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let host = host.clone();
            set.spawn(async move { serve_one(&host).await });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    };
    burst(host.clone()).await;
    let flaky = host.plugin("flaky").unwrap();
    let stats = flaky.stats();
    assert_eq!((stats.calls, stats.traps), (64, 64), "each call counted once: {stats:?}");
    match stats.breaker {
        BreakerState::Open { remaining_ms } => {
            assert!(remaining_ms <= backoff.as_millis() as u64, "tripped once, first back-off: {remaining_ms} ms")
        }
        other => panic!("the breaker must be open: {other:?}"),
    }
    let mut trips = 0;
    while let Ok(e) = events.try_recv() {
        trips += matches!(e.kind, plugbox_host::PluginEventKind::Quarantined { .. }) as u32;
    }
    assert_eq!(trips, 1, "one quarantine event");

    tokio::time::sleep(backoff + Duration::from_millis(100)).await;
    assert_eq!(flaky.stats().breaker, BreakerState::HalfOpen);
    burst(host.clone()).await;
    let stats = flaky.stats();
    assert_eq!((stats.calls, stats.traps), (65, 65), "exactly one probe ran: {stats:?}");
    match stats.breaker {
        BreakerState::Open { remaining_ms } => assert!(
            remaining_ms > backoff.as_millis() as u64 && remaining_ms <= 2 * backoff.as_millis() as u64,
            "the failed probe doubles the back-off: {remaining_ms} ms"
        ),
        other => panic!("the breaker must be open again: {other:?}"),
    }
    before.assert_within(64, 256 * MIB);
}

// ---- kv, host-wide -------------------------------------------------------------

/// Eight plugins fill their kv quota (4 MiB each) in the same requests. Each
/// quota holds, but together they would make the in-memory store hold 32 MiB
/// (and with quotas raised by the policy, the number of plugins times the
/// raised quota): the store has one host-wide limit (here 8 MiB), and the
/// writes past it are refused naming it, while `ok` keeps serving.
#[tokio::test]
async fn many_plugins_filling_their_kv_quota_stay_within_the_host_wide_limit() {
    let before = Bounds::now();
    let dir = PluginDir::new();
    with_ok(&dir);
    let flood = "kv-flood:4194304:65536";
    for i in 0..8 {
        let manifest = hog("{ kv: true }", &[flood]).replace("name: hog", &format!("name: hog{i}"));
        dir.add(&format!("hog{i}"), plugbox_artifacts::RESOURCE_HOG, &manifest);
    }
    let host = load(builder().kv_memory_limit(8 * MIB), &dir).await;
    for _ in 0..3 {
        let ctx = serve_one(&host).await;
        let out = outcome(&ctx, flood);
        assert!(
            out.contains("host-wide limit of 8388608 bytes"),
            "the last hog is refused by the host-wide limit: {out}"
        );
    }
    let mut total = 0;
    for i in 0..8 {
        total += host.kv().usage(&format!("hog{i}")).await.unwrap().bytes;
    }
    assert!(total <= 8 * MIB && total > 6 * MIB, "the store holds up to its limit: {total}");
    host.uninstall("hog0").await.unwrap();
    let ctx = serve_one(&host).await;
    assert!(outcome(&ctx, flood).starts_with("err:stored"), "{}", outcome(&ctx, flood));
    assert!(host.kv().usage("hog1").await.unwrap().bytes > 0);
    before.assert_within(64, 256 * MIB);
}

// ---- outgoing HTTP ---------------------------------------------------------------

/// A loopback server that answers every request with `head` and then a body
/// of `len` bytes dripped one byte every 100 ms; counts connections closed
/// by the client before the body ended.
async fn drip_server(head_extra: String, len: usize) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = cut.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (head_extra, cut) = (head_extra.clone(), counter.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n{head_extra}\r\n");
                if sock.write_all(head.as_bytes()).await.is_err() {
                    cut.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                for _ in 0..len {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if sock.write_all(b"x").await.is_err() {
                        cut.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                }
            });
        }
    });
    (port, cut)
}

/// A response that drips one byte every 100 ms: the hook reading its body
/// ends at its own deadline (300 ms), every time, so the request's permits
/// come back with the instance (ten calls in a row time out rather than run
/// into the plugin's limit of 8 requests at once) and the server sees each
/// connection closed; `ok` keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_response_cannot_hold_a_hook_past_its_deadline() {
    let before = Bounds::now();
    let (port, cut) = drip_server(String::new(), 1000).await;
    let op = format!("http-get:http://127.0.0.1:{port}/drip");
    let permissions = format!("{{ network: [\"127.0.0.1:{port}\"] }}");
    let dir = PluginDir::new();
    with_ok(&dir);
    let manifest = hog(&permissions, &[&op]).replace("timeout: 5s", "timeout: 300ms");
    dir.add("hog", plugbox_artifacts::RESOURCE_HOG, &manifest);
    let no_breaker = BreakerConfig { threshold: 0, ..Default::default() };
    let host = load(builder().circuit_breaker(no_breaker), &dir).await;
    for _ in 0..10 {
        let started = Instant::now();
        let ctx = RequestContext::new("m");
        let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
        assert!(text(&resp).contains("[ok]"), "`ok` keeps serving: {resp:?}");
        assert_fast("a request whose hook reads a dripping body", started.elapsed(), Duration::from_millis(1500));
    }
    let stats = host.plugin("hog").unwrap().stats();
    assert_eq!(stats.timeouts, 10, "each call ended at its deadline: {stats:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cut.load(std::sync::atomic::Ordering::SeqCst), 10, "every connection was closed by the host");
    before.assert_within(64, 64 * MIB);
}

/// Response headers of 4 MiB: refused by the HTTP client (the guest gets an
/// error), not collected; the hook returns and `ok` keeps serving.
#[tokio::test]
async fn huge_response_headers_are_refused() {
    let before = Bounds::now();
    let big = format!("x-big: {}\r\n", "h".repeat(4 << 20));
    let (port, _) = drip_server(big, 0).await;
    let op = format!("http-get:http://127.0.0.1:{port}/headers");
    let permissions = format!("{{ network: [\"127.0.0.1:{port}\"] }}");
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add("hog", plugbox_artifacts::RESOURCE_HOG, &hog(&permissions, &[&op]));
    let host = load(builder(), &dir).await;
    let out = outcome(&serve_one(&host).await, &op);
    assert!(out.starts_with("err:"), "{out}");
    before.assert_within(64, 64 * MIB);
}
