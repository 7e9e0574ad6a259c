//! [`ChunkStream`]: what a provider plugin's `start_stream` returns.

use std::fmt;

use crate::{ChunkChoice, ChunkDelta, Completion, CompletionChunk, LlmError};

/// The chunks of a streamed completion, produced lazily: the host pulls one
/// with each `next` call as the client takes them, and the SDK asks the
/// source for the next chunk only then.
///
/// Build it from an iterator or a closure. An `Err` item aborts the stream.
///
/// ```
/// # use plugbox_sdk::{ChunkStream, CompletionChunk};
/// let words = ["hello", " world"];
/// let mut stream = ChunkStream::from_iter(
///     words.into_iter().map(|w| CompletionChunk::text("c", "m", w))
///         .chain([CompletionChunk::finish("c", "m", "stop")]),
/// );
/// assert_eq!(stream.next_chunk().unwrap().unwrap().text_delta(), Some("hello"));
/// ```
pub struct ChunkStream {
    source: Box<dyn Iterator<Item = Result<CompletionChunk, LlmError>>>,
}

impl ChunkStream {
    /// A stream with no chunks.
    pub fn empty() -> Self {
        Self::from_results(std::iter::empty())
    }

    /// A stream of these chunks, in order (the iterator runs as the host pulls).
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I>(chunks: I) -> Self
    where
        I: IntoIterator<Item = CompletionChunk>,
        I::IntoIter: 'static,
    {
        Self::from_results(chunks.into_iter().map(Ok))
    }

    /// A stream of these items; an `Err` aborts the stream with that error.
    pub fn from_results<I>(items: I) -> Self
    where
        I: IntoIterator<Item = Result<CompletionChunk, LlmError>>,
        I::IntoIter: 'static,
    {
        ChunkStream { source: Box::new(items.into_iter()) }
    }

    /// A stream produced by calling `next` until it returns `Ok(None)`.
    pub fn from_fn<F>(mut next: F) -> Self
    where
        F: FnMut() -> Result<Option<CompletionChunk>, LlmError> + 'static,
    {
        Self::from_results(std::iter::from_fn(move || next().transpose()))
    }

    /// A whole completion as a stream: per choice a chunk with the role,
    /// text, refusal and tool calls, then a chunk with its finish reason;
    /// then, if the completion has usage, the usage chunk.
    pub fn from_completion(done: Completion) -> Self {
        let mut chunks = Vec::new();
        let piece = |choices: Vec<ChunkChoice>| CompletionChunk {
            id: done.id.clone(),
            object: "chat.completion.chunk".into(),
            created: done.created,
            model: done.model.clone(),
            choices,
            usage: None,
            extra: Default::default(),
        };
        for choice in &done.choices {
            let message = &choice.message;
            let tool_calls = message
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, call)| crate::CompletionToolCall { index: Some(i as u32), ..call.clone() })
                .collect();
            let delta = ChunkDelta {
                role: Some(message.role),
                content: message.content.clone(),
                refusal: message.refusal.clone(),
                tool_calls,
                ..Default::default()
            };
            chunks.push(piece(vec![ChunkChoice { index: choice.index, delta, ..Default::default() }]));
            let finish = choice.finish_reason.clone().unwrap_or_else(|| "stop".into());
            chunks.push(piece(vec![ChunkChoice {
                index: choice.index,
                finish_reason: Some(finish),
                ..Default::default()
            }]));
        }
        if let Some(usage) = done.usage {
            chunks.push(CompletionChunk { usage: Some(usage), ..piece(Vec::new()) });
        }
        Self::from_iter(chunks)
    }

    /// The next chunk, `Ok(None)` at the end. This is what the host's `next`
    /// call returns (as JSON).
    pub fn next_chunk(&mut self) -> Result<Option<CompletionChunk>, LlmError> {
        self.source.next().transpose()
    }

    /// Drain the stream (for tests): every chunk, or the first error.
    pub fn collect_all(mut self) -> Result<Vec<CompletionChunk>, LlmError> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            all.push(chunk);
        }
        Ok(all)
    }
}

impl fmt::Debug for ChunkStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkStream").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Role, Usage};
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn completion_becomes_chunks() {
        let done = Completion::text("c", "m", "hi there").with_usage(Usage::new(3, 2));
        let chunks = ChunkStream::from_completion(done).collect_all().unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(chunks[0].text_delta(), Some("hi there"));
        assert_eq!(chunks[1].choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(chunks[2].usage, Some(Usage::new(3, 2)));
        assert!(chunks[2].choices.is_empty());
    }

    #[test]
    fn errors_abort_and_sources_run_lazily() {
        let mut stream = ChunkStream::from_results([Err(LlmError::internal("boom"))]);
        assert!(stream.next_chunk().is_err());
        assert!(stream.next_chunk().unwrap().is_none());

        let made = Rc::new(Cell::new(0));
        let counter = made.clone();
        let mut stream = ChunkStream::from_fn(move || {
            counter.set(counter.get() + 1);
            Ok((counter.get() <= 2).then(|| CompletionChunk::text("c", "m", "x")))
        });
        assert_eq!(made.get(), 0);
        stream.next_chunk().unwrap();
        assert_eq!(made.get(), 1);
        assert!(stream.next_chunk().unwrap().is_some());
        assert!(stream.next_chunk().unwrap().is_none());
    }
}
