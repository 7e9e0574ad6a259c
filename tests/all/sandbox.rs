//! The adversarial suite: a plugin tries to reach what it was not granted.
//! Every test checks both that the attempt failed and that the host keeps
//! serving other plugins correctly afterwards.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use plugbox_host::{BreakerConfig, BreakerState, FailureKind, Host, Policy, RequestContext};

use crate::*;

/// A loopback HTTP server standing in for the outside world. `GET /hello`
/// answers `200 hello`; `GET /redirect?to=<url>` answers `302` to `<url>`.
pub struct Server {
    pub port: u16,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(&stream);
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                            break;
                        }
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let reply = match path.strip_prefix("/redirect?to=") {
                        Some(to) => format!(
                            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        ),
                        None => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_string(),
                    };
                    let _ = (&stream).write_all(reply.as_bytes());
                });
            }
        });
        Server { port }
    }
}

fn probe_manifest(name: &str, permissions: &str, ops: &[&str]) -> String {
    let ops: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
    format!(
        "name: {name}\nversion: 0.1.0\nhooks: [pre-request]\npriority: 1\non-error: fail-open\n\
         limits: {{ timeout: 2s }}\npermissions: {permissions}\n\
         config:\n  ops: {{ type: array, default: [{}] }}\n",
        ops.join(", ")
    )
}

/// Loads the probe plus a healthy `ok` plugin; runs one request; returns the
/// context (each op's outcome) after checking `ok` did its job.
async fn attempt(host: &Host, dir: &Path) -> RequestContext {
    let report = host.load_dir(dir).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]", "the other plugin must keep working");
    // And again: the host keeps serving.
    let resp = host.run_request(&RequestContext::new("m"), request("again"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: again [ok]");
    ctx
}

fn with_ok(dir: &PluginDir) {
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 50, "modify", "continue"));
}

fn outcome(ctx: &RequestContext, op: &str) -> String {
    ctx.get(op).unwrap_or_else(|| panic!("op `{op}` did not run: {:?}", ctx.values()))
}

#[tokio::test]
async fn nothing_is_granted_by_default() {
    let server = Server::start();
    let dir = PluginDir::new();
    with_ok(&dir);
    let url = format!("http:http://127.0.0.1:{}/hello", server.port);
    let tcp = format!("tcp:127.0.0.1:{}", server.port);
    let ops = [
        "envs",
        "args",
        "preopens",
        "read:/etc/passwd",
        "list:/",
        "env:HOME",
        url.as_str(),
        "kv-get:x",
        tcp.as_str(),
        "dns:localhost",
    ];
    dir.add("probe", plugbox_artifacts::SANDBOX_PROBE, &probe_manifest("probe", "{}", &ops));
    let ctx = attempt(&host(), dir.path()).await;
    assert_eq!(outcome(&ctx, "envs"), "ok:", "no environment");
    assert_eq!(outcome(&ctx, "args"), "ok:", "no arguments");
    assert_eq!(outcome(&ctx, "preopens"), "ok:", "no directories");
    assert!(outcome(&ctx, "read:/etc/passwd").starts_with("err:"));
    assert!(outcome(&ctx, "list:/").starts_with("err:"));
    assert!(outcome(&ctx, "env:HOME").starts_with("err:"));
    assert!(outcome(&ctx, &url).contains("HttpRequestDenied"), "{}", outcome(&ctx, &url));
    assert!(outcome(&ctx, "kv-get:x").contains("Denied"), "{}", outcome(&ctx, "kv-get:x"));
    assert!(outcome(&ctx, &tcp).starts_with("err:"), "raw sockets: {}", outcome(&ctx, &tcp));
    assert!(outcome(&ctx, "dns:localhost").starts_with("err:"), "name lookup: {}", outcome(&ctx, "dns:localhost"));
}

