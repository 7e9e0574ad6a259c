//! The access rules and the output budget under attack: the `hostile-output`
//! fixture makes oversized, malformed and unpermitted edits and answers from
//! every request, stream, tool and provider hook. Each must be refused (and
//! counted exactly once when it is a violation), the plugins after it must
//! keep working on every request, and the host's memory, descriptors and
//! latency must stay bounded.

use std::time::{Duration, Instant};

use futures::StreamExt;
use plugbox_host::{FailureKind, Host, PipelineConfig, RequestContext, RequestError, ToolCall, ToolDecision};

use crate::bounds::{Bounds, MIB, assert_fast};
use crate::*;

/// Requests sent per attack: each must be refused, each counted once.
const ROUNDS: u64 = 3;

/// The fixture's manifest as plugin `hostile`, doing `attack` with
/// `messages: <messages>` and `max-output: <max_output>`.
fn hostile(attack: &str, messages: &str, max_output: &str) -> String {
    let fixture = std::fs::read_to_string(plugbox_artifacts::fixture("hostile-output").unwrap().manifest).unwrap();
    fixture
        .replace("name: hostile-output", "name: hostile")
        .replace("messages: none", &format!("messages: {messages}"))
        .replace("max-output: 1KiB", &format!("max-output: {max_output}"))
        .replace("attack: { type: string, default: none", &format!("attack: {{ type: string, default: {attack}"))
}

/// The `rate-limit` example (fail-open, `messages: none`) with room for every
/// test request and a deadline that holds on a loaded machine.
fn rate_limiter() -> String {
    std::fs::read_to_string(plugbox_artifacts::example("rate-limit").unwrap().manifest)
        .unwrap()
        .replace("timeout: 20ms", "timeout: 2s")
        .replace("default: 20\n", "default: 100000\n")
}

/// The `pii-redact` example (fail-closed, `messages: write`).
fn redactor() -> String {
    std::fs::read_to_string(plugbox_artifacts::example("pii-redact").unwrap().manifest)
        .unwrap()
        .replace("timeout: 50ms", "timeout: 2s")
}

/// A fail-closed `scripted` plugin after the hostile one on the stream and
/// tool hooks: uppercases chunks, appends ` [end:guard]` at the end of a
/// stream, denies tool calls.
fn stream_guard() -> String {
    scripted_with("guard", 50, "continue", "continue", "fail-closed", "write")
        .replace("on-chunk, on-tool-call]", "on-chunk, on-stream-end, on-tool-call]")
        .replace("timeout: 100ms", "timeout: 2s")
        .replace("chunk: { type: string, default: continue }", "chunk: { type: string, default: upper }")
        .replace("tool: { type: string, default: allow }", "tool: { type: string, default: deny }")
        + "  stream_end: { type: string, default: append }\n"
}

async fn load(plugins: &[(&str, &str, String)]) -> (Host, PluginDir) {
    load_with(builder(), plugins).await
}

async fn load_with(builder: plugbox_host::HostBuilder, plugins: &[(&str, &str, String)]) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    for (name, wasm, manifest) in plugins {
        dir.add(name, wasm, manifest);
    }
    let host = builder.build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "load failures: {:?}", report.failed);
    (host, dir)
}

/// The hostile plugin, then the rate limiter and the redactor.
async fn request_host(attack: &str, messages: &str) -> (Host, PluginDir) {
    load(&[
        ("hostile", plugbox_artifacts::HOSTILE_OUTPUT, hostile(attack, messages, "1KiB")),
        ("rate-limit", plugbox_artifacts::RATE_LIMIT, rate_limiter()),
        ("pii-redact", plugbox_artifacts::PII_REDACT, redactor()),
    ])
    .await
}

/// The hostile plugin, then the stream and tool guard.
async fn stream_host(attack: &str, messages: &str) -> (Host, PluginDir) {
    load(&[
        ("hostile", plugbox_artifacts::HOSTILE_OUTPUT, hostile(attack, messages, "1KiB")),
        ("guard", plugbox_artifacts::SCRIPTED, stream_guard()),
    ])
    .await
}

