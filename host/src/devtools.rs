//! Calling one hook of one plugin with JSON in and JSON out: what
//! [`crate::Host::call_hook_json`] runs (`plugbox call` uses it; handy in tests).
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

/// Runs `hook` of `plugin` once with `input` (see the module docs): what
/// [`crate::Host::call_hook_json`] does once it has found the plugin.
pub(crate) async fn call_hook_json(plugin: &LoadedPlugin, hook: Hook, input: &Value) -> Result<Value> {
    let name = plugin.name();
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
    let p = plugin;
    let result = match hook {
        Hook::PreRequest => run(p, &ctx, invoke::PreRequest { info: &info, req: &field(input, "req")? }).await?,
        Hook::PostResponse => {
            let outcome: crate::pipeline::Outcome = field(input, "outcome")?;
            run(p, &ctx, invoke::PostResponse { info: &info, outcome: outcome.as_ref() }).await?
        }
        Hook::OnChunk => run(p, &ctx, invoke::OnChunk { info: &info, chunk: &field(input, "chunk")? }).await?,
        Hook::OnStreamEnd => run(p, &ctx, invoke::OnStreamEnd { info: &info, usage: field(input, "usage")? }).await?,
        Hook::OnToolCall => run(p, &ctx, invoke::OnToolCall { info: &info, call: &field(input, "call")? }).await?,
        Hook::Provider if input.get("stream").and_then(Value::as_bool) == Some(true) => {
            let req = field(input, "req")?;
            let budget = crate::budget::OutputBudget::new(p.limits().max_output);
            let call = invoke::StreamAll { info: &info, req: &req, budget };
            let out = p.call(Some(ctx.map()), p.limits().timeout, call).await?;
            let chunks = out.map_err(|cut_off| Error::InvalidInput(format!("the stream was cut off: {cut_off}")))?;
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
