//! Disconnects, plugin reloads under load, clients that leave.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn gateway_client_disconnect_cancels_the_provider_and_the_end_hooks_run() {
    let gw = Gw::start(&[("tool-provider", plugbox_artifacts::TOOL_PROVIDER, tool_manifest())], CONFIG).await;
    let mut r = gw
        .post("/v1/chat/completions", &json!({"model": "slow", "messages": user("x"), "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut seen = 0;
    while seen < 3 {
        let bytes = r.chunk().await.unwrap().expect("chunks");
        seen += String::from_utf8_lossy(&bytes).matches("tick").count();
    }
    drop(r); // the client goes away mid-stream
    let deadline = std::time::Instant::now() + WAIT;
    while gw.kv("ends").await == 0 || gw.gateway.in_flight() > 0 {
        assert!(std::time::Instant::now() < deadline, "the end hooks never ran after the disconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.kv("ends").await, 1);
    let produced = gw.kv("produced").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.kv("produced").await, produced, "the provider stopped producing");
    assert!(produced < 500, "cancelled long before its end: {produced} chunks made");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_plugin_reloads_under_load_lose_nothing() {
    let manifest =
        |v: &str| scripted_as("tagger", 10, &[("pre", "modify")]).replace("version: 0.1.0", &format!("version: {v}"));
    let gw = Gw::echo_only(&[("tagger", plugbox_artifacts::SCRIPTED, manifest("0.1.0"))]).await;
    let gw = std::sync::Arc::new(gw);
    let mut clients = Vec::new();
    for c in 0..4 {
        let gw = gw.clone();
        clients.push(tokio::spawn(async move {
            for i in 0..15 {
                let text = format!("client {c} request {i}");
                if i % 2 == 0 {
                    let (status, body) = gw.chat(&json!({"model": "m", "messages": user(&text)})).await;
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body["choices"][0]["message"]["content"], format!("{text} [tagger]"));
                } else {
                    let ev = gw.stream(&json!({"model": "m", "messages": user(&text), "stream": true})).await;
                    assert_eq!(ev.last().unwrap(), "[DONE]", "{ev:?}");
                    assert_eq!(stream_text(&ev), format!("{text} [tagger]"));
                }
            }
        }));
    }
    for v in 1..=5 {
        let dir = gw.dir.path().join("tagger");
        std::fs::write(dir.join("plugin.yaml"), manifest(&format!("0.1.{v}"))).unwrap();
        gw.host.reload_dir(gw.dir.path()).await.unwrap();
        assert_eq!(gw.host.plugin("tagger").unwrap().manifest().version.to_string(), format!("0.1.{v}"));
    }
    for c in clients {
        c.await.unwrap();
    }
    std::sync::Arc::into_inner(gw).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_client_that_leaves_a_json_request_does_not_skip_the_post_hooks() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = format!(
        "providers:\n  silent: {{ type: openai-compatible, base-url: 'http://{}/v1', retries: {{ max: 0 }} }}\n\
         routes:\n  - {{ model: m, targets: [silent] }}\nlimits: {{ request-timeout: 2s }}\n",
        silent.local_addr().unwrap()
    );
    let metrics = plugbox_artifacts::example("metrics").unwrap();
    let manifest = std::fs::read_to_string(metrics.manifest).unwrap();
    let gw = Gw::start(&[("metrics", metrics.wasm, manifest)], &yaml).await;
    let counter = |key: &'static str| {
        let kv = gw.host.kv();
        async move {
            let v = kv.get("metrics", key).await.unwrap();
            v.map(|b| String::from_utf8(b).unwrap().parse::<i64>().unwrap()).unwrap_or(0)
        }
    };
    // The client gives up once the request is under way.
    let request = gw.post("/v1/chat/completions", &json!({"model": "m", "messages": user("hi")})).send();
    let deadline = std::time::Instant::now() + WAIT;
    tokio::select! {
        r = request => panic!("the silent upstream answered: {r:?}"),
        _ = async {
            while counter("requests").await == 0 {
                assert!(std::time::Instant::now() < deadline, "the request never reached the pre hooks");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } => {}
    }
    // Its post hooks still run (at the request deadline, with the timeout).
    while counter("responses").await == 0 || gw.gateway.in_flight() > 0 {
        assert!(std::time::Instant::now() < deadline, "the post hooks never ran after the client left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((counter("requests").await, counter("responses").await, counter("errors").await), (1, 1, 1));
    gw.stop().await;
    drop(silent);
}
