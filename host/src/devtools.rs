//! Calling one hook of one plugin with JSON in and JSON out: what
//! `plugbox call` uses, and handy in tests.
//!
//! The input is a JSON object with the hook's WIT parameters by name
//! (`info` may be left out; a default request-info is used):
//!
//! | hook | input fields | output |
//! |---|---|---|
//! | `pre-request` | `info`, `req` | `{"Ok": <pre-action>}` or `{"Err": "..."}` |
//! | `post-response` | `info`, `outcome` (`{"Ok": response}` / `{"Err": llm-error}`) | post-action result |
//! | `on-chunk` | `info`, `chunk` | chunk-action result |
//! | `on-stream-end` | `info`, `usage` | list of chunks result |
//! | `on-tool-call` | `info`, `call` | tool-action result |
//! | `provider` | `info`, `req`, optional `"stream": true` | response (or chunks) result |
//! | `on-device-probe` | `reports` | list of reports result |
//! | `device-probe` | (none) | list of reports result |
//! | `endpoint` | `path`, `model` (validate); `model`, `base_url`, `elapsed_ms`, `timeout_ms` (health check); or nothing (describe) | verdict / health / endpoints |

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::bindings::types::RequestInfo;
use crate::error::{Error, Result};
use crate::manifest::Hook;
use crate::pipeline::{RequestContext, invoke};
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

async fn run<I: Invoke>(plugin: &LoadedPlugin, ctx: &RequestContext, call: I) -> Result<Value>
where
    I::Output: serde::Serialize,
{
    let out = plugin.call(Some(ctx.map()), plugin.limits().timeout, call).await?;
    serde_json::to_value(out).map_err(|e| Error::Engine(e.to_string()))
}

impl crate::Host {
    /// Runs `hook` of the loaded plugin `name` once with `input` (see the
    /// module docs) and returns the raw result plus the request context's
    /// values as `{"result": .., "context": {..}}`.
    pub async fn call_hook_json(&self, name: &str, hook: Hook, input: &Value) -> Result<Value> {
        let plugin = self.plugin(name).ok_or_else(|| Error::NotFound(name.to_string()))?;
        if !plugin.implements(hook) {
            return Err(Error::HookNotImplemented { plugin: name.to_string(), hook: hook.as_str().to_string() });
        }
        let model = input.pointer("/req/model").and_then(Value::as_str).unwrap_or("test-model");
        let info = info(input, model)?;
        let ctx = RequestContext::new(&info.model);
        if let Some(values) = input.get("context").and_then(Value::as_object) {
            for (k, v) in values {
                ctx.set(k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
            }
        }
        let p = &*plugin;
        let result = match hook {
            Hook::PreRequest => run(p, &ctx, invoke::PreRequest { info: &info, req: &field(input, "req")? }).await?,
            Hook::PostResponse => {
                let outcome: crate::pipeline::Outcome = field(input, "outcome")?;
                run(p, &ctx, invoke::PostResponse { info: &info, outcome: outcome.as_ref() }).await?
            }
            Hook::OnChunk => run(p, &ctx, invoke::OnChunk { info: &info, chunk: &field(input, "chunk")? }).await?,
            Hook::OnStreamEnd => {
                run(p, &ctx, invoke::OnStreamEnd { info: &info, usage: field(input, "usage")? }).await?
            }
            Hook::OnToolCall => run(p, &ctx, invoke::OnToolCall { info: &info, call: &field(input, "call")? }).await?,
            Hook::Provider if input.get("stream").and_then(Value::as_bool) == Some(true) => {
                let req = field(input, "req")?;
                let budget = crate::budget::OutputBudget::new(p.limits().max_output);
                let call = invoke::StreamAll { info: &info, req: &req, budget };
                let out = p.call(Some(ctx.map()), p.limits().timeout, call).await?;
                let chunks =
                    out.map_err(|cut_off| Error::InvalidInput(format!("the stream was cut off: {cut_off}")))?;
                serde_json::to_value(chunks).map_err(|e| Error::Engine(e.to_string()))?
            }
            Hook::Provider => run(p, &ctx, invoke::Complete { info: &info, req: &field(input, "req")? }).await?,
            Hook::OnDeviceProbe => {
                let reports: Vec<_> = field(input, "reports")?;
                run(p, &ctx, crate::devices::OnDeviceProbe { reports: &reports }).await?
            }
            Hook::DeviceProbe => run(p, &ctx, crate::devices::DeviceProbe).await?,
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
                    run(p, &ctx, call).await?
                }
                (Some(_), _) => {
                    let path: String = field(input, "path")?;
                    let model: String = field(input, "model")?;
                    run(p, &ctx, crate::models::endpoints::ValidateRequest { path: &path, model: &model }).await?
                }
                _ => run(p, &ctx, crate::models::endpoints::EndpointInfo).await?,
            },
        };
        Ok(json!({ "result": result, "context": ctx.values() }))
    }
}

