//! Masks e-mail addresses and phone numbers in prompts (`pre-request`) and in
//! responses (`post-response`).
//!
//! Prompts: every message's content and tool-call arguments; the request is
//! returned modified only when something was masked. Responses: every
//! choice's content; the response is replaced only when something was masked.
//! The number of masked items of the request is kept in the context key
//! `pii-redact.count`.
//!
//! Config: `email_mask` (default `[EMAIL]`), `phone_mask` (default `[PHONE]`),
//! `emails` / `phones` (booleans, default true: what to look for),
//! `responses` (boolean, default true: also mask responses).

mod scan;

use plugbox_sdk::{Config, LlmError, Plugin, PostAction, PreAction, Request, RequestInfo, Response, context, log};
use scan::Masks;

plugbox_sdk::embed_manifest!("../../../manifests/pii-redact.yaml");

const COUNT_KEY: &str = "pii-redact.count";

struct PiiRedact {
    email_mask: Option<String>,
    phone_mask: Option<String>,
    responses: bool,
}

impl PiiRedact {
    fn masks(&self) -> Masks<'_> {
        Masks { email: self.email_mask.as_deref(), phone: self.phone_mask.as_deref() }
    }

    /// Mask `text` in place; the number of items masked.
    fn mask(&self, text: &mut String) -> usize {
        let (out, n) = scan::redact(text, &self.masks());
        if n > 0 {
            *text = out;
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
            email_mask: mask("emails", "email_mask", "[EMAIL]")?,
            phone_mask: mask("phones", "phone_mask", "[PHONE]")?,
            responses: config.get_bool("responses")?.unwrap_or(true),
        })
    }

    fn pre_request(&mut self, info: &RequestInfo, mut req: Request) -> Result<PreAction, String> {
        let mut n = 0;
        for message in &mut req.messages {
            n += self.mask(&mut message.content);
            for call in &mut message.tool_calls {
                n += self.mask(&mut call.arguments);
            }
        }
        add_to_count(n);
        if n == 0 {
            return Ok(PreAction::Continue);
        }
        log::info!("masked {n} item(s) of personal data in the prompt of `{}`", info.request_id);
        Ok(PreAction::Modify(req))
    }

    fn post_response(&mut self, info: &RequestInfo, outcome: Result<Response, LlmError>) -> Result<PostAction, String> {
        let Ok(mut response) = outcome else {
            return Ok(PostAction::Continue);
        };
        if !self.responses {
            return Ok(PostAction::Continue);
        }
        let mut n = 0;
        for choice in &mut response.choices {
            n += self.mask(&mut choice.message.content);
            for call in &mut choice.message.tool_calls {
                n += self.mask(&mut call.arguments);
            }
        }
        if n == 0 {
            return Ok(PostAction::Continue);
        }
        add_to_count(n);
        log::info!("masked {n} item(s) of personal data in the response to `{}`", info.request_id);
        Ok(PostAction::Respond(response))
    }
}

plugbox_sdk::export!(PiiRedact);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::{Message, testing};

    fn plugin(json: &str) -> PiiRedact {
        PiiRedact::init(Config::from_json(json).unwrap()).unwrap()
    }

    #[test]
    fn masks_prompt_and_response() {
        testing::reset();
        let mut p = plugin("{}");
        let info = RequestInfo::new("r1", "m");
        let req = Request::new("m", vec![Message::user("I am bob@example.com, +1 555 123 4567")]);
        let PreAction::Modify(req) = p.pre_request(&info, req).unwrap() else { panic!() };
        assert_eq!(req.messages[0].content, "I am [EMAIL], [PHONE]");
        assert_eq!(testing::context()[COUNT_KEY], "2");

        let resp = Response::text("m", "write to ann@example.org");
        let PostAction::Respond(resp) = p.post_response(&info, Ok(resp)).unwrap() else { panic!() };
        assert_eq!(resp.content(), Some("write to [EMAIL]"));
        assert_eq!(testing::context()[COUNT_KEY], "3");
    }

    #[test]
    fn unchanged_is_continue() {
        testing::reset();
        let mut p = plugin(r#"{"phones": false}"#);
        let info = RequestInfo::new("r1", "m");
        let req = Request::new("m", vec![Message::user("call 555-123-4567")]);
        assert!(matches!(p.pre_request(&info, req).unwrap(), PreAction::Continue));
        let resp = Response::text("m", "nothing here");
        assert!(matches!(p.post_response(&info, Ok(resp)).unwrap(), PostAction::Continue));
        assert!(matches!(p.post_response(&info, Err(LlmError::internal("x"))).unwrap(), PostAction::Continue));
    }
}
