//! Streams chunk by chunk, end to end: a provider plugin's stream is pulled
//! one chunk at a time as the caller takes them, `on-chunk` hooks run per
//! chunk and `on-stream-end` at the end, a runaway stream is cut off by the
//! byte cap or the total deadline, and a plugin may hold chunks back (to
//! redact text split across them) within its `max-held`. Also tool calls:
//! allow, deny, answer, and edits through the handle.

use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use plugbox_host::{ChatChunk, Host, RequestContext, RequestError, ToolCall, ToolDecision};

use crate::bounds::assert_fast;
use crate::*;

/// The `hostile-output` fixture as the provider `hostile` (attack `attack`,
/// `messages: read`, only the provider hook) and `scripted` plugins.
async fn stream_host(attack: &str, plugins: &[(&str, String)]) -> (Host, PluginDir) {
    stream_host_with(builder(), attack, plugins).await
}

async fn stream_host_with(
    builder: plugbox_host::HostBuilder,
    attack: &str,
    plugins: &[(&str, String)],
) -> (Host, PluginDir) {
    let provider = std::fs::read_to_string(plugbox_artifacts::fixture("hostile-output").unwrap().manifest)
        .unwrap()
        .replace("name: hostile-output", "name: hostile")
        .replace("messages: none", "messages: read")
        .replace("hooks: [pre-request, post-response, on-chunk, on-stream-end, on-tool-call, provider]", "hooks: [provider]")
        .replace("attack: { type: string, default: none", &format!("attack: {{ type: string, default: {attack}"));
    let dir = PluginDir::new();
    dir.add("hostile", plugbox_artifacts::HOSTILE_OUTPUT, &provider);
    for (name, manifest) in plugins {
        dir.add(name, plugbox_artifacts::SCRIPTED, manifest);
    }
    let host = builder.build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "load failures: {:?}", report.failed);
    (host, dir)
}

/// `scripted` as `name` (priority `priority`) with stream hooks doing
/// `chunk` and `stream_end`.
fn streamer(name: &str, priority: i32, chunk: &str, stream_end: &str) -> String {
    scripted(name, priority, "continue", "continue")
        .replace("on-chunk, on-tool-call]", "on-chunk, on-stream-end, on-tool-call]")
        .replace("timeout: 100ms", "timeout: 2s")
        .replace("chunk: { type: string, default: continue }", &format!("chunk: {{ type: string, default: {chunk} }}"))
        + &format!("  stream_end: {{ type: string, default: {stream_end} }}\n")
}

