//! Resource `tool-call-ref`: the tool call of one `on-tool-call` call.

use std::sync::Arc;

use super::{CallRules, Draft, invalid};
use crate::bindings::types::AccessError;
use crate::openai::ToolCall;

/// The tool call of one `on-tool-call` call (resource `tool-call-ref`).
#[derive(Debug)]
pub struct ToolCallEntry {
    pub(crate) data: Draft<ToolCall>,
    /// Edits allowed (`on-tool-call`).
    pub(crate) editable: bool,
}

impl ToolCallEntry {
    /// An entry over `base`.
    pub(crate) fn new(base: Arc<ToolCall>) -> Self {
        ToolCallEntry { data: Draft::new(base), editable: true }
    }

    pub(crate) fn arguments(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$.function.arguments")?;
        Ok(self.data.get().function.arguments.clone())
    }

    pub(crate) fn set_arguments(&mut self, rules: &mut CallRules, text: String) -> Result<(), AccessError> {
        let path = "$.function.arguments";
        rules.write(self.editable, "tool call", &path)?;
        rules.charge(&path, text.len())?;
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| invalid(format_args!("`{path}` is not valid JSON: {e}")))?;
        // Valid JSON that starts with `{` is an object.
        if !text.trim_start().starts_with('{') {
            return Err(invalid(format_args!("`{path}` must be a JSON object (the function's named arguments)")));
        }
        self.data.edit().function.arguments = text;
        Ok(())
    }

    pub(crate) fn set_name(&mut self, rules: &mut CallRules, name: String) -> Result<(), AccessError> {
        let path = "$.function.name";
        rules.write(self.editable, "tool call", &path)?;
        rules.charge(&path, name.len())?;
        if !is_function_name(&name) {
            return Err(invalid(format_args!(
                "`{path}` must be 1 to 64 letters, digits, `_` or `-` (the rule for function names)"
            )));
        }
        self.data.edit().function.name = name;
        Ok(())
    }
}

/// Whether `name` is a function name as OpenAI defines it: 1 to 64 ASCII
/// letters, digits, `_` or `-`.
pub(crate) fn is_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
