//! The request pipeline (seed 002): pre-request hooks in ascending priority,
//! the provider, post-response hooks in descending priority for the plugins
//! whose pre-request stage ran.
//!
//! Rules, exactly:
//! - A pre hook passes the request on (`continue`/`modify`) or short-circuits
//!   with a response (`respond`) or an error (`fail`, whose `allow-fallback`
//!   tells a gateway whether another provider may be tried).
//! - Post hooks run for every plugin the pre stage reached, including the one
//!   that short-circuited, in reverse order; a plugin that implements only
//!   `post-response` counts as reached when the pre stage got to its priority.
//!   A post hook may modify the response, recover from an error with a
//!   response, or turn a response into an error.
//! - A plugin's own failure (error, trap, timeout, limit, invalid output)
//!   follows its `on-error`: fail-open logs and counts it and the pipeline goes
//!   on without that plugin (its post hook is skipped too); fail-closed ends the
//!   request with [`RequestError::Plugin`]. Post hooks of the plugins reached so
//!   far still observe that failure (as an `internal` error) but cannot change
//!   the outcome. [`PipelineConfig::propagate_plugin_errors`] makes every
//!   plugin fail-closed.

mod access;
pub(crate) mod invoke;
mod streams;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::bindings::types::{ErrorKind, LlmError, PostAction, PreAction, Request, RequestInfo, Response};
use crate::imports::ContextMap;
use crate::manifest::{Hook, MessageAccess, OnError};
use crate::plugin::{FailureKind, LoadedPlugin, PluginFailure};
use crate::registry::Snapshot;
pub use streams::ToolDecision;

/// What a request ends as before the caller sees it.
pub type Outcome = Result<Response, LlmError>;

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
}

impl Default for PipelineConfig {
    /// 1 s hook caps (the seed's 10 s is far too long for a gateway hop; the
    /// per-plugin default of 100 ms usually applies first), plugin errors
    /// contained, at most 64 plugins.
    fn default() -> Self {
        PipelineConfig {
            pre_hook_timeout: Duration::from_secs(1),
            post_hook_timeout: Duration::from_secs(1),
            propagate_plugin_errors: false,
            max_plugins: 64,
        }
    }
}

/// Per-request facts and the key/value map the request's plugins share.
#[derive(Debug, Clone)]
pub struct RequestContext {
    info: RequestInfo,
    values: ContextMap,
    trace: Arc<Mutex<Vec<HookTrace>>>,
    /// The plugins this request runs on, fixed at its first hook call, so a
    /// reload in the middle of a request (or of a stream) never mixes versions.
    plugins: Arc<std::sync::OnceLock<Arc<Snapshot>>>,
}

