//! The spike's guest: the same three hooks (no-op, read every message's text,
//! edit message 0) in each request shape.

wit_bindgen::generate!({ path: "../wit", world: "spike" });

use plugbox::spike::records::Message;

const EDITED: &str = "[redacted]";

struct Spike;

impl Guest for Spike {
    fn floor() {}

    fn noop_a(_req: &Request) {}
    fn read_a(req: &Request) -> u32 {
        (0..req.message_count()).map(|i| req.text(i).map_or(0, |t| t.len() as u32)).sum()
    }
    fn edit_a(req: &Request) {
        req.set_text(0, EDITED);
    }

    fn noop_b(_req: RequestRec) {}
    fn read_b(req: RequestRec) -> u32 {
        req.messages.iter().map(|m| m.content.len() as u32).sum()
    }
    fn edit_b(mut req: RequestRec) -> Option<RequestRec> {
        req.messages[0] = Message { role: req.messages[0].role.clone(), content: EDITED.into() };
        Some(req)
    }

    fn noop_c(_req: String) {}
    fn read_c(req: String) -> u32 {
        let v: serde_json::Value = serde_json::from_str(&req).unwrap();
        v["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().map_or(0, |t| t.len() as u32)).sum()
    }
    fn edit_c(req: String) -> Option<String> {
        let mut v: serde_json::Value = serde_json::from_str(&req).unwrap();
        v["messages"][0]["content"] = EDITED.into();
        Some(v.to_string())
    }
}

export!(Spike);
