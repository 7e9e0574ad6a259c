//! `plugbox call --sample`: a complete input for each hook, in the JSON form
//! `Host::call_hook_json` takes (requests, responses, chunks and tool calls
//! as OpenAI JSON).

use plugbox_host::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, DeviceKind, DeviceReport, Hook, RequestContext, ToolCall, Usage,
};
use serde_json::{Value, json};

/// A complete, valid input for `hook` (what `plugbox call --sample` prints):
/// every field present, in the JSON form `Host::call_hook_json` takes.
pub fn hook_input(hook: Hook) -> Value {
    let req = ChatRequest {
        model: "gpt-4o".into(),
        messages: vec![ChatMessage::system("Be brief."), ChatMessage::user("Mail me at ada@example.com")],
        ..Default::default()
    }
    .with_temperature(0.2)
    .with_max_tokens(256);
    let info = RequestContext::new("gpt-4o").with_caller("team-a").with_provider("openai").info().clone();
    let response = ChatResponse::text("resp-1", "gpt-4o", "Done.").with_usage(Usage::new(12, 2));
    match hook {
        Hook::PreRequest => json!({ "info": info, "req": req, "context": {} }),
        Hook::PostResponse => json!({ "info": info, "req": req, "response": response }),
        Hook::OnChunk => json!({ "info": info, "req": req, "chunk": ChatChunk::text("Hel"), "last": false }),
        Hook::OnStreamEnd => json!({ "info": info, "req": req, "usage": Usage::new(12, 2) }),
        Hook::OnToolCall => json!({
            "info": info,
            "req": req,
            "call": ToolCall::function("call-1", "get_weather", r#"{"city":"Paris"}"#),
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
