//! A fast mock OpenAI upstream for the gateway load benchmark (axum).
//!
//! `gateway-load-mock [--port PORT] [--threads N]` listens on 127.0.0.1 and
//! prints `gateway-load-mock: listening on http://127.0.0.1:PORT` once it
//! accepts.
//!
//! * `POST /v1/chat/completions`: a fixed completion (about 500 bytes);
//!   with `"stream": true`, an SSE stream of N chunks (one word each) when the model is
//!   `stream-N` (default 20), then `data: [DONE]`, as fast as it can write;
//! * `POST /v1/embeddings`: a fixed 8-dimensional vector per request.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::post;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! Here is a short answer of a typical size for a chat model, a sentence or two with no personal data in it."},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":24,"completion_tokens":26,"total_tokens":50},"system_fingerprint":"fp_bench"}"#;

const EMBEDDING: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]}],"model":"bench","usage":{"prompt_tokens":3,"total_tokens":3}}"#;

const WORDS: [&str; 8] = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs"];

fn json(body: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn stream(chunks: usize) -> Response {
    let mut sse = String::with_capacity(chunks * 200 + 400);
    let head = r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":"#;
    sse.push_str("data: ");
    sse.push_str(head);
    sse.push_str(r#"{"role":"assistant","content":""},"finish_reason":null}]}"#);
    sse.push_str("\n\n");
    for i in 0..chunks {
        sse.push_str("data: ");
        sse.push_str(head);
        // Words without digits: pii-redact holds back text that could be
        // the start of a phone or card number until it is sure.
        let word = WORDS[i % WORDS.len()];
        sse.push_str(&format!(r#"{{"content":"{word} "}},"finish_reason":null}}]}}"#));
        sse.push_str("\n\n");
    }
    sse.push_str("data: ");
    sse.push_str(head);
    sse.push_str(r#"{},"finish_reason":"stop"}]}"#);
    sse.push_str("\n\ndata: [DONE]\n\n");
    // One body frame per event, so the gateway sees a real stream of writes.
    let frames: Vec<Result<Bytes, std::io::Error>> =
        sse.split_inclusive("\n\n").map(|e| Ok(Bytes::copy_from_slice(e.as_bytes()))).collect();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(futures_util::stream::iter(frames)))
        .unwrap()
}

async fn chat(body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Response::builder().status(StatusCode::BAD_REQUEST).body(Body::from("bad json")).unwrap();
    };
    if v.get("stream").and_then(|s| s.as_bool()) == Some(true) {
        let chunks = v
            .get("model")
            .and_then(|m| m.as_str())
            .and_then(|m| m.strip_prefix("stream-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(20);
        stream(chunks)
    } else {
        json(COMPLETION)
    }
}

async fn embeddings(_body: Bytes) -> Response {
    json(EMBEDDING)
}

fn main() {
    let mut port = 0u16;
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).expect("--port N"),
            "--threads" => threads = args.next().and_then(|p| p.parse().ok()).expect("--threads N"),
            other => panic!("unknown argument `{other}` (--port N, --threads N)"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
    rt.block_on(async move {
        let app = Router::new().route("/v1/chat/completions", post(chat)).route("/v1/embeddings", post(embeddings));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap();
        println!("gateway-load-mock: listening on http://{}", listener.local_addr().unwrap());

        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await.unwrap();
    });
}
