//! The `plugbox serve` binary: the embedded echo, SIGTERM, public addresses, config hot reload, `--examples`.

use super::*;
use crate::ServeProcess;

#[tokio::test(flavor = "multi_thread")]
async fn plugbox_serve_answers_with_the_embedded_echo_and_drains_on_sigterm() {
    let dir = PluginDir::new();
    dir.add("tool-provider", plugbox_artifacts::TOOL_PROVIDER, &tool_manifest());
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "providers:\n  echo: { type: plugin, provider-type: echo }\n  tools: { type: plugin, provider-type: tools }\n\
         routes:\n  - { model: slow-40, targets: [tools] }\n  - { model: '*', targets: [echo] }\n",
    )
    .unwrap();
    let mut serve = ServeProcess::start(&[
        "--plugins",
        dir.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-watch",
    ]);
    let url = serve.url();
    let client = client();
    // The embedded echo provider answers (the directory has none).
    let body: Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "any", "messages": user("no key needed")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "no key needed");

    // A stream in flight when SIGTERM comes finishes; then the process exits 0.
    let mut r = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "slow-40", "messages": user("x"), "stream": true}))
        .send()
        .await
        .unwrap();
    let mut text = String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()).into_owned();
    serve.signal("TERM");
    while let Some(bytes) = r.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    let ev = events(&text);
    assert_eq!(ev.last().unwrap(), "[DONE]");
    assert_eq!(stream_text(&ev).matches("tick").count(), 40, "the whole stream arrived");
    let deadline = std::time::Instant::now() + WAIT;
    let exit = loop {
        if let Some(s) = serve.child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "plugbox serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    let printed: Vec<String> = serve.lines.try_iter().collect();
    assert!(printed.iter().any(|l| l.contains("drained")), "{printed:#?}");
}

#[test]
fn plugbox_serve_refuses_a_public_address_without_keys() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugbox"))
        .args(["serve", "--listen", "0.0.0.0:0", "--no-watch"])
        .env("PLUGBOX_CACHE_DIR", crate::cache_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0:0") && err.contains("--allow-unauthenticated"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plugbox_serve_hot_reloads_its_config_and_keeps_the_old_one_on_a_bad_edit() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("gateway.yaml");
    let good = |model: &str| {
        format!(
            "providers:\n  echo: {{ type: plugin, provider-type: echo }}\nroutes:\n  - {{ model: {model}, targets: [echo] }}\n"
        )
    };
    std::fs::write(&config, good("first")).unwrap();
    let mut serve = ServeProcess::start(&["--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let url = serve.url();
    let client = client();
    let status_of = |model: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(format!("{url}/v1/chat/completions"))
                .json(&json!({"model": model, "messages": user("hi")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status_of("first").await, 200);
    // A bad edit: refused with its place, the old config keeps serving.
    std::fs::write(&config, "routes:\n  - { model: x, targets: [nowhere] }\n").unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let refused = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = serve.errors.recv_timeout(left).expect("the bad edit is reported on stderr");
        if line.contains("config not reloaded") {
            break line;
        }
    };
    assert!(refused.contains("gateway.yaml:2:"), "{refused}");
    assert_eq!(status_of("first").await, 200);
    // A good edit swaps in.
    std::fs::write(&config, good("second")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while status_of("second").await != 200 {
        assert!(std::time::Instant::now() < deadline, "the new config never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status_of("first").await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn plugbox_serve_examples_run_the_bundled_plugins_with_config_from_the_file() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("gateway.yaml");
    // The file's `plugins` section wins over the examples' defaults.
    std::fs::write(
        &config,
        "providers:\n  echo: { type: plugin, provider-type: echo }\nroutes:\n  - { model: '*', targets: [echo] }\n\
         plugins:\n  system-prompt: { prompt: Answer in French. }\n  rate-limit: { rps: 0.001, burst: 1 }\n",
    )
    .unwrap();
    let mut serve =
        ServeProcess::start(&["--examples", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let url = serve.url();
    // What it printed before it listened: the plugins' statuses.
    let printed = serve.seen.clone();
    let client = client();
    let body: Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "any", "messages": user("Mail me at bob@example.com")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // pii-redact masked the address before the echo provider saw it.
    assert_eq!(body["choices"][0]["message"]["content"], "Mail me at [EMAIL]", "{body}");
    assert!(
        printed.iter().any(|l| l.starts_with("system-prompt ") && l.contains("active")),
        "system-prompt loaded with its prompt from the file: {printed:#?}"
    );
    assert!(!printed.iter().any(|l| l.starts_with("FAILED")), "{printed:#?}");
    // rate-limit got the file's burst of 1, not the examples' 10.
    let r = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "any", "messages": user("a second request")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "{:?}", r.text().await);
}
