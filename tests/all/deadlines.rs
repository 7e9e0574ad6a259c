//! Deadlines that hold: a slow `init` cannot stretch a call past its budget
//! (the pool is warmed in the background), a spinning `shutdown` cannot hold
//! an unload or the async runtime, and unloading waits for running calls.
//! Each test also checks another plugin keeps serving, quickly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plugbox_host::{BreakerConfig, BreakerState, FailureKind, Host, RequestContext};

use crate::bounds::{Bounds, MIB, assert_fast};
use crate::*;

/// Manifest of the `slow-init` fixture as plugin `name`.
pub(crate) fn slow(name: &str, timeout: &str, instances: u32, config: &[(&str, &str)]) -> String {
    let value = |key: &str, default: &str| {
        config.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string()).unwrap_or_else(|| default.to_string())
    };
    format!(
        "name: {name}\nversion: 0.1.0\nhooks: [pre-request]\npriority: 5\non-error: fail-open\n\
         limits: {{ timeout: {timeout}, memory: 16MiB, instances: {instances} }}\n\
         permissions: {{ messages: none, kv: true }}\nconfig:\n\
         \x20 init_ms: {{ type: integer, default: {} }}\n\
         \x20 init_sleep: {{ type: boolean, default: {} }}\n\
         \x20 slow_after_first: {{ type: boolean, default: {} }}\n\
         \x20 shutdown_ms: {{ type: integer, default: {} }}\n\
         \x20 pre: {{ type: string, default: {} }}\n",
        value("init_ms", "0"),
        value("init_sleep", "false"),
        value("slow_after_first", "false"),
        value("shutdown_ms", "0"),
        value("pre", "continue"),
    )
}

async fn load(host: &Host, plugins: &[(&str, String)]) -> PluginDir {
    let dir = PluginDir::new();
    for (name, manifest) in plugins {
        dir.add(name, plugbox_artifacts::SLOW_INIT, manifest);
    }
    dir.add("ok", plugbox_artifacts::SCRIPTED, &scripted("ok", 1, "modify", "continue"));
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    dir
}

