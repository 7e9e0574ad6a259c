//! The corpus (`tests/corpus/`: OpenAI request, response and SSE bodies)
//! through real plugin chains: with plugins that change nothing every body
//! comes out JSON-equal to what went in; with an editing plugin only the
//! edited field differs.

use std::path::Path;
use std::sync::{Arc, Mutex};

use plugbox_host::openai::sse;
use plugbox_host::{ChatChunk, ChatRequest, ChatResponse, Host, RequestContext};
use serde_json::{Value, json};

use crate::*;

/// The corpus files of `kind` with extension `ext`, as (file name, text).
fn corpus(kind: &str, ext: &str) -> Vec<(String, String)> {
    let dir = Path::new(plugbox_artifacts::REPO_ROOT).join("tests/corpus").join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{}", dir.display());
    files
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The `chat.completion.chunk` bodies of an SSE file (`[DONE]` left out).
fn chunks(sse_body: &str) -> Vec<String> {
    sse::data_events(sse_body).into_iter().filter(|d| d != sse::DONE).collect()
}

/// A host with the no-op plugins: two fixtures built without the SDK against
/// the 0.2.0 and 0.2.99 WIT (pre-request reads the model, post-response and
/// on-chunk read and continue) and `bare-request-hooks` (continues, exports
/// nothing else), with `messages: write` so that nothing is refused.
async fn noop_host() -> (Host, PluginDir) {
    let dir = PluginDir::new();
    dir.add(
        "api-0-2-0",
        plugbox_artifacts::API_0_2_0,
        "name: api-0-2-0\nversion: 0.1.0\nhooks: [pre-request, post-response, on-chunk, on-stream-end]\n\
         priority: 1\npermissions: { messages: write }\n",
    );
    dir.add(
        "api-0-2-99",
        plugbox_artifacts::API_0_2_99,
        "name: api-0-2-99\nversion: 0.1.0\nhooks: [pre-request, post-response]\npriority: 2\n\
         permissions: { messages: write }\n",
    );
    dir.add(
        "bare-request-hooks",
        plugbox_artifacts::BARE_REQUEST_HOOKS,
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/bare-request-hooks/plugin.yaml",
            plugbox_artifacts::REPO_ROOT
        ))
        .unwrap(),
    );
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (host, dir)
}

/// Runs `request` through the host's chain with a provider that records what
/// it was given and answers `response`; returns both.
async fn run(host: &Host, request: ChatRequest, response: ChatResponse) -> (ChatRequest, ChatResponse) {
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let ctx = RequestContext::new(&request.model);
    let out = host
        .run_request(&ctx, request, move |req: Arc<ChatRequest>| async move {
            *record.lock().unwrap() = Some((*req).clone());
            Ok(response)
        })
        .await
        .unwrap();
    let seen = seen.lock().unwrap().take().expect("the provider was called");
    (seen, out)
}

#[tokio::test]
async fn every_request_and_response_passes_noop_plugins_json_equal() {
    let (host, _dir) = noop_host().await;
    let responses = corpus("responses", "json");
    for (i, (name, body)) in corpus("requests", "json").into_iter().enumerate() {
        let (resp_name, resp_body) = &responses[i % responses.len()];
        let request = ChatRequest::from_json(&body).unwrap();
        let response = ChatResponse::from_json(resp_body).unwrap();
        let (seen, out) = run(&host, request, response).await;
        assert_eq!(value(&seen.to_json()), value(&body), "{name}: the request the provider got");
        assert_eq!(value(&out.to_json()), value(resp_body), "{resp_name}: the response after the post hooks");
    }
}

#[tokio::test]
async fn every_chunk_passes_a_noop_on_chunk_plugin_json_equal() {
    let (host, _dir) = noop_host().await;
    for (name, body) in corpus("streams", "sse") {
        let ctx = RequestContext::new("m");
        for (i, data) in chunks(&body).into_iter().enumerate() {
            let chunk = ChatChunk::from_json(&data).unwrap();
            let out = host.on_chunk(&ctx, chunk).await.unwrap().expect("a no-op hook neither drops nor holds");
            assert_eq!(value(&out.to_json()), value(&data), "{name} chunk {i}");
        }
        let tail = host.on_stream_end(&ctx, None).await.unwrap();
        assert!(tail.is_empty(), "{name}: nothing appended");
    }
}

#[tokio::test]
async fn an_editing_plugin_changes_only_the_field_it_edits() {
    // `system-prompt` inserts one system message first: every other field of
    // every corpus request, unknown ones included, is as it came.
    let a = plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == "system-prompt").unwrap();
    let dir = PluginDir::new();
    dir.add("system-prompt", a.wasm, &std::fs::read_to_string(a.manifest).unwrap());
    let config = json!({"prompt": "Be brief."}).as_object().unwrap().clone();
    let host = builder().plugin_config("system-prompt", config).build().unwrap();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let response = corpus("responses", "json").remove(0).1;
    for (name, body) in corpus("requests", "json") {
        let request = ChatRequest::from_json(&body).unwrap();
        let (seen, _) = run(&host, request, ChatResponse::from_json(&response).unwrap()).await;
        let mut expected = value(&body);
        expected["messages"].as_array_mut().unwrap().insert(0, json!({"role": "system", "content": "Be brief."}));
        assert_eq!(value(&seen.to_json()), expected, "{name}");
    }
}
