//! Calling one hook of one plugin with JSON in and JSON out: what
//! [`crate::Host::call_hook_json`] runs (`plugbox call` uses it; handy in tests).
//!
//! The input is a JSON object; request, response, chunk and tool call are
//! OpenAI JSON (`info` may be left out; a default request-info is used;
//! `context` is an optional object of strings):
//!
//! | hook | input fields | `result` | `edited` |
//! |---|---|---|---|
//! | `pre-request` | `info`, `req` | `{"Ok": <pre-action>}` or `{"Err": "..."}` | the request after the hook's edits |
//! | `post-response` | `info`, `req`, `response` (or `error`: an llm-error) | post-action result | the response after edits |
//! | `on-chunk` | `info`, `req`, `chunk`, optional `last` | chunk-action result | the chunk after edits |
//! | `on-stream-end` | `info`, `req`, `usage` | `{"Ok": null}` or `{"Err": "..."}` | the chunks appended |
//! | `on-tool-call` | `info`, `req`, `call` | tool-action result | the call after edits |
//! | `provider` | `info`, `req`, optional `"stream": true` | `{"Ok": response}` (or `{"Ok": [chunks]}`) or `{"Err": llm-error}` | (none) |
//! | `on-device-probe` | `reports` | list of reports result | (none) |
//! | `device-probe` | (none) | list of reports result | (none) |
//! | `endpoint` | `path`, `model` (validate); `model`, `base_url`, `elapsed_ms`, `timeout_ms` (health check); or nothing (describe) | verdict / health / endpoints | (none) |
//!
//! The output is `{"result": .., "edited": .., "violation": .., "context": {..}}`:
//! `edited` is `null` when the hook changed nothing, `violation` names the
//! first read or edit the plugin's `messages` permission refused (which makes
//! the call a failure in the pipeline).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::imports::llm::{
    CallRules, ChunkEntry, RequestEntry, RequestInfo, ResponseEntry, StreamEndEntry, ToolCallEntry,
};
use crate::manifest::Hook;
use crate::openai::{ChatChunk, ChatRequest, ChatResponse, ToolCall, Usage};
use crate::pipeline::{RequestContext, RequestError, invoke};
use crate::plugin::{Invoke, LoadedPlugin};

fn field<T: DeserializeOwned>(input: &Value, name: &str) -> Result<T> {
    let v = input.get(name).cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| Error::InvalidInput(format!("field `{name}`: {e}")))
}

fn info(input: &Value, model: &str) -> Result<RequestInfo> {
    match input.get("info") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::InvalidInput(format!("field `info`: {e}"))),
        None => Ok(RequestContext::new(model).with_caller("plugbox-call").info().clone()),
    }
}

fn to_json<T: serde::Serialize>(value: T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::Engine(e.to_string()))
}

async fn run<I: Invoke>(plugin: &LoadedPlugin, ctx: &RequestContext, call: I) -> Result<I::Output> {
    Ok(plugin.call(Some(ctx.map()), plugin.limits().timeout, call).await?)
}

/// A hook's answer, what it edited and the first violation, as JSON.
fn called<A: serde::Serialize, E>(
    c: invoke::Called<A, E>,
    edited: impl FnOnce(E) -> Option<Value>,
) -> Result<(Value, Value, Value)> {
    Ok((to_json(c.answer)?, edited(c.entry).unwrap_or(Value::Null), to_json(c.rules.violation)?))
}