#[tokio::test]
async fn file_escapes_fail() {
    let dir = PluginDir::new();
    with_ok(&dir);
    let manifest = probe_manifest(
        "probe",
        "{ filesystem: [{ host: ./data, guest: /data, access: read }] }",
        &[
            "read:/data/hello.txt",
            "read:/data/../plugin.yaml",
            "read:/plugin.yaml",
            "read:/etc/passwd",
            "read:/data/link-out",
            "read:/data/link-abs",
            "write:/data/new.txt",
            "write:/data/hello.txt",
            "list:/data",
        ],
    );
    let plugin_dir = dir.add("probe", plugbox_artifacts::SANDBOX_PROBE, &manifest);
    let data = plugin_dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("hello.txt"), "granted").unwrap();
    // Symlinks planted inside the granted directory, pointing out of it.
    std::os::unix::fs::symlink("../plugin.yaml", data.join("link-out")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("link-abs")).unwrap();

    let ctx = attempt(&host(), dir.path()).await;
    assert_eq!(outcome(&ctx, "read:/data/hello.txt"), "ok:granted");
    for op in [
        "read:/data/../plugin.yaml",
        "read:/plugin.yaml",
        "read:/etc/passwd",
        "read:/data/link-out",
        "read:/data/link-abs",
    ] {
        assert!(outcome(&ctx, op).starts_with("err:"), "{op}: {}", outcome(&ctx, op));
    }
    for op in ["write:/data/new.txt", "write:/data/hello.txt"] {
        assert!(outcome(&ctx, op).starts_with("err:"), "{op}: {}", outcome(&ctx, op));
    }
    assert!(!data.join("new.txt").exists(), "a read-only grant was written to");
    assert_eq!(std::fs::read_to_string(data.join("hello.txt")).unwrap(), "granted");
    assert_eq!(outcome(&ctx, "list:/data"), "ok:hello.txt,link-abs,link-out");
}

#[tokio::test]
async fn filesystem_outside_the_plugin_dir_needs_policy() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("shared.txt"), "shared").unwrap();
    let dir = PluginDir::new();
    with_ok(&dir);
    let grant = format!("{{ filesystem: [{{ host: {:?}, guest: /shared, access: read }}] }}", outside.path());
    dir.add("probe", plugbox_artifacts::SANDBOX_PROBE, &probe_manifest("probe", &grant, &["read:/shared/shared.txt"]));

    let host = host();
    let ctx = attempt(&host, dir.path()).await;
    assert!(outcome(&ctx, "read:/shared/shared.txt").starts_with("err:"));
    let probe = host.plugin("probe").unwrap();
    let denied = &probe.capabilities().denied;
    assert!(denied.iter().any(|d| d.contains("outside the plugin's directory")), "{denied:?}");

    let policy = Policy { filesystem_roots: vec![outside.path().to_path_buf()], ..Default::default() };
    let host = builder().policy(policy).build().unwrap();
    let ctx = attempt(&host, dir.path()).await;
    assert_eq!(outcome(&ctx, "read:/shared/shared.txt"), "ok:shared");
}

#[tokio::test]
async fn private_data_dir_is_writable_and_private() {
    let data_root = tempfile::tempdir().unwrap();
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add(
        "probe",
        plugbox_artifacts::SANDBOX_PROBE,
        &probe_manifest("probe", "[write_files]", &["write:/plugin-data/state.txt", "read:/plugin-data/state.txt"]),
    );
    let host = builder().data_root(data_root.path()).build().unwrap();
    let ctx = attempt(&host, dir.path()).await;
    assert_eq!(outcome(&ctx, "write:/plugin-data/state.txt"), "ok:written");
    assert_eq!(std::fs::read_to_string(data_root.path().join("probe/state.txt")).unwrap(), "written by sandbox-probe");
}

#[tokio::test]
async fn only_granted_env_vars_are_visible() {
    // SAFETY: these variables are set once, before the host reads them, and no
    // other test reads or writes them.
    unsafe {
        std::env::set_var("PLUGBOX_TEST_GRANTED", "yes");
        std::env::set_var("PLUGBOX_TEST_SECRET", "hunter2");
    }
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add(
        "probe",
        plugbox_artifacts::SANDBOX_PROBE,
        &probe_manifest(
            "probe",
            "{ env: [PLUGBOX_TEST_GRANTED] }",
            &["env:PLUGBOX_TEST_GRANTED", "env:PLUGBOX_TEST_SECRET", "envs"],
        ),
    );
    let ctx = attempt(&host(), dir.path()).await;
    assert_eq!(outcome(&ctx, "env:PLUGBOX_TEST_GRANTED"), "ok:yes");
    assert!(outcome(&ctx, "env:PLUGBOX_TEST_SECRET").starts_with("err:"));
    assert_eq!(outcome(&ctx, "envs"), "ok:PLUGBOX_TEST_GRANTED");
}

