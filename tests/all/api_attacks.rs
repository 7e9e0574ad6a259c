//! API 0.2 attacked the way a hostile plugin author would: edits of what the
//! host relies on (`stream`, `stream_options`), answers and provider chunks
//! with more choices than any request can ask for or a choice index out of
//! range, a provider stream whose chunks a holder merges forever, bogus tool
//! names and arguments, and a hook that reads the request in a loop. Each
//! attack is refused (or cut off by its deadline) and the host stays bounded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use plugbox_host::{
    ChatRequest, FailureKind, Host, Outcome, PipelineConfig, RequestContext, RequestError, ToolCall, ToolDecision,
};

use crate::bounds::{Bounds, MIB, assert_fast};
use crate::*;

/// The `hostile-output` fixture as plugin `hostile`, doing `attack` (with
/// config `size`) under `messages: <messages>`, `max-output: <max_output>`
/// and `timeout: <timeout>`.
fn hostile(attack: &str, size: usize, messages: &str, max_output: &str, timeout: &str) -> String {
    let fixture = std::fs::read_to_string(plugbox_artifacts::fixture("hostile-output").unwrap().manifest).unwrap();
    fixture
        .replace("name: hostile-output", "name: hostile")
        .replace("messages: none", &format!("messages: {messages}"))
        .replace("max-output: 1KiB", &format!("max-output: {max_output}"))
        .replace("timeout: 2s", &format!("timeout: {timeout}"))
        .replace("attack: { type: string, default: none", &format!("attack: {{ type: string, default: {attack}"))
        .replace("default: 4194304", &format!("default: {size}"))
}

async fn load(builder: plugbox_host::HostBuilder, manifest: String) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    dir.add("hostile", plugbox_artifacts::HOSTILE_OUTPUT, &manifest);
    let host = builder.build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "load failures: {:?}", report.failed);
    (host, dir)
}

/// The hostile plugin's trace entries for `hook` in `ctx`.
fn actions(ctx: &RequestContext, hook: &str) -> Vec<String> {
    ctx.trace().into_iter().filter(|t| t.plugin == "hostile" && t.hook == hook).map(|t| t.action).collect()
}

/// A native provider that records the request it was given.
fn recording(seen: Arc<Mutex<Option<ChatRequest>>>) -> impl FnOnce(Arc<ChatRequest>) -> std::future::Ready<Outcome> {
    move |req| {
        *seen.lock().unwrap() = Some((*req).clone());
        std::future::ready(Ok(response("ok")))
    }
}

#[tokio::test]
async fn stream_and_stream_options_are_host_owned() {
    for (attack, path) in [("set-stream", "`$.stream`"), ("set-stream-options", "`$.stream_options`")] {
        // Even a `write` plugin may not turn a JSON request into a stream
        // (or ask for a usage chunk the caller did not): the gateway decided.
        let (host, _d) = load(builder(), hostile(attack, 0, "write", "1KiB", "2s")).await;
        let ctx = RequestContext::new("m");
        let seen = Arc::new(Mutex::new(None));
        let resp = host.run_request(&ctx, request("hi"), recording(seen.clone())).await.unwrap();
        assert_eq!(text(&resp), "ok");
        let action = actions(&ctx, "pre-request").join(" | ");
        assert!(action.starts_with("failed-open:") && action.contains(path), "{attack}: {action}");
        assert!(action.contains("host-owned"), "{attack}: {action}");
        let error = ctx.get("error").unwrap_or_default();
        assert!(error.starts_with("denied:") && error.contains(path), "{attack}: {error}");
        let sent = seen.lock().unwrap().take().unwrap();
        assert_eq!((sent.stream.is_some(), sent.stream_options.is_some()), (false, false), "{attack}");
        assert_eq!(ctx.get("edits"), None, "{attack}: no edit was accepted");
        // Reading them is fine.
        assert_eq!(host.plugin("hostile").unwrap().stats().errors, 1, "{attack}: counted once");
    }
}

#[tokio::test]
async fn answers_with_too_many_choices_or_another_object_are_refused() {
    // The most choices a request may ask for (`n`) is 128: an answer may have
    // that many, not one more.
    let (host, _d) = load(builder(), hostile("respond-wide", 128, "write", "1MiB", "2s")).await;
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), echo).await.unwrap();
    assert_eq!(resp.choices.len(), 128);
    for (attack, size, expect) in [
        ("respond-wide", 129, "`$.respond.choices` has 129 elements; at most 128"),
        ("respond-wide", 100_000, "`$.respond.choices` has 100000 elements; at most 128"),
        ("respond-object", 0, "`$.respond.object` is `chat.completion.chunk`, not `chat.completion`"),
    ] {
        let (host, _d) = load(builder(), hostile(attack, size, "write", "16MiB", "5s")).await;
        let ctx = RequestContext::new("m");
        let started = Instant::now();
        let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
        assert_fast(attack, started.elapsed(), Duration::from_secs(5));
        assert_eq!(text(&resp), "echo: hi", "{attack}: the provider answered instead");
        let action = actions(&ctx, "pre-request").join(" | ");
        assert!(action.starts_with("failed-open:") && action.contains(expect), "{attack}: {action}");
    }
}

/// Pulls the hostile provider's stream to its end; the chunks before the
/// error it must end with, and the error.
async fn stream_error(host: &Host) -> (usize, RequestError) {
    let mut stream = std::pin::pin!(host.stream(&RequestContext::new("m"), "hostile", request("x")));
    let mut chunks = 0;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => chunks += 1,
            Err(e) => return (chunks, e),
        }
    }
    panic!("the stream ended without an error after {chunks} chunks");
}

