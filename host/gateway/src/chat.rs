//! `POST /v1/chat/completions`: the request pipeline for JSON answers.
//!
//! door (limits, caller, body) → parse (400 with the JSON path) → route
//! (404) → endpoint validation and device admission when the model has a
//! model config → pre hooks → provider attempts in plan order, falling back
//! when the error allows it, with the tool-call rounds → post hooks. Streams
//! (`stream: true`) take the same path up to the provider and go on in
//! [`crate::sse`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use plugbox_host::models::RouteError;
use plugbox_host::{
    ChatRequest, ChatResponse, ErrorKind, Host, LlmError, Nullable, Outcome, RequestContext, RequestError, Usage,
};

use crate::config::GatewayConfig;
use crate::error::{ApiError, upstream_llm_error};
use crate::routes::{Attempt, Target};
use crate::server::{Admitted, admit, error_response, with_request_id};
use crate::state::Shared;
use crate::tools;

/// The endpoint path, as interface plugins see it.
pub(crate) const PATH: &str = "/v1/chat/completions";

pub(crate) async fn chat_completions(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let admitted = match admit(&shared, &parts, body).await {
        Ok(a) => a,
        Err((e, id)) => return error_response(e, &id),
    };
    let id = admitted.request_id.clone();
    // The request runs to its end in its own task, so that a client that
    // goes away does not skip the hooks at its end (the post hooks; a
    // stream's end hooks), and it stays within its deadline.
    let work = tokio::spawn(handle(shared, admitted));
    let outcome = match work.await {
        Ok(outcome) => outcome,
        Err(e) => Err(ApiError::new(500, format!("the request failed: {e}"))),
    };
    match outcome {
        Ok(r) => with_request_id(r, &id),
        Err(e) => {
            tracing::debug!(request_id = %id, status = e.status, "chat request failed: {}", e.message);
            error_response(e, &id)
        }
    }
}

/// Parses a chat request; a bad field is a 400 naming its JSON path.
pub(crate) fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let request: ChatRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::new(400, format!("invalid request body: {inner}"))
        } else {
            ApiError::bad_field(path.clone(), format!("invalid request body at `{path}`: {inner}"))
        }
    })?;
    if request.model.is_empty() {
        return Err(ApiError::bad_field("model", "`model` must name a model"));
    }
    if request.messages.is_empty() {
        return Err(ApiError::bad_field("messages", "`messages` must hold at least one message"));
    }
    Ok(request)
}

/// Endpoint validation through the interface plugin of the model's mode
/// (400 when it refuses) and device admission (503 with the reason), for
/// models the config has a model config for.
pub(crate) async fn check_model(host: &Host, config: &GatewayConfig, path: &str, model: &str) -> Result<(), ApiError> {
    let Some(model_config) = config.models.get(model) else {
        return Ok(());
    };
    match host.validate_request(&config.models, path, model).await {
        Ok(v) if !v.accepted => {
            let why = v.reason.unwrap_or_else(|| "refused".into());
            return Err(ApiError::new(
                400,
                format!(
                    "model `{model}` (mode `{}`, interface plugin `{}`) does not serve {path}: {why}",
                    v.mode, v.plugin
                ),
            )
            .with_code("unsupported_endpoint"));
        }
        Ok(_) => {}
        Err(e @ RouteError::UnknownModel(_)) => {
            return Err(ApiError::new(404, e.to_string()).with_code("model_not_found"));
        }
        Err(e) => return Err(ApiError::new(503, format!("model `{model}`: {e}")).with_code("model_unavailable")),
    }
    let admission = host.admit(model_config).await;
    if !admission.admitted {
        let reasons = admission.reasons();
        return Err(ApiError::new(
            503,
            format!("model `{model}` does not fit the devices now: {}", reasons.join("; ")),
        )
        .with_code("insufficient_resources"));
    }
    Ok(())
}

/// The attempts for `model` (404 when no route serves it).
pub(crate) fn plan(admitted: &Admitted, model: &str) -> Result<Vec<Attempt>, ApiError> {
    let plan = admitted.active.routes.plan(model).ok_or_else(|| {
        ApiError::new(404, format!("the model `{model}` does not exist: no route of this gateway serves it"))
            .with_code("model_not_found")
    })?;
    if plan.is_empty() {
        return Err(ApiError::new(503, format!("the route of `{model}` has no provider")).with_code("no_provider"));
    }
    Ok(plan)
}

