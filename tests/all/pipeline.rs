//! Every rule of the request pipeline, with real plugins (the `scripted` fixture).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use plugbox_host::{ErrorKind, FailureKind, PipelineConfig, RequestContext, RequestError};

use crate::*;

fn ctx() -> RequestContext {
    RequestContext::new("test-model").with_caller("tester")
}

#[tokio::test]
async fn pre_ascending_post_descending() {
    let (host, _d) = scripted_host(&[
        ("c", scripted("c", 30, "continue", "continue")),
        ("a", scripted("a", 10, "continue", "continue")),
        ("b", scripted("b", 20, "continue", "continue")),
    ])
    .await;
    let ctx = ctx();
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi");
    assert_eq!(ctx.get("trace").unwrap(), "pre:a,pre:b,pre:c,post:c,post:b,post:a");
    let order: Vec<String> = ctx.trace().iter().map(|t| format!("{}:{}", t.hook, t.plugin)).collect();
    assert_eq!(
        order,
        ["pre-request:a", "pre-request:b", "pre-request:c", "post-response:c", "post-response:b", "post-response:a"]
    );
}

#[tokio::test]
async fn modified_request_reaches_next_plugin_and_provider() {
    let (host, _d) =
        scripted_host(&[("a", scripted("a", 1, "modify", "continue")), ("b", scripted("b", 2, "modify", "continue"))])
            .await;
    let resp = host.run_request(&ctx(), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [a] [b]");
}

#[tokio::test]
async fn respond_short_circuits_and_only_reached_plugins_get_post() {
    let (host, _d) = scripted_host(&[
        ("a", scripted("a", 1, "continue", "continue")),
        ("b", scripted("b", 2, "respond", "continue")),
        ("c", scripted("c", 3, "continue", "continue")),
    ])
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let ctx = ctx();
    let c2 = calls.clone();
    let resp = host
        .run_request(&ctx, request("hi"), |r| {
            c2.fetch_add(1, Ordering::SeqCst);
            echo(r)
        })
        .await
        .unwrap();
    assert_eq!(text(&resp), "from b");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "provider must not be called");
    assert_eq!(ctx.get("trace").unwrap(), "pre:a,pre:b,post:b,post:a");
}

#[tokio::test]
async fn fail_short_circuits_with_fallback_flag() {
    let (host, _d) = scripted_host(&[("a", scripted("a", 1, "fail", "continue"))]).await;
    match host.run_request(&ctx(), request("hi"), echo).await {
        Err(RequestError::Llm(e)) => {
            assert_eq!(e.kind, ErrorKind::RateLimited);
            assert!(!e.allow_fallback);
        }
        other => panic!("expected an llm error, got {other:?}"),
    }
    let (host, _d) = scripted_host(&[("a", scripted("a", 1, "fail-fallback", "continue"))]).await;
    match host.run_request(&ctx(), request("hi"), echo).await {
        Err(RequestError::Llm(e)) => assert!(e.allow_fallback),
        other => panic!("expected an llm error, got {other:?}"),
    }
}

