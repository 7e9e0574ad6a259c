//! A provider of type `echo`: it answers with the last user message, word for
//! word, needs no network and no API key. The default provider of
//! `plugbox serve`, and a provider for tests.
//!
//! Usage is counted in whitespace-separated words: prompt tokens are the
//! words of every message of the request, completion tokens those of the
//! answer. A stream yields one chunk per word (each with the whitespace before
//! it, so the chunks add up to the answer exactly; the first also carries the
//! `assistant` role), then a final chunk with finish reason `stop` and the
//! usage.

use plugbox_sdk::{ChunkStream, Config, LlmError, Plugin, Request, RequestInfo, Response, Role, StreamChunk, Usage};

plugbox_sdk::embed_manifest!("../../../manifests/echo-provider.yaml");

struct Echo;

fn words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// What to answer, and the usage of the answer.
fn answer(req: &Request) -> Result<(String, Usage), LlmError> {
    let text = req
        .last_user_message()
        .map(|m| m.content.clone())
        .ok_or_else(|| LlmError::invalid_request("the echo provider needs a user message to echo"))?;
    let prompt = req.messages.iter().map(|m| words(&m.content)).fold(0u32, u32::saturating_add);
    let usage = Usage::new(prompt, words(&text));
    Ok((text, usage))
}

/// `text` cut into pieces of one word each, with the whitespace before it
/// (whitespace before the first word and after the last stays with them).
fn pieces(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut cuts = Vec::new();
    let mut gap_start = None; // where the whitespace after a word begins
    let mut seen_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if seen_word && gap_start.is_none() {
                gap_start = Some(i);
            }
        } else {
            if let Some(cut) = gap_start.take() {
                cuts.push(cut);
            }
            seen_word = true;
        }
    }
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for cut in cuts {
        out.push(&text[at..cut]);
        at = cut;
    }
    out.push(&text[at..]);
    out
}

impl Plugin for Echo {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Echo)
    }

    fn provider_type(&self) -> String {
        "echo".to_string()
    }

    fn complete(&mut self, _info: &RequestInfo, req: Request) -> Result<Response, LlmError> {
        let (text, usage) = answer(&req)?;
        Ok(Response::text(req.model, text).with_usage(usage))
    }

    fn start_stream(&mut self, _info: &RequestInfo, req: Request) -> Result<ChunkStream, LlmError> {
        let (text, usage) = answer(&req)?;
        let mut chunks: Vec<StreamChunk> = pieces(&text).into_iter().map(|piece| StreamChunk::text(0, piece)).collect();
        match chunks.first_mut() {
            Some(first) => first.role = Some(Role::Assistant),
            None => chunks.push(StreamChunk { role: Some(Role::Assistant), ..StreamChunk::text(0, "") }),
        }
        chunks.push(StreamChunk::finish(0, "stop", Some(usage)));
        Ok(ChunkStream::from_chunks(chunks))
    }
}

plugbox_sdk::export!(Echo);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::Message;

    fn request(text: &str) -> Request {
        Request::new("echo-1", vec![Message::system("be nice"), Message::user(text)])
    }

    #[test]
    fn complete_echoes() {
        let r = Echo.complete(&RequestInfo::new("r", "echo-1"), request("hello  big world")).unwrap();
        assert_eq!(r.content(), Some("hello  big world"));
        assert_eq!(r.model, "echo-1");
        assert_eq!(r.usage, Some(Usage::new(5, 3)));
        let none = Request::new("m", vec![Message::system("x")]);
        assert!(Echo.complete(&RequestInfo::new("r", "m"), none).is_err());
    }

    #[test]
    fn pieces_add_up() {
        for text in ["hello big world", "  lead", "trail  ", "a\nb\tc", "", "   ", "one"] {
            assert_eq!(pieces(text).concat(), text, "{text:?}");
        }
        assert_eq!(pieces("hello  big world"), vec!["hello", "  big", " world"]);
        assert_eq!(pieces("a b "), vec!["a", " b "]);
    }

    #[test]
    fn stream_is_word_chunks_then_stop() {
        let mut s = Echo.start_stream(&RequestInfo::new("r", "m"), request("one two")).unwrap();
        let mut got = Vec::new();
        while let Some(c) = s.next_chunk().unwrap() {
            got.push(c);
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].role, Some(Role::Assistant));
        assert_eq!(got[0].content.as_deref(), Some("one"));
        assert_eq!(got[1].content.as_deref(), Some(" two"));
        assert_eq!(got[2].finish_reason.as_deref(), Some("stop"));
        assert_eq!(got[2].usage, Some(Usage::new(4, 2)));
    }
}
