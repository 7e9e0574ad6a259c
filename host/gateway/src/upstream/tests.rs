//! Upstream calls against real HTTP servers (axum) on loopback ports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use parking_lot::Mutex;
use plugbox_host::{ChatChunk, ChatRequest, RequestError};
use tokio::sync::oneshot;

use super::*;

/// Serves `router` on 127.0.0.1:0; the base URL (with `/v1`).
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/v1")
}

fn config(base: &str) -> UpstreamConfig {
    UpstreamConfig {
        api_key: Some("sk-test".into()),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_secs(5),
        ..UpstreamConfig::new(base)
    }
}

fn request() -> ChatRequest {
    ChatRequest::from_json(r#"{"model":"gpt-x","messages":[{"role":"user","content":"hi"}],"top_k":5}"#).unwrap()
}

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"x_vendor":"v"}"#;

fn json(status: StatusCode, body: &str) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

#[tokio::test]
async fn retries_on_503_then_succeeds_and_sends_the_request_as_is() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::<(Option<String>, Option<String>, serde_json::Value)>::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, body: String| async move {
            let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
            s.lock().push((
                header("authorization"),
                header("openai-organization"),
                serde_json::from_str(&body).unwrap(),
            ));
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                json(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":{"message":"busy","type":"server_error"}}"#)
            } else {
                json(StatusCode::OK, COMPLETION)
            }
        }),
    );
    let mut config = config(&serve(router).await);
    config.headers.insert("OpenAI-Organization".into(), "org-secret".into());
    let up = Upstream::new(config).unwrap();
    let debug = format!("{up:?}");
    assert!(!debug.contains("sk-test") && !debug.contains("org-secret"), "{debug}");
    let response = up.chat(&request()).await.unwrap();
    assert_eq!(response.id, "chatcmpl-1");
    assert_eq!(response.extra["x_vendor"], "v", "fields the types do not model are kept");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let seen = seen.lock();
    assert_eq!(seen[2].0.as_deref(), Some("Bearer sk-test"));
    assert_eq!(seen[2].1.as_deref(), Some("org-secret"));
    assert_eq!(seen[2].2["model"], "gpt-x");
    assert_eq!(seen[2].2["top_k"], 5, "unknown request fields reach the upstream");
    assert!(seen[2].2.get("stream").is_none());
}

#[test]
fn an_https_upstream_gets_a_client() {
    let up = Upstream::new(UpstreamConfig::new("https://api.openai.com/v1")).unwrap();
    assert_eq!(up.config().base_url, "https://api.openai.com/v1");
}

#[tokio::test]
async fn retries_stop_after_max_and_the_last_error_is_returned() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            json(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>")
        }),
    );
    let up = Upstream::new(UpstreamConfig { max_retries: 1, ..config(&serve(router).await) }).unwrap();
    let e = up.chat(&request()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(e.status, Some(502));
    assert!(e.allow_fallback && !e.timed_out);
    assert!(e.message.ends_with("answered 502: <html>bad gateway</html>"), "{}", e.message);
    assert_eq!(e.body, None);
    assert_eq!(e.client_status(), 502);
}

#[tokio::test]
async fn a_429_waits_its_retry_after_before_the_next_try() {
    let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let t = times.clone();
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            let mut times = t.lock();
            times.push(Instant::now());
            if times.len() == 1 {
                (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response()
            } else {
                json(StatusCode::OK, COMPLETION)
            }
        }),
    );
    let up = Upstream::new(config(&serve(router).await)).unwrap();
    up.chat(&request()).await.unwrap();
    let times = times.lock();
    assert_eq!(times.len(), 2);
    // The second try came no earlier than the 429's Retry-After allowed.
    assert!(times[1] - times[0] >= Duration::from_secs(1), "{:?}", times[1] - times[0]);
}

#[tokio::test]
async fn a_retry_after_beyond_max_backoff_ends_the_retries_as_a_429() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "30"), ("content-type", "application/json")], body)
                .into_response()
        }),
    );
    let up = Upstream::new(config(&serve(router).await)).unwrap();
    let e = up.chat(&request()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(e.status, Some(429));
    assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
    assert!(e.allow_fallback);
    assert!(e.message.ends_with("answered 429: Rate limit reached"), "{}", e.message);
    assert_eq!(e.body.as_ref().unwrap()["error"]["code"], "rate_limit_exceeded");
    let llm = e.to_llm_error();
    assert_eq!(llm.kind, plugbox_host::ErrorKind::RateLimited);
    assert_eq!(llm.retry_after_ms, Some(30_000));
    assert_eq!(e.client_status(), 429);
}