#[tokio::test]
async fn network_is_checked_per_host_port_and_per_redirect_hop() {
    let allowed = Server::start();
    let other = Server::start();
    let a = allowed.port;
    let b = other.port;
    let ok = format!("http:http://127.0.0.1:{a}/hello");
    let other_port = format!("http:http://127.0.0.1:{b}/hello");
    let other_name = format!("http:http://localhost:{a}/hello");
    let redirect = format!("http:http://127.0.0.1:{a}/redirect?to=http://127.0.0.1:{b}/hello");
    let redirect_ok = format!("http:http://127.0.0.1:{a}/redirect?to=http://127.0.0.1:{a}/hello");
    let dir = PluginDir::new();
    with_ok(&dir);
    let ops = [ok.as_str(), other_port.as_str(), other_name.as_str(), redirect.as_str(), redirect_ok.as_str()];
    dir.add(
        "probe",
        plugbox_artifacts::SANDBOX_PROBE,
        &probe_manifest("probe", &format!("{{ network: [\"127.0.0.1:{a}\"] }}"), &ops),
    );
    let ctx = attempt(&host(), dir.path()).await;
    assert_eq!(outcome(&ctx, &ok), "ok:200:hello");
    assert!(outcome(&ctx, &other_port).contains("HttpRequestDenied"), "{}", outcome(&ctx, &other_port));
    assert!(outcome(&ctx, &other_name).contains("HttpRequestDenied"), "{}", outcome(&ctx, &other_name));
    assert!(outcome(&ctx, &redirect).contains("HttpRequestDenied"), "{}", outcome(&ctx, &redirect));
    assert!(outcome(&ctx, &redirect_ok).ends_with("200:hello"), "{}", outcome(&ctx, &redirect_ok));
}

#[tokio::test]
async fn wildcard_network_needs_policy() {
    let server = Server::start();
    let url = format!("http:http://127.0.0.1:{}/hello", server.port);
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add(
        "probe",
        plugbox_artifacts::SANDBOX_PROBE,
        &probe_manifest("probe", "{ network: [\"*\"] }", &[url.as_str()]),
    );
    let host = host();
    let ctx = attempt(&host, dir.path()).await;
    assert!(outcome(&ctx, &url).contains("HttpRequestDenied"));
    assert!(host.plugin("probe").unwrap().capabilities().denied.iter().any(|d| d.contains("wildcard")));

    let host = builder().policy(Policy { allow_wildcard_network: true, ..Default::default() }).build().unwrap();
    let ctx = attempt(&host, dir.path()).await;
    assert_eq!(outcome(&ctx, &url), "ok:200:hello");
}

#[tokio::test]
async fn kv_namespaces_are_private() {
    let dir = PluginDir::new();
    with_ok(&dir);
    dir.add("writer", plugbox_artifacts::SANDBOX_PROBE, &probe_manifest("writer", "{ kv: true }", &["kv-set:secret"]));
    dir.add("reader", plugbox_artifacts::SANDBOX_PROBE, &probe_manifest("reader", "{ kv: true }", &["kv-get:secret"]));
    let host = host();
    let ctx = attempt(&host, dir.path()).await;
    assert_eq!(outcome(&ctx, "kv-set:secret"), "ok:set");
    assert_eq!(outcome(&ctx, "kv-get:secret"), "ok:absent", "another plugin's key must be invisible");
    assert_eq!(host.kv().keys("writer").await.unwrap(), ["secret"]);
}

