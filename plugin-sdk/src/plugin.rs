//! The [`Plugin`] trait: one method per hook of the `plugbox:plugin` world.

use std::time::Duration;

use crate::{
    Chunk, ChunkAction, ChunkStream, Completion, Config, DeviceReport, ErrorKind, Health, LlmError, PostAction,
    PreAction, Request, Response, StreamEnd, ToolAction, ToolCallRef,
};

/// A plugbox plugin.
///
/// Implement [`init`](Plugin::init) and the hooks your manifest lists under
/// `hooks:`; every other method has a default that does nothing harmful
/// (pass-through for hooks, a refusal for provider and endpoint methods).
/// Then register the type with [`export!`](crate::export).
///
/// # Instances are pooled
///
/// The host creates several instances of a plugin (each calls `init`) and may
/// discard any of them at any time, so a hook must not rely on seeing every
/// request in `self`. State that all requests must share belongs in
/// [`kv`](crate::kv); data that only the plugins of one request share belongs in
/// [`context`](crate::context). Hooks take `&mut self` because an instance runs
/// one call at a time.
///
/// # Errors
///
/// `Err(String)` from a hook means the plugin failed (a bug, bad data); the
/// host applies the plugin's `on-error` policy. To refuse a request on purpose,
/// return an action carrying an [`LlmError`] instead.
pub trait Plugin: Sized + 'static {
    /// Create the plugin from its effective configuration. An `Err` refuses
    /// the load (or the reload: the previous version keeps serving).
    fn init(config: Config) -> Result<Self, String>;

    /// Called when the plugin is unloaded or replaced. The value is dropped
    /// afterwards.
    fn shutdown(&mut self) {}

    /// `pre-request`: before the provider is called, in ascending priority.
    /// Read what you need through `req`, edit it in place (the edits are
    /// kept with [`PreAction::Continue`]), or short-circuit with
    /// [`PreAction::Respond`] / [`PreAction::Fail`].
    fn pre_request(&mut self, req: &Request) -> Result<PreAction, String> {
        let _ = req;
        Ok(PreAction::Continue)
    }

    /// `post-response`: after the provider answered, failed
    /// ([`Response::error`]), or a pre hook short-circuited; in descending
    /// priority, and only if this plugin's `pre_request` ran for the request.
    /// `req` is read-only here; `resp` is editable.
    fn post_response(&mut self, req: &Request, resp: &Response) -> Result<PostAction, String> {
        let _ = (req, resp);
        Ok(PostAction::Continue)
    }

    /// `on-chunk`: for each chunk of a streamed response, as it flows. Edit
    /// it in place, drop it, or [`ChunkAction::Hold`] it to see it merged
    /// with the next one.
    fn on_chunk(&mut self, req: &Request, chunk: &Chunk) -> Result<ChunkAction, String> {
        let _ = (req, chunk);
        Ok(ChunkAction::Continue)
    }

    /// `on-stream-end`: when a stream ends; may append chunks through `end`.
    fn on_stream_end(&mut self, req: &Request, end: &StreamEnd) -> Result<(), String> {
        let _ = (req, end);
        Ok(())
    }

    /// `on-tool-call`: before a tool call the model requested is run.
    fn on_tool_call(&mut self, req: &Request, call: &ToolCallRef) -> Result<ToolAction, String> {
        let _ = (req, call);
        Ok(ToolAction::Allow)
    }

    /// `provider`: the provider type this plugin implements (e.g. `echo`).
    /// The default is an empty string: this plugin is not a provider.
    fn provider_type(&self) -> String {
        String::new()
    }

    /// `provider`: answer a request with a `chat.completion`. The default
    /// refuses: this plugin is not a provider.
    fn complete(&mut self, req: &Request) -> Result<Completion, LlmError> {
        let _ = req;
        Err(not_a_provider())
    }

    /// `provider`: start a streamed answer. The stream is pulled chunk by
    /// chunk by the host after this returns, so it must not borrow `req`:
    /// read what it needs first. The default calls
    /// [`complete`](Plugin::complete) and streams the whole completion
    /// ([`ChunkStream::from_completion`]).
    fn start_stream(&mut self, req: &Request) -> Result<ChunkStream, LlmError> {
        self.complete(req).map(ChunkStream::from_completion)
    }

    /// `device-hooks`: adjust, annotate or filter the host's device reports.
    /// The default returns them unchanged.
    fn on_device_probe(&mut self, reports: Vec<DeviceReport>) -> Result<Vec<DeviceReport>, String> {
        Ok(reports)
    }

    /// `device-probe`: the devices this plugin can see. The default reports
    /// none.
    fn probe(&mut self) -> Result<Vec<DeviceReport>, String> {
        Ok(Vec::new())
    }

    /// `endpoint`: the model mode this plugin implements (e.g. `chat`). The
    /// default is an empty string: this plugin is not an endpoint plugin.
    fn mode(&self) -> String {
        String::new()
    }

    /// `endpoint`: the API paths this mode supports. The default is none.
    fn supported_endpoints(&self) -> Vec<String> {
        Vec::new()
    }

    /// `endpoint`: whether a request to `path` fits `model_alias`'s mode; `Err`
    /// says why not. The default refuses every request.
    fn validate_request(&mut self, path: &str, model_alias: &str) -> Result<(), String> {
        let _ = model_alias;
        Err(format!("this plugin does not implement the endpoint interface, so it cannot accept `{path}`"))
    }

    /// `endpoint`: judge a model server's health check, given how long it took
    /// and the time allowed. The default reports unhealthy.
    fn health_check(&mut self, model_alias: &str, base_url: &str, elapsed: Duration, timeout: Duration) -> Health {
        let _ = (model_alias, base_url, elapsed, timeout);
        Health::unhealthy("this plugin does not implement health checks")
    }
}

fn not_a_provider() -> LlmError {
    LlmError::new(ErrorKind::Internal, "this plugin is not a provider (it does not implement `complete`)")
}