fn next_count(ctx: &RequestContext) -> u64 {
    ctx.get("next-count").and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn joined(chunks: &[ChatChunk]) -> String {
    chunks.iter().map(delta).collect()
}

#[tokio::test]
async fn a_provider_stream_flows_chunk_by_chunk_through_the_hooks() {
    let (host, _d) = stream_host("none", &[("u", streamer("u", 1, "upper", "append"))]).await;
    let ctx = RequestContext::new("m");
    let mut stream = pin!(host.stream(&ctx, "hostile", request("one two three four five")));
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(delta(&first), "ONE ", "on-chunk ran on the first chunk");
    // 5 words, a stop chunk: the provider was asked for 1 of 7 `next`s.
    let pulled = next_count(&ctx);
    assert!((1..=2).contains(&pulled), "the first chunk came before the provider produced the rest ({pulled} pulls)");
    assert_eq!(ctx.get("chunk-trace").as_deref(), Some("chunk:u"));
    let mut rest = vec![first];
    while let Some(item) = stream.next().await {
        rest.push(item.unwrap());
    }
    assert_eq!(joined(&rest), "ONE TWO THREE FOUR FIVE [end:u]");
    let trace = ctx.get("chunk-trace").unwrap();
    assert!(trace.ends_with(",end:u"), "on-stream-end runs once, at the end: {trace}");
    assert!(trace.matches("chunk:u").count() >= 5, "on-chunk ran per chunk: {trace}");
    let finish = rest.iter().find_map(|c| c.choices.first().and_then(|c| c.finish_reason().map(str::to_string)));
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(next_count(&ctx), 7, "the provider was pulled to its end, once");
}

#[tokio::test]
async fn the_usage_chunk_and_stream_end_usage_come_through() {
    let (host, _d) = stream_host("none", &[("u", streamer("u", 1, "continue", "none"))]).await;
    let mut req = request("a b").with_stream(true);
    req.stream_options = Some(plugbox_host::openai::StreamOptions { include_usage: Some(true), ..Default::default() });
    let chunks: Vec<_> = host.stream(&RequestContext::new("m"), "hostile", req).collect().await;
    let chunks: Vec<ChatChunk> = chunks.into_iter().map(Result::unwrap).collect();
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    assert_eq!(last.usage().map(|u| u.total_tokens), Some(4));
}

#[tokio::test]
async fn the_byte_cap_cuts_off_a_runaway_stream_and_the_host_keeps_serving() {
    let config = plugbox_host::PipelineConfig { stream_max_bytes: 4096, ..Default::default() };
    let (host, _d) =
        stream_host_with(builder().pipeline(config), "stream-endless", &[("ok", scripted("ok", 5, "modify", "continue"))])
            .await;
    let started = Instant::now();
    let ctx = RequestContext::new("m");
    let items: Vec<_> = host.stream(&ctx, "hostile", request("x")).collect().await;
    assert_fast("a capped stream", started.elapsed(), Duration::from_secs(5));
    let error = items.last().unwrap().as_ref().unwrap_err().to_string();
    assert!(error.contains("4096"), "the error names the cap: {error}");
    let passed: usize = items.iter().filter_map(|i| i.as_ref().ok()).map(|c| delta(c).len()).sum();
    assert!(passed <= 4096, "{passed} bytes passed");
    assert!(next_count(&ctx) < 1000, "the provider was not pulled on after the cap");
    let resp = host.run_request(&RequestContext::new("m"), request("still"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: still [ok]");
}

#[tokio::test]
async fn the_total_deadline_cuts_off_a_slow_endless_stream() {
    let config = plugbox_host::PipelineConfig { stream_timeout: Duration::from_millis(300), ..Default::default() };
    let (host, _d) = stream_host_with(builder().pipeline(config), "stream-endless", &[]).await;
    let started = Instant::now();
    let mut stream = pin!(host.stream(&RequestContext::new("m"), "hostile", request("x")));
    let mut error = None;
    let mut chunks = 0usize;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => {
                chunks += 1;
                // A client that reads slowly: the deadline covers the stream, not one pull.
                if chunks % 64 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    let error = error.expect("the stream ends with an error");
    assert!(error.to_string().contains("300ms") || error.to_string().contains("deadline"), "{error}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert_fast("a stream past its deadline", elapsed, Duration::from_secs(3));
}

#[tokio::test]
async fn held_text_is_merged_and_flushed_through_the_holder() {
    let (host, _d) = stream_host(
        "none",
        &[("h", streamer("h", 1, "hold", "none")), ("u", streamer("u", 2, "upper", "none"))],
    )
    .await;
    let ctx = RequestContext::new("m");
    let chunks: Vec<_> = host.stream(&ctx, "hostile", request("one two three")).collect().await;
    let chunks: Vec<ChatChunk> = chunks.into_iter().map(Result::unwrap).collect();
    let text = joined(&chunks);
    assert_eq!(text, "ONE TWO THREE [FLUSHED:H]", "held text is offered to the holder once more, then to the rest");
    let trace = ctx.get("chunk-trace").unwrap();
    assert!(trace.starts_with("chunk:h,chunk:h"), "the holder saw every chunk: {trace}");
    assert!(!trace.starts_with("chunk:h,chunk:u"), "held chunks do not reach the plugins after it: {trace}");
}

#[tokio::test]
async fn holding_past_max_held_is_a_failure() {
    let holder = streamer("h", 1, "hold", "none").replace("memory: 16MiB", "memory: 16MiB, max-held: 1KiB");
    let (host, _d) = stream_host("stream-endless", &[("h", holder)]).await;
    let ctx = RequestContext::new("m");
    let mut stream = pin!(host.stream(&ctx, "hostile", request("x")));
    let first = stream.next().await.unwrap();
    // fail-open: the holder is skipped once it holds too much; the stream goes on.
    let first = first.unwrap();
    assert!(!delta(&first).is_empty());
    let failed: Vec<_> = ctx.trace().into_iter().filter(|t| t.plugin == "h" && t.action.starts_with("failed")).collect();
    assert!(failed.iter().any(|t| t.action.contains("max-held")), "{:?}", ctx.trace());
    assert!(host.plugin("h").unwrap().stats().errors >= 1);
}

#[tokio::test]
async fn a_redactor_that_holds_redacts_a_card_number_split_across_chunks() {
    let dir = PluginDir::new();
    let a = plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == "pii-redact").unwrap();
    dir.add("pii-redact", a.wasm, &std::fs::read_to_string(a.manifest).unwrap().replace("timeout: 50ms", "timeout: 2s"));
    let host = host();
    host.load_dir(dir.path()).await.unwrap();
    let ctx = RequestContext::new("m");
    let mut out = Vec::new();
    for piece in ["pay with 4111 1111", " 1111 1111 to", "morrow"] {
        out.extend(host.on_chunk(&ctx, chunk(piece)).await.unwrap());
    }
    out.extend(host.on_stream_end(&ctx, None).await.unwrap());
    let text = joined(&out);
    assert!(!text.contains("4111") && !text.contains("1111"), "{text}");
    assert!(text.starts_with("pay with ") && text.ends_with(" tomorrow"), "{text}");
}

#[tokio::test]
async fn tool_calls_are_allowed_denied_answered_and_edited() {
    let tool = |name: &str, tool: &str, messages: &str| {
        scripted_with(name, 1, "continue", "continue", "fail-open", messages)
            .replace("tool: { type: string, default: allow }", &format!("tool: {{ type: string, default: {tool} }}"))
    };
    let call = || ToolCall::function("c1", "read_file", r#"{"path":"/etc"}"#);
    let decide = |host: Host| async move {
        let ctx = RequestContext::new("m");
        let decision = host.on_tool_call(&ctx, call()).await.unwrap();
        (decision, ctx)
    };

    let (host, _d) = scripted_host(&[("t", tool("t", "allow", "read"))]).await;
    let (decision, ctx) = decide(host).await;
    assert!(matches!(&decision, ToolDecision::Run(c) if *c == call()), "{decision:?}");
    assert_eq!(ctx.get("args:t").as_deref(), Some(r#"{"path":"/etc"}"#));

    let (host, _d) = scripted_host(&[("t", tool("t", "deny", "none").replace("default: true", "default: false"))]).await;
    match decide(host).await.0 {
        ToolDecision::Denied { plugin, reason } => assert_eq!((plugin.as_str(), reason.as_str()), ("t", "denied by t")),
        other => panic!("expected a denial, got {other:?}"),
    }

    let (host, _d) = scripted_host(&[("t", tool("t", "answer", "write"))]).await;
    match decide(host).await.0 {
        ToolDecision::Answered { plugin, result } => {
            assert_eq!((plugin.as_str(), result.as_str()), ("t", r#"{"answered_by":"t"}"#))
        }
        other => panic!("expected an answer, got {other:?}"),
    }

    // Edits through the handle need write.
    let (host, _d) = scripted_host(&[("t", tool("t", "rewrite", "write")), ("n", tool("n", "rename", "write"))]).await;
    match decide(host).await.0 {
        ToolDecision::Run(c) => {
            assert_eq!(c.function.arguments, r#"{"rewritten_by":"t"}"#);
            assert_eq!(c.function.name, "n_tool");
            assert_eq!(c.id, "c1");
        }
        other => panic!("expected the edited call, got {other:?}"),
    }
    let (host, _d) = scripted_host(&[("t", tool("t", "rewrite", "read"))]).await;
    let (decision, ctx) = decide(host.clone()).await;
    assert!(matches!(&decision, ToolDecision::Run(c) if *c == call()), "fail-open: the call as it was: {decision:?}");
    assert!(ctx.get("access:t").unwrap_or_default().starts_with("access denied"), "{:?}", ctx.values());
    let action = ctx.trace().into_iter().find(|t| t.plugin == "t").unwrap().action;
    assert!(action.starts_with("failed-open:") && action.contains("messages: write"), "{action}");
    assert_eq!(host.plugin("t").unwrap().stats().errors, 1);
}

#[tokio::test]
async fn filter_stream_runs_the_hooks_on_an_upstream() {
    let (host, _d) = scripted_host(&[("u", streamer("u", 1, "upper", "append"))]).await;
    let ctx = RequestContext::new("m");
    let upstream = futures::stream::iter(["a ", "b ", "c"].map(|t| Ok::<_, RequestError>(chunk(t))));
    let out: Vec<_> = host.filter_stream(&ctx, upstream).collect().await;
    let out: Vec<ChatChunk> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(joined(&out), "A B C [end:u]");
}