#[tokio::test]
async fn asking_for_everything_under_a_strict_policy() {
    let dir = PluginDir::new();
    with_ok(&dir);
    let greedy = "{ messages: write, kv: true, network: [\"*\", \"*.example.com\", \"api.example.com:443\"], \
                  filesystem: [{ host: /, guest: /root, access: read-write }, { host: ./, guest: /self, access: read }], \
                  env: [PLUGBOX_NOT_SET_ANYWHERE], data-dir: true }";
    let manifest = probe_manifest("greedy", greedy, &["read:/root/etc/passwd", "list:/self", "preopens"])
        .replace("limits: { timeout: 2s }", "limits: { timeout: 2s, memory: 1GiB, instances: 200 }");
    dir.add("greedy", plugbox_artifacts::SANDBOX_PROBE, &manifest);
    // A data root inside the plugin root is refused.
    let host = builder().data_root(dir.path().join("data-inside-the-root")).build().unwrap();
    let ctx = attempt(&host, dir.path()).await;
    let p = host.plugin("greedy").unwrap();
    let caps = p.capabilities();
    let denied = caps.denied.join("\n");
    for needle in [
        "filesystem `/`",
        "network `*`",
        "network `*.example.com`",
        "env `PLUGBOX_NOT_SET_ANYWHERE`",
        "data directory",
        "limits.memory",
        "limits.instances",
    ] {
        assert!(denied.contains(needle), "`{needle}` not reported in:\n{denied}");
    }
    // What is within its own directory and exact hosts is granted.
    assert_eq!(caps.network.iter().map(|n| n.to_string()).collect::<Vec<_>>(), ["api.example.com:443"]);
    assert_eq!(p.limits().memory, 256 << 20);
    assert_eq!(p.limits().instances, 32);
    assert!(outcome(&ctx, "read:/root/etc/passwd").starts_with("err:"));
    assert_eq!(outcome(&ctx, "preopens"), "ok:/self");
}

#[tokio::test]
async fn loops_in_every_hook_kind_time_out() {
    let mut manifest = scripted("looper", 1, "loop", "loop");
    manifest = manifest
        .replace("chunk: { type: string, default: continue }", "chunk: { type: string, default: loop }")
        .replace("tool: { type: string, default: allow }", "tool: { type: string, default: loop }");
    let dir = PluginDir::new();
    dir.add("looper", plugbox_artifacts::SCRIPTED, &manifest);
    dir.add("post-looper", plugbox_artifacts::SCRIPTED, &scripted("post-looper", 2, "continue", "loop"));
    with_ok(&dir);
    let host = builder().circuit_breaker(BreakerConfig { threshold: 0, ..Default::default() }).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]");
    let looper: Vec<String> = ctx.trace().into_iter().filter(|t| t.plugin == "looper").map(|t| t.action).collect();
    assert_eq!(looper.len(), 1, "its post hook is skipped once its pre hook failed: {looper:?}");
    assert!(looper[0].contains("timed out"), "{looper:?}");
    let post: Vec<String> = ctx
        .trace()
        .into_iter()
        .filter(|t| t.plugin == "post-looper")
        .map(|t| format!("{} {}", t.hook, t.action))
        .collect();
    assert_eq!(post.len(), 2, "{post:?}");
    assert!(post[1].starts_with("post-response failed-open: timed out"), "{post:?}");
    let chunk = chunk("x");
    assert!(host.on_chunk(&ctx, chunk).await.unwrap().is_some(), "fail-open: the chunk goes on");
    let call = plugbox_host::ToolCall::function("1", "t", "{}");
    assert!(matches!(host.on_tool_call(&ctx, call).await.unwrap(), plugbox_host::ToolDecision::Run(_)));
    let stats = host.plugin("looper").unwrap().stats();
    assert_eq!(stats.timeouts, 3, "{stats:?}");

    // A loop in init: the plugin is refused at load, the others are not affected.
    let dir2 = PluginDir::new();
    dir2.add(
        "init-loop",
        plugbox_artifacts::SCRIPTED,
        &scripted("init-loop", 1, "continue", "continue")
            .replace("init: { type: string, default: ok }", "init: { type: string, default: loop }"),
    );
    let report = host.load_dir(dir2.path()).await.unwrap();
    assert!(report.failed[0].to_string().contains("init failed: timed out"), "{}", report.failed[0]);
    let resp = host.run_request(&RequestContext::new("m"), request("still"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: still [ok]");
}

#[tokio::test]
async fn repeated_failures_quarantine_the_plugin_then_it_is_retried() {
    let dir = PluginDir::new();
    dir.add("bad", plugbox_artifacts::SCRIPTED, &scripted("bad", 1, "trap", "continue"));
    with_ok(&dir);
    let host = builder()
        .circuit_breaker(BreakerConfig {
            threshold: 3,
            backoff: Duration::from_millis(300),
            max_backoff: Duration::from_secs(5),
        })
        .build()
        .unwrap();
    host.load_dir(dir.path()).await.unwrap();
    let mut events = host.subscribe();
    for _ in 0..3 {
        host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    }
    let event = events.try_recv().expect("a quarantine event");
    assert_eq!(event.plugin, "bad");
    assert!(matches!(event.kind, plugbox_host::PluginEventKind::Quarantined { .. }), "{event:?}");
    let bad = host.plugin("bad").unwrap();
    assert!(matches!(bad.stats().breaker, BreakerState::Open { .. }), "{:?}", bad.stats());
    // Quarantined: skipped without running (no new instance, no new trap).
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]");
    let action = ctx.trace().into_iter().find(|t| t.plugin == "bad").unwrap().action;
    assert!(action.contains("quarantined"), "{action}");
    assert_eq!(bad.stats().traps, 3);
    // After the back-off, one call is let through; it traps again: quarantined again, for longer.
    tokio::time::sleep(Duration::from_millis(400)).await;
    host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(bad.stats().traps, 4);
    match bad.stats().breaker {
        BreakerState::Open { remaining_ms } => assert!(remaining_ms > 300, "back-off doubles: {remaining_ms}"),
        other => panic!("expected quarantine, got {other:?}"),
    }
    let _ = FailureKind::Quarantined(Duration::ZERO);
}

