//! The request pipeline: pre-request hooks in ascending priority, the
//! provider, post-response hooks in descending priority for the plugins whose
//! pre-request stage ran; and the stream, tool-call and provider hooks of a
//! request.
//!
//! [`Pipeline`] is the subsystem: it takes its [`PipelineConfig`], the chain of
//! plugins a hook runs on (taken from a registry snapshot) and the request's
//! [`RequestContext`], and knows nothing of the host. The host's public
//! methods (`Host::run_request`, `Host::on_chunk` ...) pick the request's
//! snapshot and call it.
//!
//! A hook reads and edits the request, response, chunk or tool call through
//! host-owned `llm` resources; each read and edit is checked where it
//! happens against the plugin's `messages` level and charged to an output
//! budget of its `max-output` ([`crate::imports::llm`]). What the hook
//! returns goes through one door (the `access` module). A refused edit or
//! answer is a failure of that call, judged once (stats and circuit
//! breaker), then handled by the plugin's `on-error`: its edits are
//! discarded and, fail-open, the pipeline goes on with the data as it was.
//!
//! Rules, exactly:
//! - A pre hook passes the request on (`continue`, with the edits it made)
//!   or short-circuits with a response (`respond`) or an error (`fail`, whose
//!   `allow-fallback` tells a gateway whether another provider may be tried).
//! - Post hooks run for every plugin the pre stage reached, including the one
//!   that short-circuited, in reverse order; a plugin that implements only
//!   `post-response` counts as reached when the pre stage got to its priority.
//!   A post hook may edit the response, recover from an error with a
//!   response (`respond`), or turn a response into an error (`fail`).
//! - A plugin's own failure (error, trap, timeout, limit, invalid output)
//!   follows its `on-error`: fail-open logs and counts it and the pipeline goes
//!   on without that plugin (its post hook is skipped too); fail-closed ends the
//!   request with [`RequestError::Plugin`]. Post hooks of the plugins reached so
//!   far still observe that failure (as an `internal` error) but cannot change
//!   the outcome. [`PipelineConfig::propagate_plugin_errors`] makes every
//!   plugin fail-closed.

pub(crate) mod access;
pub(crate) use crate::plugin::invoke;
pub(crate) mod streams;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::bindings::request_hooks::{PostAction, PreAction};
use crate::bindings::types::{ErrorKind, LlmError};
pub use crate::imports::ContextLimits;
use crate::imports::ContextMap;
pub use crate::imports::llm::RequestInfo;
use crate::imports::llm::{CallRules, RequestEntry, ResponseEntry};
use crate::manifest::Hook;
use crate::openai::{ChatChunk, ChatRequest, ChatResponse};
use crate::plugin::{FailureKind, LoadedPlugin, PluginFailure};
use crate::registry::Snapshot;
pub use streams::{ChunkStream, ToolDecision};

/// What a request ends as before the caller sees it.
pub type Outcome = Result<ChatResponse, LlmError>;

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Upper bound on any pre-request hook's deadline (the plugin's own
    /// `limits.timeout` applies when smaller).
    pub pre_hook_timeout: Duration,
    /// Upper bound on any post-response hook's deadline.
    pub post_hook_timeout: Duration,
    /// Treat every plugin as `fail-closed`.
    pub propagate_plugin_errors: bool,
    /// Maximum number of plugins a host loads.
    pub max_plugins: usize,
    /// Caps on what plugins may write into one request's context map.
    pub context_limits: ContextLimits,
    /// Total deadline of one stream ([`Host::stream`](crate::Host::stream),
    /// [`Host::filter_stream`](crate::Host::filter_stream)), from its start
    /// to its last chunk, hooks included. Default 10 minutes.
    pub stream_timeout: Duration,
    /// Most bytes of chunk JSON one stream may carry (a provider plugin's
    /// stream, or an upstream's). Default 64 MiB.
    pub stream_max_bytes: u64,
}

impl Default for PipelineConfig {
    /// 1 s hook caps (the seed's 10 s is far too long for a gateway hop; the
    /// per-plugin default of 100 ms usually applies first), plugin errors
    /// contained, at most 64 plugins, [`ContextLimits::default`], streams of
    /// at most 10 minutes and 64 MiB.
    fn default() -> Self {
        PipelineConfig {
            pre_hook_timeout: Duration::from_secs(1),
            post_hook_timeout: Duration::from_secs(1),
            propagate_plugin_errors: false,
            max_plugins: 64,
            context_limits: ContextLimits::default(),
            stream_timeout: Duration::from_secs(600),
            stream_max_bytes: 64 << 20,
        }
    }
}

