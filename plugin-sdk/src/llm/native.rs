//! The in-memory stand-ins for the host-owned request, response, chunk,
//! stream end and tool call, used off wasm. They mirror the WIT methods
//! (same signatures as the generated bindings) and apply the same permission
//! rules as the host.

use std::cell::{Cell, RefCell};

use serde_json::{Map, Value, json};

use crate::bindings::plugbox::plugin::types::{AccessError, LlmError, Role, ToolCall, ToolCallFragment, Usage};
use crate::{Access, CompletionChunk};

type Res<T> = Result<T, AccessError>;

/// The permission checks every stand-in shares.
#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) access: Cell<Access>,
    pub(crate) editable: Cell<bool>,
    pub(crate) max_output: Cell<Option<usize>>,
}

impl Guard {
    pub(crate) fn new(access: Access, editable: bool, max_output: Option<usize>) -> Self {
        Guard { access: Cell::new(access), editable: Cell::new(editable), max_output: Cell::new(max_output) }
    }

    /// Reading message data at `path` needs `read`.
    fn read(&self, path: &str) -> Res<()> {
        match self.access.get() {
            Access::None => Err(AccessError::Denied(format!(
                "reading `{path}` needs `messages: read`; the plugin has `messages: none`"
            ))),
            _ => Ok(()),
        }
    }

    /// Editing anything at `path`: only where the data is editable.
    fn edit(&self, path: &str) -> Res<()> {
        if self.editable.get() {
            Ok(())
        } else {
            Err(AccessError::Denied(format!("`{path}` is read-only in this hook")))
        }
    }

    /// Editing message data at `path` needs `write`.
    fn write(&self, path: &str) -> Res<()> {
        self.edit(path)?;
        match self.access.get() {
            Access::Write => Ok(()),
            other => Err(AccessError::Denied(format!(
                "editing `{path}` needs `messages: write`; the plugin has `messages: {other}`"
            ))),
        }
    }

    /// A value of `len` bytes written by the plugin.
    fn size(&self, len: usize) -> Res<()> {
        match self.max_output.get() {
            Some(max) if len > max => Err(AccessError::TooLarge),
            _ => Ok(()),
        }
    }
}

pub(crate) fn role_name(role: Role) -> &'static str {
    role.as_str()
}

pub(crate) fn parse_role(name: &str) -> Role {
    Role::parse(name)
}

/// The text of a `content` value: a string, or its text parts joined.
pub(crate) fn content_text(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            if texts.is_empty() { None } else { Some(texts.concat()) }
        }
        _ => None,
    }
}

fn parse_json(json: &str) -> Res<Value> {
    serde_json::from_str(json).map_err(|e| AccessError::Invalid(format!("not JSON: {e}")))
}

fn usage_of(value: Option<&Value>) -> Option<Usage> {
    value.and_then(|u| serde_json::from_value(u.clone()).ok())
}

fn str_of(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_string)
}

/// The facts of a request that are not in its body.
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    pub(crate) id: String,
    pub(crate) caller: Option<String>,
    pub(crate) provider: String,
    pub(crate) streaming: Option<bool>,
}

/// The stand-in of the `request` resource.
#[derive(Debug)]
pub struct Request {
    pub(crate) facts: Facts,
    pub(crate) guard: Guard,
    pub(crate) body: RefCell<Map<String, Value>>,
}

impl Request {
    fn messages<R>(&self, f: impl FnOnce(&mut Vec<Value>) -> R) -> R {
        let mut body = self.body.borrow_mut();
        let entry = body.entry("messages").or_insert_with(|| Value::Array(Vec::new()));
        if !entry.is_array() {
            *entry = Value::Array(Vec::new());
        }
        f(entry.as_array_mut().expect("an array"))
    }

    fn message<R>(&self, index: u32, f: impl FnOnce(&mut Value) -> R) -> Res<R> {
        self.messages(|m| m.get_mut(index as usize).map(f)).ok_or(AccessError::OutOfRange)
    }

