//! The example plugins doing their real jobs.

use futures::StreamExt;
use plugbox_host::{ChatMessage, ChatRequest, ErrorKind, Host, RequestContext, RequestError, ToolCall, Usage};
use serde_json::json;

use crate::loader::manifest_of;
use crate::*;

/// Loads the named example plugins (directory form, manifests from `manifests/`).
async fn examples(names: &[&str], config: &[(&str, serde_json::Value)]) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    for name in names {
        let a = plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == *name).unwrap();
        dir.add(name, a.wasm, &std::fs::read_to_string(manifest_of(name)).unwrap());
    }
    let mut b = builder();
    for (name, values) in config {
        b = b.plugin_config(*name, values.as_object().unwrap().clone());
    }
    let host = b.build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (host, dir)
}

/// A provider that reports what it received.
async fn capture(req: ChatRequest) -> plugbox_host::Outcome {
    let all: Vec<String> = req.messages.iter().map(|m| format!("{}:{}", m.role, message_text(m))).collect();
    Ok(response(&all.join("|")))
}

#[tokio::test]
async fn pii_redact_masks_prompts_and_responses() {
    let (host, _d) = examples(&["pii-redact"], &[]).await;
    let ctx = RequestContext::new("m");
    let resp = host
        .run_request(&ctx, request("mail bob.smith@example.org or call +1 (415) 555-0100 now"), capture)
        .await
        .unwrap();
    let seen = text(&resp);
    assert!(!seen.contains("bob.smith@example.org"), "{seen}");
    assert!(!seen.contains("555-0100"), "{seen}");
    assert!(seen.contains("mail") && seen.contains("now"), "{seen}");

    // Responses too.
    let resp = host
        .run_request(&RequestContext::new("m"), request("hello"), |_| async {
            Ok(response("write to admin@corp.example"))
        })
        .await
        .unwrap();
    assert!(!text(&resp).contains("admin@corp.example"), "{}", text(&resp));

    // Nothing to redact: the request is passed on unchanged ("continue").
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, request("no personal data here"), capture).await.unwrap();
    assert_eq!(ctx.trace()[0].action, "continue");
}

#[tokio::test]
async fn system_prompt_is_added_once() {
    let (host, _d) = examples(&["system-prompt"], &[("system-prompt", json!({"prompt": "Be brief."}))]).await;
    let resp = host.run_request(&RequestContext::new("m"), request("hi"), capture).await.unwrap();
    assert_eq!(text(&resp), "system:Be brief.|user:hi");
    // Already present: not added twice.
    let mut req = request("hi");
    req.messages.insert(0, ChatMessage::system("Be brief."));
    let resp = host.run_request(&RequestContext::new("m"), req, capture).await.unwrap();
    assert_eq!(text(&resp), "system:Be brief.|user:hi");
}

#[tokio::test]
async fn system_prompt_requires_its_config() {
    let dir = PluginDir::new();
    let a = plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == "system-prompt").unwrap();
    dir.add("system-prompt", a.wasm, &std::fs::read_to_string(a.manifest).unwrap());
    let report = host().load_dir(dir.path()).await.unwrap();
    assert!(report.failed[0].to_string().contains("prompt"), "{}", report.failed[0]);
}

#[tokio::test]
async fn response_cache_short_circuits_repeats() {
    let (host, _d) = examples(&["response-cache"], &[]).await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..3 {
        let c = calls.clone();
        let ctx = RequestContext::new("m");
        let resp = host
            .run_request(&ctx, request("same question"), move |r| {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                echo(r)
            })
            .await
            .unwrap();
        assert_eq!(text(&resp), "echo: same question");
        assert_eq!(ctx.get("response-cache.hit").is_some(), i > 0, "request {i}");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A different question misses.
    let ctx = RequestContext::new("m");
    host.run_request(&ctx, request("other question"), echo).await.unwrap();
    assert!(ctx.get("response-cache.hit").is_none());
}

#[tokio::test]
async fn rate_limit_allows_a_burst_per_caller() {
    let (host, _d) = examples(&["rate-limit"], &[("rate-limit", json!({"rps": 0.001, "burst": 2}))]).await;
    let send = |caller: &'static str| {
        let host = host.clone();
        async move { host.run_request(&RequestContext::new("m").with_caller(caller), request("x"), echo).await }
    };
    assert!(send("alice").await.is_ok());
    assert!(send("alice").await.is_ok());
    match send("alice").await {
        Err(RequestError::Llm(e)) => {
            assert_eq!(e.kind, ErrorKind::RateLimited);
            assert!(e.retry_after_ms.is_some());
        }
        other => panic!("expected rate limiting, got {other:?}"),
    }
    // Buckets are per caller.
    assert!(send("bob").await.is_ok());
}