/// Per-request facts and the key/value map the request's plugins share.
#[derive(Debug, Clone)]
pub struct RequestContext {
    info: Arc<RequestInfo>,
    values: ContextMap,
    /// The request as the pre stage passed it on (what stream and tool hooks
    /// see) and the chunks plugins hold back.
    stream: Arc<Mutex<StreamState>>,
    trace: Arc<Mutex<Vec<TraceEntry>>>,
    /// The plugins this request runs on, fixed at its first hook call, so a
    /// reload in the middle of a request (or of a stream) never mixes versions.
    plugins: Arc<std::sync::OnceLock<Arc<Snapshot>>>,
}

/// One hook call of a request, as the pipeline saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HookTrace {
    /// The plugin called.
    pub plugin: String,
    /// The hook called (`pre-request`, `on-chunk` ..., `provider` for a
    /// provider plugin's `complete` or stream).
    pub hook: &'static str,
    /// `continue`, `modify`, `respond`, `fail`, `drop`, `append` (end of
    /// stream), `allow`, `deny`, `rewrite`, `answer`, `ok` (a provider), or
    /// `failed-open: ...` / `failed-closed: ...`.
    pub action: String,
    /// How long the call took, in microseconds.
    pub micros: u64,
}

/// A [`HookTrace`] as recorded per call: the plugin's shared name and a
/// fixed label when the action has one (no allocation per call).
#[derive(Debug)]
struct TraceEntry {
    plugin: Arc<str>,
    hook: &'static str,
    action: std::borrow::Cow<'static, str>,
    micros: u64,
}

/// The per-request state of stream and tool hooks.
#[derive(Debug, Default)]
struct StreamState {
    request: Option<Arc<ChatRequest>>,
    /// Chunks held back, by the plugin that holds them (see `hold`).
    held: Vec<(Arc<str>, ChatChunk)>,
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `req-<pid>-`, computed once (a `getpid` per request showed up in profiles).
fn request_id_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| format!("req-{:08x}-", std::process::id()))
}

impl RequestContext {
    /// A context for a request to `model`, with a fresh request id.
    pub fn new(model: impl Into<String>) -> Self {
        let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
        RequestContext {
            info: Arc::new(RequestInfo {
                request_id: format!("{}{n}", request_id_prefix()),
                model: model.into(),
                provider: String::new(),
                streaming: false,
                caller: None,
            }),
            values: ContextMap::default(),
            stream: Default::default(),
            trace: Default::default(),
            plugins: Default::default(),
        }
    }
    /// Replaces the generated request id (e.g. with the gateway's own).
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.info).request_id = id.into();
        self
    }
    /// Sets the provider the request goes to (empty by default).
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.info).provider = provider.into();
        self
    }
    /// Sets the caller's identity (API key id, user); `None` by default.
    pub fn with_caller(mut self, caller: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.info).caller = Some(caller.into());
        self
    }
    /// Marks the request as streamed (`false` by default).
    pub fn with_streaming(mut self, streaming: bool) -> Self {
        Arc::make_mut(&mut self.info).streaming = streaming;
        self
    }
    /// The request facts plugins see.
    pub fn info(&self) -> &RequestInfo {
        &self.info
    }
    /// The request facts, shared (no copy per hook call).
    pub(crate) fn info_arc(&self) -> &Arc<RequestInfo> {
        &self.info
    }
    /// Sets the request stream and tool hooks see (the pre stage does).
    pub(crate) fn set_request(&self, request: Arc<ChatRequest>) {
        self.stream.lock().request = Some(request);
    }
    /// The request stream and tool hooks see: the one the pre stage passed
    /// on, or an empty request for the context's model.
    pub(crate) fn request(&self) -> Arc<ChatRequest> {
        let mut st = self.stream.lock();
        st.request
            .get_or_insert_with(|| Arc::new(ChatRequest { model: self.info.model.clone(), ..Default::default() }))
            .clone()
    }
    /// Takes the chunk `plugin` holds back, if any.
    pub(crate) fn take_held(&self, plugin: &str) -> Option<ChatChunk> {
        let mut st = self.stream.lock();
        let i = st.held.iter().position(|(p, _)| &**p == plugin)?;
        Some(st.held.swap_remove(i).1)
    }
    /// Holds `chunk` back for `plugin`.
    pub(crate) fn hold(&self, plugin: &Arc<str>, chunk: ChatChunk) {
        self.stream.lock().held.push((plugin.clone(), chunk));
    }
    /// Whether any plugin holds a chunk back.
    pub(crate) fn holds_any(&self) -> bool {
        !self.stream.lock().held.is_empty()
    }
    /// A value plugins (or the embedder) put in the shared map.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.get(key)
    }
    /// Puts a value in the shared map, replacing any under `key`. The
    /// embedder's writes are not limited, but count towards the map's total
    /// (see [`ContextLimits`]).
    pub fn set(&self, key: impl Into<String>, value: impl Into<String>) {
        self.values.set(key.into(), value.into());
    }
    /// A copy of the whole shared map.
    pub fn values(&self) -> HashMap<String, String> {
        self.values.values()
    }
    /// Bytes of keys and values the shared map holds.
    pub fn context_bytes(&self) -> usize {
        self.values.bytes()
    }
    pub(crate) fn map(&self) -> &ContextMap {
        &self.values
    }
    /// The plugin set this request runs on: `current()` at the request's first
    /// hook call, the same one for every later call.
    pub(crate) fn plugins_or(&self, current: impl FnOnce() -> Arc<Snapshot>) -> Arc<Snapshot> {
        self.plugins.get_or_init(current).clone()
    }
    /// Every hook call made for this request so far, in order.
    pub fn trace(&self) -> Vec<HookTrace> {
        let trace = self.trace.lock();
        trace
            .iter()
            .map(|t| HookTrace {
                plugin: t.plugin.to_string(),
                hook: t.hook,
                action: t.action.to_string(),
                micros: t.micros,
            })
            .collect()
    }
    /// Records one hook call that took `took`.
    pub(crate) fn record(
        &self,
        plugin: &LoadedPlugin,
        hook: &'static str,
        action: impl Into<std::borrow::Cow<'static, str>>,
        took: Duration,
    ) {
        let entry =
            TraceEntry { plugin: plugin.name.clone(), hook, action: action.into(), micros: took.as_micros() as u64 };
        self.trace.lock().push(entry);
    }
}

