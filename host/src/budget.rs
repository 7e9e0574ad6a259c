//! [`OutputBudget`]: the one meter for everything a plugin hands to the host in
//! one call. Every text, every list element and every nested value a hook
//! returns is charged here, by JSON path, against the plugin's `max-output`
//! limit; the first charge that does not fit fails the call with an error that
//! names the field and the limit.
//!
//! Charging happens before the host keeps anything, so an oversized answer is
//! refused whole and cannot push the next plugin in a chain past its limits.
//!
//! What is charged, for every hook family:
//!
//! - every string field at its length in bytes (model names, ids, message
//!   names, tool names and descriptions, `extra`, finish reasons, error
//!   messages, the `err` text a hook returns, denial reasons, tool answers);
//! - [`ELEMENT_COST`] bytes per record (a message, a choice, a tool, a tool
//!   call, a chunk), which covers its fixed-size fields (role, index, usage,
//!   numbers), so that many empty elements cost something;
//! - on top of the bytes, every list has a count cap that holds whatever
//!   `max-output` is: [`MAX_MESSAGES`], [`MAX_CHOICES`], [`MAX_TOOLS`],
//!   [`MAX_TOOL_CALLS`], [`MAX_END_CHUNKS`], [`MAX_STREAM_CHUNKS`].
//!
//! A provider stream is charged chunk by chunk against one budget per stream,
//! so its cumulative size is bounded by the provider's `max-output` too.

use std::fmt::Display;

use crate::bindings::types::{LlmError, Message, Request, Response, StreamChunk, ToolCall, ToolDefinition};

/// Bytes charged for each element of a list, on top of its contents, so that
/// 300,000 empty messages cost something.
pub const ELEMENT_COST: u64 = 16;

/// Most messages a request a plugin returns may hold.
pub const MAX_MESSAGES: usize = 10_000;
/// Most choices a response a plugin returns may hold.
pub const MAX_CHOICES: usize = 128;
/// Most tool definitions a request a plugin returns may hold.
pub const MAX_TOOLS: usize = 512;
/// Most tool calls one message or one chunk may hold.
pub const MAX_TOOL_CALLS: usize = 512;
/// Most chunks one `on-stream-end` answer may append.
pub const MAX_END_CHUNKS: usize = 1_024;
/// Most chunks one provider stream may produce.
pub const MAX_STREAM_CHUNKS: usize = 100_000;

/// Remaining output allowance of one hook call.
#[derive(Debug, Clone)]
pub struct OutputBudget {
    limit: u64,
    used: u64,
}

impl OutputBudget {
    /// A budget of `limit` bytes (the plugin's `max-output`).
    pub fn new(limit: u64) -> Self {
        OutputBudget { limit, used: 0 }
    }

