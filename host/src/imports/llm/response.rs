//! Resource `response`: the response (or error) of one `post-response`
//! call.

use std::borrow::Cow;
use std::sync::Arc;

use super::{CallRules, Draft, invalid, json, parse_param, wit_tool_call};
use crate::bindings::types::{self as wit, AccessError, LlmError};
use crate::openai::ChatResponse;

/// One top-level field of a response, other than `choices`, as JSON.
fn response_param(r: &ChatResponse, name: &str) -> Option<String> {
    match name {
        "id" => Some(json(&r.id)),
        "object" => Some(json(&r.object)),
        "created" => Some(json(&r.created)),
        "model" => Some(json(&r.model)),
        "usage" => r.usage.as_ref().map(json),
        "system_fingerprint" => r.system_fingerprint.as_ref().map(json),
        "service_tier" => r.service_tier.as_ref().map(json),
        _ => r.extra.get(name).map(json),
    }
}

/// The response of one `post-response` call (resource `response`), or the
/// error the request failed with.
#[derive(Debug)]
pub struct ResponseEntry {
    pub(crate) data: Draft<ChatResponse>,
    pub(crate) error: Option<LlmError>,
    /// Edits allowed (`post-response`).
    pub(crate) editable: bool,
}

impl ResponseEntry {
    /// An entry over a successful response.
    pub(crate) fn new(base: Arc<ChatResponse>, editable: bool) -> Self {
        ResponseEntry { data: Draft::new(base), error: None, editable }
    }

    /// An entry over an error outcome: no choices; edits to its other
    /// fields are allowed and discarded (the outcome stays the error unless
    /// the hook answers with `respond`).
    pub(crate) fn failed(error: LlmError, empty: Arc<ChatResponse>) -> Self {
        ResponseEntry { data: Draft::new(empty), error: Some(error), editable: true }
    }

    fn choice(&self, index: u32) -> Result<&crate::openai::Choice, AccessError> {
        self.data.get().choices.get(index as usize).ok_or(AccessError::OutOfRange)
    }

    pub(crate) fn text(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        let c = self.choice(index)?;
        rules.read(&format_args!("$.choices[{index}].message.content"))?;
        Ok(c.message.text().map(Cow::into_owned))
    }

    pub(crate) fn set_text(&mut self, rules: &mut CallRules, index: u32, text: String) -> Result<(), AccessError> {
        self.choice(index)?;
        let path = format_args!("$.choices[{index}].message.content");
        rules.write(self.editable, "response", &path)?;
        rules.charge(&path, text.len())?;
        self.data.edit().choices[index as usize].message.set_text(text);
        Ok(())
    }

    pub(crate) fn refusal(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        let c = self.choice(index)?;
        rules.read(&format_args!("$.choices[{index}].message.refusal"))?;
        Ok(c.message.refusal().map(str::to_string))
    }

    pub(crate) fn finish_reason(&self, index: u32) -> Result<Option<String>, AccessError> {
        Ok(self.choice(index)?.finish_reason().map(str::to_string))
    }

    pub(crate) fn tool_calls(&self, rules: &mut CallRules, index: u32) -> Result<Vec<wit::ToolCall>, AccessError> {
        let c = self.choice(index)?;
        rules.read(&format_args!("$.choices[{index}].message.tool_calls"))?;
        Ok(c.message.tool_calls().iter().map(wit_tool_call).collect())
    }

    fn own_methods(name: &str) -> Result<(), AccessError> {
        match name {
            "choices" => Err(invalid("`$.choices` is read and changed through its own methods, not as a parameter")),
            _ => Ok(()),
        }
    }

    pub(crate) fn param(&self, name: &str) -> Result<Option<String>, AccessError> {
        Self::own_methods(name)?;
        Ok(response_param(self.data.get(), name))
    }

    pub(crate) fn set_param(
        &mut self,
        rules: &mut CallRules,
        name: &str,
        value: Option<String>,
    ) -> Result<(), AccessError> {
        Self::own_methods(name)?;
        let path = format_args!("$.{name}");
        rules.edit(self.editable, "response", &path)?;
        rules.charge(&path, name.len() + value.as_ref().map_or(0, String::len))?;
        let value = parse_param(name, value.as_deref())?;
        let r = self.data.edit();
        if !matches!(name, "id" | "object" | "created" | "model" | "usage" | "system_fingerprint" | "service_tier") {
            match value {
                Some(v) => r.extra.insert(name.to_string(), v),
                None => r.extra.shift_remove(name),
            };
            return Ok(());
        }
        let choices = std::mem::take(&mut r.choices);
        let set = r.set_param(name, value);
        r.choices = choices;
        set.map_err(invalid)
    }

    pub(crate) fn to_json(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$")?;
        Ok(json(self.data.get()))
    }
}