    pub fn id(&self) -> String {
        self.facts.id.clone()
    }
    pub fn caller(&self) -> Option<String> {
        self.facts.caller.clone()
    }
    pub fn provider(&self) -> String {
        self.facts.provider.clone()
    }
    pub fn streaming(&self) -> bool {
        self.facts
            .streaming
            .unwrap_or_else(|| self.body.borrow().get("stream").and_then(Value::as_bool).unwrap_or(false))
    }
    pub fn model(&self) -> String {
        str_of(self.body.borrow().get("model")).unwrap_or_default()
    }
    pub fn set_model(&self, model: &str) -> Res<()> {
        self.guard.edit("$.model")?;
        self.guard.size(model.len())?;
        self.body.borrow_mut().insert("model".into(), Value::String(model.into()));
        Ok(())
    }
    pub fn message_count(&self) -> u32 {
        self.messages(|m| m.len() as u32)
    }
    pub fn role(&self, index: u32) -> Res<Role> {
        self.message(index, |m| parse_role(m.get("role").and_then(Value::as_str).unwrap_or("")))
    }
    pub fn text(&self, index: u32) -> Res<Option<String>> {
        self.guard.read(&format!("$.messages[{index}].content"))?;
        self.message(index, |m| content_text(m.get("content")))
    }
    pub fn set_text(&self, index: u32, text: &str) -> Res<()> {
        self.guard.write(&format!("$.messages[{index}].content"))?;
        self.guard.size(text.len())?;
        self.message(index, |m| {
            if let Some(obj) = m.as_object_mut() {
                obj.insert("content".into(), Value::String(text.into()));
            }
        })
    }
    pub fn message_json(&self, index: u32) -> Res<String> {
        self.guard.read(&format!("$.messages[{index}]"))?;
        self.message(index, |m| m.to_string())
    }
    fn insert(&self, index: u32, message: Value) -> Res<()> {
        self.guard.write(&format!("$.messages[{index}]"))?;
        self.guard.size(message.to_string().len())?;
        self.messages(|m| {
            if index as usize > m.len() {
                return Err(AccessError::OutOfRange);
            }
            m.insert(index as usize, message);
            Ok(())
        })
    }
    pub fn insert_message(&self, index: u32, role: Role, text: &str) -> Res<()> {
        if role == Role::Other {
            return Err(AccessError::Invalid("a message cannot be inserted with role `other`".into()));
        }
        self.insert(index, json!({"role": role_name(role), "content": text}))
    }
    pub fn insert_message_json(&self, index: u32, json: &str) -> Res<()> {
        let message = parse_json(json)?;
        if message.get("role").and_then(Value::as_str).is_none() {
            return Err(AccessError::Invalid(format!("`$.messages[{index}]` must be an object with a `role`")));
        }
        self.insert(index, message)
    }
    pub fn remove_message(&self, index: u32) -> Res<()> {
        self.guard.write(&format!("$.messages[{index}]"))?;
        self.messages(|m| {
            if index as usize >= m.len() {
                return Err(AccessError::OutOfRange);
            }
            m.remove(index as usize);
            Ok(())
        })
    }
    pub fn tool_count(&self) -> u32 {
        self.body.borrow().get("tools").and_then(Value::as_array).map_or(0, |t| t.len() as u32)
    }
    pub fn tools_json(&self) -> Res<String> {
        self.guard.read("$.tools")?;
        Ok(self.body.borrow().get("tools").cloned().unwrap_or(Value::Array(Vec::new())).to_string())
    }
    pub fn param(&self, name: &str) -> Res<Option<String>> {
        own_method(name, &["messages", "tools"])?;
        Ok(self.body.borrow().get(name).map(Value::to_string))
    }
    pub fn set_param(&self, name: &str, json: Option<&str>) -> Res<()> {
        own_method(name, &["messages", "tools"])?;
        set_field(&self.guard, &mut self.body.borrow_mut(), name, json)
    }
    pub fn to_json(&self) -> Res<String> {
        self.guard.read("$")?;
        Ok(Value::Object(self.body.borrow().clone()).to_string())
    }
}

/// `messages`, `tools` and `choices` are read and edited through their own methods.
fn own_method(name: &str, fields: &[&str]) -> Res<()> {
    if fields.contains(&name) {
        return Err(AccessError::Invalid(format!("`$.{name}` is read and edited through its own methods")));
    }
    Ok(())
}

fn set_field(guard: &Guard, body: &mut Map<String, Value>, name: &str, json: Option<&str>) -> Res<()> {
    guard.edit(&format!("$.{name}"))?;
    match json {
        None => {
            body.remove(name);
        }
        Some(json) => {
            guard.size(json.len())?;
            let value = parse_json(json)?;
            if name == "model" && !value.is_string() {
                return Err(AccessError::Invalid("`$.model` must be a string".into()));
            }
            body.insert(name.into(), value);
        }
    }
    Ok(())
}

/// The stand-in of the `response` resource.
#[derive(Debug)]
pub struct Response {
    pub(crate) guard: Guard,
    pub(crate) error: Option<LlmError>,
    pub(crate) body: RefCell<Map<String, Value>>,
}