    /// Bytes charged so far (what the unit tests check).
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Charges `bytes` for the field at `path` (a JSON path such as
    /// `$.messages[3].content`).
    pub fn charge(&mut self, path: &dyn Display, bytes: u64) -> Result<(), String> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(format!(
                "output exceeds the plugin's max-output of {} bytes at `{path}` ({} bytes so far)",
                self.limit, self.used
            ));
        }
        Ok(())
    }

    /// Charges a string field.
    pub fn text(&mut self, path: &dyn Display, text: &str) -> Result<(), String> {
        self.charge(path, text.len() as u64)
    }

    /// Charges an optional string field.
    pub fn opt_text(&mut self, path: &dyn Display, text: Option<&str>) -> Result<(), String> {
        text.map_or(Ok(()), |t| self.text(path, t))
    }

    /// Charges `n` list elements at `path` ([`ELEMENT_COST`] each) and refuses
    /// more than `max` of them.
    pub fn elements(&mut self, path: &dyn Display, n: usize, max: usize) -> Result<(), String> {
        if n > max {
            return Err(format!("`{path}` has {n} elements; at most {max} are accepted"));
        }
        self.charge(path, n as u64 * ELEMENT_COST)
    }

    /// Charges a text that must be valid JSON (a tool answer, `extra`) and
    /// checks that it is.
    pub fn json(&mut self, path: &dyn Display, text: &str) -> Result<serde_json::Value, String> {
        self.text(path, text)?;
        serde_json::from_str(text).map_err(|e| format!("`{path}` is not valid JSON: {e}"))
    }

    /// Charges an optional `extra` field, which must be a JSON object.
    pub fn extra(&mut self, path: &dyn Display, extra: Option<&str>) -> Result<(), String> {
        match extra {
            None => Ok(()),
            Some(text) => match self.json(path, text)? {
                serde_json::Value::Object(_) => Ok(()),
                _ => Err(format!("`{path}` must be a JSON object")),
            },
        }
    }

    /// Charges a tool call at `path`.
    pub fn tool_call(&mut self, path: &dyn Display, call: &ToolCall) -> Result<(), String> {
        self.charge(path, ELEMENT_COST)?;
        self.text(&format_args!("{path}.id"), &call.id)?;
        self.text(&format_args!("{path}.name"), &call.name)?;
        self.text(&format_args!("{path}.arguments"), &call.arguments)
    }

    fn tool_calls(&mut self, path: &dyn Display, calls: &[ToolCall]) -> Result<(), String> {
        self.elements(&format_args!("{path}.tool_calls"), calls.len(), MAX_TOOL_CALLS)?;
        for (i, c) in calls.iter().enumerate() {
            self.tool_call(&format_args!("{path}.tool_calls[{i}]"), c)?;
        }
        Ok(())
    }

    /// Charges a message at `path`: its content, name, tool calls and
    /// tool-call id.
    pub fn message(&mut self, path: &dyn Display, m: &Message) -> Result<(), String> {
        self.text(&format_args!("{path}.content"), &m.content)?;
        self.opt_text(&format_args!("{path}.name"), m.name.as_deref())?;
        self.opt_text(&format_args!("{path}.tool_call_id"), m.tool_call_id.as_deref())?;
        self.tool_calls(path, &m.tool_calls)
    }

    fn tool(&mut self, path: &dyn Display, t: &ToolDefinition) -> Result<(), String> {
        self.text(&format_args!("{path}.name"), &t.name)?;
        self.text(&format_args!("{path}.description"), &t.description)?;
        self.text(&format_args!("{path}.parameters"), &t.parameters)
    }

    /// Charges a whole request (what `modify` hands back), and checks that its
    /// `extra` is a JSON object.
    pub fn request(&mut self, r: &Request) -> Result<(), String> {
        self.text(&"$.model", &r.model)?;
        self.elements(&"$.messages", r.messages.len(), MAX_MESSAGES)?;
        self.elements(&"$.tools", r.tools.len(), MAX_TOOLS)?;
        self.extra(&"$.extra", r.extra.as_deref())?;
        for (i, m) in r.messages.iter().enumerate() {
            self.message(&format_args!("$.messages[{i}]"), m)?;
        }
        for (i, t) in r.tools.iter().enumerate() {
            self.tool(&format_args!("$.tools[{i}]"), t)?;
        }
        Ok(())
    }

    /// Charges a whole response (what `respond` or a provider hands back), and
    /// checks that its `extra` is a JSON object.
    pub fn response(&mut self, r: &Response) -> Result<(), String> {
        self.text(&"$.id", &r.id)?;
        self.text(&"$.model", &r.model)?;
        self.elements(&"$.choices", r.choices.len(), MAX_CHOICES)?;
        self.extra(&"$.extra", r.extra.as_deref())?;
        for (i, c) in r.choices.iter().enumerate() {
            self.opt_text(&format_args!("$.choices[{i}].finish_reason"), c.finish_reason.as_deref())?;
            self.message(&format_args!("$.choices[{i}].message"), &c.message)?;
        }
        Ok(())
    }

    /// Charges an error a hook or a provider reports (`fail`, a provider's `err`).
    pub fn llm_error(&mut self, path: &dyn Display, e: &LlmError) -> Result<(), String> {
        self.text(&format_args!("{path}.message"), &e.message)
    }

    /// Charges one stream chunk at `path` (one element).
    pub fn chunk(&mut self, path: &dyn Display, c: &StreamChunk) -> Result<(), String> {
        self.charge(path, ELEMENT_COST)?;
        self.opt_text(&format_args!("{path}.content"), c.content.as_deref())?;
        self.opt_text(&format_args!("{path}.finish_reason"), c.finish_reason.as_deref())?;
        self.tool_calls(path, &c.tool_calls)
    }

    /// Charges the chunks one `on-stream-end` answer appends.
    pub fn end_chunks(&mut self, chunks: &[StreamChunk]) -> Result<(), String> {
        self.elements(&"$", chunks.len(), MAX_END_CHUNKS)?;
        for (i, c) in chunks.iter().enumerate() {
            self.chunk(&format_args!("$[{i}]"), c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_and_name_the_field() {
        let mut b = OutputBudget::new(10);
        b.text(&"$.model", "12345").unwrap();
        let e = b.text(&"$.messages[0].content", "123456").unwrap_err();
        assert!(e.contains("`$.messages[0].content`"), "{e}");
        assert!(e.contains("max-output of 10 bytes"), "{e}");
    }

    #[test]
    fn empty_elements_cost_something() {
        let mut b = OutputBudget::new(ELEMENT_COST * 3);
        b.elements(&"$.messages", 3, 100).unwrap();
        assert!(b.elements(&"$.tools", 1, 100).is_err());
        let mut b = OutputBudget::new(u64::MAX);
        assert!(b.elements(&"$.messages", 101, 100).unwrap_err().contains("at most 100"));
    }

    fn msg(content: &str) -> Message {
        Message {
            role: crate::bindings::types::Role::User,
            content: content.into(),
            name: None,
            tool_calls: vec![],
            tool_call_id: None,
        }
    }

    fn req(messages: Vec<Message>) -> Request {
        Request {
            model: "m".into(),
            messages,
            temperature: None,
            max_tokens: None,
            stream: false,
            tools: vec![],
            extra: None,
        }
    }

    #[test]
    fn every_request_field_is_charged_by_path() {
        let big = "x".repeat(2048);
        let mut r = req(vec![msg("hi")]);
        r.model = big.clone();
        assert!(OutputBudget::new(1024).request(&r).unwrap_err().contains("`$.model`"));
        let mut r = req(vec![msg("hi")]);
        r.messages[0].name = Some(big.clone());
        assert!(OutputBudget::new(1024).request(&r).unwrap_err().contains("`$.messages[0].name`"));
        let mut r = req(vec![msg("hi")]);
        r.extra = Some(format!("{{\"k\":\"{big}\"}}"));
        assert!(OutputBudget::new(1024).request(&r).unwrap_err().contains("`$.extra`"));
        let mut r = req(vec![msg("hi")]);
        r.tools = vec![ToolDefinition { name: "t".into(), description: big.clone(), parameters: "{}".into() }];
        assert!(OutputBudget::new(1024).request(&r).unwrap_err().contains("`$.tools[0].description`"));
        let mut r = req(vec![msg("hi")]);
        r.messages[0].tool_calls = vec![ToolCall { id: "1".into(), name: "f".into(), arguments: big }];
        let e = OutputBudget::new(1024).request(&r).unwrap_err();
        assert!(e.contains("`$.messages[0].tool_calls[0].arguments`"), "{e}");
        OutputBudget::new(1024).request(&req(vec![msg("hi")])).unwrap();
    }

    #[test]
    fn many_empty_messages_are_refused_whatever_the_limit() {
        let r = req(vec![msg(""); 300_000]);
        assert!(OutputBudget::new(1024).request(&r).unwrap_err().contains("`$.messages` has 300000 elements"));
        assert!(OutputBudget::new(u64::MAX).request(&r).is_err());
    }

    #[test]
    fn extra_and_answers_must_be_json() {
        assert!(OutputBudget::new(1024).extra(&"$.extra", Some("[1]")).unwrap_err().contains("JSON object"));
        assert!(OutputBudget::new(1024).extra(&"$.extra", Some("{")).unwrap_err().contains("not valid JSON"));
        assert!(OutputBudget::new(1024).json(&"$.answer", "not json").unwrap_err().contains("`$.answer`"));
        OutputBudget::new(1024).json(&"$.answer", r#"{"ok":true}"#).unwrap();
    }

    #[test]
    fn chunks_count_their_tool_calls_and_text() {
        let chunk = |content: &str, calls: usize| StreamChunk {
            index: 0,
            role: None,
            content: Some(content.into()),
            tool_calls: vec![ToolCall { id: String::new(), name: String::new(), arguments: String::new() }; calls],
            finish_reason: None,
            usage: None,
        };
        let e = OutputBudget::new(u64::MAX).chunk(&"$", &chunk("", MAX_TOOL_CALLS + 1)).unwrap_err();
        assert!(e.contains("`$.tool_calls`"), "{e}");
        let e = OutputBudget::new(1024).end_chunks(&vec![chunk("x", 0); 100]).unwrap_err();
        assert!(e.contains("max-output of 1024 bytes"), "{e}");
        assert!(OutputBudget::new(u64::MAX).end_chunks(&vec![chunk("", 0); MAX_END_CHUNKS + 1]).is_err());
    }
}