async fn handle(shared: Arc<Shared>, admitted: Admitted) -> Result<Response, ApiError> {
    let request = parse(&admitted.body)?;
    let plan = plan(&admitted, &request.model)?;
    let config = &admitted.active.config;
    check_model(&shared.host, config, PATH, &request.model).await?;
    let streaming = request.is_streaming();
    let mut ctx = RequestContext::new(request.model.clone())
        .with_request_id(admitted.request_id.clone())
        .with_streaming(streaming)
        .with_provider(plan[0].provider.clone());
    if let Some(caller) = &admitted.caller {
        ctx = ctx.with_caller(caller.clone());
    }
    let deadline = tokio::time::Instant::now() + config.limits.request_timeout;
    if streaming {
        return crate::sse::start(shared, admitted, ctx, request, plan, deadline).await;
    }
    let work = complete(&shared.host, &ctx, request, &plan, config, deadline);
    work.await.map(|resp| axum::Json(resp).into_response())
}

/// The JSON path: pre hooks, attempts with tool rounds, post hooks. The
/// deadline ends the attempts; the post hooks then see the timeout (and may
/// answer in its place).
async fn complete(
    host: &Host,
    ctx: &RequestContext,
    request: ChatRequest,
    plan: &[Attempt],
    config: &GatewayConfig,
    deadline: tokio::time::Instant,
) -> Result<ChatResponse, ApiError> {
    let upstream = LastUpstreamError::default();
    // How many attempts were started (the last one's provider is the one the
    // post hooks see).
    let tried = std::sync::atomic::AtomicUsize::new(0);
    let past_deadline = || {
        let limit = humantime::format_duration(config.limits.request_timeout);
        llm(ErrorKind::Timeout, format!("the request ran past its deadline of {limit}"), false)
    };
    let mut stage = match tokio::time::timeout_at(deadline, host.pre_request(ctx, request)).await {
        Ok(stage) => stage,
        // The pre hooks did not end: there is no stage for post hooks to see.
        Err(_) => return Err(ApiError::from_llm(&past_deadline())),
    };
    let outcome = if let Some(answered) = stage.short_circuit.take() {
        // A pre hook's answer: its tool calls go to the tool hooks too; there
        // is no model to send plugin-answered calls back to.
        match answered {
            Ok(mut response) => {
                let why_not = "a plugin answered this request, there is no model to continue with";
                decide_tools(host, ctx, &mut response, false, why_not).await.map(|_| response)
            }
            failed => failed,
        }
    } else if stage.failure.is_some() {
        // post_response reports the failure itself.
        Err(llm(ErrorKind::Internal, "a fail-closed plugin failed", false))
    } else {
        let max_rounds = config.limits.max_tool_rounds;
        let work = attempts(host, ctx, &stage.request, plan, max_rounds, &upstream, &tried);
        tokio::time::timeout_at(deadline, work).await.unwrap_or_else(|_| Err(past_deadline()))
    };
    // The post hooks see the provider of the last attempt (after a fallback,
    // the one that answered or failed last), as its tool hooks did.
    let post_ctx = match tried.load(std::sync::atomic::Ordering::Relaxed) {
        0 => ctx.clone(),
        n => ctx.clone().with_provider(plan[n - 1].provider.clone()),
    };
    host.post_response(&post_ctx, stage, outcome).await.map_err(|e| match e {
        RequestError::Llm(e) => ApiError::from_llm_or_upstream(&e, upstream.lock().take()),
        other => ApiError::from_request(&other),
    })
}

/// Tries each attempt in order while the error allows a fallback.
async fn attempts(
    host: &Host,
    ctx: &RequestContext,
    request: &ChatRequest,
    plan: &[Attempt],
    max_rounds: u32,
    upstream: &LastUpstreamError,
    tried: &std::sync::atomic::AtomicUsize,
) -> Outcome {
    let mut outcome = Err(llm(ErrorKind::Internal, "no provider", false));
    for (i, attempt) in plan.iter().enumerate() {
        tried.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        // This attempt's tool hooks see its provider (`req.provider()`).
        let ctx = &ctx.clone().with_provider(attempt.provider.clone());
        outcome = with_tools(host, ctx, attempt, request, max_rounds, upstream).await;
        match &outcome {
            Err(e) if e.allow_fallback && i + 1 < plan.len() => {
                tracing::info!(
                    request_id = %ctx.info().request_id, provider = %attempt.provider,
                    "provider failed ({}), falling back to `{}`", e.message, plan[i + 1].provider
                );
            }
            _ => return outcome,
        }
    }
    outcome
}

/// One attempt, with the rounds of plugin-answered tool calls.
async fn with_tools(
    host: &Host,
    ctx: &RequestContext,
    attempt: &Attempt,
    request: &ChatRequest,
    max_rounds: u32,
    upstream: &LastUpstreamError,
) -> Outcome {
    let mut request = request.clone();
    let mut spent: Option<Usage> = None;
    let mut round = 0u32;
    loop {
        let mut response = call(host, ctx, attempt, &request, upstream).await.map_err(|mut e| {
            if round > 0 {
                // Tool results were already fed to this provider: no other starts over.
                e.allow_fallback = false;
            }
            e
        })?;
        let why_not = format!("the limit of {max_rounds} tool rounds was reached");
        let follow_up = decide_tools(host, ctx, &mut response, round < max_rounds, &why_not).await?;
        add_usage(&mut spent, response.usage());
        match follow_up {
            Some(messages) => {
                request = tools::next_round(&request, messages);
                round += 1;
            }
            None => {
                if round > 0
                    && let Some(total) = spent
                {
                    response.usage = Some(Nullable::Value(total));
                }
                return Ok(response);
            }
        }
    }
}