#[test]
fn retry_after_is_seconds_an_http_date_or_openais_milliseconds() {
    let headers = |pairs: &[(&'static str, String)]| {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    };
    assert_eq!(retry_after(&headers(&[("retry-after", "7".into())])), Some(Duration::from_secs(7)));
    assert_eq!(
        retry_after(&headers(&[("retry-after-ms", "1500".into()), ("retry-after", "9".into())])),
        Some(Duration::from_millis(1500))
    );
    let later = std::time::SystemTime::now() + Duration::from_secs(120);
    let d = retry_after(&headers(&[("retry-after", httpdate::fmt_http_date(later))])).unwrap();
    assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
    assert_eq!(retry_after(&headers(&[("retry-after", "soon".into())])), None);
    assert_eq!(retry_after(&headers(&[])), None);
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap() {
    let c = UpstreamConfig {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(350),
        ..UpstreamConfig::new("http://h")
    };
    for _ in 0..100 {
        let b0 = backoff(&c, 0);
        assert!(b0 >= Duration::from_millis(50) && b0 <= Duration::from_millis(100), "{b0:?}");
        let b1 = backoff(&c, 1);
        assert!(b1 >= Duration::from_millis(100) && b1 <= Duration::from_millis(200), "{b1:?}");
        let b5 = backoff(&c, 5);
        assert!(b5 >= Duration::from_millis(175) && b5 <= Duration::from_millis(350), "{b5:?}");
    }
}

#[tokio::test]
async fn a_400_is_not_retried_and_does_not_fall_back() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            json(
                StatusCode::BAD_REQUEST,
                r#"{"error":{"message":"'messages' is too short","type":"invalid_request_error","param":"messages"}}"#,
            )
        }),
    );
    let up = Upstream::new(config(&serve(router).await)).unwrap();
    let e = up.chat(&request()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(e.status, Some(400));
    assert!(!e.allow_fallback);
    assert_eq!(e.body.as_ref().unwrap()["error"]["param"], "messages");
    assert_eq!(e.to_llm_error().kind, plugbox_host::ErrorKind::InvalidRequest);
    assert_eq!(e.client_status(), 400);
}

#[tokio::test]
async fn a_connect_error_is_retried_then_allows_fallback() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let up =
        Upstream::new(UpstreamConfig { max_retries: 1, ..config(&format!("http://127.0.0.1:{port}/v1")) }).unwrap();
    let e = up.chat(&request()).await.unwrap_err();
    assert_eq!(e.status, None);
    assert!(e.allow_fallback);
    assert!(e.message.starts_with("cannot connect to upstream `http://127.0.0.1:"), "{}", e.message);
    let e = up.chat_stream(&request()).await.err().unwrap();
    assert!(e.allow_fallback && e.status.is_none(), "{e:?}");
}

#[tokio::test]
async fn no_headers_within_the_first_byte_timeout_is_a_timeout_that_allows_fallback() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            StatusCode::OK
        }),
    );
    let up = Upstream::new(UpstreamConfig {
        first_byte_timeout: Duration::from_millis(200),
        ..config(&serve(router).await)
    })
    .unwrap();
    let e = up.chat(&request()).await.unwrap_err();
    assert!(e.timed_out && e.allow_fallback, "{e:?}");
    assert!(e.message.contains("sent no response headers within 200ms (the first-byte timeout)"), "{}", e.message);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a timeout is not retried");
    assert_eq!(e.to_llm_error().kind, plugbox_host::ErrorKind::Timeout);
    assert_eq!(e.client_status(), 504);
}

/// Sends a drop signal when the server's response body is dropped.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A streaming server: sends `first`, waits for `go` (if any), then sends
/// `rest`; holds `dropped` until its body is dropped. Returns the base URL
/// and the request bodies it saw.
async fn sse_server(
    first: Vec<String>,
    go: Option<oneshot::Receiver<()>>,
    rest: Vec<String>,
    dropped: Option<oneshot::Sender<()>>,
) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let go = Arc::new(Mutex::new(go));
    let dropped = Arc::new(Mutex::new(dropped));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move |body: String| async move {
            s.lock().push(serde_json::from_str(&body).unwrap());
            let go = go.lock().take();
            let guard = DropSignal(dropped.lock().take());
            let stream = futures_util::stream::unfold(
                (0usize, first, go, rest, guard),
                |(step, first, go, rest, guard)| async move {
                    let item = if step < first.len() {
                        first[step].clone()
                    } else {
                        let mut go = go;
                        if let Some(go) = go.take() {
                            // Until the test says so (or forever if it drops the stream).
                            if go.await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                        let i = step - first.len();
                        if i >= rest.len() {
                            return None;
                        }
                        let item = rest[i].clone();
                        return Some((
                            Ok::<_, std::io::Error>(bytes::Bytes::from(item)),
                            (step + 1, first, go, rest, guard),
                        ));
                    };
                    Some((Ok(bytes::Bytes::from(item)), (step + 1, first, go, rest, guard)))
                },
            );
            ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
        }),
    );
    (serve(router).await, seen)
}