/// The hostile plugin's one trace entry for `hook` in `ctx`.
fn hostile_action(ctx: &RequestContext, hook: &str) -> String {
    let actions: Vec<String> =
        ctx.trace().into_iter().filter(|t| t.plugin == "hostile" && t.hook == hook).map(|t| t.action).collect();
    assert_eq!(actions.len(), 1, "{:?}", ctx.trace());
    actions.into_iter().next().unwrap()
}

/// Asserts that the hostile plugin failed `rounds` calls, each counted once,
/// as errors (refused output) or traps (a refused import call).
fn counted_once(host: &Host, rounds: u64, trap: bool) {
    let stats = host.plugin("hostile").unwrap().stats();
    // One more call: `provider-type`, at load.
    assert_eq!(stats.calls, rounds + 1, "{stats:?}");
    let (failed, other) = if trap { (stats.traps, stats.errors) } else { (stats.errors, stats.traps) };
    assert_eq!((failed, other, stats.timeouts), (rounds, 0, 0), "{stats:?}");
    assert_eq!(stats.consecutive_failures as u64, rounds, "{stats:?}");
}

/// Runs `ROUNDS` requests against a request host doing `attack`; each must be
/// refused with a failure mentioning `expect`, and the rate limiter and the
/// redactor must work on every one (on the request as it was).
async fn refused_request(attack: &str, messages: &str, expect: &str) {
    let (host, _d) = request_host(attack, messages).await;
    for _ in 0..ROUNDS {
        let ctx = RequestContext::new("m").with_caller("alice");
        let started = Instant::now();
        let resp = host.run_request(&ctx, request("mail bob@example.org now"), echo).await;
        assert_fast(attack, started.elapsed(), Duration::from_secs(5));
        let resp = resp.unwrap_or_else(|e| panic!("{attack}: the request must be served: {e}"));
        assert_eq!(text(&resp), "echo: mail [EMAIL] now", "{attack}: the redactor ran on the real prompt");
        let action = hostile_action(&ctx, "pre-request");
        assert!(action.starts_with("failed-open:") && action.contains(expect), "{attack}: {action}");
        let trace = ctx.trace();
        assert!(trace.iter().any(|t| t.plugin == "rate-limit" && !t.action.starts_with("failed")), "{attack}: {trace:?}");
        assert!(trace.iter().any(|t| t.plugin == "pii-redact" && !t.action.starts_with("failed")), "{attack}: {trace:?}");
    }
    // Its post hook is skipped after its pre hook failed: one call per request.
    counted_once(&host, ROUNDS, attack == "context");
}

/// What the hostile plugin saw as the host's answer to its last refused edit.
async fn guest_error(attack: &str, messages: &str) -> String {
    let (host, _d) = request_host(attack, messages).await;
    let ctx = RequestContext::new("m").with_caller("alice");
    host.run_request(&ctx, request("mail bob@example.org now"), echo).await.unwrap();
    ctx.get("error").unwrap_or_else(|| panic!("{attack}: the plugin saw no refusal: {:?}", ctx.values()))
}

#[tokio::test]
async fn oversized_request_edits_are_refused_and_the_chain_goes_on() {
    for (attack, expect) in [
        ("huge-text", "max-output of 1024 bytes"),
        ("huge-model", "max-output of 1024 bytes"),
        ("huge-param", "max-output of 1024 bytes"),
        ("insert-loop", "max-output of 1024 bytes"),
        ("many-messages", "max-output of 1024 bytes"),
        ("error", "`$.err`"),
        ("fail", "`$.fail.message`"),
        ("respond-huge", "max-output of 1024 bytes"),
    ] {
        // `write`: the plugin may change everything, but not past its budget.
        refused_request(attack, "write", expect).await;
    }
    for attack in ["huge-text", "huge-model", "huge-param", "insert-loop"] {
        assert_eq!(guest_error(attack, "write").await, "too-large", "{attack}: the guest sees `too-large`");
    }
}

#[tokio::test]
async fn a_huge_context_write_is_refused_naming_the_plugin() {
    refused_request("context", "none", "plugin `hostile`: context write refused: value of `4194304` bytes").await;
}

