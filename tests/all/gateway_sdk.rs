//! The gateway as its users meet it: the real `plugbox serve` binary on a
//! loopback port, in front of a mock OpenAI upstream that is a process of its
//! own (tests/gateway/mock_upstream.py), called by the official `openai`
//! Python SDK and by curl (tests/gateway/test_gateway.py, one scenario per
//! test). Plugins are the compiled examples, their manifests' defaults set
//! the way an operator would edit them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::tools::tools;
use crate::*;

/// The client API key the gateways of these tests accept.
const CLIENT_KEY: &str = "sk-test-client-key";
/// The key the gateway sends to the mock upstream (from `${MOCK_UPSTREAM_KEY}`).
const UPSTREAM_KEY: &str = "upstream-secret";

fn gateway_dir() -> PathBuf {
    Path::new(plugbox_artifacts::REPO_ROOT).join("tests/gateway")
}

/// A child process killed when dropped, its stderr kept in a file for the
/// failure message.
struct Proc {
    child: Child,
    name: String,
    stderr: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Proc {
    /// Starts `cmd` and waits for the stdout line starting with `ready`
    /// (`... listening on URL`); returns the process and the URL.
    fn start(name: &str, mut cmd: Command, ready: &str) -> (Proc, String) {
        let tmp = tempfile::tempdir().unwrap();
        let stderr = tmp.path().join("stderr.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut proc = Proc { child, name: name.to_string(), stderr, _tmp: tmp };
        let stdout = proc.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let prefix = ready.to_string();
        // Reads stdout to its end (so the child never blocks on a full pipe),
        // sending the URL of the first `ready` line.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix(&prefix) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(url) => (proc, url),
            Err(_) => panic!("{name} did not print `{ready}URL`; its stderr:\n{}", proc.log()),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mock upstream, on a free loopback port.
fn mock_upstream() -> (Proc, String) {
    let mut cmd = Command::new(tools().python());
    cmd.arg(gateway_dir().join("mock_upstream.py"));
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    Proc::start("mock upstream", cmd, "mock-upstream: listening on ")
}

/// A `plugbox serve` on a free loopback port with `plugins` and the config
/// text `config` (none: the built-in echo config).
struct Gateway {
    proc: Proc,
    /// `http://127.0.0.1:PORT`
    url: String,
    _data: tempfile::TempDir,
    _config: Option<tempfile::NamedTempFile>,
}

impl Gateway {
    fn start(plugins: Option<&Path>, config: Option<&str>) -> Gateway {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plugbox"));
        cmd.arg("serve").args(["--listen", "127.0.0.1:0"]);
        if let Some(dir) = plugins {
            cmd.arg("--plugins").arg(dir);
        }
        let config = config.map(|text| {
            let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
            std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
            cmd.arg("--config").arg(f.path());
            f
        });
        cmd.env("PLUGBOX_CACHE_DIR", cache_dir())
            .env("PLUGBOX_DATA_DIR", data.path())
            .env("PLUGBOX_LOG", "warn")
            .env_remove("PLUGBOX_POLICY")
            .env("MOCK_UPSTREAM_KEY", UPSTREAM_KEY)
            .env("GATEWAY_CLIENT_KEY", CLIENT_KEY);
        let (proc, url) = Proc::start("plugbox serve", cmd, "plugbox serve: listening on ");
        Gateway { proc, url, _data: data, _config: config }
    }

    /// Runs test_gateway.py's `scenario` against this gateway; fails with the
    /// script's output and the gateway's log.
    fn run(&self, scenario: &str, mock: &str, env: &[(&str, &str)]) {
        let out = Command::new(tools().python())
            .arg(gateway_dir().join("test_gateway.py"))
            .arg(scenario)
            .env("GATEWAY_URL", format!("{}/v1", self.url))
            .env("GATEWAY_KEY", CLIENT_KEY)
            .env("MOCK_URL", mock)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(env.iter().copied())
            .output()
            .expect("running test_gateway.py");
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        assert!(
            out.status.success(),
            "scenario `{scenario}` failed:\n{stdout}\n{}\n--- {} log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.proc.name,
            self.proc.log()
        );
        assert!(stdout.contains(&format!("ok {scenario}")), "scenario `{scenario}` did not finish:\n{stdout}");
    }
}

/// The gateway config of these tests: the mock as provider `mock` (retries
/// quick), a provider `down` nothing listens on, routes `gpt-mock` (renamed
/// to the mock's `json`), `fallback` (down, then mock) and `*` (the mock,
/// model as sent), and one client key.
fn config(mock: &str) -> String {
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!(
        r#"providers:
  mock:
    type: openai-compatible
    base-url: {mock}/v1
    api-key: ${{MOCK_UPSTREAM_KEY}}
    retries: {{ max: 2, initial-backoff: 20ms, max-backoff: 2s }}
  down:
    type: openai-compatible
    base-url: http://127.0.0.1:{closed}/v1
    retries: {{ max: 0, initial-backoff: 10ms, max-backoff: 10ms }}
routes:
  - model: gpt-mock
    targets: [{{ provider: mock, model: json }}]
  - model: fallback
    targets: [{{ provider: down, model: json }}, {{ provider: mock, model: json }}]
  - model: "*"
    targets: [{{ provider: mock }}]
api-keys:
  - {{ key: "${{GATEWAY_CLIENT_KEY}}", caller: team-a }}
"#
    )
}

/// The manifest of example `name` (or of a fixture) with config defaults
/// set, the way an operator edits a plugin directory's `plugin.yaml`.
fn manifest_with(manifest: &str, defaults: &[(&str, serde_norway::Value)]) -> String {
    let mut doc: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    for (key, value) in defaults {
        let field = doc["config"].get_mut(*key).unwrap_or_else(|| panic!("{manifest}: no config key `{key}`"));
        let map = field.as_mapping_mut().unwrap();
        map.remove("required");
        map.insert("default".into(), value.clone());
    }
    serde_norway::to_string(&doc).unwrap()
}

fn example(name: &str) -> &'static plugbox_artifacts::Artifact {
    plugbox_artifacts::example(name).unwrap_or_else(|| panic!("no example `{name}`"))
}

/// A plugin directory with the named examples, their config defaults set.
fn plugins(list: &[(&str, &[(&str, serde_norway::Value)])]) -> PluginDir {
    let dir = PluginDir::new();
    for (name, defaults) in list {
        let a = example(name);
        dir.add(name, a.wasm, &manifest_with(a.manifest, defaults));
    }
    dir
}

fn s(v: &str) -> serde_norway::Value {
    serde_norway::Value::String(v.to_string())
}

#[test]
fn sdk_against_serve_with_no_config_gets_the_echo_provider() {
    let gw = Gateway::start(None, None);
    gw.run("echo", "", &[]);
}

#[test]
fn sdk_completion_stream_embeddings_models_auth_and_curl_framing() {
    let (_mock, mock) = mock_upstream();
    let dir = plugins(&[("system-prompt", &[("prompt", s("Answer briefly."))]), ("pii-redact", &[]), ("logging", &[])]);
    let gw = Gateway::start(Some(dir.path()), Some(&config(&mock)));
    gw.run("basic", &mock, &[]);
}

/// A gateway whose only plugin handles every tool call with `mode` (the
/// `scripted` fixture: allow, deny or answer), tagged `tool-guard`.
fn tool_gateway(mock: &str, mode: &str) -> (Gateway, PluginDir) {
    let a = plugbox_artifacts::fixture("scripted").unwrap();
    let dir = PluginDir::new();
    dir.add("tool-guard", a.wasm, &manifest_with(a.manifest, &[("tag", s("tool-guard")), ("tool", s(mode))]));
    (Gateway::start(Some(dir.path()), Some(&config(mock))), dir)
}

#[test]
fn sdk_tool_calls_pass_the_tool_hooks_plain_and_streamed() {
    let (_mock, mock) = mock_upstream();
    for mode in ["allow", "deny", "answer"] {
        let (gw, _dir) = tool_gateway(&mock, mode);
        gw.run(&format!("tools-{mode}"), &mock, &[("TOOL_TAG", "tool-guard")]);
    }
}

#[test]
fn sdk_rate_limit_plugin_raises_rate_limit_error() {
    let (_mock, mock) = mock_upstream();
    let dir = plugins(&[("rate-limit", &[("rps", 0.001.into()), ("burst", 2.into())])]);
    let gw = Gateway::start(Some(dir.path()), Some(&config(&mock)));
    gw.run("rate-limit", &mock, &[]);
}

#[test]
fn upstream_retries_fallback_slow_streams_and_disconnects_over_real_sockets() {
    let (_mock, mock) = mock_upstream();
    // Stream hooks on the path (pii-redact's on-chunk) must not hold back
    // chunks with nothing to mask.
    let dir = plugins(&[("pii-redact", &[]), ("logging", &[])]);
    let gw = Gateway::start(Some(dir.path()), Some(&config(&mock)));
    gw.run("upstream", &mock, &[]);
}

#[test]
fn fifty_plugin_reloads_under_load_fail_nothing_and_streams_keep_their_version() {
    let (_mock, mock) = mock_upstream();
    let dir = plugins(&[("pii-redact", &[("card_mask", s("[CARD-v0]"))])]);
    let gw = Gateway::start(Some(dir.path()), Some(&config(&mock)));
    gw.run("reload", &mock, &[("PLUGIN_DIR", dir.path().to_str().unwrap())]);
}
