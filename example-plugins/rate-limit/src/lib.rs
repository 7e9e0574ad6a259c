//! Token-bucket rate limiting per caller.
//!
//! Each caller (`Request::caller`, or `anonymous`) has a bucket of `burst`
//! tokens that refills at `rps` tokens per second; a request takes one token,
//! and a request that finds less than one is refused with a `rate-limited`
//! error (no fallback: another provider would not lift the caller's limit)
//! that says when a token will be there.
//!
//! The bucket lives in the plugin's kv store, so every instance (and, with a
//! shared backend, every replica) sees the same one. It is updated with
//! compare-and-swap: read, compute, swap if nobody else wrote meanwhile,
//! retry otherwise. A bucket that would be full again expires, so idle
//! callers cost nothing. The tokens left are in the context key
//! `rate-limit.remaining`.
//!
//! Config: `rps` (number, default 10), `burst` (integer, default 20).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plugbox_sdk::{Config, LlmError, Plugin, PreAction, Request, context, kv, log};

plugbox_sdk::embed_manifest!("../../../manifests/rate-limit.yaml");

/// How often to retry a compare-and-swap that lost a race.
const MAX_ATTEMPTS: usize = 32;

#[derive(Debug)]
struct RateLimit {
    rps: f64,
    burst: f64,
}

/// A bucket as stored: tokens (f64) and the time of the last refill
/// (milliseconds since the epoch), both little-endian: 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn encode(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.tokens.to_le_bytes());
        out[8..].copy_from_slice(&self.at_ms.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Bucket> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let tokens = f64::from_le_bytes(bytes[..8].try_into().ok()?);
        let at_ms = u64::from_le_bytes(bytes[8..].try_into().ok()?);
        tokens.is_finite().then_some(Bucket { tokens, at_ms })
    }
}

/// The outcome of taking a token at `now_ms`.
#[derive(Debug, PartialEq)]
enum Take {
    /// Allowed; the bucket to store.
    Allowed(Bucket),
    /// Refused; how long until a token is there.
    Refused(Duration),
}

impl RateLimit {
    fn take(&self, stored: Option<Bucket>, now_ms: u64) -> Take {
        let bucket = stored.unwrap_or(Bucket { tokens: self.burst, at_ms: now_ms });
        let elapsed_s = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0;
        let tokens = (bucket.tokens + elapsed_s * self.rps).min(self.burst);
        let at_ms = now_ms.max(bucket.at_ms);
        if tokens >= 1.0 {
            Take::Allowed(Bucket { tokens: tokens - 1.0, at_ms })
        } else {
            let wait_s = (1.0 - tokens) / self.rps;
            Take::Refused(Duration::from_millis((wait_s * 1000.0).ceil() as u64))
        }
    }

    /// How long until a bucket with `tokens` is full: when it may expire.
    fn ttl(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64(((self.burst - tokens) / self.rps).max(0.0) + 1.0)
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Plugin for RateLimit {
    fn init(config: Config) -> Result<Self, String> {
        let rps = config.get_f64("rps")?.unwrap_or(10.0);
        let burst = config.get_i64("burst")?.unwrap_or(20);
        if !(rps > 0.0 && rps.is_finite()) {
            return Err(format!("config `rps` must be a positive number, got `{rps}`"));
        }
        if burst < 1 {
            return Err(format!("config `burst` must be at least 1, got `{burst}`"));
        }
        Ok(RateLimit { rps, burst: burst as f64 })
    }

    fn pre_request(&mut self, req: &Request) -> Result<PreAction, String> {
        // Only the caller crosses into the plugin: no message is read.
        let caller = req.caller_or("anonymous");
        let key = format!("bucket:{caller}");
        for _ in 0..MAX_ATTEMPTS {
            let current = kv::get(&key).map_err(|e| format!("kv get failed: {e}"))?;
            let stored = current.as_deref().and_then(Bucket::decode);
            match self.take(stored, now_ms()) {
                Take::Refused(wait) => {
                    context::set("rate-limit.remaining", "0");
                    log::debug!("caller `{caller}` is rate limited for {wait:?}");
                    let error = LlmError::rate_limited(
                        format!("rate limit exceeded for `{caller}`: retry in {} ms", wait.as_millis()),
                        wait,
                    );
                    return Ok(PreAction::Fail(error));
                }
                Take::Allowed(bucket) => {
                    let swapped =
                        kv::compare_and_swap(&key, current.as_deref(), bucket.encode(), Some(self.ttl(bucket.tokens)))
                            .map_err(|e| format!("kv compare-and-swap failed: {e}"))?;
                    if swapped {
                        context::set("rate-limit.remaining", &(bucket.tokens.floor() as u64).to_string());
                        return Ok(PreAction::Continue);
                    }
                }
            }
        }
        Err(format!("the bucket of `{caller}` changed {MAX_ATTEMPTS} times in a row while updating it"))
    }
}

plugbox_sdk::export!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::{Access, ErrorKind, testing};

    fn limiter(rps: f64, burst: i64) -> RateLimit {
        let json = format!(r#"{{"rps": {rps}, "burst": {burst}}}"#);
        RateLimit::init(Config::from_json(&json).unwrap()).unwrap()
    }

    #[test]
    fn bucket_math() {
        let l = limiter(2.0, 3);
        let Take::Allowed(b) = l.take(None, 1000) else { panic!() };
        assert_eq!(b, Bucket { tokens: 2.0, at_ms: 1000 });
        let empty = Bucket { tokens: 0.0, at_ms: 1000 };
        assert_eq!(l.take(Some(empty), 1000), Take::Refused(Duration::from_millis(500)));
        assert_eq!(l.take(Some(empty), 1250), Take::Refused(Duration::from_millis(250)));
        assert!(matches!(l.take(Some(empty), 1500), Take::Allowed(_)));
        // Refill is capped at `burst`.
        let Take::Allowed(b) = l.take(Some(empty), 100_000) else { panic!() };
        assert_eq!(b.tokens, 2.0);
        assert_eq!(Bucket::decode(&b.encode()), Some(b));
        assert_eq!(Bucket::decode(b"short"), None);
    }

    #[test]
    fn refuses_after_burst_per_caller() {
        testing::reset();
        let mut l = limiter(0.001, 2);
        let alice = Request::builder("m").user("hi").caller("alice").access(Access::None).build();
        for _ in 0..2 {
            assert_eq!(l.pre_request(&alice).unwrap(), PreAction::Continue);
        }
        let PreAction::Fail(e) = l.pre_request(&alice).unwrap() else { panic!() };
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(!e.allow_fallback);
        assert!(e.retry_after_ms.unwrap() > 0);
        let bob = Request::builder("m").user("hi").caller("bob").access(Access::None).build();
        assert_eq!(l.pre_request(&bob).unwrap(), PreAction::Continue);
        assert_eq!(testing::context()["rate-limit.remaining"], "1");
    }

    #[test]
    fn config_is_checked() {
        assert!(RateLimit::init(Config::from_json(r#"{"rps": 0}"#).unwrap()).is_err());
        assert!(RateLimit::init(Config::from_json(r#"{"burst": 0}"#).unwrap()).is_err());
        assert!(RateLimit::init(Config::from_json(r#"{"burst": 1.5}"#).unwrap()).is_err());
    }
}