impl Response {
    fn choice<R>(&self, index: u32, f: impl FnOnce(&mut Value) -> R) -> Res<R> {
        let mut body = self.body.borrow_mut();
        let choice = body.get_mut("choices").and_then(Value::as_array_mut).and_then(|c| c.get_mut(index as usize));
        choice.map(f).ok_or(AccessError::OutOfRange)
    }
    pub fn error(&self) -> Option<LlmError> {
        self.error.clone()
    }
    pub fn id(&self) -> String {
        str_of(self.body.borrow().get("id")).unwrap_or_default()
    }
    pub fn model(&self) -> String {
        str_of(self.body.borrow().get("model")).unwrap_or_default()
    }
    pub fn choice_count(&self) -> u32 {
        self.body.borrow().get("choices").and_then(Value::as_array).map_or(0, |c| c.len() as u32)
    }
    pub fn text(&self, index: u32) -> Res<Option<String>> {
        self.guard.read(&format!("$.choices[{index}].message.content"))?;
        self.choice(index, |c| content_text(c.pointer("/message/content")))
    }
    pub fn set_text(&self, index: u32, text: &str) -> Res<()> {
        self.guard.write(&format!("$.choices[{index}].message.content"))?;
        self.guard.size(text.len())?;
        self.choice(index, |c| {
            if let Some(message) = c.get_mut("message").and_then(Value::as_object_mut) {
                message.insert("content".into(), Value::String(text.into()));
            }
        })
    }
    pub fn refusal(&self, index: u32) -> Res<Option<String>> {
        self.guard.read(&format!("$.choices[{index}].message.refusal"))?;
        self.choice(index, |c| str_of(c.pointer("/message/refusal")))
    }
    pub fn finish_reason(&self, index: u32) -> Res<Option<String>> {
        self.choice(index, |c| str_of(c.get("finish_reason")))
    }
    pub fn tool_calls(&self, index: u32) -> Res<Vec<ToolCall>> {
        self.guard.read(&format!("$.choices[{index}].message.tool_calls"))?;
        self.choice(index, |c| {
            let calls = c.pointer("/message/tool_calls").and_then(Value::as_array).cloned().unwrap_or_default();
            calls
                .iter()
                .map(|call| ToolCall {
                    id: str_of(call.get("id")).unwrap_or_default(),
                    name: str_of(call.pointer("/function/name")).unwrap_or_default(),
                    arguments: str_of(call.pointer("/function/arguments")).unwrap_or_default(),
                })
                .collect()
        })
    }
    pub fn usage(&self) -> Option<Usage> {
        usage_of(self.body.borrow().get("usage"))
    }
    pub fn param(&self, name: &str) -> Res<Option<String>> {
        own_method(name, &["choices"])?;
        Ok(self.body.borrow().get(name).map(Value::to_string))
    }
    pub fn set_param(&self, name: &str, json: Option<&str>) -> Res<()> {
        own_method(name, &["choices"])?;
        set_field(&self.guard, &mut self.body.borrow_mut(), name, json)
    }
    pub fn to_json(&self) -> Res<String> {
        self.guard.read("$")?;
        Ok(Value::Object(self.body.borrow().clone()).to_string())
    }
}

/// The stand-in of the `chunk` resource.
#[derive(Debug)]
pub struct Chunk {
    pub(crate) guard: Guard,
    pub(crate) last: bool,
    pub(crate) body: RefCell<Map<String, Value>>,
}

