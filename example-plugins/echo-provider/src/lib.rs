//! A provider of type `echo`: it answers with the last user message, word for
//! word, needs no network and no API key. The default provider of
//! `plugbox serve`, and a provider for tests.
//!
//! Usage is counted in whitespace-separated words: prompt tokens are the
//! words of every message of the request, completion tokens those of the
//! answer. A stream starts with a chunk carrying the `assistant` role, then
//! yields one chunk per word (each with the whitespace before it, so the
//! chunks add up to the answer exactly), made only when the host pulls it,
//! then a chunk with finish reason `stop`, and, when the request has
//! `stream_options.include_usage`, the usage chunk (no choices).

use plugbox_sdk::serde_json::Value;
use plugbox_sdk::{ChunkStream, Completion, CompletionChunk, Config, LlmError, Plugin, Request, Usage, completion_id};

plugbox_sdk::embed_manifest!("../../../manifests/echo-provider.yaml");

struct Echo;

fn words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// What to answer, and the usage of the answer.
fn answer(req: &Request) -> Result<(String, Usage), LlmError> {
    let no_user = || LlmError::invalid_request("the echo provider needs a user message to echo");
    let last = req.last_user_index().ok_or_else(no_user)?;
    let text = req.text(last).map_err(|e| LlmError::internal(e.to_string()))?.unwrap_or_default();
    let mut prompt = 0u32;
    for i in 0..req.message_count() {
        let words_of = req.text(i).map_err(|e| LlmError::internal(e.to_string()))?.map_or(0, |t| words(&t));
        prompt = prompt.saturating_add(words_of);
    }
    Ok((text.clone(), Usage::new(prompt, words(&text))))
}

/// The byte ranges of [`pieces`], so a stream can own its text and cut it
/// lazily.
fn piece_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let base = text.as_ptr() as usize;
    pieces(text)
        .into_iter()
        .map(|p| {
            let start = p.as_ptr() as usize - base;
            start..start + p.len()
        })
        .collect()
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

    fn complete(&mut self, req: &Request) -> Result<Completion, LlmError> {
        let (text, usage) = answer(req)?;
        Ok(Completion::text(completion_id(), req.model(), text).with_usage(usage))
    }

    fn start_stream(&mut self, req: &Request) -> Result<ChunkStream, LlmError> {
        // Read what the stream needs now: `req` is gone when the host pulls.
        let (text, usage) = answer(req)?;
        let model = req.model();
        let include_usage = req
            .param::<Value>("stream_options")
            .ok()
            .flatten()
            .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
            .unwrap_or(false);
        let id = completion_id();
        // Built lazily: each chunk is made when the host asks for it.
        let ranges = piece_ranges(&text).into_iter();
        let (word_id, word_model) = (id.clone(), model.clone());
        let words = ranges.map(move |r| CompletionChunk::text(&word_id, &word_model, &text[r]));
        let first = std::iter::once(CompletionChunk::role(&id, &model));
        let stop = std::iter::once(CompletionChunk::finish(&id, &model, "stop"));
        let usage = include_usage.then(|| CompletionChunk::usage(&id, &model, usage));
        Ok(ChunkStream::from_iter(first.chain(words).chain(stop).chain(usage)))
    }
}

plugbox_sdk::export!(Echo);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::{Access, Role};

    fn request(text: &str) -> Request {
        Request::builder("echo-1").system("be nice").user(text).build()
    }

    #[test]
    fn complete_echoes() {
        let r = Echo.complete(&request("hello  big world")).unwrap();
        assert_eq!(r.content(), Some("hello  big world"));
        assert_eq!(r.model, "echo-1");
        assert_eq!(r.object, "chat.completion");
        assert_eq!(r.usage, Some(Usage::new(5, 3)));
        assert!(Echo.complete(&Request::builder("m").system("x").build()).is_err());
        // Without `messages: read` the provider cannot read the prompt.
        let blind = Request::builder("m").user("x").access(Access::None).build();
        assert!(Echo.complete(&blind).unwrap_err().message.contains("needs `messages: read`"));
    }

    #[test]
    fn pieces_add_up() {
        for text in ["hello big world", "  lead", "trail  ", "a\nb\tc", "", "   ", "one"] {
            assert_eq!(pieces(text).concat(), text, "{text:?}");
            let ranges: String = piece_ranges(text).into_iter().map(|r| &text[r]).collect();
            assert_eq!(ranges, text);
        }
        assert_eq!(pieces("hello  big world"), vec!["hello", "  big", " world"]);
        assert_eq!(pieces("a b "), vec!["a", " b "]);
    }

    #[test]
    fn stream_is_role_words_stop() {
        let got = Echo.start_stream(&request("one two")).unwrap().collect_all().unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(got[1].text_delta(), Some("one"));
        assert_eq!(got[2].text_delta(), Some(" two"));
        assert_eq!(got[3].choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(got.iter().all(|c| c.usage.is_none() && c.object == "chat.completion.chunk"));
        assert!(got.iter().all(|c| c.id == got[0].id && c.model == "echo-1"));
    }

    #[test]
    fn usage_chunk_when_asked() {
        let req = Request::builder("m")
            .user("one two three")
            .streaming(true)
            .param("stream_options", plugbox_sdk::serde_json::json!({"include_usage": true}))
            .build();
        let got = Echo.start_stream(&req).unwrap().collect_all().unwrap();
        let last = got.last().unwrap();
        assert!(last.choices.is_empty());
        assert_eq!(last.usage, Some(Usage::new(3, 3)));
        assert_eq!(got.len(), 6);
    }
}