/// One hook call of a request, as the pipeline saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HookTrace {
    /// The plugin called.
    pub plugin: String,
    /// The hook called (`pre-request`, `on-chunk` ...).
    pub hook: &'static str,
    /// `continue`, `modify`, `respond`, `fail`, `drop`, `allow`, `deny`,
    /// `rewrite`, `answer`, or `failed-open: ...` / `failed-closed: ...`.
    pub action: String,
    /// How long the call took, in microseconds.
    pub micros: u64,
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
            info: RequestInfo {
                request_id: format!("{}{n}", request_id_prefix()),
                model: model.into(),
                provider: String::new(),
                streaming: false,
                caller: None,
            },
            values: ContextMap::default(),
            trace: Default::default(),
            plugins: Default::default(),
        }
    }
    /// Replaces the generated request id (e.g. with the gateway's own).
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.info.request_id = id.into();
        self
    }
    /// Sets the provider the request goes to (empty by default).
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.info.provider = provider.into();
        self
    }
    /// Sets the caller's identity (API key id, user); `None` by default.
    pub fn with_caller(mut self, caller: impl Into<String>) -> Self {
        self.info.caller = Some(caller.into());
        self
    }
    /// Marks the request as streamed (`false` by default).
    pub fn with_streaming(mut self, streaming: bool) -> Self {
        self.info.streaming = streaming;
        self
    }
    /// The request facts plugins see.
    pub fn info(&self) -> &RequestInfo {
        &self.info
    }
    /// A value plugins (or the embedder) put in the shared map.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.lock().get(key).cloned()
    }
    /// Puts a value in the shared map, replacing any under `key`.
    pub fn set(&self, key: impl Into<String>, value: impl Into<String>) {
        self.values.lock().insert(key.into(), value.into());
    }
    /// A copy of the whole shared map.
    pub fn values(&self) -> HashMap<String, String> {
        self.values.lock().clone()
    }
    pub(crate) fn map(&self) -> &ContextMap {
        &self.values
    }
    /// The plugin set this request runs on: the host's current one at the
    /// request's first hook call, the same one for every later call.
    pub(crate) fn plugins(&self, host: &crate::Host) -> Arc<Snapshot> {
        self.plugins.get_or_init(|| host.snapshot()).clone()
    }
    /// Every hook call made for this request so far, in order.
    pub fn trace(&self) -> Vec<HookTrace> {
        self.trace.lock().clone()
    }
    pub(crate) fn record(
        &self,
        plugin: &LoadedPlugin,
        hook: &'static str,
        action: impl Into<String>,
        started: Instant,
    ) {
        self.trace.lock().push(HookTrace {
            plugin: plugin.name().to_string(),
            hook,
            action: action.into(),
            micros: started.elapsed().as_micros() as u64,
        });
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
    /// The request as the last pre hook passed it on.
    pub request: Request,
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

impl crate::Host {
    fn fail_closed(&self, plugin: &LoadedPlugin) -> bool {
        self.inner.pipeline.propagate_plugin_errors || plugin.manifest.on_error == OnError::FailClosed
    }

    /// Runs the pre-request hooks of `chain` (plugins implementing request
    /// hooks, in ascending priority).
    pub(crate) async fn pre_stage(
        &self,
        ctx: &RequestContext,
        chain: &[Arc<LoadedPlugin>],
        mut request: Request,
    ) -> PreStage {
        let cap = self.inner.pipeline.pre_hook_timeout;
        let mut reached = Vec::with_capacity(chain.len());
        for plugin in chain {
            if !plugin.implements(Hook::PreRequest) {
                reached.push(plugin.clone());
                continue;
            }
            let started = Instant::now();
            let access = plugin.caps.messages;
            let view = access::request_view(&request, access);
            let call = invoke::PreRequest { info: &ctx.info, req: &view };
            let result = plugin.call(Some(ctx.map()), hook_timeout(plugin, cap), call).await;
            let pre_label = match &result {
                Ok(Ok(PreAction::Continue)) => "continue",
                Ok(Ok(PreAction::Modify(_))) => "modify",
                Ok(Ok(PreAction::Respond(_))) => "respond",
                Ok(Ok(PreAction::Fail(_))) => "fail",
                _ => "",
            };
            let decided = match result {
                Ok(Ok(action)) => match action {
                    PreAction::Continue => Ok(None),
                    PreAction::Modify(modified) => {
                        access::accept_request(&request, modified, access, plugin.limits.max_output)
                            .map(|r| {
                                request = r;
                                None
                            })
                            .map_err(|m| failure(plugin, "pre-request", FailureKind::InvalidOutput(m)))
                    }
                    PreAction::Respond(resp) => access::accept_response(None, resp, access, plugin.limits.max_output)
                        .map(|r| Some(Ok(r)))
                        .map_err(|m| failure(plugin, "pre-request", FailureKind::InvalidOutput(m))),
                    PreAction::Fail(err) => Ok(Some(Err(err))),
                },
                Ok(Err(message)) => Err(failure(plugin, "pre-request", FailureKind::Error(message))),
                Err(f) => Err(f),
            };
            match decided {
                Ok(None) => {
                    ctx.record(plugin, "pre-request", pre_label, started);
                    reached.push(plugin.clone())
                }
                Ok(Some(outcome)) => {
                    ctx.record(plugin, "pre-request", pre_label, started);
                    reached.push(plugin.clone());
                    return PreStage { request, short_circuit: Some(outcome), failure: None, reached };
                }
                Err(f) if self.fail_closed(plugin) => {
                    ctx.record(plugin, "pre-request", format!("failed-closed: {}", f.kind), started);
                    return PreStage { request, short_circuit: None, failure: Some(f), reached };
                }
                Err(f) => {
                    ctx.record(plugin, "pre-request", format!("failed-open: {}", f.kind), started);
                    tracing::warn!(plugin = plugin.name(), "fail-open: {f}")
                }
            }
        }
        PreStage { request, short_circuit: None, failure: None, reached }
    }

    /// Runs the post-response hooks of the plugins `stage` reached, in reverse
    /// order, on `outcome`; returns the final outcome.
    pub async fn post_response(
        &self,
        ctx: &RequestContext,
        stage: PreStage,
        outcome: Outcome,
    ) -> Result<Response, RequestError> {
        let cap = self.inner.pipeline.post_hook_timeout;
        // After a fail-closed failure, post hooks only observe it.
        let locked = stage.failure.clone();
        let mut outcome = match &locked {
            Some(f) => Err(LlmError {
                kind: ErrorKind::Internal,
                message: f.to_string(),
                allow_fallback: false,
                retry_after_ms: None,
            }),
            None => outcome,
        };
        let mut closed = locked.clone();
        for plugin in stage.reached.iter().rev() {
            if !plugin.implements(Hook::PostResponse) {
                continue;
            }
            let started = Instant::now();
            let access = plugin.caps.messages;
            let blanked: Outcome;
            let view = match (&outcome, access) {
                (Ok(resp), MessageAccess::None) => {
                    blanked = Ok(access::response_view(resp, access).into_owned());
                    &blanked
                }
                _ => &outcome,
            };
            let call = invoke::PostResponse { info: &ctx.info, outcome: view.as_ref() };
            let result = plugin.call(Some(ctx.map()), hook_timeout(plugin, cap), call).await;
            let post_label = match &result {
                Ok(Ok(PostAction::Continue)) => "continue",
                Ok(Ok(PostAction::Respond(_))) => "respond",
                Ok(Ok(PostAction::Fail(_))) => "fail",
                _ => "",
            };
            if locked.is_some() {
                ctx.record(plugin, "post-response", "observed (outcome locked)", started);
                continue;
            }
            let decided = match result {
                Ok(Ok(PostAction::Continue)) => Ok(None),
                Ok(Ok(PostAction::Respond(resp))) => {
                    access::accept_response(outcome.as_ref().ok(), resp, access, plugin.limits.max_output)
                        .map(|r| Some(Ok(r)))
                        .map_err(|m| failure(plugin, "post-response", FailureKind::InvalidOutput(m)))
                }
                Ok(Ok(PostAction::Fail(err))) => Ok(Some(Err(err))),
                Ok(Err(message)) => Err(failure(plugin, "post-response", FailureKind::Error(message))),
                Err(f) => Err(f),
            };
            match decided {
                Ok(None) => ctx.record(plugin, "post-response", post_label, started),
                Ok(Some(next)) => {
                    ctx.record(plugin, "post-response", post_label, started);
                    outcome = next
                }
                Err(f) if self.fail_closed(plugin) => {
                    ctx.record(plugin, "post-response", format!("failed-closed: {}", f.kind), started);
                    outcome = Err(LlmError {
                        kind: ErrorKind::Internal,
                        message: f.to_string(),
                        allow_fallback: false,
                        retry_after_ms: None,
                    });
                    closed = Some(f);
                    break;
                }
                Err(f) => {
                    ctx.record(plugin, "post-response", format!("failed-open: {}", f.kind), started);
                    tracing::warn!(plugin = plugin.name(), "fail-open: {f}")
                }
            }
        }
        match (closed, outcome) {
            (Some(f), _) => Err(RequestError::Plugin(f)),
            (None, Ok(resp)) => Ok(resp),
            (None, Err(e)) => Err(RequestError::Llm(e)),
        }
    }

    /// The pre stage over the host's current request plugins.
    pub async fn pre_request(&self, ctx: &RequestContext, request: Request) -> PreStage {
        let chain = ctx.plugins(self).request_chain.clone();
        self.pre_stage(ctx, &chain, request).await
    }

    /// The whole pipeline: pre hooks, then `provider` unless a pre hook
    /// short-circuited or a fail-closed plugin failed, then post hooks.
    ///
    /// ```no_run
    /// # async fn demo(host: plugbox_host::Host, req: plugbox_host::Request) {
    /// use plugbox_host::{RequestContext, Response};
    /// let ctx = RequestContext::new("gpt-4o").with_caller("team-a");
    /// let result = host
    ///     .run_request(&ctx, req, |req| async move {
    ///         // call the real provider here
    ///         Ok(Response { id: "1".into(), model: req.model, choices: vec![], usage: None, extra: None })
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub async fn run_request<F, Fut>(
        &self,
        ctx: &RequestContext,
        request: Request,
        provider: F,
    ) -> Result<Response, RequestError>
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Outcome>,
    {
        // One snapshot for the whole request: a reload in the middle never mixes versions.
        let chain = ctx.plugins(self).request_chain.clone();
        let mut stage = self.pre_stage(ctx, &chain, request).await;
        let failed = stage.failure.is_some();
        let outcome = match (stage.short_circuit.take(), failed) {
            (Some(outcome), _) => outcome,
            (None, true) => Err(LlmError {
                kind: ErrorKind::Internal,
                message: String::new(),
                allow_fallback: false,
                retry_after_ms: None,
            }),
            (None, false) => provider(std::mem::replace(&mut stage.request, empty_request())).await,
        };
        self.post_response(ctx, stage, outcome).await
    }
}

fn empty_request() -> Request {
    Request {
        model: String::new(),
        messages: Vec::new(),
        temperature: None,
        max_tokens: None,
        stream: false,
        tools: Vec::new(),
        extra: None,
    }
}

/// A failure the pipeline found in a hook's answer: counted, and fed to the
/// plugin's circuit breaker.
pub(crate) fn failure(plugin: &LoadedPlugin, hook: &'static str, kind: FailureKind) -> PluginFailure {
    let f = PluginFailure { plugin: plugin.name().to_string(), hook, kind };
    plugin.stats.errors.fetch_add(1, Ordering::Relaxed);
    plugin.record_failure(&f);
    f
}
