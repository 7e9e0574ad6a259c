//! Caches responses in the plugin's key/value store.
//!
//! `pre-request` hashes the whole request body (its OpenAI JSON: model,
//! messages, tools and every parameter) with 128-bit FNV-1a; on a hit it
//! answers with the cached `chat.completion` (`PreAction::Respond`), marked
//! with the top-level field `"plugbox_cache": "hit"`, and sets the context key
//! `response-cache.hit` to `true`. On a miss it leaves the key in the context
//! (`response-cache.key`) and `post-response` stores the successful response's
//! JSON with a TTL. Streaming requests are not cached.
//!
//! Config: `ttl_seconds` (integer, default 300), `max_entry_bytes` (integer,
//! default 65536: larger responses are not stored).

use std::time::Duration;

use plugbox_sdk::{Completion, Config, Plugin, PostAction, PreAction, Request, Response, context, kv, log};

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

/// The cache key of a request: its whole body (the host keeps the fields in
/// order, so the same request gives the same JSON).
fn cache_key(req: &Request) -> Result<String, String> {
    let canonical = req.to_json()?;
    Ok(format!("resp:{:032x}", fnv1a_128(canonical.as_bytes())))
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

    fn pre_request(&mut self, req: &Request) -> Result<PreAction, String> {
        if req.streaming() {
            return Ok(PreAction::Continue);
        }
        let key = cache_key(req)?;
        let cached = kv::get(&key).map_err(|e| format!("kv get failed: {e}"))?;
        if let Some(bytes) = cached {
            match std::str::from_utf8(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|s| Completion::from_json(s).map_err(|e| e.to_string()))
            {
                Ok(hit) => {
                    context::set(HIT_KEY, "true");
                    log::debug!("cache hit for `{}` ({key})", req.id());
                    return Ok(PreAction::Respond(hit.with_field("plugbox_cache", "hit".into())));
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

    fn post_response(&mut self, _req: &Request, resp: &Response) -> Result<PostAction, String> {
        if context::get(HIT_KEY).as_deref() == Some("true") || resp.is_error() || resp.choice_count() == 0 {
            return Ok(PostAction::Continue);
        }
        let Some(key) = context::get(KEY_KEY) else {
            return Ok(PostAction::Continue);
        };
        let json = resp.to_json()?;
        if json.len() > self.max_entry_bytes {
            log::debug!("not caching {key}: {} bytes is over max_entry_bytes ({})", json.len(), self.max_entry_bytes);
            return Ok(PostAction::Continue);
        }
        kv::set(&key, json.as_bytes(), Some(self.ttl)).map_err(|e| format!("kv set failed: {e}"))?;
        Ok(PostAction::Continue)
    }
}

plugbox_sdk::export!(ResponseCache);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::{Access, LlmError, Usage, testing};

    fn request(text: &str) -> Request {
        Request::builder("m").user(text).param("temperature", 0.5).access(Access::Write).build()
    }

    fn answer(text: &str) -> Response {
        Response::builder("m")
            .id("chatcmpl-1")
            .text(text)
            .usage(Usage::new(1, 1))
            .param("system_fingerprint", "fp")
            .build()
    }

    #[test]
    fn miss_store_hit() {
        testing::reset();
        let mut p = ResponseCache::init(Config::empty()).unwrap();
        assert_eq!(p.pre_request(&request("hi")).unwrap(), PreAction::Continue);
        p.post_response(&request("hi"), &answer("hello")).unwrap();

        testing::clear_context();
        let PreAction::Respond(hit) = p.pre_request(&request("hi")).unwrap() else { panic!("expected a hit") };
        assert_eq!(hit.content(), Some("hello"));
        assert_eq!(hit.id, "chatcmpl-1");
        assert_eq!(hit.usage, Some(Usage::new(1, 1)));
        assert_eq!(hit.extra["plugbox_cache"], "hit");
        assert_eq!(hit.extra["system_fingerprint"], "fp");
        assert_eq!(testing::context()[HIT_KEY], "true");

        testing::clear_context();
        assert_eq!(p.pre_request(&request("other")).unwrap(), PreAction::Continue);
    }

    #[test]
    fn errors_streams_and_big_entries_are_skipped() {
        testing::reset();
        let mut p = ResponseCache::init(Config::from_json(r#"{"max_entry_bytes": 10}"#).unwrap()).unwrap();
        p.pre_request(&request("hi")).unwrap();
        p.post_response(&request("hi"), &answer("a long answer")).unwrap();
        p.post_response(&request("hi"), &Response::failed(LlmError::timeout("slow")).build()).unwrap();
        testing::clear_context();
        assert_eq!(p.pre_request(&request("hi")).unwrap(), PreAction::Continue);
        testing::clear_context();
        let streamed = Request::builder("m").user("hi").streaming(true).build();
        assert_eq!(p.pre_request(&streamed).unwrap(), PreAction::Continue);
        assert!(!testing::context().contains_key(KEY_KEY));
    }

    #[test]
    fn keys_are_stable_and_cover_parameters() {
        assert_eq!(cache_key(&request("a")).unwrap(), cache_key(&request("a")).unwrap());
        assert_ne!(cache_key(&request("a")).unwrap(), cache_key(&request("b")).unwrap());
        let hotter = Request::builder("m").user("a").param("temperature", 0.9).build();
        assert_ne!(cache_key(&request("a")).unwrap(), cache_key(&hotter).unwrap());
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }
}