impl Chunk {
    fn delta<R>(&self, index: u32, f: impl FnOnce(&mut Value) -> R) -> Res<R> {
        let mut body = self.body.borrow_mut();
        let choice = body.get_mut("choices").and_then(Value::as_array_mut).and_then(|c| c.get_mut(index as usize));
        let choice = choice.ok_or(AccessError::OutOfRange)?;
        if let Some(obj) = choice.as_object_mut() {
            obj.entry("delta").or_insert_with(|| Value::Object(Map::new()));
        }
        Ok(f(&mut choice["delta"]))
    }
    pub fn choice_count(&self) -> u32 {
        self.body.borrow().get("choices").and_then(Value::as_array).map_or(0, |c| c.len() as u32)
    }
    pub fn text(&self, index: u32) -> Res<Option<String>> {
        self.guard.read(&format!("$.choices[{index}].delta.content"))?;
        self.delta(index, |d| str_of(d.get("content")))
    }
    pub fn set_text(&self, index: u32, text: &str) -> Res<()> {
        self.guard.write(&format!("$.choices[{index}].delta.content"))?;
        self.guard.size(text.len())?;
        self.delta(index, |d| {
            if let Some(delta) = d.as_object_mut() {
                delta.insert("content".into(), Value::String(text.into()));
            }
        })
    }
    pub fn reasoning(&self, index: u32) -> Res<Option<String>> {
        self.guard.read(&format!("$.choices[{index}].delta.reasoning_content"))?;
        self.delta(index, |d| str_of(d.get("reasoning_content")))
    }
    pub fn refusal(&self, index: u32) -> Res<Option<String>> {
        self.guard.read(&format!("$.choices[{index}].delta.refusal"))?;
        self.delta(index, |d| str_of(d.get("refusal")))
    }
    pub fn role(&self, index: u32) -> Res<Option<Role>> {
        self.delta(index, |d| d.get("role").and_then(Value::as_str).map(parse_role))
    }
    pub fn tool_calls(&self, index: u32) -> Res<Vec<ToolCallFragment>> {
        self.guard.read(&format!("$.choices[{index}].delta.tool_calls"))?;
        self.delta(index, |d| {
            let calls = d.get("tool_calls").and_then(Value::as_array).cloned().unwrap_or_default();
            calls
                .iter()
                .enumerate()
                .map(|(i, call)| ToolCallFragment {
                    index: call.get("index").and_then(Value::as_u64).map_or(i as u32, |n| n as u32),
                    id: str_of(call.get("id")),
                    name: str_of(call.pointer("/function/name")),
                    arguments: str_of(call.pointer("/function/arguments")),
                })
                .collect()
        })
    }
    pub fn finish_reason(&self, index: u32) -> Res<Option<String>> {
        let body = self.body.borrow();
        let choice = body.get("choices").and_then(Value::as_array).and_then(|c| c.get(index as usize));
        choice.map(|c| str_of(c.get("finish_reason"))).ok_or(AccessError::OutOfRange)
    }
    pub fn usage(&self) -> Option<Usage> {
        usage_of(self.body.borrow().get("usage"))
    }
    pub fn to_json(&self) -> Res<String> {
        self.guard.read("$")?;
        Ok(Value::Object(self.body.borrow().clone()).to_string())
    }
    pub fn last(&self) -> bool {
        self.last
    }
}

/// The stand-in of the `stream-end` resource.
#[derive(Debug)]
pub struct StreamEnd {
    pub(crate) guard: Guard,
    pub(crate) usage: Option<Usage>,
    pub(crate) template: CompletionChunk,
    pub(crate) appended: RefCell<Vec<CompletionChunk>>,
}

impl StreamEnd {
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
    pub fn append_text(&self, text: &str) -> Res<()> {
        let chunk = CompletionChunk::text(&self.template.id, &self.template.model, text);
        self.push(chunk)
    }
    pub fn append_json(&self, json: &str) -> Res<()> {
        let chunk = CompletionChunk::from_json(json)
            .map_err(|e| AccessError::Invalid(format!("not a `chat.completion.chunk`: {e}")))?;
        self.push(chunk)
    }
    fn push(&self, chunk: CompletionChunk) -> Res<()> {
        self.guard.write("$.choices")?;
        self.guard.size(chunk.to_json().len())?;
        self.appended.borrow_mut().push(chunk);
        Ok(())
    }
}

/// The stand-in of the `tool-call-ref` resource.
#[derive(Debug)]
pub struct ToolCallRef {
    pub(crate) guard: Guard,
    pub(crate) id: String,
    pub(crate) name: RefCell<String>,
    pub(crate) arguments: RefCell<String>,
}

impl ToolCallRef {
    pub fn id(&self) -> String {
        self.id.clone()
    }
    pub fn name(&self) -> String {
        self.name.borrow().clone()
    }
    pub fn arguments(&self) -> Res<String> {
        self.guard.read("$.function.arguments")?;
        Ok(self.arguments.borrow().clone())
    }
    pub fn set_arguments(&self, json: &str) -> Res<()> {
        self.guard.write("$.function.arguments")?;
        self.guard.size(json.len())?;
        parse_json(json)?;
        *self.arguments.borrow_mut() = json.into();
        Ok(())
    }
    pub fn set_name(&self, name: &str) -> Res<()> {
        self.guard.write("$.function.name")?;
        self.guard.size(name.len())?;
        *self.name.borrow_mut() = name.into();
        Ok(())
    }
}
