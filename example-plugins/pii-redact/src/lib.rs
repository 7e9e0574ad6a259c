//! Masks payment card numbers, e-mail addresses and phone numbers in prompts
//! (`pre-request`), in responses (`post-response`) and in streamed responses
//! (`on-chunk`).
//!
//! Prompts: the text of every message; a message with tool calls also has
//! its arguments masked (it is replaced through its JSON). Responses: every
//! choice's text. Streams: a chunk whose text ends in what may be the start of
//! a card or phone number, or of an e-mail address, is held back
//! (`ChunkAction::Hold`) and merged with the next one, so a number split
//! across chunks is still masked; the manifest's `limits.max-held` bounds how
//! much text waits. The number of masked items of the request is kept in the
//! context key `pii-redact.count`.
//!
//! Config: `card_mask` (default `[CARD]`), `email_mask` (default `[EMAIL]`),
//! `phone_mask` (default `[PHONE]`), `cards` / `emails` / `phones` (booleans,
//! default true: what to look for), `responses` (boolean, default true: also
//! mask responses and streams).

mod scan;

use plugbox_sdk::serde_json::{self, Value};
use plugbox_sdk::{Chunk, ChunkAction, Config, Plugin, PostAction, PreAction, Request, Response, context, log};
use scan::Masks;

plugbox_sdk::embed_manifest!("../../../manifests/pii-redact.yaml");

const COUNT_KEY: &str = "pii-redact.count";

struct PiiRedact {
    card_mask: Option<String>,
    email_mask: Option<String>,
    phone_mask: Option<String>,
    responses: bool,
}

impl PiiRedact {
    fn masks(&self) -> Masks<'_> {
        Masks { card: self.card_mask.as_deref(), email: self.email_mask.as_deref(), phone: self.phone_mask.as_deref() }
    }

    /// `text` masked, or `None` when there was nothing to mask; the number
    /// of items masked.
    fn mask(&self, text: &str) -> (Option<String>, usize) {
        let (out, n) = scan::redact(text, &self.masks());
        ((n > 0).then_some(out), n)
    }

    /// Mask the tool-call arguments inside a message's JSON; the number of
    /// items masked.
    fn mask_tool_calls(&self, message: &mut Value) -> usize {
        let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) else { return 0 };
        let mut n = 0;
        for call in calls {
            if let Some(Value::String(args)) = call.pointer_mut("/function/arguments") {
                let (masked, k) = self.mask(args);
                if let Some(masked) = masked {
                    *args = masked;
                }
                n += k;
            }
        }
        n
    }
}

fn add_to_count(n: usize) {
    let before = context::get(COUNT_KEY).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    context::set(COUNT_KEY, &(before + n).to_string());
}

impl Plugin for PiiRedact {
    fn init(config: Config) -> Result<Self, String> {
        let mask = |on: &str, key: &str, default: &str| -> Result<Option<String>, String> {
            if !config.get_bool(on)?.unwrap_or(true) {
                return Ok(None);
            }
            Ok(Some(config.get_str(key)?.unwrap_or(default).to_string()))
        };
        Ok(PiiRedact {
            card_mask: mask("cards", "card_mask", "[CARD]")?,
            email_mask: mask("emails", "email_mask", "[EMAIL]")?,
            phone_mask: mask("phones", "phone_mask", "[PHONE]")?,
            responses: config.get_bool("responses")?.unwrap_or(true),
        })
    }

    fn pre_request(&mut self, req: &Request) -> Result<PreAction, String> {
        let mut n = 0;
        for i in 0..req.message_count() {
            if let Some(text) = req.text(i)? {
                let (masked, k) = self.mask(&text);
                if let Some(masked) = masked {
                    req.set_text(i, &masked)?;
                }
                n += k;
            }
            // Only assistant messages carry tool calls; only those are read whole.
            if req.role(i)? == plugbox_sdk::Role::Assistant {
                let mut message: Value = serde_json::from_str(&req.message_json(i)?).map_err(|e| e.to_string())?;
                let k = self.mask_tool_calls(&mut message);
                if k > 0 {
                    req.remove_message(i)?;
                    req.insert_message_json(i, &message.to_string())?;
                }
                n += k;
            }
        }
        add_to_count(n);
        if n > 0 {
            log::info!("masked {n} item(s) of personal data in the prompt of `{}`", req.id());
        }
        Ok(PreAction::Continue)
    }

    fn post_response(&mut self, req: &Request, resp: &Response) -> Result<PostAction, String> {
        if !self.responses || resp.is_error() {
            return Ok(PostAction::Continue);
        }
        let mut n = 0;
        for i in 0..resp.choice_count() {
            if let Some(text) = resp.text(i)? {
                let (masked, k) = self.mask(&text);
                if let Some(masked) = masked {
                    resp.set_text(i, &masked)?;
                }
                n += k;
            }
        }
        if n > 0 {
            add_to_count(n);
            log::info!("masked {n} item(s) of personal data in the response to `{}`", req.id());
        }
        Ok(PostAction::Continue)
    }