#[tokio::test]
async fn read_and_none_plugins_cannot_edit_message_data() {
    for messages in ["read", "none"] {
        for (attack, expect) in [
            ("set-text", "`$.messages[0].content`"),
            ("insert", "`$.messages[0]`"),
            ("insert-json", "`$.messages[1]`"),
            ("remove", "`$.messages[0]`"),
            ("respond", "messages: write"),
        ] {
            refused_request(attack, messages, expect).await;
            if attack != "respond" {
                let error = guest_error(attack, messages).await;
                assert!(error.starts_with("denied:") && error.contains(expect), "{messages} {attack}: {error}");
            }
        }
    }
}

#[tokio::test]
async fn invalid_values_are_refused_without_failing_the_call() {
    for (attack, path) in [("param-invalid", "temperature"), ("param-type", "temperature"), ("set-tools", "`$.tools`")] {
        let (host, _d) = request_host(attack, "write").await;
        let ctx = RequestContext::new("m").with_caller("alice");
        let seen = std::sync::Arc::new(parking_lot::Mutex::new(None));
        let s = seen.clone();
        let resp = host
            .run_request(&ctx, request("mail bob@example.org").with_temperature(0.7), move |r: plugbox_host::ChatRequest| {
                *s.lock() = r.temperature();
                echo(r)
            })
            .await
            .unwrap();
        assert_eq!(text(&resp), "echo: mail [EMAIL]");
        assert_eq!(*seen.lock(), Some(0.7), "{attack}: the parameter is unchanged");
        let error = ctx.get("error").unwrap_or_default();
        assert!(error.starts_with("invalid:") && error.contains(path), "{attack}: {error}");
        assert!(!hostile_action(&ctx, "pre-request").starts_with("failed"), "{attack}: {:?}", ctx.trace());
        assert_eq!(host.plugin("hostile").unwrap().stats().errors, 0, "{attack}: not a failure");
    }
}

#[tokio::test]
async fn oversized_or_invalid_post_responses_are_refused() {
    for (attack, messages, expect) in [
        ("post-huge", "write", "max-output of 1024 bytes"),
        ("post-respond-huge", "write", "max-output of 1024 bytes"),
        ("post-respond-invalid", "write", "not valid JSON"),
        ("post-text", "read", "`$.choices[0].message.content`"),
        ("post-edit-request", "write", "`$.model`"),
    ] {
        let (host, _d) = request_host(attack, messages).await;
        for _ in 0..ROUNDS {
            let ctx = RequestContext::new("m").with_caller("alice");
            let resp = host.run_request(&ctx, request("mail bob@example.org"), echo).await.unwrap();
            assert_eq!(text(&resp), "echo: mail [EMAIL]", "{attack}");
            assert_eq!(resp.param("x"), None, "{attack}");
            let action = hostile_action(&ctx, "post-response");
            assert!(action.starts_with("failed-open:") && action.contains(expect), "{attack}: {action}");
        }
        // pre-request (continue) and post-response (refused) per request, and
        // `provider-type` at load.
        let stats = host.plugin("hostile").unwrap().stats();
        assert_eq!((stats.calls, stats.errors), (ROUNDS * 2 + 1, ROUNDS), "{attack}: {stats:?}");
    }
}

/// `ROUNDS` chunks through a stream host doing `attack`: each refused with
/// `expect`, each then uppercased by the guard. Returns what the hostile
/// plugin saw of the chunk text.
async fn refused_chunk(attack: &str, messages: &str, expect: &str) -> Option<String> {
    let (host, _d) = stream_host(attack, messages).await;
    let mut seen = None;
    for _ in 0..ROUNDS {
        let ctx = RequestContext::new("m");
        let out = host.on_chunk(&ctx, chunk("secret")).await.unwrap();
        assert_eq!(delta(&out.unwrap()), "SECRET", "{attack}: the guard ran on the real chunk");
        let action = hostile_action(&ctx, "on-chunk");
        assert!(action.starts_with("failed-open:") && action.contains(expect), "{attack}: {action}");
        seen = ctx.get("seen");
    }
    counted_once(&host, ROUNDS, false);
    seen
}

