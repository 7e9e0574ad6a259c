//! Caches responses in the plugin's key/value store.
//!
//! `pre-request` hashes the request (model, messages, tools, temperature,
//! max tokens and `extra`) with 128-bit FNV-1a; on a hit it answers with the
//! cached response, its `extra` JSON marked `"plugbox_cache": "hit"`, and sets
//! the context key `response-cache.hit` to `true`. On a miss it leaves the key
//! in the context (`response-cache.key`) and `post-response` stores the
//! successful response, serialised as JSON, with a TTL. Streaming requests are
//! not cached.
//!
//! Config: `ttl_seconds` (integer, default 300), `max_entry_bytes` (integer,
//! default 65536: larger responses are not stored).

use std::time::Duration;

use plugbox_sdk::{
    Config, LlmError, Plugin, PostAction, PreAction, Request, RequestInfo, Response, context, kv, log, serde_json,
};

plugbox_sdk::embed_manifest!("../../../manifests/response-cache.yaml");

const HIT_KEY: &str = "response-cache.hit";
const KEY_KEY: &str = "response-cache.key";

struct ResponseCache {
    ttl: Duration,
    max_entry_bytes: usize,
}

/// 128-bit FNV-1a: stable across builds and platforms, unlike `std`'s hasher.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    bytes.iter().fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME))
}

/// The cache key of a request: everything that shapes the answer.
fn cache_key(req: &Request) -> Result<String, String> {
    let canonical =
        serde_json::to_vec(&(&req.model, &req.messages, &req.tools, req.temperature, req.max_tokens, &req.extra))
            .map_err(|e| format!("cannot serialise the request: {e}"))?;
    Ok(format!("resp:{:032x}", fnv1a_128(&canonical)))
}

/// `extra` with `"plugbox_cache": "hit"` added (replacing it if it is not a
/// JSON object).
fn mark_hit(extra: Option<&str>) -> String {
    let mut object = extra
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .and_then(|v| match v {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        })
        .unwrap_or_default();
    object.insert("plugbox_cache".into(), "hit".into());
    serde_json::Value::Object(object).to_string()
}

impl Plugin for ResponseCache {
    fn init(config: Config) -> Result<Self, String> {
        let ttl = config.get_i64("ttl_seconds")?.unwrap_or(300);
        let max = config.get_i64("max_entry_bytes")?.unwrap_or(65536);
        if ttl <= 0 {
            return Err(format!("config `ttl_seconds` must be positive, got `{ttl}`"));
        }
        if max <= 0 {
            return Err(format!("config `max_entry_bytes` must be positive, got `{max}`"));
        }
        Ok(ResponseCache {
            ttl: Duration::from_secs(ttl as u64),
            max_entry_bytes: usize::try_from(max).unwrap_or(usize::MAX),
        })
    }

    fn pre_request(&mut self, info: &RequestInfo, req: Request) -> Result<PreAction, String> {
        if info.streaming || req.stream {
            return Ok(PreAction::Continue);
        }
        let key = cache_key(&req)?;
        let cached = kv::get(&key).map_err(|e| format!("kv get failed: {e}"))?;
        if let Some(bytes) = cached {
            match serde_json::from_slice::<Response>(&bytes) {
                Ok(mut response) => {
                    response.extra = Some(mark_hit(response.extra.as_deref()));
                    context::set(HIT_KEY, "true");
                    log::debug!("cache hit for `{}` ({key})", info.request_id);
                    return Ok(PreAction::Respond(response));
                }
                Err(e) => {
                    log::warn!("dropping unreadable cache entry {key}: {e}");
                    let _ = kv::delete(&key);
                }
            }
        }
        context::set(KEY_KEY, &key);
        Ok(PreAction::Continue)
    }

    fn post_response(
        &mut self,
        _info: &RequestInfo,
        outcome: Result<Response, LlmError>,
    ) -> Result<PostAction, String> {
        if context::get(HIT_KEY).as_deref() == Some("true") {
            return Ok(PostAction::Continue);
        }
        let (Ok(response), Some(key)) = (outcome, context::get(KEY_KEY)) else {
            return Ok(PostAction::Continue);
        };
        if response.choices.is_empty() {
            return Ok(PostAction::Continue);
        }
        let bytes = serde_json::to_vec(&response).map_err(|e| format!("cannot serialise: {e}"))?;
        if bytes.len() > self.max_entry_bytes {
            log::debug!("not caching {key}: {} bytes is over max_entry_bytes ({})", bytes.len(), self.max_entry_bytes);
            return Ok(PostAction::Continue);
        }
        kv::set(&key, &bytes, Some(self.ttl)).map_err(|e| format!("kv set failed: {e}"))?;
        Ok(PostAction::Continue)
    }
}

plugbox_sdk::export!(ResponseCache);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::{Message, testing};

    fn request(text: &str) -> Request {
        Request::new("m", vec![Message::user(text)])
    }

    #[test]
    fn miss_store_hit() {
        testing::reset();
        let mut p = ResponseCache::init(Config::empty()).unwrap();
        let info = RequestInfo::new("r1", "m");
        assert!(matches!(p.pre_request(&info, request("hi")).unwrap(), PreAction::Continue));
        let answer = Response::text("m", "hello");
        p.post_response(&info, Ok(answer.clone())).unwrap();

        testing::clear_context();
        let PreAction::Respond(hit) = p.pre_request(&info, request("hi")).unwrap() else { panic!("expected a hit") };
        assert_eq!(hit.content(), Some("hello"));
        assert_eq!(hit.extra.as_deref(), Some(r#"{"plugbox_cache":"hit"}"#));
        assert_eq!(testing::context()[HIT_KEY], "true");

        testing::clear_context();
        assert!(matches!(p.pre_request(&info, request("other")).unwrap(), PreAction::Continue));
    }

    #[test]
    fn big_entries_are_skipped() {
        testing::reset();
        let mut p = ResponseCache::init(Config::from_json(r#"{"max_entry_bytes": 10}"#).unwrap()).unwrap();
        let info = RequestInfo::new("r1", "m");
        p.pre_request(&info, request("hi")).unwrap();
        p.post_response(&info, Ok(Response::text("m", "a long answer"))).unwrap();
        testing::clear_context();
        assert!(matches!(p.pre_request(&info, request("hi")).unwrap(), PreAction::Continue));
    }

    #[test]
    fn keys_are_stable() {
        assert_eq!(cache_key(&request("a")).unwrap(), cache_key(&request("a")).unwrap());
        assert_ne!(cache_key(&request("a")).unwrap(), cache_key(&request("b")).unwrap());
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }

    #[test]
    fn marks_existing_extra() {
        assert_eq!(mark_hit(Some(r#"{"a":1}"#)), r#"{"a":1,"plugbox_cache":"hit"}"#);
        assert_eq!(mark_hit(Some("not json")), r#"{"plugbox_cache":"hit"}"#);
    }
}