fn invalid_output(e: RequestError) -> String {
    match e {
        RequestError::Plugin(f) => match f.kind {
            FailureKind::InvalidOutput(m) => m,
            other => panic!("expected invalid output, got {other:?}"),
        },
        other => panic!("expected a plugin failure, got {other:?}"),
    }
}

#[tokio::test]
async fn provider_chunks_with_too_many_choices_or_wild_indexes_are_refused() {
    let before = Bounds::now();
    let (host, _d) = load(builder(), hostile("stream-wide", 129, "write", "1MiB", "2s")).await;
    let (chunks, e) = stream_error(&host).await;
    let e = invalid_output(e);
    assert_eq!(chunks, 0);
    assert!(e.contains("`$.stream[0].choices` has 129 elements; at most 128"), "{e}");

    // Chunks of 64 empty choices with new indexes, which the plugin's own
    // `on-chunk` holds: every hold merged the next chunk's choices into the
    // held ones by index (a scan per choice), and empty text never reached
    // `max-held`, so the held chunk grew until the byte cap, quadratically.
    let config = PipelineConfig { stream_max_bytes: 2 * MIB, ..Default::default() };
    let (host, _d) = load(builder().pipeline(config), hostile("stream-wide-hold", 0, "write", "1MiB", "5s")).await;
    let started = Instant::now();
    let (chunks, e) = stream_error(&host).await;
    assert_fast("a wide held stream", started.elapsed(), Duration::from_secs(2));
    let e = invalid_output(e);
    assert_eq!(chunks, 0);
    assert!(e.contains("`$.stream[1].choices[0].index` is 128; a choice index is below 128"), "{e}");
    before.assert_within(64, 512 * MIB);
}

#[tokio::test]
async fn tool_names_must_be_names_and_arguments_objects() {
    for (attack, expect) in [
        ("rename-tool-empty", "invalid: `$.function.name` must be 1 to 64 letters, digits, `_` or `-`"),
        ("rename-tool-odd", "invalid: `$.function.name` must be 1 to 64 letters, digits, `_` or `-`"),
        ("rewrite-tool-array", "invalid: `$.function.arguments` must be a JSON object"),
    ] {
        let (host, _d) = load(builder(), hostile(attack, 0, "write", "1KiB", "2s")).await;
        let ctx = RequestContext::new("m");
        let call = ToolCall::function("1", "read_file", "{\"path\":\"/etc\"}");
        let decision = host.on_tool_call(&ctx, call.clone()).await.unwrap();
        assert_eq!(decision, ToolDecision::Run(call), "{attack}: the call is unchanged");
        let error = ctx.get("error").unwrap_or_default();
        assert!(error.starts_with(expect), "{attack}: {error}");
        // An invalid value is an answer, not a violation.
        assert_eq!(host.plugin("hostile").unwrap().stats().errors, 0, "{attack}");
    }
}

#[tokio::test]
async fn a_hook_reading_the_request_in_a_loop_ends_at_its_deadline() {
    let before = Bounds::now();
    let (host, _d) = load(builder(), hostile("read-loop", 0, "read", "1KiB", "200ms")).await;
    let big = request(&"y".repeat(32 * 1024));
    for _ in 0..3 {
        let ctx = RequestContext::new("m");
        let started = Instant::now();
        let resp = host.run_request(&ctx, big.clone(), echo).await.unwrap();
        assert_fast("a reading loop", started.elapsed(), Duration::from_secs(2));
        assert!(text(&resp).starts_with("echo: yyy"), "the request went on (fail-open)");
        let action = actions(&ctx, "pre-request").join(" | ");
        assert!(action.starts_with("failed-open:") && action.contains("200ms"), "{action}");
    }
    let stats = host.plugin("hostile").unwrap().stats();
    assert_eq!(stats.timeouts, 3, "{stats:?}");
    before.assert_within(64, 256 * MIB);
}

#[tokio::test]
async fn a_dropped_stream_lets_go_of_its_instance() {
    // `instances: 1`: the provider's one instance serves one stream at a time.
    let (host, _d) = load(builder(), hostile("none", 0, "read", "1KiB", "300ms")).await;
    let words = "one two three four";
    for round in 1..=3 {
        // The consumer takes one chunk and drops the stream: the instance,
        // in the middle of its stream, is discarded (not parked with a live
        // `chunk-stream` in it).
        let mut stream = host.stream(&RequestContext::new("m"), "hostile", request(words));
        assert_eq!(delta(&stream.next().await.unwrap().unwrap()), "one ");
        drop(stream);
        let stats = host.plugin("hostile").unwrap().stats();
        assert_eq!(stats.instances_discarded, round, "{stats:?}");
    }
    // A whole stream still runs, and its instance is parked at the end.
    let chunks: Vec<_> = host.stream(&RequestContext::new("m"), "hostile", request(words)).collect().await;
    let text: String = chunks.iter().map(|c| delta(c.as_ref().unwrap())).collect();
    assert_eq!(text, words);
    let stats = host.plugin("hostile").unwrap().stats();
    assert_eq!(stats.instances_discarded, 3, "{stats:?}");
    assert_eq!((stats.errors, stats.traps, stats.timeouts), (0, 0, 0), "{stats:?}");

    // Eight streams open at once, each one chunk in: each holds an instance
    // of its own between its calls (`instances` bounds calls running at
    // once, not streams held open), and each goes on to its end.
    let mut open = Vec::new();
    for _ in 0..8 {
        let mut s = host.stream(&RequestContext::new("m"), "hostile", request(words));
        assert_eq!(delta(&s.next().await.unwrap().unwrap()), "one ");
        open.push(s);
    }
    for s in open {
        let rest: String = s.map(|c| delta(&c.unwrap())).collect::<Vec<_>>().await.concat();
        assert_eq!(rest, "two three four");
    }
}