#[tokio::test]
async fn chunks_are_charged_and_need_write_to_change() {
    refused_chunk("chunk-huge", "write", "max-output of 1024 bytes").await;
    let seen = refused_chunk("read", "none", "`$.choices[0].delta.content`").await;
    assert_eq!(seen, None, "a `none` plugin must not read chunk text");
    refused_chunk("rewrite-chunk", "none", "`$.choices[0].delta.content`").await;
    refused_chunk("rewrite-chunk", "read", "`$.choices[0].delta.content`").await;
    refused_chunk("drop-chunk", "read", "messages: write").await;
    refused_chunk("chunk-edit-request", "write", "`$.model`").await;
    // With `read` the text is there to read.
    let (host, _d) = stream_host("read", "read").await;
    let ctx = RequestContext::new("m");
    host.on_chunk(&ctx, chunk("secret")).await.unwrap();
    assert_eq!(ctx.get("seen").as_deref(), Some("secret"));
}

#[tokio::test]
async fn end_of_stream_chunks_are_charged_and_need_write() {
    for (attack, messages, expect) in
        [("end-huge", "write", "max-output of 1024 bytes"), ("append", "none", "messages: write")]
    {
        let (host, _d) = stream_host(attack, messages).await;
        for _ in 0..ROUNDS {
            let ctx = RequestContext::new("m");
            let out = host.on_stream_end(&ctx, None).await.unwrap();
            let texts: Vec<_> = out.iter().map(delta).collect();
            assert_eq!(texts, [" [end:guard]"], "{attack}: only the guard appends");
            let action = hostile_action(&ctx, "on-stream-end");
            assert!(action.starts_with("failed-open:") && action.contains(expect), "{attack}: {action}");
        }
        counted_once(&host, ROUNDS, false);
    }
    // Invalid JSON is refused as invalid: nothing appended, not a failure.
    let (host, _d) = stream_host("append-invalid", "write").await;
    let ctx = RequestContext::new("m");
    let out = host.on_stream_end(&ctx, None).await.unwrap();
    assert_eq!(out.iter().map(delta).collect::<Vec<_>>(), [" [end:guard]"]);
    assert!(ctx.get("error").unwrap_or_default().starts_with("invalid:"), "{:?}", ctx.values());
    assert_eq!(host.plugin("hostile").unwrap().stats().errors, 0);
}

#[tokio::test]
async fn tool_answers_are_charged_json_and_edits_need_write() {
    for (attack, messages, expect) in [
        ("tool-answer", "write", "max-output of 1024 bytes"),
        ("tool-not-json", "write", "not valid JSON"),
        ("rewrite-tool", "none", "`$.function.arguments`"),
        ("rewrite-tool", "read", "`$.function.arguments`"),
        ("rename-tool", "read", "`$.function.name`"),
        ("read", "none", "`$.function.arguments`"),
    ] {
        let (host, _d) = stream_host(attack, messages).await;
        for _ in 0..ROUNDS {
            let ctx = RequestContext::new("m");
            let call = ToolCall::function("1", "read_file", "{\"path\":\"/etc\"}");
            match host.on_tool_call(&ctx, call).await.unwrap() {
                ToolDecision::Denied { plugin, .. } => assert_eq!(plugin, "guard", "{attack}"),
                other => panic!("{attack}: the guard must decide, got {other:?}"),
            }
            let action = hostile_action(&ctx, "on-tool-call");
            assert!(action.starts_with("failed-open:") && action.contains(expect), "{attack}: {action}");
            assert_eq!(ctx.get("args:guard").as_deref(), Some("{\"path\":\"/etc\"}"), "{attack}: the guard saw the real call");
        }
        counted_once(&host, ROUNDS, false);
    }
    // `read` reads the arguments; invalid JSON arguments are refused as invalid.
    let (host, _d) = stream_host("read", "read").await;
    let ctx = RequestContext::new("m");
    host.on_tool_call(&ctx, ToolCall::function("1", "read_file", "{\"path\":\"/etc\"}")).await.unwrap();
    assert_eq!(ctx.get("seen").as_deref(), Some("{\"path\":\"/etc\"}"));
    let (host, _d) = stream_host("rewrite-tool-invalid", "write").await;
    let ctx = RequestContext::new("m");
    host.on_tool_call(&ctx, ToolCall::function("1", "read_file", "{}")).await.unwrap();
    assert!(ctx.get("error").unwrap_or_default().starts_with("invalid:"), "{:?}", ctx.values());
    assert_eq!(host.plugin("hostile").unwrap().stats().errors, 0);
}