/// Puts the tool calls of every choice of `response` to the tool hooks:
/// rewritten calls stay as edited, denied ones are removed with a note in the
/// choice's text. When `may_answer` and plugins answered choice 0's calls,
/// returns the messages of the next round; answered calls that cannot go
/// back to a model are removed with a note saying `why_not`.
pub(crate) async fn decide_tools(
    host: &Host,
    ctx: &RequestContext,
    response: &mut ChatResponse,
    may_answer: bool,
    why_not: &str,
) -> Result<Option<Vec<plugbox_host::ChatMessage>>, LlmError> {
    let mut follow_up = None;
    for choice in &mut response.choices {
        if choice.message.tool_calls().is_empty() {
            continue;
        }
        let calls = std::mem::take(choice.message.tool_calls_mut());
        let decided = tools::decide(host, ctx, calls).await.map_err(|e| {
            // A tool hook's failure is no reason to ask another provider.
            let mut e = request_llm(&e);
            e.allow_fallback = false;
            e
        })?;
        if choice.index == 0 && !decided.answered.is_empty() && may_answer {
            let text = choice.message.text().map(|t| t.into_owned()).filter(|t| !t.is_empty());
            follow_up = Some(decided.follow_up(text));
            continue;
        }
        let mut note = decided.denial_note();
        if !decided.answered.is_empty() {
            note = format!("{note} [tool calls answered by plugins were not run: {why_not}]").trim().to_string();
        }
        if !note.is_empty() {
            tools::append_text(&mut choice.message, &note);
        }
        if decided.run.is_empty() {
            choice.message.tool_calls = None;
            if choice.finish_reason() == Some("tool_calls") {
                choice.finish_reason = Some(Nullable::Value("stop".into()));
            }
        } else {
            *choice.message.tool_calls_mut() = decided.run;
        }
    }
    Ok(follow_up)
}

/// Adds `usage` to `total`.
pub(crate) fn add_usage(total: &mut Option<Usage>, usage: Option<&Usage>) {
    let Some(u) = usage else { return };
    match total {
        Some(t) => {
            t.prompt_tokens += u.prompt_tokens;
            t.completion_tokens += u.completion_tokens;
            t.total_tokens += u.total_tokens;
        }
        None => *total = Some(u.clone()),
    }
}

/// The request `attempt` sends: `request` with the provider's model name.
pub(crate) fn for_attempt(attempt: &Attempt, request: &ChatRequest) -> ChatRequest {
    let mut request = request.clone();
    request.model = attempt.model.clone();
    request
}

/// One provider call.
async fn call(
    host: &Host,
    ctx: &RequestContext,
    attempt: &Attempt,
    request: &ChatRequest,
    upstream: &LastUpstreamError,
) -> Outcome {
    let request = for_attempt(attempt, request);
    match &attempt.target {
        Target::Plugin { provider_type } => {
            missing_provider(host, provider_type)?;
            host.complete(ctx, provider_type, &request).await.map_err(|e| request_llm(&e))
        }
        Target::Upstream(client) => client.chat(&request).await.map_err(|e| {
            let llm = upstream_llm_error(&e);
            *upstream.lock() = Some(e);
            llm
        }),
        #[allow(unreachable_patterns)]
        _ => Err(llm(ErrorKind::Internal, "a provider kind this gateway cannot call", true)),
    }
}

/// A provider error (502, may fall back) when no provider plugin of
/// `provider_type` is loaded.
pub(crate) fn missing_provider(host: &Host, provider_type: &str) -> Result<(), LlmError> {
    if host.provider(provider_type).is_some() {
        return Ok(());
    }
    Err(llm(ErrorKind::Provider, format!("no provider plugin of type `{provider_type}` is loaded"), true))
}

/// The last upstream failure of a request: its OpenAI error body goes to the
/// client as is when the request ends with that failure unchanged.
pub(crate) type LastUpstreamError = parking_lot::Mutex<Option<crate::upstream::UpstreamError>>;

/// An LLM error.
pub(crate) fn llm(kind: ErrorKind, message: impl Into<String>, allow_fallback: bool) -> LlmError {
    LlmError { kind, message: message.into(), allow_fallback, retry_after_ms: None }
}

/// A pipeline error as an LLM error (a provider plugin's failure may fall back).
pub(crate) fn request_llm(e: &RequestError) -> LlmError {
    match e {
        RequestError::Llm(e) => e.clone(),
        other => llm(ErrorKind::Provider, other.to_string(), true),
    }
}
