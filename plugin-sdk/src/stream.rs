//! [`ChunkStream`]: what a provider plugin's `start_stream` returns.

use std::collections::VecDeque;
use std::fmt;

use crate::{LlmError, Response, StreamChunk};

/// The chunks of a streamed completion, pulled one at a time by the host.
///
/// Build it from a list, an iterator or a closure; the host calls `next`
/// until the stream yields nothing more. An `Err` item aborts the stream.
///
/// ```
/// # use plugbox_sdk::{ChunkStream, StreamChunk, Usage};
/// let words = ["hello", " world"];
/// let mut stream: ChunkStream = words
///     .iter()
///     .enumerate()
///     .map(|(i, w)| StreamChunk::text(0, *w))
///     .chain([StreamChunk::finish(0, "stop", Some(Usage::new(1, 2)))])
///     .collect();
/// assert_eq!(stream.next_chunk().unwrap().unwrap().content.as_deref(), Some("hello"));
/// ```
pub struct ChunkStream {
    source: Box<dyn Iterator<Item = Result<StreamChunk, LlmError>>>,
}

impl ChunkStream {
    /// A stream with no chunks.
    pub fn empty() -> Self {
        Self::from_chunks(Vec::new())
    }

    /// A stream of these chunks, in order.
    pub fn from_chunks(chunks: Vec<StreamChunk>) -> Self {
        Self::from_results(chunks.into_iter().map(Ok))
    }

    /// A stream of these items; an `Err` aborts the stream with that error.
    pub fn from_results<I>(items: I) -> Self
    where
        I: IntoIterator<Item = Result<StreamChunk, LlmError>>,
        I::IntoIter: 'static,
    {
        ChunkStream { source: Box::new(items.into_iter()) }
    }

    /// A stream produced by calling `next` until it returns `Ok(None)`.
    pub fn from_fn<F>(mut next: F) -> Self
    where
        F: FnMut() -> Result<Option<StreamChunk>, LlmError> + 'static,
    {
        Self::from_results(std::iter::from_fn(move || next().transpose()))
    }

    /// A whole response as a stream: for each choice a chunk with its role,
    /// content and tool calls, then a final chunk per choice with its finish
    /// reason; the last chunk carries the usage.
    pub fn from_response(response: Response) -> Self {
        let mut chunks = VecDeque::new();
        let mut finishes = Vec::new();
        for choice in response.choices {
            let message = choice.message;
            chunks.push_back(StreamChunk {
                index: choice.index,
                role: Some(message.role),
                content: Some(message.content),
                tool_calls: message.tool_calls,
                finish_reason: None,
                usage: None,
            });
            finishes.push(StreamChunk {
                index: choice.index,
                role: None,
                content: None,
                tool_calls: Vec::new(),
                finish_reason: Some(choice.finish_reason.unwrap_or_else(|| "stop".to_string())),
                usage: None,
            });
        }
        if let Some(last) = finishes.last_mut() {
            last.usage = response.usage;
        } else if response.usage.is_some() {
            finishes.push(StreamChunk {
                index: 0,
                role: None,
                content: None,
                tool_calls: Vec::new(),
                finish_reason: None,
                usage: response.usage,
            });
        }
        chunks.extend(finishes);
        Self::from_chunks(chunks.into())
    }

    /// The next chunk, `Ok(None)` at the end. This is what the host's
    /// `next` call returns.
    pub fn next_chunk(&mut self) -> Result<Option<StreamChunk>, LlmError> {
        self.source.next().transpose()
    }
}

impl FromIterator<StreamChunk> for ChunkStream {
    fn from_iter<I: IntoIterator<Item = StreamChunk>>(iter: I) -> Self {
        Self::from_chunks(iter.into_iter().collect())
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

    #[test]
    fn response_becomes_chunks() {
        let response = Response::text("m", "hi there").with_usage(Usage::new(3, 2));
        let mut stream = ChunkStream::from_response(response);
        let first = stream.next_chunk().unwrap().unwrap();
        assert_eq!(first.role, Some(Role::Assistant));
        assert_eq!(first.content.as_deref(), Some("hi there"));
        let last = stream.next_chunk().unwrap().unwrap();
        assert_eq!(last.finish_reason.as_deref(), Some("stop"));
        assert_eq!(last.usage, Some(Usage::new(3, 2)));
        assert!(stream.next_chunk().unwrap().is_none());
    }

    #[test]
    fn errors_abort() {
        let mut stream = ChunkStream::from_results([Err(LlmError::internal("boom"))]);
        assert!(stream.next_chunk().is_err());
        assert!(stream.next_chunk().unwrap().is_none());
    }
}