    fn on_chunk(&mut self, _req: &Request, chunk: &Chunk) -> Result<ChunkAction, String> {
        if !self.responses {
            return Ok(ChunkAction::Continue);
        }
        let mut texts = Vec::with_capacity(chunk.choice_count());
        for i in 0..chunk.choice_count() {
            texts.push(chunk.text(i)?);
        }
        // Wait for more when a choice's text may end in the start of an item
        // (unless this is the held text offered one last time).
        if !chunk.last() && texts.iter().flatten().any(|t| scan::unfinished(t)) {
            return Ok(ChunkAction::Hold);
        }
        let mut n = 0;
        for (i, text) in texts.iter().enumerate() {
            if let Some(text) = text {
                let (masked, k) = self.mask(text);
                if let Some(masked) = masked {
                    chunk.set_text(i, &masked)?;
                }
                n += k;
            }
        }
        add_to_count(n);
        Ok(ChunkAction::Continue)
    }
}

plugbox_sdk::export!(PiiRedact);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::serde_json::json;
    use plugbox_sdk::testing::{self, DEFAULT_MAX_HELD, run_stream};
    use plugbox_sdk::{Access, CompletionChunk, LlmError, Usage};

    fn plugin(json: &str) -> PiiRedact {
        PiiRedact::init(Config::from_json(json).unwrap()).unwrap()
    }

    #[test]
    fn masks_prompt_and_response() {
        testing::reset();
        let mut p = plugin("{}");
        let req = Request::builder("m")
            .system("be brief")
            .user("I am bob@example.com, +1 555 123 4567")
            .message_json(json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "pay", "arguments": "{\"card\":\"4111 1111 1111 1111\"}"}}
            ]}))
            .access(Access::Write)
            .build();
        assert_eq!(p.pre_request(&req).unwrap(), PreAction::Continue);
        assert_eq!(req.text(1).unwrap().as_deref(), Some("I am [EMAIL], [PHONE]"));
        assert_eq!(req.text(0).unwrap().as_deref(), Some("be brief"));
        let call: Value = serde_json::from_str(&req.message_json(2).unwrap()).unwrap();
        assert_eq!(call["tool_calls"][0]["function"]["arguments"], "{\"card\":\"[CARD]\"}");
        assert_eq!(call["tool_calls"][0]["id"], "c1");
        assert_eq!(testing::context()[COUNT_KEY], "3");

        let resp = Response::builder("m").text("write to ann@example.org").access(Access::Write).build();
        assert_eq!(p.post_response(&req, &resp).unwrap(), PostAction::Continue);
        assert_eq!(resp.text(0).unwrap().as_deref(), Some("write to [EMAIL]"));
        assert_eq!(testing::context()[COUNT_KEY], "4");
    }

    #[test]
    fn unchanged_and_errors_pass() {
        testing::reset();
        let mut p = plugin(r#"{"phones": false}"#);
        let req = Request::builder("m").user("call 555-123-4567").access(Access::Write).build();
        assert_eq!(p.pre_request(&req).unwrap(), PreAction::Continue);
        assert_eq!(req.text(0).unwrap().as_deref(), Some("call 555-123-4567"));
        let failed = Response::failed(LlmError::internal("x")).build();
        assert_eq!(p.post_response(&req, &failed).unwrap(), PostAction::Continue);
    }

    #[test]
    fn without_write_a_masking_edit_fails_the_call() {
        let req = Request::builder("m").user("bob@example.com").access(Access::Read).build();
        let err = plugin("{}").pre_request(&req).unwrap_err();
        assert!(err.contains("needs `messages: write`"), "{err}");
    }

    fn stream(pieces: &[&str]) -> Vec<CompletionChunk> {
        let mut chunks = vec![CompletionChunk::role("c", "m")];
        chunks.extend(pieces.iter().map(|p| CompletionChunk::text("c", "m", *p)));
        chunks.push(CompletionChunk::finish("c", "m", "stop"));
        chunks.push(CompletionChunk::usage("c", "m", Usage::new(5, 9)));
        chunks
    }

    #[test]
    fn a_card_split_across_chunks_is_masked() {
        testing::reset();
        let req = Request::builder("m").user("hi").access(Access::Write).streaming(true).build();
        let pieces = ["Your card", " is 4111", " 1111 11", "11 1111", ", and mail", " bob@exa", "mple.com", " ok"];
        let run = run_stream(&mut plugin("{}"), &req, stream(&pieces), DEFAULT_MAX_HELD).unwrap();
        assert_eq!(run.text(), "Your card is [CARD], and mail [EMAIL] ok");
        assert!(!run.text().contains("1111"));
        // Nothing is lost: the finish and usage chunks still arrive.
        assert!(run.chunks.iter().any(|c| c.usage == Some(Usage::new(5, 9))));
        assert_eq!(testing::context()[COUNT_KEY], "2");
    }

    #[test]
    fn a_number_at_the_very_end_is_masked_when_offered_last() {
        let req = Request::builder("m").access(Access::Write).build();
        let chunks = vec![CompletionChunk::text("c", "m", "call +1 555"), CompletionChunk::text("c", "m", " 123 4567")];
        let run = run_stream(&mut plugin("{}"), &req, chunks, DEFAULT_MAX_HELD).unwrap();
        assert_eq!(run.text(), "call [PHONE]");
    }

    #[test]
    fn holding_is_bounded() {
        let req = Request::builder("m").access(Access::Write).build();
        let digits: Vec<CompletionChunk> = (0..10).map(|_| CompletionChunk::text("c", "m", "12345 ")).collect();
        let err = run_stream(&mut plugin("{}"), &req, digits, 32).unwrap_err();
        assert!(err.contains("`limits.max-held`"), "{err}");
    }
}