fn text(chunk: &Result<ChatChunk, RequestError>) -> String {
    let chunk = chunk.as_ref().unwrap();
    chunk.text_delta().unwrap_or_default().to_string()
}

#[tokio::test]
async fn sse_chunks_are_relayed_as_they_arrive() {
    let (go_tx, go_rx) = oneshot::channel();
    let (base, seen) = sse_server(
        vec![ChatChunk::text("one").to_sse()],
        Some(go_rx),
        // The second event comes in two pieces, split inside its JSON.
        {
            let two = ChatChunk::text("two").to_sse();
            let (a, b) = two.split_at(two.len() / 2);
            vec![a.to_string(), b.to_string(), ": keep-alive\n\n".into(), "data: [DONE]\n\n".into()]
        },
        None,
    )
    .await;
    let up = Upstream::new(config(&base)).unwrap();
    let mut stream = up.chat_stream(&request()).await.unwrap();
    // Chunk one arrives while the server still holds chunk two back.
    assert_eq!(text(&stream.next().await.unwrap()), "one");
    go_tx.send(()).unwrap();
    assert_eq!(text(&stream.next().await.unwrap()), "two");
    assert!(stream.next().await.is_none(), "[DONE] ends the stream");
    let seen = seen.lock();
    assert_eq!(seen[0]["stream"], true, "chat_stream asks for a stream");
    assert_eq!(seen[0]["top_k"], 5);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let (base, _) = sse_server(vec![ChatChunk::text("one").to_sse()], Some(go_rx), vec![], Some(dropped_tx)).await;
    let up = Upstream::new(config(&base)).unwrap();
    let mut stream = up.chat_stream(&request()).await.unwrap();
    assert_eq!(text(&stream.next().await.unwrap()), "one");
    drop(stream);
    // The server sees the connection go: its response body is dropped.
    dropped_rx.await.unwrap();
    drop(go_tx);
}

#[tokio::test]
async fn an_upstream_error_event_ends_the_stream_with_an_error() {
    let (base, _) = sse_server(
        vec![
            ChatChunk::text("one").to_sse(),
            "data: {\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\"}}\n\n".into(),
            ChatChunk::text("never").to_sse(),
        ],
        None,
        vec![],
        None,
    )
    .await;
    let up = Upstream::new(config(&base)).unwrap();
    let items: Vec<_> = up.chat_stream(&request()).await.unwrap().collect().await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(text(&items[0]), "one");
    let e = items[1].as_ref().unwrap_err().to_string();
    assert!(e.ends_with("sent an error: model overloaded"), "{e}");
}

#[tokio::test]
async fn a_stream_cut_before_done_ends_with_an_error() {
    let (base, _) = sse_server(vec![ChatChunk::text("one").to_sse()], None, vec![], None).await;
    let up = Upstream::new(config(&base)).unwrap();
    let items: Vec<_> = up.chat_stream(&request()).await.unwrap().collect().await;
    assert_eq!(items.len(), 2, "{items:?}");
    let e = items[1].as_ref().unwrap_err().to_string();
    assert!(e.ends_with("closed the stream before `data: [DONE]`"), "{e}");
}

#[tokio::test]
async fn embeddings_are_posted_as_is() {
    let router = Router::new().route(
        "/v1/embeddings",
        post(|body: String| async move {
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["model"], "emb");
            assert_eq!(body["dimensions"], 3);
            json(
                StatusCode::OK,
                r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],"model":"emb"}"#,
            )
        }),
    );
    let up = Upstream::new(config(&serve(router).await)).unwrap();
    let out = up.embeddings(serde_json::json!({"model": "emb", "input": "hi", "dimensions": 3})).await.unwrap();
    assert_eq!(out["data"][0]["embedding"][2], 0.3);
}

#[tokio::test]
async fn a_stream_is_retried_until_its_headers_come() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                return json(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":{"message":"warming up"}}"#);
            }
            let body = ChatChunk::text("hi").to_sse() + "data: [DONE]\n\n";
            ([("content-type", "text/event-stream")], body).into_response()
        }),
    );
    let up = Upstream::new(config(&serve(router).await)).unwrap();
    let items: Vec<_> = up.chat_stream(&request()).await.unwrap().collect().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(items.len(), 1);
    assert_eq!(text(&items[0]), "hi");
}