async fn provider_host(attack: &str, messages: &str, max_output: &str, timeout: &str) -> (Host, PluginDir) {
    let manifest = hostile(attack, messages, max_output).replace("timeout: 2s", &format!("timeout: {timeout}"));
    load(&[("hostile", plugbox_artifacts::HOSTILE_OUTPUT, manifest)]).await
}

#[tokio::test]
async fn a_provider_without_message_access_does_not_read_the_prompt() {
    // `read`: the provider reads the prompt and answers it, whole or streamed.
    let (host, _d) = provider_host("none", "read", "1KiB", "2s").await;
    let ctx = RequestContext::new("m");
    let resp = host.complete(&ctx, "hostile", &request("secret prompt")).await.unwrap();
    assert_eq!(text(&resp), "secret prompt");
    assert_eq!(ctx.get("seen").as_deref(), Some("secret prompt"));
    let chunks: Vec<_> = host.stream(&RequestContext::new("m"), "hostile", request("secret prompt")).collect().await;
    let streamed: String = chunks.iter().map(|c| delta(c.as_ref().unwrap())).collect();
    assert_eq!(streamed, "secret prompt");

    // `none`: the read is refused, and that fails the provider's call.
    let (host, _d) = provider_host("none", "none", "1KiB", "2s").await;
    let ctx = RequestContext::new("m");
    let e = invalid_output(host.complete(&ctx, "hostile", &request("secret prompt")).await);
    assert!(e.contains("`$.messages[0].content`"), "{e}");
    assert_eq!(ctx.get("seen"), None);
    assert!(ctx.get("error").unwrap_or_default().starts_with("denied:"), "{:?}", ctx.values());
    let ctx = RequestContext::new("m");
    let first = host.stream(&ctx, "hostile", request("secret prompt")).collect::<Vec<_>>().await;
    assert!(first.iter().any(|c| c.is_err()), "{first:?}");
    assert!(first.iter().filter_map(|c| c.as_ref().ok()).all(|c| !delta(c).contains("secret")), "{first:?}");
}

fn invalid_output(result: Result<impl std::fmt::Debug, RequestError>) -> String {
    match result {
        Err(RequestError::Plugin(f)) => match f.kind {
            FailureKind::InvalidOutput(m) => m,
            other => panic!("expected invalid output, got {other:?}"),
        },
        other => panic!("expected a plugin failure, got {other:?}"),
    }
}

/// Pulls `host.stream` of the hostile provider to its end; returns how
/// many chunks came before the error it must end with.
async fn stream_error(host: &Host, ctx: &RequestContext) -> (usize, RequestError) {
    let mut stream = std::pin::pin!(host.stream(ctx, "hostile", request("x")));
    let mut chunks = 0;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => chunks += 1,
            Err(e) => {
                assert!(stream.next().await.is_none(), "a stream ends after its error");
                return (chunks, e);
            }
        }
    }
    panic!("the stream ended without an error after {chunks} chunks");
}