#[tokio::test]
async fn metrics_counts_requests_and_tokens_in_kv() {
    let (host, _d) = examples(&["metrics", "logging"], &[]).await;
    for i in 0..5 {
        host.run_request(&RequestContext::new("m"), request(&format!("q{i}")), |r| async move {
            Ok(echo(r).await?.with_usage(Usage::new(3, 4)))
        })
        .await
        .unwrap();
    }
    let keys = host.kv().keys("metrics").await.unwrap();
    assert!(!keys.is_empty());
    let mut values = std::collections::HashMap::new();
    for key in &keys {
        values.insert(key.clone(), String::from_utf8(host.kv().get("metrics", key).await.unwrap().unwrap()).unwrap());
    }
    let get = |k: &str| {
        let k = keys.iter().find(|key| key.contains(k)).unwrap_or_else(|| panic!("no `{k}` in {keys:?}"));
        values[k].clone()
    };
    assert_eq!(get("requests"), "5");
    assert_eq!(get("tokens.completion"), "20");
    // Plugins cannot see each other's namespace: logging stored nothing there.
    assert!(host.kv().keys("logging").await.unwrap().is_empty());
}

#[tokio::test]
async fn echo_provider_completes_and_streams() {
    let (host, _d) = examples(&["echo-provider"], &[]).await;
    let ctx = RequestContext::new("m");
    let resp = host.complete(&ctx, "echo", &request("one two three")).await.unwrap();
    assert_eq!(text(&resp), "one two three");
    assert_eq!(resp.usage().unwrap().completion_tokens, 3);
    let chunks: Vec<_> = host.stream(&ctx, "echo", request("one two three")).collect().await;
    let chunks: Vec<_> = chunks.into_iter().collect::<Result<_, _>>().unwrap();
    let joined: String = chunks.iter().map(delta).collect();
    assert_eq!(joined.split_whitespace().collect::<Vec<_>>(), ["one", "two", "three"]);
    let finish = chunks.iter().rev().find_map(|c| c.choices.first().and_then(|c| c.finish_reason()));
    assert_eq!(finish, Some("stop"));

    // With `stream_options.include_usage`: a last chunk with the usage and no choices.
    let mut req = request("one two three").with_stream(true);
    req.stream_options = Some(plugbox_host::openai::StreamOptions { include_usage: Some(true), ..Default::default() });
    let chunks: Vec<_> = host.stream(&ctx, "echo", req).collect().await;
    let last = chunks.last().unwrap().as_ref().unwrap();
    assert!(last.choices.is_empty(), "{last:?}");
    assert_eq!(last.usage().map(|u| u.completion_tokens), Some(3));
    // Unknown provider type.
    assert!(
        matches!(host.complete(&ctx, "nope", &request("x")).await, Err(RequestError::Llm(e)) if e.kind == ErrorKind::NotFound)
    );
}

#[tokio::test]
async fn stream_and_tool_hooks_run_in_order() {
    let (host, _d) = scripted_host(&[("s", {
        let m = scripted("s", 1, "continue", "continue");
        m.replace("chunk: { type: string, default: continue }", "chunk: { type: string, default: upper }")
            .replace("tool: { type: string, default: allow }", "tool: { type: string, default: deny }")
    })])
    .await;
    let ctx = RequestContext::new("m");
    let chunk = chunk("abc");
    let out = host.on_chunk(&ctx, chunk).await.unwrap().unwrap();
    assert_eq!(delta(&out), "ABC");
    let call = ToolCall::function("1", "rm", "{}");
    match host.on_tool_call(&ctx, call).await.unwrap() {
        plugbox_host::ToolDecision::Denied { plugin, .. } => assert_eq!(plugin, "s"),
        other => panic!("expected a denial, got {other:?}"),
    }
}