/// Why a request did not produce a response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// An LLM-level error: from a plugin's short-circuit, the provider or a
    /// post hook. `allow_fallback` says whether another provider may be tried.
    #[error("{}: {}", error_kind_name(.0.kind), .0.message)]
    Llm(LlmError),
    /// A fail-closed plugin failed.
    #[error(transparent)]
    Plugin(PluginFailure),
}

/// The kebab-case WIT name of an error kind.
pub fn error_kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid-request",
        ErrorKind::Authentication => "authentication",
        ErrorKind::PermissionDenied => "permission-denied",
        ErrorKind::NotFound => "not-found",
        ErrorKind::RateLimited => "rate-limited",
        ErrorKind::Timeout => "timeout",
        ErrorKind::ContentFiltered => "content-filtered",
        ErrorKind::Provider => "provider",
        ErrorKind::Internal => "internal",
    }
}

/// Where the pre stage left a request.
pub struct PreStage {
    /// The request as the last pre hook passed it on (shared with the post
    /// hooks, which see it read-only).
    pub request: Arc<ChatRequest>,
    /// Set when a pre hook answered (or failed) instead of the provider.
    pub short_circuit: Option<Outcome>,
    /// Set when a fail-closed plugin failed: the request must fail.
    pub failure: Option<PluginFailure>,
    /// Plugins whose post hooks are owed, in pre order.
    reached: Vec<Arc<LoadedPlugin>>,
}

impl PreStage {
    /// Names of the plugins whose pre stage ran, in order.
    pub fn reached(&self) -> Vec<&str> {
        self.reached.iter().map(|p| p.name()).collect()
    }
}

fn hook_timeout(plugin: &LoadedPlugin, cap: Duration) -> Duration {
    plugin.limits.timeout.min(cap)
}

/// What a hook's `err` text becomes: the plugin's own failure, or, when the
/// text itself is over its budget, a refused output.
fn plugin_error(message: String, budget: &mut crate::budget::OutputBudget) -> FailureKind {
    match access::accept_failure_text(message, budget) {
        Ok(message) => FailureKind::Error(message),
        Err(refused) => FailureKind::InvalidOutput(refused),
    }
}

fn internal(message: String) -> LlmError {
    LlmError { kind: ErrorKind::Internal, message, allow_fallback: false, retry_after_ms: None }
}

/// The response an error outcome's `response` handle shows (no choices).
fn empty_response() -> Arc<ChatResponse> {
    static EMPTY: std::sync::OnceLock<Arc<ChatResponse>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(ChatResponse::default())).clone()
}

