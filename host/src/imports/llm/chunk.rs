//! Resources `chunk` (one chunk of a stream in an `on-chunk` call) and
//! `stream-end` (the chunks an `on-stream-end` call appends).

use std::sync::Arc;

use super::{CallRules, Draft, invalid, json, wit_role};
use crate::bindings::types::{self as wit, AccessError};
use crate::budget::{ELEMENT_COST, MAX_END_CHUNKS};
use crate::openai::{ChatChunk, Usage};

/// One chunk of a stream in an `on-chunk` call (resource `chunk`).
#[derive(Debug)]
pub struct ChunkEntry {
    pub(crate) data: Draft<ChatChunk>,
    /// Held text offered once more at the end of the stream.
    pub(crate) last: bool,
    /// Edits allowed (`on-chunk`).
    pub(crate) editable: bool,
}

impl ChunkEntry {
    /// An entry over `base`.
    pub(crate) fn new(base: Arc<ChatChunk>, last: bool) -> Self {
        ChunkEntry { data: Draft::new(base), last, editable: true }
    }

    fn choice(&self, index: u32) -> Result<&crate::openai::ChunkChoice, AccessError> {
        self.data.get().choices.get(index as usize).ok_or(AccessError::OutOfRange)
    }

    fn read_delta<'a, T>(
        &'a self,
        rules: &mut CallRules,
        index: u32,
        field: &str,
        get: impl FnOnce(&'a crate::openai::Delta) -> T,
    ) -> Result<T, AccessError> {
        let c = self.choice(index)?;
        rules.read(&format_args!("$.choices[{index}].delta.{field}"))?;
        Ok(get(&c.delta))
    }

    pub(crate) fn text(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        self.read_delta(rules, index, "content", |d| d.text().map(str::to_string))
    }

    pub(crate) fn reasoning(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        self.read_delta(rules, index, "reasoning_content", |d| d.reasoning().map(str::to_string))
    }

    pub(crate) fn refusal(&self, rules: &mut CallRules, index: u32) -> Result<Option<String>, AccessError> {
        self.read_delta(rules, index, "refusal", |d| d.refusal().map(str::to_string))
    }

    pub(crate) fn tool_calls(
        &self,
        rules: &mut CallRules,
        index: u32,
    ) -> Result<Vec<wit::ToolCallFragment>, AccessError> {
        self.read_delta(rules, index, "tool_calls", |d| {
            d.tool_calls()
                .iter()
                .map(|c| wit::ToolCallFragment {
                    index: c.index,
                    id: c.id.clone(),
                    name: c.function.as_ref().and_then(|f| f.name.clone()),
                    arguments: c.function.as_ref().and_then(|f| f.arguments.clone()),
                })
                .collect()
        })
    }

    pub(crate) fn role(&self, index: u32) -> Result<Option<wit::Role>, AccessError> {
        Ok(self.choice(index)?.delta.role().map(wit_role))
    }

    pub(crate) fn finish_reason(&self, index: u32) -> Result<Option<String>, AccessError> {
        Ok(self.choice(index)?.finish_reason().map(str::to_string))
    }

    pub(crate) fn set_text(&mut self, rules: &mut CallRules, index: u32, text: String) -> Result<(), AccessError> {
        self.choice(index)?;
        let path = format_args!("$.choices[{index}].delta.content");
        rules.write(self.editable, "chunk", &path)?;
        rules.charge(&path, text.len())?;
        self.data.edit().choices[index as usize].delta.set_text(text);
        Ok(())
    }

    pub(crate) fn to_json(&self, rules: &mut CallRules) -> Result<String, AccessError> {
        rules.read(&"$")?;
        Ok(json(self.data.get()))
    }
}

/// The end of a stream in an `on-stream-end` call (resource `stream-end`):
/// the usage reported and the chunks this call appends.
#[derive(Debug, Default)]
pub struct StreamEndEntry {
    pub(crate) usage: Option<Usage>,
    pub(crate) appended: Vec<ChatChunk>,
    /// Chunks appended by earlier plugins (for the count cap).
    pub(crate) before: usize,
}

impl StreamEndEntry {
    fn append(
        &mut self,
        rules: &mut CallRules,
        bytes: usize,
        chunk: impl FnOnce() -> Result<ChatChunk, AccessError>,
    ) -> Result<(), AccessError> {
        let n = self.before + self.appended.len();
        let path = format_args!("$.append[{n}]");
        rules.write(true, "stream end", &path)?;
        rules.count(&"$.append", n + 1, MAX_END_CHUNKS)?;
        rules.charge(&path, bytes + ELEMENT_COST as usize)?;
        self.appended.push(chunk()?);
        Ok(())
    }

    pub(crate) fn append_text(&mut self, rules: &mut CallRules, text: String) -> Result<(), AccessError> {
        self.append(rules, text.len(), || Ok(ChatChunk::text(text)))
    }

    pub(crate) fn append_json(&mut self, rules: &mut CallRules, text: String) -> Result<(), AccessError> {
        self.append(rules, text.len(), || {
            let chunk = ChatChunk::from_json(&text)
                .map_err(|e| invalid(format_args!("the appended chunk is not a valid chunk: {e}")))?;
            super::check_chunk(&"$.append", &chunk).map_err(invalid)?;
            Ok(chunk)
        })
    }
}