/// A request through the well-behaved `ok` plugin answers, and fast.
async fn assert_still_serving(host: &Host) {
    let started = Instant::now();
    let resp = host.run_request(&RequestContext::new("m"), request("still there?"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: still there? [ok]");
    assert_fast("a request through a healthy plugin", started.elapsed(), Duration::from_millis(500));
}

#[tokio::test]
async fn a_slow_init_cannot_hold_a_request_past_the_hook_deadline() {
    // The first instance (made at load) initialises fast; every later `init`
    // spins for 1.5 s. The hook's limit is 20 ms.
    let breaker =
        BreakerConfig { threshold: 3, backoff: Duration::from_secs(30), max_backoff: Duration::from_secs(60) };
    let host = builder().circuit_breaker(breaker).build().unwrap();
    let manifest = slow("slow", "20ms", 2, &[("init_ms", "1500"), ("slow_after_first", "true"), ("pre", "trap")]);
    let _dir = load(&host, &[("slow", manifest)]).await;
    let before = Bounds::now();

    for i in 0..4 {
        let ctx = RequestContext::new("m");
        let started = Instant::now();
        let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
        // 20 ms of hook plus scheduling slack; a slow init took 1.5 s before.
        assert_fast(&format!("request {i}"), started.elapsed(), Duration::from_millis(400));
        assert_eq!(text(&resp), "echo: hi [ok]", "request {i}: the fail-open plugin is skipped");
    }
    let stats = host.plugin("slow").unwrap().stats();
    // 1: the warm instance traps; 2, 3: no warm instance, and `init` runs
    // past what is left of the 20 ms; the third failure trips the breaker.
    assert_eq!(stats.traps, 1, "{stats:?}");
    assert_eq!(stats.timeouts, 2, "{stats:?}");
    assert!(matches!(stats.breaker, BreakerState::Open { .. }), "{stats:?}");
    assert_eq!(stats.calls, 3, "the fourth call was refused by the breaker: {stats:?}");
    assert_still_serving(&host).await;
    before.assert_within(16, 64 * MIB);
}

#[tokio::test]
async fn a_sleeping_init_is_cut_at_the_hook_deadline_too() {
    // Sleeping is a host-side wait: the timer, not the epoch, ends it. The
    // warm instance made at load expires after 20 ms idle.
    let host = builder().idle_instance_ttl(Duration::from_millis(20)).build().unwrap();
    let manifest =
        slow("sleepy", "30ms", 1, &[("init_ms", "3000"), ("init_sleep", "true"), ("slow_after_first", "true")]);
    let _dir = load(&host, &[("sleepy", manifest)]).await;
    let sleepy = host.plugin("sleepy").unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while sleepy.idle_instances() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sleepy.idle_instances(), 0, "the idle instance expired");

    let ctx = RequestContext::new("m");
    let started = Instant::now();
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_fast("a request whose plugin sleeps in init", started.elapsed(), Duration::from_millis(400));
    assert_eq!(text(&resp), "echo: hi [ok]");
    let trace = ctx.trace().into_iter().find(|t| t.plugin == "sleepy").map(|t| t.action).unwrap_or_default();
    assert!(trace.contains(&FailureKind::Timeout(Duration::from_millis(30)).to_string()), "got `{trace}`");
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn a_hook_waiting_in_a_host_import_is_cut_at_its_deadline() {
    // `pre: sleep` waits 50 ms in a host import (a WASI poll): the epoch
    // deadline cannot end that, the call's own timer (armed only once the
    // call waits) does, at the hook's 20 ms.
    let host = builder().build().unwrap();
    let _dir = load(&host, &[("sleepy", slow("sleepy", "20ms", 1, &[("pre", "sleep")]))]).await;
    for i in 0..2 {
        let ctx = RequestContext::new("m");
        let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
        assert_eq!(text(&resp), "echo: hi [ok]");
        let trace = ctx.trace().into_iter().find(|t| t.plugin == "sleepy").unwrap();
        let timed_out = FailureKind::Timeout(Duration::from_millis(20)).to_string();
        assert!(trace.action.contains(&timed_out), "call {i}: got `{}`", trace.action);
        assert!(trace.micros >= 20_000, "call {i} was cut before its deadline: {trace:?}");
    }
    let stats = host.plugin("sleepy").unwrap().stats();
    assert_eq!((stats.timeouts, stats.instances_discarded), (2, 2), "{stats:?}");
    assert_still_serving(&host).await;
}

/// Counts ticks of a 5 ms interval and the longest gap between two ticks.
pub(crate) fn ticker() -> (Arc<AtomicU64>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let (ticks, gap) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (t, g) = (ticks.clone(), gap.clone());
    let task = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(5));
        let mut last = Instant::now();
        loop {
            interval.tick().await;
            let now = Instant::now();
            g.fetch_max((now - last).as_millis() as u64, Ordering::Relaxed);
            last = now;
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    (ticks, gap, task)
}

#[tokio::test]
async fn unloading_plugins_whose_shutdown_spins_is_bounded_and_keeps_the_runtime_ticking() {
    // Two plugins with up to 8 idle instances each; every `shutdown` spins
    // forever. Each instance gets the plugin's timeout (500 ms), the whole
    // plugin 1 s: without those bounds this took 8 x 500 ms per plugin, on
    // the async worker (a current-thread runtime here: it would freeze).
    let host = host();
    let plugins: Vec<(&str, String)> = ["spin-a", "spin-b"]
        .into_iter()
        .map(|n| (n, slow(n, "500ms", 8, &[("shutdown_ms", "-1"), ("pre", "sleep")])))
        .collect();
    let _dir = load(&host, &plugins).await;
    // Fill the pools: concurrent calls that each wait 50 ms need 8 instances.
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.run_request(&RequestContext::new("m"), request("x"), echo).await.unwrap() })
        })
        .collect();
    for r in requests {
        r.await.unwrap();
    }
    for name in ["spin-a", "spin-b"] {
        let p = host.plugin(name).unwrap();
        assert!(p.idle_instances() >= 4, "{name}: {} idle", p.idle_instances());
    }

    let (ticks, gap, task) = ticker();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    let (a, b) = tokio::join!(host.unload("spin-a"), host.unload("spin-b"));
    a.unwrap();
    b.unwrap();
    let took = started.elapsed();
    assert_fast("unloading two plugins whose shutdown spins", took, Duration::from_millis(2500));
    let (ticks, gap) = (ticks.load(Ordering::Relaxed), gap.load(Ordering::Relaxed));
    task.abort();
    assert!(gap < 250, "the runtime stalled for {gap} ms during the unload ({ticks} ticks in {took:?})");
    assert!(ticks as u128 >= took.as_millis() / 5 / 4, "only {ticks} ticks in {took:?}");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_waits_for_running_calls_and_parks_nothing_after() {
    let host = host();
    let _dir = load(&host, &[("busy", slow("busy", "2s", 2, &[("pre", "sleep")]))]).await;
    let busy = host.plugin("busy").unwrap();
    let h = host.clone();
    let request = tokio::spawn(async move { h.run_request(&RequestContext::new("m"), request("x"), echo).await });
    // Let the call start (it sleeps 50 ms inside the hook).
    let deadline = Instant::now() + Duration::from_secs(2);
    while busy.stats().calls == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    host.unload("busy").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(25), "unload did not wait for the call");
    assert!(busy.is_shut_down());
    assert_eq!(busy.stats().calls, 1);
    // The running call finished before the shutdown...
    let resp = request.await.unwrap().unwrap();
    assert_eq!(text(&resp), "echo: x [ok]");
    // ...and its instance was not parked in a pool that was shut down.
    assert_eq!(busy.idle_instances(), 0);
    assert_eq!(busy.pooled_bytes(), 0);
    assert_still_serving(&host).await;
}