#[tokio::test]
async fn fuel_budget_is_deterministic() {
    let dir = PluginDir::new();
    let manifest = scripted("burner", 1, "loop", "continue").replace("timeout: 100ms", "timeout: 5s, fuel: 1000000");
    dir.add("burner", plugbox_artifacts::SCRIPTED, &manifest);
    with_ok(&dir);
    let host = builder().fuel(true).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [ok]");
    let action = ctx.trace().into_iter().find(|t| t.plugin == "burner").unwrap().action;
    assert!(action.contains("used up its fuel budget"), "{action}");

    // Without fuel metering the manifest's fuel is reported as not granted.
    let host = host_plain(&dir).await;
    assert!(host.plugin("burner").unwrap().capabilities().denied.iter().any(|d| d.contains("fuel")));
}

async fn host_plain(dir: &PluginDir) -> Host {
    let host = host();
    host.load_dir(dir.path()).await.unwrap();
    host
}

#[tokio::test]
async fn policy_narrows_one_plugin() {
    let server = Server::start();
    let url = format!("http:http://127.0.0.1:{}/hello", server.port);
    let dir = PluginDir::new();
    with_ok(&dir);
    let perms = format!("{{ messages: write, kv: true, network: [\"127.0.0.1:{}\"] }}", server.port);
    dir.add("probe", plugbox_artifacts::SANDBOX_PROBE, &probe_manifest("probe", &perms, &["kv-get:x", url.as_str()]));
    let policy: Policy = serde_norway::from_str(
        "plugins:\n  probe:\n    messages: read\n    kv: false\n    network-allowed: false\n    limits: { timeout: 50ms }\n",
    )
    .unwrap();
    let host = builder().policy(policy).build().unwrap();
    let ctx = attempt(&host, dir.path()).await;
    assert!(outcome(&ctx, "kv-get:x").contains("Denied"));
    assert!(outcome(&ctx, &url).contains("HttpRequestDenied"));
    let p = host.plugin("probe").unwrap();
    assert_eq!(p.capabilities().messages, plugbox_host::manifest::MessageAccess::Read);
    assert_eq!(p.limits().timeout, Duration::from_millis(50));
    let denied = p.capabilities().denied.join("\n");
    for needle in [
        "messages `write`: policy allows at most `read`",
        "kv: refused by policy",
        "refused by policy",
        "limits.timeout 2000ms lowered to 50ms",
    ] {
        assert!(denied.contains(needle), "`{needle}` not in:\n{denied}");
    }
}
