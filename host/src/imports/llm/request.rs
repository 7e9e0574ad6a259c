//! Resource `request`: the request of one hook call, editable in
//! `pre-request` only.

use std::borrow::Cow;
use std::sync::Arc;

use super::{CallRules, Draft, RequestInfo, invalid, json, openai_role, parse_param, wit_role};
use crate::bindings::types::{self as wit, AccessError};
use crate::budget::{ELEMENT_COST, MAX_MESSAGES};
use crate::openai::{ChatMessage, ChatRequest};

/// Calls `$with!(...)` with the request's typed optional fields (all but
/// `model`, `messages` and `tools`).
macro_rules! request_fields {
    ($with:ident) => {
        $with!(
            tool_choice,
            parallel_tool_calls,
            stream,
            stream_options,
            temperature,
            top_p,
            n,
            max_tokens,
            max_completion_tokens,
            stop,
            presence_penalty,
            frequency_penalty,
            logit_bias,
            logprobs,
            top_logprobs,
            seed,
            response_format,
            reasoning_effort,
            verbosity,
            modalities,
            audio,
            prediction,
            web_search_options,
            metadata,
            store,
            service_tier,
            user,
            safety_identifier,
            prompt_cache_key,
            functions,
            function_call
        )
    };
}

/// One top-level field of a request, other than `messages` and `tools`, as
/// JSON, without serialising the messages.
fn request_param(r: &ChatRequest, name: &str) -> Option<String> {
    macro_rules! read {
        ($($field:ident),*) => {
            match name {
                "model" => Some(json(&r.model)),
                $(stringify!($field) => r.$field.as_ref().map(json),)*
                _ => r.extra.get(name).map(json),
            }
        };
    }
    request_fields!(read)
}

/// Whether `name` is a field the request type models (set through its
/// typed field, checked against its type) rather than one kept in `extra`.
fn is_typed_request_field(name: &str) -> bool {
    macro_rules! typed {
        ($($field:ident),*) => {
            matches!(name, "model" | "messages" | "tools" $(| stringify!($field))*)
        };
    }
    request_fields!(typed)
}

/// Top-level fields of a request that plugins read but never change: the
/// host (or the gateway) decided them, and they change what it receives.
pub(crate) const HOST_OWNED: [&str; 2] = ["stream", "stream_options"];

/// The request of one hook call (resource `request`).
#[derive(Debug)]
pub struct RequestEntry {
    pub(crate) data: Draft<ChatRequest>,
    pub(crate) info: Arc<RequestInfo>,
    /// Edits allowed (`pre-request` only).
    pub(crate) editable: bool,
}

impl RequestEntry {
    /// An entry over `base`, editable when `editable`.
    pub(crate) fn new(base: Arc<ChatRequest>, info: Arc<RequestInfo>, editable: bool) -> Self {
        RequestEntry { data: Draft::new(base), info, editable }
    }

    fn message(&self, index: u32) -> Result<&ChatMessage, AccessError> {
        self.data.get().messages.get(index as usize).ok_or(AccessError::OutOfRange)
    }

    fn check_index(&self, index: u32) -> Result<(), AccessError> {
        self.message(index).map(drop)
    }

    pub(crate) fn role(&self, index: u32) -> Result<wit::Role, AccessError> {
        self.message(index).map(|m| wit_role(&m.role))
    }

    pub(crate) fn text(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        let m = self.message(index)?;
        rules.read(&format_args!("$.messages[{index}].content"))?;
        Ok(m.text().map(Cow::into_owned))
    }

    pub(crate) fn set_text(&mut self, rules: &mut CallRules, index: u32, text: String) -> Result<(), AccessError> {
        self.check_index(index)?;
        let path = format_args!("$.messages[{index}].content");
        rules.write(self.editable, "request", &path)?;
        rules.charge(&path, text.len())?;
        self.data.edit().messages[index as usize].set_text(text);
        Ok(())
    }

    pub(crate) fn message_json(&self, rules: &mut CallRules, index: u32) -> Result<String, AccessError> {
        let m = self.message(index)?;
        rules.read(&format_args!("$.messages[{index}]"))?;
        Ok(json(m))
    }