/// The value of an `Arc` the caller now holds alone (cloned only if not).
pub(crate) fn unshare<T: Clone>(value: Arc<T>) -> T {
    Arc::try_unwrap(value).unwrap_or_else(|shared| T::clone(&shared))
}

/// What a pre-request answer amounts to once the door accepted it.
enum PreDecision {
    Continue(Option<Arc<ChatRequest>>),
    ShortCircuit(Box<Outcome>, &'static str),
}

/// The request pipeline over a chain of plugins: see the module docs. Cheap
/// to make (it borrows its config); it holds no state of its own.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline<'c> {
    config: &'c PipelineConfig,
}

impl<'c> Pipeline<'c> {
    /// A pipeline with `config`.
    pub fn new(config: &'c PipelineConfig) -> Self {
        Pipeline { config }
    }

    /// The pipeline's settings.
    pub fn config(&self) -> &'c PipelineConfig {
        self.config
    }

    /// Pins the plugin set `ctx` runs on (`current()` at its first hook call,
    /// the same set for every later call) and applies this pipeline's
    /// [`ContextLimits`] to its map.
    pub fn bind(&self, ctx: &RequestContext, current: impl FnOnce() -> Arc<Snapshot>) -> Arc<Snapshot> {
        ctx.plugins_or(|| {
            ctx.values.set_limits(self.config.context_limits);
            current()
        })
    }

    /// Whether `plugin`'s failure ends the operation (see
    /// `LoadedPlugin::fails_closed`).
    fn fails_closed(&self, plugin: &LoadedPlugin) -> bool {
        plugin.fails_closed(self.config.propagate_plugin_errors)
    }

    /// Runs the pre-request hooks of `chain` (plugins implementing request
    /// hooks, in ascending priority). Each hook gets the request as the
    /// previous one passed it on; its edits are kept when it continues.
    pub async fn pre_stage(&self, ctx: &RequestContext, chain: &[Arc<LoadedPlugin>], request: ChatRequest) -> PreStage {
        let cap = self.config.pre_hook_timeout;
        let mut reached = Vec::with_capacity(chain.len());
        let mut current = Arc::new(request);
        for plugin in chain {
            if !plugin.implements(Hook::PreRequest) {
                reached.push(plugin.clone());
                continue;
            }
            let started = Instant::now();
            let access = plugin.caps.messages;
            let rules = CallRules::new("pre-request", access, plugin.limits.max_output);
            let req = RequestEntry::new(current.clone(), ctx.info.clone(), true);
            let call = invoke::PreRequest { req, rules };
            let (decided, took) = plugin
                .call_timed(started, Some(ctx.map()), hook_timeout(plugin, cap), call, move |called| {
                    let invoke::Called { answer, entry, mut rules } = called;
                    access::violation(&mut rules).map_err(FailureKind::InvalidOutput)?;
                    let budget = &mut rules.budget;
                    let refused = FailureKind::InvalidOutput;
                    match answer {
                        Err(message) => Err(plugin_error(message, budget)),
                        Ok(PreAction::Continue) => Ok(PreDecision::Continue(entry.data.into_edited().map(Arc::new))),
                        Ok(PreAction::Respond(body)) => access::accept_respond(&body, access, budget)
                            .map(|r| PreDecision::ShortCircuit(Box::new(Ok(r)), "respond"))
                            .map_err(refused),
                        Ok(PreAction::Fail(e)) => access::accept_error(e, budget)
                            .map(|e| PreDecision::ShortCircuit(Box::new(Err(e)), "fail"))
                            .map_err(refused),
                    }
                })
                .await;
            match decided {
                Ok(PreDecision::Continue(edited)) => {
                    let label = if edited.is_some() { "modify" } else { "continue" };
                    ctx.record(plugin, "pre-request", label, took);
                    if let Some(r) = edited {
                        current = r;
                    }
                    reached.push(plugin.clone())
                }
                Ok(PreDecision::ShortCircuit(outcome, label)) => {
                    ctx.record(plugin, "pre-request", label, took);
                    reached.push(plugin.clone());
                    ctx.set_request(current.clone());
                    return PreStage { request: current, short_circuit: Some(*outcome), failure: None, reached };
                }
                Err(f) if self.fails_closed(plugin) => {
                    ctx.record(plugin, "pre-request", format!("failed-closed: {}", f.kind), took);
                    ctx.set_request(current.clone());
                    return PreStage { request: current, short_circuit: None, failure: Some(f), reached };
                }
                Err(f) => {
                    ctx.record(plugin, "pre-request", format!("failed-open: {}", f.kind), took);
                    tracing::warn!(plugin = plugin.name(), "fail-open: {f}")
                }
            }
        }
        ctx.set_request(current.clone());
        PreStage { request: current, short_circuit: None, failure: None, reached }
    }

    /// Runs the post-response hooks of the plugins `stage` reached, in reverse
    /// order, on `outcome`; returns the final outcome.
    pub async fn post_response(
        &self,
        ctx: &RequestContext,
        stage: PreStage,
        outcome: Outcome,
    ) -> Result<ChatResponse, RequestError> {
        let cap = self.config.post_hook_timeout;
        // After a fail-closed failure, post hooks only observe it.
        let locked = stage.failure.clone();
        let mut outcome: Result<Arc<ChatResponse>, LlmError> = match &locked {
            Some(f) => Err(internal(f.to_string())),
            None => outcome.map(Arc::new),
        };
        let mut closed = locked.clone();
        for plugin in stage.reached.iter().rev() {
            if !plugin.implements(Hook::PostResponse) {
                continue;
            }
            let started = Instant::now();
            let access = plugin.caps.messages;
            let rules = CallRules::new("post-response", access, plugin.limits.max_output);
            let req = RequestEntry::new(stage.request.clone(), ctx.info.clone(), false);
            let resp = match &outcome {
                Ok(r) => ResponseEntry::new(r.clone(), true),
                Err(e) => ResponseEntry::failed(e.clone(), empty_response()),
            };
            let call = invoke::PostResponse { req, resp, rules };
            let (decided, took) = plugin
                .call_timed(started, Some(ctx.map()), hook_timeout(plugin, cap), call, move |called| {
                    let invoke::Called { answer, entry, mut rules } = called;
                    access::violation(&mut rules).map_err(FailureKind::InvalidOutput)?;
                    let budget = &mut rules.budget;
                    let refused = FailureKind::InvalidOutput;
                    match answer {
                        Err(message) => Err(plugin_error(message, budget)),
                        Ok(PostAction::Continue) => {
                            let label = if entry.data.is_edited() { "modify" } else { "continue" };
                            let edited = entry.error.is_none().then(|| entry.data.into_edited()).flatten();
                            Ok((edited.map(|r| Ok(Arc::new(r))), label))
                        }
                        Ok(PostAction::Respond(body)) => access::accept_respond(&body, access, budget)
                            .map(|r| (Some(Ok(Arc::new(r))), "respond"))
                            .map_err(refused),
                        Ok(PostAction::Fail(e)) => {
                            access::accept_error(e, budget).map(|e| (Some(Err(e)), "fail")).map_err(refused)
                        }
                    }
                })
                .await;
            if locked.is_some() {
                ctx.record(plugin, "post-response", "observed (outcome locked)", took);
                continue;
            }
            match decided {
                Ok((next, label)) => {
                    ctx.record(plugin, "post-response", label, took);
                    if let Some(next) = next {
                        outcome = next;
                    }
                }
                Err(f) if self.fails_closed(plugin) => {
                    ctx.record(plugin, "post-response", format!("failed-closed: {}", f.kind), took);
                    outcome = Err(internal(f.to_string()));
                    closed = Some(f);
                    break;
                }
                Err(f) => {
                    ctx.record(plugin, "post-response", format!("failed-open: {}", f.kind), took);
                    tracing::warn!(plugin = plugin.name(), "fail-open: {f}")
                }
            }
        }
        match (closed, outcome) {
            (Some(f), _) => Err(RequestError::Plugin(f)),
            (None, Ok(resp)) => Ok(unshare(resp)),
            (None, Err(e)) => Err(RequestError::Llm(e)),
        }
    }

    /// The whole pipeline over `chain` (the request plugins, ascending
    /// priority): pre hooks, then `provider` with the request as the pre
    /// hooks passed it on, unless a pre hook short-circuited or a fail-closed
    /// plugin failed, then post hooks.
    pub async fn run_request<F, Fut>(
        &self,
        ctx: &RequestContext,
        chain: &[Arc<LoadedPlugin>],
        request: ChatRequest,
        provider: F,
    ) -> Result<ChatResponse, RequestError>
    where
        F: FnOnce(Arc<ChatRequest>) -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let mut stage = self.pre_stage(ctx, chain, request).await;
        let failed = stage.failure.is_some();
        let outcome = match (stage.short_circuit.take(), failed) {
            (Some(outcome), _) => outcome,
            (None, true) => Err(internal(String::new())),
            (None, false) => provider(stage.request.clone()).await,
        };
        self.post_response(ctx, stage, outcome).await
    }
}
