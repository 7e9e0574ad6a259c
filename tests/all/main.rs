//! plugbox's integration tests: one test binary (STYLE 14), real compiled
//! plugins from `plugbox-artifacts` (built for wasm32-wasip2 by its build script).

mod access;
mod api_attacks;
mod bounds;
mod cli;
mod corpus;
mod deadlines;
mod devices;
mod devices_adversarial;
mod escalation;
mod examples;
mod gateway;
mod gateway_sdk;
mod hostile;
mod interfaces;
mod js;
mod limits;
mod loader;
mod manifest;
mod output;
mod pipeline;
mod python;
mod reload;
mod resources;
mod sandbox;
mod streaming;
mod tools;
mod variants;
mod workers;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use plugbox_host::{ChatChunk, ChatMessage, ChatRequest, ChatResponse, Host, HostBuilder, LlmError, Outcome};

/// A temporary plugin directory.
pub struct PluginDir {
    pub dir: tempfile::TempDir,
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginDir {
    pub fn new() -> Self {
        init_logging();
        PluginDir { dir: tempfile::tempdir().expect("tempdir") }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// `<dir>/<name>/plugin.yaml` + the component (directory form).
    pub fn add(&self, name: &str, wasm: &str, manifest: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(wasm, d.join("plugin.wasm")).unwrap();
        std::fs::write(d.join("plugin.yaml"), manifest).unwrap();
        d
    }
}

/// A host with no compile cache sharing between tests' expectations, but a
/// shared on-disk cache to keep the suite fast.
pub fn host() -> Host {
    builder().build().expect("host")
}

pub fn builder() -> HostBuilder {
    init_logging();
    HostBuilder::new().cache_dir(Some(cache_dir()))
}

/// A `plugbox serve` child process, killed when dropped: its stdout lines on
/// `lines`, its stderr lines on `errors` (both echoed to the test's output).
pub struct ServeProcess {
    pub child: std::process::Child,
    pub lines: std::sync::mpsc::Receiver<String>,
    pub errors: std::sync::mpsc::Receiver<String>,
    /// Stdout lines passed over by [`ServeProcess::expect`], in order.
    pub seen: Vec<String>,
}

impl ServeProcess {
    /// How long `expect` waits for a line.
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

    pub fn start(args: &[&str]) -> ServeProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plugbox"))
            .arg("serve")
            .args(args)
            .env("PLUGBOX_CACHE_DIR", cache_dir())
            .env_remove("PLUGBOX_POLICY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run plugbox serve");
        fn follow(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
                    eprintln!("plugbox serve: {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        }
        let lines = follow(child.stdout.take().unwrap());
        let errors = follow(child.stderr.take().unwrap());
        ServeProcess { child, lines, errors, seen: Vec::new() }
    }

    /// Waits for a stdout line containing `needle` (or finds it among the
    /// lines passed over so far: events print from their own task, so their
    /// order with other output is not fixed).
    pub fn expect(&mut self, needle: &str) -> String {
        if let Some(i) = self.seen.iter().position(|l| l.contains(needle)) {
            return self.seen.remove(i);
        }
        let deadline = std::time::Instant::now() + Self::WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "`plugbox serve` printed no line with `{needle}` within {:?}; it printed {:#?}",
                    Self::WAIT,
                    self.seen
                ),
            }
        }
    }

    /// The base URL from `plugbox serve: listening on http://ADDR`.
    pub fn url(&mut self) -> String {
        const LISTENING: &str = "plugbox serve: listening on ";
        let line = self.expect(LISTENING);
        line[line.find(LISTENING).unwrap() + LISTENING.len()..].to_string()
    }

    /// Sends signal `name` (`HUP`, `TERM`) to the process.
    pub fn signal(&self, name: &str) {
        let status =
            std::process::Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(status.unwrap().success());
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The compile cache the tests share: private to this user (`0700`) and
/// under the target directory, never in a world-writable `/tmp` (the host
/// refuses a cache dir that another user can write).
pub fn cache_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugbox-test-cache");
        std::fs::create_dir_all(&dir).expect("create the test compile cache");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700 the test cache");
        }
        dir
    })
    .clone()
}

/// Routes `tracing` (the plugins' stdout/stderr and `log` import, tagged
/// with the plugin's name, and the host's own events) to libtest's captured
/// output: a failing test prints what its plugins logged. `RUST_LOG`
/// overrides the filter. Installed once, by the helpers that build hosts.
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,plugbox::guest=trace"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_test_writer().try_init();
    });
}

/// Manifest of the `scripted` fixture as plugin `name`.
pub fn scripted(name: &str, priority: i32, pre: &str, post: &str) -> String {
    scripted_with(name, priority, pre, post, "fail-open", "write")
}

pub fn scripted_with(name: &str, priority: i32, pre: &str, post: &str, on_error: &str, messages: &str) -> String {
    format!(
        "name: {name}\nversion: 0.1.0\nhooks: [pre-request, post-response, on-chunk, on-tool-call]\n\
         priority: {priority}\non-error: {on_error}\nlimits: {{ timeout: 100ms, memory: 16MiB }}\n\
         permissions: {{ messages: {messages}, kv: true }}\n\
         config:\n  tag: {{ type: string, default: {name} }}\n  pre: {{ type: string, default: {pre} }}\n\
         \x20 post: {{ type: string, default: {post} }}\n  init: {{ type: string, default: ok }}\n\
         \x20 chunk: {{ type: string, default: continue }}\n  tool: {{ type: string, default: allow }}\n\
         \x20 read: {{ type: boolean, default: true }}\n"
    )
}

pub fn user(text: &str) -> ChatMessage {
    ChatMessage::user(text)
}

/// A content chunk carrying `text` (choice 0, nothing else set).
pub fn chunk(text: &str) -> ChatChunk {
    ChatChunk::text(text)
}

/// A request for `test-model` with one user message.
pub fn request(text: &str) -> ChatRequest {
    ChatRequest::new("test-model", vec![user(text)])
}

/// A response of `test-model` with one assistant choice saying `text`.
pub fn response(text: &str) -> ChatResponse {
    ChatResponse::text("native", "test-model", text)
}

/// The text of a message (empty when it has none).
pub fn message_text(message: &ChatMessage) -> String {
    message.text().map(|t| t.into_owned()).unwrap_or_default()
}

/// A native provider: answers `echo: <last message>`.
pub async fn echo(req: Arc<ChatRequest>) -> Outcome {
    let text = req.messages.last().map(message_text).unwrap_or_default();
    Ok(response(&format!("echo: {text}")))
}

/// A native provider that fails.
pub async fn failing(_req: Arc<ChatRequest>) -> Outcome {
    Err(LlmError {
        kind: plugbox_host::ErrorKind::Provider,
        message: "upstream down".into(),
        allow_fallback: true,
        retry_after_ms: None,
    })
}

/// The text of the first choice (empty when it has none).
pub fn text(resp: &ChatResponse) -> String {
    resp.first_text().map(|t| t.into_owned()).unwrap_or_default()
}

/// The content delta of a chunk's first choice (empty when it has none).
pub fn delta(chunk: &ChatChunk) -> String {
    chunk.text_delta().unwrap_or_default().to_string()
}

/// Loads `plugins` (name, manifest) built from the `scripted` fixture.
pub async fn scripted_host(plugins: &[(&str, String)]) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    for (name, manifest) in plugins {
        dir.add(name, plugbox_artifacts::SCRIPTED, manifest);
    }
    let host = host();
    let report = host.load_dir(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "load failures: {:?}", report.failed);
    (host, dir)
}
