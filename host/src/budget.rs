//! [`OutputBudget`]: the one meter for everything a plugin hands to the host in
//! one call. Every edit a hook makes through the `llm` resources, every text
//! and JSON value it returns (a `respond` body, an error message, a denial
//! reason, a tool answer, the `err` text) is charged here, by JSON path,
//! against the plugin's `max-output` limit; the first charge that does not
//! fit is refused with an error that names the field and the limit.
//!
//! Charging happens before the host keeps anything, so an oversized edit is
//! refused whole and cannot push the next plugin in a chain past its limits.
//!
//! What is charged:
//!
//! - an edit, at the bytes it adds: a new text, model, parameter value or
//!   tool-call argument at its length; an inserted message or an appended
//!   chunk at its text (or JSON) plus [`ELEMENT_COST`];
//! - a returned text or JSON body at its length;
//! - on top of the bytes, lists have count caps that hold whatever
//!   `max-output` is: [`MAX_MESSAGES`] (inserts), [`MAX_END_CHUNKS`] (appends
//!   at the end of a stream), [`MAX_STREAM_CHUNKS`] (one provider stream).
//!
//! A provider's answer (its response, each chunk of its stream) is charged
//! the same way: a stream chunk by chunk against one budget per stream.
//! What a plugin passes on unchanged costs nothing: the host held it already.

use std::fmt::Display;

use crate::bindings::types::LlmError;

/// Bytes charged for each element of a list, on top of its contents, so that
/// 300,000 empty messages cost something.
pub const ELEMENT_COST: u64 = 16;

/// Most messages a request may hold after a plugin's inserts.
pub const MAX_MESSAGES: usize = 10_000;
/// Most chunks one `on-stream-end` answer may append.
pub const MAX_END_CHUNKS: usize = 1_024;
/// Most choices a response or a chunk may have, and the bound of a choice's
/// `index` in a chunk: the largest `n` a request may ask for.
pub const MAX_CHOICES: usize = 128;
/// Most chunks one provider stream may produce.
pub const MAX_STREAM_CHUNKS: usize = 100_000;

/// Deepest nesting of arrays and objects a JSON text a plugin hands back may
/// have (what `serde_json` accepts when it builds values).
pub const MAX_JSON_DEPTH: usize = 128;

/// The deepest nesting of arrays and objects in `text` (brackets inside
/// strings do not count), in one pass that allocates nothing.
pub(crate) fn json_depth(text: &str) -> usize {
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

    /// The limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
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

    /// Charges an error a hook or a provider reports (`fail`, a provider's `err`).
    pub fn llm_error(&mut self, path: &dyn Display, e: &LlmError) -> Result<(), String> {
        self.text(&format_args!("{path}.message"), &e.message)
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

    #[test]
    fn answers_must_be_json() {
        assert!(OutputBudget::new(1024).json(&"$.answer", "not json").unwrap_err().contains("`$.answer`"));
        OutputBudget::new(1024).json(&"$.answer", r#"{"ok":true}"#).unwrap();
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        let e = OutputBudget::new(1 << 20).json(&"$.answer", &deep).unwrap_err();
        assert!(e.contains("recursion limit"), "{e}");
        let at_limit = format!("{}{}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        OutputBudget::new(1 << 20).json(&"$.answer", &at_limit).unwrap();
        assert_eq!(json_depth(r#"{"a":"[[[[\"{{"}"#), 1, "brackets in strings do not count");
        let wide = format!("{{\"a\":[0{}]}}", ",0".repeat(1 << 20));
        OutputBudget::new(4 << 20).json(&"$.answer", &wide).unwrap();
    }
}