/// Runs `hook` of `plugin` once with `input` (see the module docs): what
/// [`crate::Host::call_hook_json`] does once it has found the plugin.
pub(crate) async fn call_hook_json(plugin: &Arc<LoadedPlugin>, hook: Hook, input: &Value) -> Result<Value> {
    let name = plugin.name();
    if !plugin.implements(hook) {
        return Err(Error::HookNotImplemented { plugin: name.to_string(), hook: hook.as_str().to_string() });
    }
    let model = input.pointer("/req/model").and_then(Value::as_str).unwrap_or("test-model");
    let info = Arc::new(info(input, model)?);
    let ctx = RequestContext::new(&info.model);
    if let Some(values) = input.get("context").and_then(Value::as_object) {
        for (k, v) in values {
            ctx.set(k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
    }
    let p = plugin;
    let rules = CallRules::new(hook.as_str(), p.caps.messages, p.limits().max_output);
    let request = || -> Result<Arc<ChatRequest>> {
        match input.get("req") {
            Some(_) => Ok(Arc::new(field::<ChatRequest>(input, "req")?)),
            None => Ok(Arc::new(ChatRequest { model: info.model.clone(), ..Default::default() })),
        }
    };
    let req = |editable| -> Result<RequestEntry> { Ok(RequestEntry::new(request()?, info.clone(), editable)) };
    let (result, edited, violation) = match hook {
        Hook::PreRequest => {
            let c = run(p, &ctx, invoke::PreRequest { req: req(true)?, rules }).await?;
            called(c, |e| e.data.into_edited().map(|r| json!(r)))?
        }
        Hook::PostResponse => {
            let resp = match input.get("error") {
                Some(_) => ResponseEntry::failed(field(input, "error")?, Arc::new(ChatResponse::default())),
                None => ResponseEntry::new(Arc::new(field::<ChatResponse>(input, "response")?), true),
            };
            let c = run(p, &ctx, invoke::PostResponse { req: req(false)?, resp, rules }).await?;
            called(c, |e| e.data.into_edited().map(|r| json!(r)))?
        }
        Hook::OnChunk => {
            let last = input.get("last").and_then(Value::as_bool).unwrap_or(false);
            let chunk = ChunkEntry::new(Arc::new(field::<ChatChunk>(input, "chunk")?), last);
            let c = run(p, &ctx, invoke::OnChunk { req: req(false)?, chunk, rules }).await?;
            called(c, |e| e.data.into_edited().map(|r| json!(r)))?
        }
        Hook::OnStreamEnd => {
            let end = StreamEndEntry { usage: field::<Option<Usage>>(input, "usage")?, ..Default::default() };
            let c = run(p, &ctx, invoke::OnStreamEnd { req: req(false)?, end, rules }).await?;
            called(c, |e| (!e.appended.is_empty()).then(|| json!(e.appended)))?
        }
        Hook::OnToolCall => {
            let call = ToolCallEntry::new(Arc::new(field::<ToolCall>(input, "call")?));
            let c = run(p, &ctx, invoke::OnToolCall { req: req(false)?, call, rules }).await?;
            called(c, |e| e.data.into_edited().map(|r| json!(r)))?
        }
        Hook::Provider if input.get("stream").and_then(Value::as_bool) == Some(true) => {
            use futures_util::StreamExt;
            let config = crate::pipeline::PipelineConfig::default();
            let from = crate::pipeline::streams::StreamFrom::Plugin(p.clone(), request()?);
            let mut stream = crate::pipeline::streams::chunk_stream(&config, &ctx, vec![], vec![], from);
            let mut chunks = Vec::new();
            let mut failed = None;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(c) => chunks.push(c),
                    Err(RequestError::Llm(e)) => failed = Some(e),
                    Err(RequestError::Plugin(f)) => return Err(f.into()),
                }
            }
            let result = match failed {
                Some(e) => json!({ "Err": e }),
                None => json!({ "Ok": chunks }),
            };
            (result, Value::Null, Value::Null)
        }
        Hook::Provider => {
            let c = run(p, &ctx, invoke::Complete { req: req(false)?, rules }).await?;
            let result = match &c.answer {
                Ok(body) => json!({ "Ok": serde_json::from_str::<Value>(body).unwrap_or(Value::String(body.clone())) }),
                Err(e) => json!({ "Err": e }),
            };
            (result, Value::Null, to_json(c.rules.violation)?)
        }
        Hook::OnDeviceProbe => {
            let reports: Vec<_> = field(input, "reports")?;
            plain(run(p, &ctx, crate::devices::OnDeviceProbe { reports: &reports }).await?)?
        }
        Hook::DeviceProbe => plain(run(p, &ctx, crate::devices::DeviceProbe).await?)?,
        Hook::Endpoint => match (input.get("path"), input.get("base_url")) {
            (_, Some(_)) => {
                let model: String = field(input, "model")?;
                let base_url: String = field(input, "base_url")?;
                let elapsed_ms: u64 = input.get("elapsed_ms").and_then(Value::as_u64).unwrap_or(0);
                let timeout_ms: u64 = input.get("timeout_ms").and_then(Value::as_u64).unwrap_or(5_000);
                let call = crate::models::endpoints::HealthCheck {
                    model: &model,
                    base_url: &base_url,
                    elapsed_ms,
                    timeout_ms,
                };
                plain(run(p, &ctx, call).await?)?
            }
            (Some(_), _) => {
                let path: String = field(input, "path")?;
                let model: String = field(input, "model")?;
                plain(run(p, &ctx, crate::models::endpoints::ValidateRequest { path: &path, model: &model }).await?)?
            }
            _ => plain(run(p, &ctx, crate::models::endpoints::EndpointInfo).await?)?,
        },
    };
    Ok(json!({ "result": result, "edited": edited, "violation": violation, "context": ctx.values() }))
}

/// A hook without `llm` data: its answer only.
fn plain<T: serde::Serialize>(out: T) -> Result<(Value, Value, Value)> {
    Ok((to_json(out)?, Value::Null, Value::Null))
}