/// A complete, valid input for `hook` (what `plugbox call --sample` prints):
/// every field present, in the JSON form [`crate::Host::call_hook_json`] takes.
pub fn sample_hook_input(hook: Hook) -> Value {
    use crate::bindings::types::{
        Choice, DeviceKind, DeviceReport, Message, Request, Response, Role, StreamChunk, ToolCall, Usage,
    };
    let message = |role, content: &str| Message {
        role,
        content: content.into(),
        name: None,
        tool_calls: vec![],
        tool_call_id: None,
    };
    let req = Request {
        model: "gpt-4o".into(),
        messages: vec![message(Role::System, "Be brief."), message(Role::User, "Mail me at ada@example.com")],
        temperature: Some(0.2),
        max_tokens: Some(256),
        stream: false,
        tools: vec![],
        extra: None,
    };
    let info = RequestContext::new("gpt-4o").with_caller("team-a").with_provider("openai").info().clone();
    let response = Response {
        id: "resp-1".into(),
        model: "gpt-4o".into(),
        choices: vec![Choice {
            index: 0,
            message: message(Role::Assistant, "Done."),
            finish_reason: Some("stop".into()),
        }],
        usage: Some(Usage { prompt_tokens: 12, completion_tokens: 2, total_tokens: 14 }),
        extra: None,
    };
    match hook {
        Hook::PreRequest => json!({ "info": info, "req": req, "context": {} }),
        Hook::PostResponse => json!({ "info": info, "outcome": { "Ok": response } }),
        Hook::OnChunk => json!({
            "info": info,
            "chunk": StreamChunk { index: 0, role: None, content: Some("Hel".into()), tool_calls: vec![], finish_reason: None, usage: None },
        }),
        Hook::OnStreamEnd => {
            json!({ "info": info, "usage": Usage { prompt_tokens: 12, completion_tokens: 2, total_tokens: 14 } })
        }
        Hook::OnToolCall => json!({
            "info": info,
            "call": ToolCall { id: "call-1".into(), name: "get_weather".into(), arguments: r#"{"city":"Paris"}"#.into() },
        }),
        Hook::Provider => json!({ "info": info, "req": req, "stream": false }),
        Hook::OnDeviceProbe => json!({
            "reports": [DeviceReport {
                id: "gpu:0".into(),
                kind: DeviceKind::Gpu,
                name: "Example GPU".into(),
                online: true,
                memory_total_mb: 24576,
                memory_free_mb: 20480,
                memory_used_mb: 4096,
                utilization: Some(12.0),
                temperature_c: Some(41.0),
                source: "builtin:nvml".into(),
                annotations: vec![],
            }],
        }),
        Hook::DeviceProbe => json!({}),
        Hook::Endpoint => json!({ "path": "/v1/chat/completions", "model": "gpt-4o" }),
    }
}