#[tokio::test]
async fn provider_output_is_bounded_in_bytes_and_time() {
    let before = Bounds::now();
    // A complete response past max-output, or not JSON.
    let (host, _d) = provider_host("complete-huge", "read", "1KiB", "2s").await;
    let e = invalid_output(host.complete(&RequestContext::new("m"), "hostile", &request("x")).await);
    assert!(e.contains("max-output of 1024 bytes"), "{e}");
    let (host, _d) = provider_host("complete-invalid", "read", "1KiB", "2s").await;
    let e = invalid_output(host.complete(&RequestContext::new("m"), "hostile", &request("x")).await);
    assert!(e.contains("not valid JSON"), "{e}");

    // A stream without end: cut off once its chunks pass max-output (1 MiB:
    // the 17th chunk of 64 KiB), never collected whole.
    let (host, _d) = provider_host("stream-flood", "read", "1MiB", "5s").await;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let (chunks, e) = stream_error(&host, &RequestContext::new("m")).await;
        let RequestError::Plugin(f) = e else { panic!("expected a plugin failure, got {e:?}") };
        assert!(matches!(&f.kind, FailureKind::InvalidOutput(m) if m.contains("1048576")), "{f}");
        assert_eq!(chunks, 15, "the chunks within the cap were passed on");
        assert_fast("a flooding stream", started.elapsed(), Duration::from_secs(3));
    }
    counted_once(&host, ROUNDS, false);

    // One giant chunk, a chunk that is not JSON.
    let (host, _d) = provider_host("stream-giant", "read", "1MiB", "5s").await;
    let (chunks, e) = stream_error(&host, &RequestContext::new("m")).await;
    assert_eq!(chunks, 0);
    assert!(matches!(&e, RequestError::Plugin(f) if matches!(&f.kind, FailureKind::InvalidOutput(_))), "{e:?}");
    let (host, _d) = provider_host("stream-invalid", "read", "1MiB", "5s").await;
    let (chunks, e) = stream_error(&host, &RequestContext::new("m")).await;
    assert_eq!(chunks, 1, "the valid chunk before it was passed on");
    assert!(e.to_string().contains("not valid JSON"), "{e}");

    // A stream that never yields: its deadline covers the whole stream.
    let (host, _d) = provider_host("stream-hang", "read", "1KiB", "200ms").await;
    let started = Instant::now();
    match stream_error(&host, &RequestContext::new("m")).await {
        (0, RequestError::Plugin(f)) => assert!(matches!(f.kind, FailureKind::Timeout(_)), "{f}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_fast("a hanging stream", started.elapsed(), Duration::from_secs(2));
    before.assert_within(64, 512 * MIB);
}

#[tokio::test]
async fn repeated_attacks_keep_memory_descriptors_and_latency_bounded() {
    // A 16 MiB parameter per request, 24 requests: 384 MiB if anything kept it.
    let manifest = hostile("huge-param", "write", "1KiB").replace("default: 4194304", "default: 16777216");
    // No quarantine: every request really gets the oversized answer.
    let breaker = plugbox_host::BreakerConfig { threshold: 0, ..Default::default() };
    let (host, _d) = load_with(
        builder().circuit_breaker(breaker),
        &[
            ("hostile", plugbox_artifacts::HOSTILE_OUTPUT, manifest),
            ("rate-limit", plugbox_artifacts::RATE_LIMIT, rate_limiter()),
            ("pii-redact", plugbox_artifacts::PII_REDACT, redactor()),
        ],
    )
    .await;
    let ctx = RequestContext::new("m").with_caller("alice");
    host.run_request(&ctx, request("warm up"), echo).await.unwrap();
    let before = Bounds::now();
    for _ in 0..24 {
        let ctx = RequestContext::new("m").with_caller("alice");
        let started = Instant::now();
        let resp = host.run_request(&ctx, request("mail bob@example.org"), echo).await.unwrap();
        assert_fast("a request after an oversized answer", started.elapsed(), Duration::from_secs(5));
        assert_eq!(text(&resp), "echo: mail [EMAIL]");
    }
    before.assert_within(16, 192 * MIB);
    let stats = host.plugin("hostile").unwrap().stats();
    assert_eq!((stats.calls, stats.errors), (26, 25), "{stats:?}");
    assert_eq!(host.plugin("pii-redact").unwrap().stats().errors, 0);
    assert_eq!(host.plugin("rate-limit").unwrap().stats().errors, 0);
}

#[tokio::test]
async fn context_limits_can_be_set_by_the_embedder() {
    let dir = PluginDir::new();
    dir.add("hostile", plugbox_artifacts::HOSTILE_OUTPUT, &hostile("context", "none", "1KiB"));
    let limits = plugbox_host::ContextLimits {
        max_value: 8 << 20,
        max_total: 8 << 20,
        max_per_plugin: 8 << 20,
        ..Default::default()
    };
    let host = builder().pipeline(PipelineConfig { context_limits: limits, ..Default::default() }).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, request("x"), echo).await.unwrap();
    assert_eq!(ctx.get("big").map(|v| v.len()), Some(4 << 20), "the raised limit lets 4 MiB through");
    assert!(ctx.context_bytes() >= 4 << 20);
}