    fn insert(&mut self, rules: &mut CallRules, index: u32, bytes: usize) -> Result<(), AccessError> {
        let count = self.data.get().messages.len();
        if index as usize > count {
            return Err(AccessError::OutOfRange);
        }
        let path = format_args!("$.messages[{index}]");
        rules.write(self.editable, "request", &path)?;
        rules.count(&"$.messages", count + 1, MAX_MESSAGES)?;
        rules.charge(&path, bytes + ELEMENT_COST as usize)
    }

    pub(crate) fn insert_message(
        &mut self,
        rules: &mut CallRules,
        index: u32,
        role: wit::Role,
        text: String,
    ) -> Result<(), AccessError> {
        let Some(role) = openai_role(role) else {
            return Err(invalid("role `other` cannot be inserted by name: use insert-message-json"));
        };
        self.insert(rules, index, text.len())?;
        self.data.edit().messages.insert(index as usize, ChatMessage::new(role, text));
        Ok(())
    }

    pub(crate) fn insert_message_json(
        &mut self,
        rules: &mut CallRules,
        index: u32,
        text: String,
    ) -> Result<(), AccessError> {
        self.insert(rules, index, text.len())?;
        let m: ChatMessage = serde_json::from_str(&text)
            .map_err(|e| invalid(format_args!("`$.messages[{index}]` is not a valid message: {e}")))?;
        self.data.edit().messages.insert(index as usize, m);
        Ok(())
    }

    pub(crate) fn remove_message(&mut self, rules: &mut CallRules, index: u32) -> Result<(), AccessError> {
        self.check_index(index)?;
        rules.write(self.editable, "request", &format_args!("$.messages[{index}]"))?;
        if self.data.get().messages.len() == 1 {
            return Err(invalid("`$.messages` cannot be left empty: a request needs a message"));
        }
        self.data.edit().messages.remove(index as usize);
        Ok(())
    }

    pub(crate) fn tools_json(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$.tools")?;
        Ok(json(self.data.get().tools()))
    }

    fn own_methods(name: &str) -> Result<(), AccessError> {
        match name {
            "messages" | "tools" => {
                Err(invalid(format_args!("`$.{name}` is read and changed through its own methods, not as a parameter")))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn param(&self, name: &str) -> Result<Option<String>, AccessError> {
        Self::own_methods(name)?;
        Ok(request_param(self.data.get(), name))
    }

    pub(crate) fn set_model(&mut self, rules: &mut CallRules, model: String) -> Result<(), AccessError> {
        rules.edit(self.editable, "request", &"$.model")?;
        rules.charge(&"$.model", model.len())?;
        self.data.edit().model = model;
        Ok(())
    }

    pub(crate) fn set_param(
        &mut self,
        rules: &mut CallRules,
        name: &str,
        value: Option<String>,
    ) -> Result<(), AccessError> {
        Self::own_methods(name)?;
        let path = format_args!("$.{name}");
        rules.edit(self.editable, "request", &path)?;
        if HOST_OWNED.contains(&name) {
            return Err(rules.deny(format!(
                "`{path}` is host-owned (the caller decides whether and how the response is streamed): \
                 the change is refused"
            )));
        }
        rules.charge(&path, name.len() + value.as_ref().map_or(0, String::len))?;
        let value = parse_param(name, value.as_deref())?;
        let r = self.data.edit();
        if !is_typed_request_field(name) {
            // Kept verbatim in `extra`: no conversion, whatever its size.
            match value {
                Some(v) => r.extra.insert(name.to_string(), v),
                None => r.extra.shift_remove(name),
            };
            return Ok(());
        }
        // Set on the body without its messages and tools (which the
        // parameter cannot touch), so that their size does not matter.
        let messages = std::mem::take(&mut r.messages);
        let tools = r.tools.take();
        let set = r.set_param(name, value);
        r.messages = messages;
        r.tools = tools;
        set.map_err(invalid)
    }

    pub(crate) fn to_json(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$")?;
        Ok(json(self.data.get()))
    }
}
