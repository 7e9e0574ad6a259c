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
//!
//! What a hook passes on exactly as it was shown (a request's model, `extra`,
//! a message or tool at the same position; a response's id, model, `extra`, a
//! choice) costs only its element: the host held it already. A plugin is
//! charged for what it adds or changes.

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

/// Deepest nesting of arrays and objects a JSON text a plugin hands back may
/// have (what `serde_json` accepts when it builds values).
pub const MAX_JSON_DEPTH: usize = 128;

/// The deepest nesting of arrays and objects in `text` (brackets inside
/// strings do not count), in one pass that allocates nothing.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

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
    /// checks that it is. The check builds nothing (no value per JSON
    /// element), so a text of many tiny values costs the host no more than
    /// its bytes; nesting deeper than 128 levels is refused.
    pub fn json(&mut self, path: &dyn Display, text: &str) -> Result<(), String> {
        self.text(path, text)?;
        if json_depth(text) > MAX_JSON_DEPTH {
            return Err(format!(
                "`{path}` is not valid JSON: recursion limit exceeded (nested past {MAX_JSON_DEPTH} levels)"
            ));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map(drop)
            .map_err(|e| format!("`{path}` is not valid JSON: {e}"))
    }

    /// Charges an optional `extra` field, which must be a JSON object.
    pub fn extra(&mut self, path: &dyn Display, extra: Option<&str>) -> Result<(), String> {
        match extra {
            None => Ok(()),
            Some(text) => {
                self.json(path, text)?;
                match text.trim_start().starts_with('{') {
                    true => Ok(()),
                    false => Err(format!("`{path}` must be a JSON object")),
                }
            }
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

    /// Charges a whole request, and checks that its `extra` is a JSON object.
    #[cfg(test)]
    pub fn request(&mut self, r: &Request) -> Result<(), String> {
        self.request_changes(None, r)
    }

    /// Charges the request a `modify` hands back against `seen`, the request
    /// the plugin was shown: a field (the model, `extra`, a message or a tool
    /// at the same position) passed on exactly as shown costs nothing beyond
    /// its element, since the host already held it. So a plugin that passes on
    /// what an earlier plugin filled up to its own `max-output` is not pushed
    /// past a smaller one. Element counts are always checked.
    pub fn request_changes(&mut self, seen: Option<&Request>, r: &Request) -> Result<(), String> {
        if seen.is_none_or(|s| s.model != r.model) {
            self.text(&"$.model", &r.model)?;
        }
        self.elements(&"$.messages", r.messages.len(), MAX_MESSAGES)?;
        self.elements(&"$.tools", r.tools.len(), MAX_TOOLS)?;
        if seen.is_none_or(|s| s.extra != r.extra) {
            self.extra(&"$.extra", r.extra.as_deref())?;
        }
        for (i, m) in r.messages.iter().enumerate() {
            if seen.and_then(|s| s.messages.get(i)) != Some(m) {
                self.message(&format_args!("$.messages[{i}]"), m)?;
            }
        }
        for (i, t) in r.tools.iter().enumerate() {
            if seen.and_then(|s| s.tools.get(i)) != Some(t) {
                self.tool(&format_args!("$.tools[{i}]"), t)?;
            }
        }
        Ok(())
    }

    /// Charges a whole response (what `respond` or a provider hands back), and
    /// checks that its `extra` is a JSON object.
    pub fn response(&mut self, r: &Response) -> Result<(), String> {
        self.response_changes(None, r)
    }

    /// Charges a response a post hook hands back against `seen`, the response
    /// it was shown, as [`request_changes`](Self::request_changes) does.
    pub fn response_changes(&mut self, seen: Option<&Response>, r: &Response) -> Result<(), String> {
        if seen.is_none_or(|s| s.id != r.id) {
            self.text(&"$.id", &r.id)?;
        }
        if seen.is_none_or(|s| s.model != r.model) {
            self.text(&"$.model", &r.model)?;
        }
        self.elements(&"$.choices", r.choices.len(), MAX_CHOICES)?;
        if seen.is_none_or(|s| s.extra != r.extra) {
            self.extra(&"$.extra", r.extra.as_deref())?;
        }
        for (i, c) in r.choices.iter().enumerate() {
            if seen.and_then(|s| s.choices.get(i)) == Some(c) {
                continue;
            }
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
        assert!(OutputBudget::new(1024).extra(&"$.extra", Some(" \"{}\"")).unwrap_err().contains("JSON object"));
        OutputBudget::new(1024).extra(&"$.extra", Some(" {\"a\":[1,{}]}")).unwrap();
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        let e = OutputBudget::new(1 << 20).extra(&"$.extra", Some(&deep)).unwrap_err();
        assert!(e.contains("recursion limit"), "{e}");
        let at_limit = format!("{}{}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        OutputBudget::new(1 << 20).json(&"$.answer", &at_limit).unwrap();
        assert_eq!(json_depth(r#"{"a":"[[[[\"{{"}"#), 1, "brackets in strings do not count");
        let wide = format!("{{\"a\":[0{}]}}", ",0".repeat(1 << 20));
        OutputBudget::new(4 << 20).extra(&"$.extra", Some(&wide)).unwrap();
    }

    #[test]
    fn what_is_passed_on_unchanged_costs_only_its_element() {
        let mut seen = req(vec![msg("hello"), msg("world")]);
        seen.extra = Some(format!("{{\"k\":\"{}\"}}", "x".repeat(4096)));
        let mut b = OutputBudget::new(1024);
        b.request_changes(Some(&seen), &seen).unwrap();
        assert_eq!(b.used(), 2 * ELEMENT_COST, "only the two messages' elements");
        let mut changed = seen.clone();
        changed.messages[1].content = "world!".into();
        let mut b = OutputBudget::new(1024);
        b.request_changes(Some(&seen), &changed).unwrap();
        assert_eq!(b.used(), 2 * ELEMENT_COST + 6);
        changed.extra = Some("{}".into());
        let mut b = OutputBudget::new(1024);
        b.request_changes(Some(&seen), &changed).unwrap();
        assert_eq!(b.used(), 2 * ELEMENT_COST + 6 + 2);
        let mut b = OutputBudget::new(1024);
        assert!(b.request(&seen).unwrap_err().contains("`$.extra`"), "charged whole without `seen`");
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