#[tokio::test]
async fn post_hooks_modify_recover_and_fail() {
    let (host, _d) = scripted_host(&[("a", scripted("a", 1, "continue", "modify"))]).await;
    let resp = host.run_request(&ctx(), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [post:a]");

    let (host, _d) = scripted_host(&[("a", scripted("a", 1, "continue", "recover"))]).await;
    let resp = host.run_request(&ctx(), request("hi"), failing).await.unwrap();
    assert_eq!(text(&resp), "recovered by a");

    let (host, _d) = scripted_host(&[("a", scripted("a", 1, "continue", "fail"))]).await;
    match host.run_request(&ctx(), request("hi"), echo).await {
        Err(RequestError::Llm(e)) => assert_eq!(e.message, "failed by a"),
        other => panic!("expected the post hook's error, got {other:?}"),
    }
}

#[tokio::test]
async fn post_hooks_see_previous_post_results_in_stack_order() {
    // b runs its post first (higher priority), then a recovers b's error.
    let (host, _d) =
        scripted_host(&[("a", scripted("a", 1, "continue", "recover")), ("b", scripted("b", 2, "continue", "fail"))])
            .await;
    let resp = host.run_request(&ctx(), request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "recovered by a");
}

#[tokio::test]
async fn fail_open_error_skips_plugin_and_its_post_hook() {
    let (host, _d) =
        scripted_host(&[("a", scripted("a", 1, "continue", "continue")), ("b", scripted("b", 2, "error", "continue"))])
            .await;
    let ctx = ctx();
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi");
    assert_eq!(ctx.get("trace").unwrap(), "pre:a,pre:b,post:a");
    let b = ctx.trace().into_iter().find(|t| t.plugin == "b").unwrap();
    assert!(b.action.starts_with("failed-open: scripted error from b"), "{}", b.action);
    assert_eq!(host.plugin("b").unwrap().stats().errors, 1);
}

#[tokio::test]
async fn fail_closed_fails_the_request_naming_the_plugin() {
    let (host, _d) = scripted_host(&[
        ("a", scripted("a", 1, "continue", "recover")),
        ("b", scripted_with("b", 2, "error", "continue", "fail-closed", "write")),
    ])
    .await;
    let ctx = ctx();
    match host.run_request(&ctx, request("hi"), echo).await {
        Err(RequestError::Plugin(f)) => {
            assert_eq!(f.plugin, "b");
            assert_eq!(f.hook, "pre-request");
            assert_eq!(f.kind, FailureKind::Error("scripted error from b".into()));
        }
        other => panic!("expected a plugin failure, got {other:?}"),
    }
    // a's post hook observed the failure but could not recover it.
    assert_eq!(ctx.get("trace").unwrap(), "pre:a,pre:b,post:a");
}

#[tokio::test]
async fn propagate_plugin_errors_makes_every_plugin_fail_closed() {
    let dir = PluginDir::new();
    dir.add("a", plugbox_artifacts::SCRIPTED, &scripted("a", 1, "error", "continue"));
    let host =
        builder().pipeline(PipelineConfig { propagate_plugin_errors: true, ..Default::default() }).build().unwrap();
    host.load_dir(dir.path()).await.unwrap();
    assert!(matches!(host.run_request(&ctx(), request("hi"), echo).await, Err(RequestError::Plugin(_))));
}

#[tokio::test]
async fn trap_fails_open_and_the_instance_is_replaced() {
    let (host, _d) =
        scripted_host(&[("a", scripted("a", 1, "modify", "continue")), ("t", scripted("t", 2, "trap", "continue"))])
            .await;
    for _ in 0..3 {
        let ctx = ctx();
        let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
        assert_eq!(text(&resp), "echo: hi [a]");
        let t = ctx.trace().into_iter().find(|t| t.plugin == "t").unwrap();
        assert!(t.action.starts_with("failed-open: trapped"), "{}", t.action);
    }
    let stats = host.plugin("t").unwrap().stats();
    assert_eq!(stats.traps, 3);
    assert_eq!(stats.instances_discarded, 3);
    // The healthy plugin kept one warm instance throughout.
    assert_eq!(host.plugin("a").unwrap().stats().instances_created, 1);
}

#[tokio::test]
async fn infinite_loop_times_out_and_host_keeps_serving() {
    let (host, _d) =
        scripted_host(&[("a", scripted("a", 1, "modify", "continue")), ("l", scripted("l", 2, "loop", "continue"))])
            .await;
    let ctx = ctx();
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [a]");
    let l = ctx.trace().into_iter().find(|t| t.plugin == "l").unwrap();
    assert!(l.action.starts_with("failed-open: timed out"), "{}", l.action);
    assert_eq!(host.plugin("l").unwrap().stats().timeouts, 1);
    // Again: a fresh instance, the same outcome.
    let resp = host.run_request(&RequestContext::new("m"), request("again"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: again [a]");
}

#[tokio::test]
async fn post_only_plugin_runs_when_reached() {
    let post_only = |name: &str, prio: i32| {
        format!(
            "name: {name}\nversion: 0.1.0\nhooks: [post-response]\npriority: {prio}\npermissions: {{ messages: write }}\n\
             config:\n  tag: {{ type: string, default: {name} }}\n  post: {{ type: string, default: modify }}\n"
        )
    };
    let (host, _d) = scripted_host(&[
        ("early", post_only("early", 1)),
        ("b", scripted("b", 2, "respond", "continue")),
        ("late", post_only("late", 3)),
    ])
    .await;
    let resp = host.run_request(&ctx(), request("hi"), echo).await.unwrap();
    // `late` was never reached (b short-circuited before it): only `early` modified.
    assert_eq!(text(&resp), "from b [post:early]");
}

#[tokio::test]
async fn context_is_shared_between_plugins_and_the_embedder() {
    let (host, _d) = scripted_host(&[("a", scripted("a", 1, "continue", "continue"))]).await;
    let ctx = ctx();
    ctx.set("trace", "embedder");
    host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(ctx.get("trace").unwrap(), "embedder,pre:a,post:a");
}

#[tokio::test]
async fn read_only_plugin_cannot_change_message_text() {
    let (host, _d) = scripted_host(&[("r", scripted_with("r", 1, "modify", "modify", "fail-open", "read"))]).await;
    let ctx = ctx();
    let resp = host.run_request(&ctx, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi", "neither the prompt nor the answer may change");
    let actions: Vec<String> = ctx.trace().into_iter().map(|t| t.action).collect();
    assert!(actions.iter().all(|a| a.contains("`$.messages[0].content` needs `messages: write`")), "{actions:?}");
}

#[tokio::test]
async fn no_message_access_means_no_text() {
    // With `messages: none` reading the text is refused: the plugin sees the
    // refusal, its call fails (fail-open: skipped) and nothing changes.
    let (host, _d) = scripted_host(&[("n", scripted_with("n", 1, "modify", "continue", "fail-open", "none"))]).await;
    let ctx = RequestContext::new("m");
    let resp = host.run_request(&ctx, request("secret prompt"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: secret prompt");
    let seen = ctx.get("seen:n").unwrap_or_default();
    assert!(seen.starts_with("access denied") && !seen.contains("secret"), "the plugin must not see the text: {seen}");
}

#[tokio::test]
async fn a_request_keeps_its_plugins_across_changes() {
    // Stream and tool hooks of a request run on the plugins the request
    // started with, even if the host's plugins change in the meantime.
    let (host, _d) = scripted_host(&[("a", scripted("a", 1, "continue", "continue"))]).await;
    let ctx = ctx();
    host.run_request(&ctx, request("hi"), echo).await.unwrap();
    host.unload("a").await.unwrap();
    let chunk = chunk("x");
    host.on_chunk(&ctx, chunk.clone()).await.unwrap();
    assert_eq!(ctx.get("chunk-trace").as_deref(), Some("chunk:a"), "the running request still sees `a`");
    let fresh = RequestContext::new("m");
    host.on_chunk(&fresh, chunk).await.unwrap();
    assert_eq!(fresh.get("chunk-trace"), None, "a new request does not");
}

#[tokio::test]
async fn the_pipeline_runs_on_any_chain_without_the_host_facade() {
    let (host, _d) =
        scripted_host(&[("a", scripted("a", 1, "modify", "continue")), ("b", scripted("b", 2, "modify", "continue"))])
            .await;
    let config = PipelineConfig::default();
    let pipeline = plugbox_host::Pipeline::new(&config);
    // A chain is whatever the caller passes: here `b` alone.
    let chain = vec![host.plugin("b").unwrap()];
    let first = ctx();
    let resp = pipeline.run_request(&first, &chain, request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi [b]");
    assert_eq!(first.get("trace").as_deref(), Some("pre:b,post:b"));
    // No plugins: the provider alone.
    let resp = pipeline.run_request(&RequestContext::new("m"), &[], request("hi"), echo).await.unwrap();
    assert_eq!(text(&resp), "echo: hi");
    // Stream hooks on an explicit chain.
    let chunk = chunk("x");
    let streamed = RequestContext::new("m");
    pipeline.on_chunk(&streamed, &chain, chunk).await.unwrap();
    assert_eq!(streamed.get("chunk-trace").as_deref(), Some("chunk:b"));
}

#[tokio::test]
async fn a_refused_answer_is_one_failure_of_one_call() {
    let (host, _d) = scripted_host(&[("r", scripted_with("r", 1, "modify", "modify", "fail-open", "read"))]).await;
    host.run_request(&ctx(), request("hi"), echo).await.unwrap();
    let stats = host.plugin("r").unwrap().stats();
    // The pre hook's change is refused (fail-open: its post hook is skipped).
    assert_eq!((stats.calls, stats.errors, stats.consecutive_failures), (1, 1, 1), "{stats:?}");
}