#[tokio::test]
async fn the_total_timeout_ends_a_stream_that_stalls() {
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (base, _) = sse_server(vec![ChatChunk::text("one").to_sse()], Some(go_rx), vec![], None).await;
    let up = Upstream::new(UpstreamConfig { total_timeout: Duration::from_millis(300), ..config(&base) }).unwrap();
    let items: Vec<_> = up.chat_stream(&request()).await.unwrap().collect().await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(text(&items[0]), "one");
    let Err(RequestError::Llm(e)) = &items[1] else { panic!("{items:?}") };
    assert_eq!(e.kind, plugbox_host::ErrorKind::Timeout, "{e:?}");
    assert!(e.message.ends_with("the stream broke off: timed out"), "{}", e.message);
    drop(go_tx);
}

#[tokio::test]
async fn a_huge_error_body_is_cut_for_the_message() {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(1 << 20)).into_response() }),
    );
    let up = Upstream::new(UpstreamConfig { max_retries: 0, ..config(&serve(router).await) }).unwrap();
    let e = up.chat(&request()).await.unwrap_err();
    assert_eq!(e.status, Some(500));
    assert!(e.message.len() < 400 && e.message.ends_with("x…"), "{}", e.message);
}

#[tokio::test]
async fn a_redirect_is_an_error_and_the_keys_do_not_follow_it() {
    // Where the redirect points: records what reaches it.
    let reached = Arc::new(Mutex::new(Vec::<HeaderMap>::new()));
    let r = reached.clone();
    let elsewhere = serve(Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap| async move {
            r.lock().push(headers);
            json(StatusCode::OK, COMPLETION)
        }),
    ))
    .await;
    let to = format!("{elsewhere}/chat/completions");
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response() }),
    );
    let mut config = config(&serve(router).await);
    config.headers.insert("x-api-key".into(), "sk-custom-secret".into());
    let up = Upstream::new(config).unwrap();
    let e = up.chat(&request()).await.unwrap_err();
    assert_eq!(e.status, Some(307), "{e:?}");
    assert_eq!(e.client_status(), 502);
    assert!(!e.allow_fallback, "{e:?}");
    let e = up.chat_stream(&request()).await.err().expect("a redirected stream fails");
    assert_eq!(e.status, Some(307), "{e:?}");
    assert!(reached.lock().is_empty(), "the redirect was followed: {:?}", reached.lock());
}

#[tokio::test]
async fn an_answer_over_the_size_cap_is_an_error() {
    // Streamed without a length, so that only counting finds it too large.
    let huge = || async {
        let piece = bytes::Bytes::from(vec![b' '; 1 << 20]);
        let body = futures_util::stream::iter(
            std::iter::repeat_n(piece, MAX_ANSWER_BODY / (1 << 20) + 2).map(Ok::<_, std::io::Error>),
        );
        ([("content-type", "application/json")], Body::from_stream(body)).into_response()
    };
    let router = Router::new().route("/v1/chat/completions", post(huge)).route("/v1/embeddings", post(huge));
    let up = Upstream::new(config(&serve(router).await)).unwrap();
    let e = up.chat(&request()).await.unwrap_err();
    assert_eq!(e.status, Some(200), "{e:?}");
    assert!(e.message.contains(&format!("sent an answer larger than {MAX_ANSWER_BODY} bytes")), "{}", e.message);
    let e = up.embeddings(serde_json::json!({"model": "e", "input": "x"})).await.unwrap_err();
    assert!(e.message.contains("larger than"), "{}", e.message);
}

#[tokio::test]
async fn an_event_stream_line_without_end_is_cut_at_the_line_cap() {
    // `data: ` and then spaces forever, never a line break.
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let start = futures_util::stream::iter([bytes::Bytes::from_static(b"data: ")]);
            let endless = futures_util::stream::repeat(bytes::Bytes::from(vec![b' '; 64 << 10]));
            let body = start.chain(endless).map(Ok::<_, std::io::Error>);
            ([("content-type", "text/event-stream")], Body::from_stream(body)).into_response()
        }),
    );
    let up = Upstream::new(config(&serve(router).await)).unwrap();
    let items: Vec<_> = up.chat_stream(&request()).await.unwrap().collect().await;
    assert_eq!(items.len(), 1, "{items:?}");
    let Err(RequestError::Llm(e)) = &items[0] else { panic!("{items:?}") };
    assert!(e.message.ends_with(&format!("a line longer than {MAX_SSE_LINE} bytes")), "{}", e.message);
}
