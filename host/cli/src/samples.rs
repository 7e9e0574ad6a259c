//! `plugbox call --sample`: a complete input for each hook, in the JSON form
//! `Host::call_hook_json` takes.

use plugbox_host::{
    Choice, DeviceKind, DeviceReport, Hook, Message, Request, RequestContext, Response, Role, StreamChunk, ToolCall,
    Usage,
};
use serde_json::{Value, json};

/// A complete, valid input for `hook` (what `plugbox call --sample` prints):
/// every field present, in the JSON form `Host::call_hook_json` takes.
pub fn hook_input(hook: Hook) -> Value {
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
