//! The in-process stand-in for the host, used when the SDK is compiled for
//! anything but `wasm32` (so plugins can be unit tested with `cargo test`).
//!
//! Everything is thread-local: each test thread sees its own host. Logs are
//! printed to stderr and recorded; `context` and `kv` are maps (kv honours
//! TTLs); `devices::list` returns what [`set_devices`] stored.
//!
//! [`run_stream`] plays a stream through a plugin's `on_chunk` and
//! `on_stream_end` hooks the way the host does (drops, holds and merges,
//! the final offer of held text, chunks appended at the end).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{
    Access, Chunk, ChunkAction, ChunkChoice, CompletionChunk, DeviceReport, KvError, LlmError, LogLevel, Plugin,
    Request, StreamEnd,
};

#[derive(Default)]
pub(crate) struct NativeHost {
    pub(crate) logs: Vec<(LogLevel, String)>,
    pub(crate) context: HashMap<String, String>,
    pub(crate) kv: HashMap<String, (Vec<u8>, Option<Instant>)>,
    pub(crate) kv_denied: bool,
    pub(crate) devices: Vec<DeviceReport>,
}

thread_local! {
    static HOST: RefCell<NativeHost> = RefCell::new(NativeHost::default());
}

pub(crate) fn with<R>(f: impl FnOnce(&mut NativeHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

/// Forget all logs, context, kv entries and devices, and allow kv again.
pub fn reset() {
    with(|h| *h = NativeHost::default());
}

/// The messages logged so far on this thread.
pub fn logs() -> Vec<(LogLevel, String)> {
    with(|h| h.logs.clone())
}

/// The current request context, as a map.
pub fn context() -> HashMap<String, String> {
    with(|h| h.context.clone())
}

/// Forget the request context (as between two requests).
pub fn clear_context() {
    with(|h| h.context.clear());
}

/// Make every kv call fail with [`KvError::Denied`], as without
/// `permissions.kv`.
pub fn deny_kv(denied: bool) {
    with(|h| h.kv_denied = denied);
}

/// What `devices::list` returns.
pub fn set_devices(devices: Vec<DeviceReport>) {
    with(|h| h.devices = devices);
}

pub(crate) fn record_log(level: LogLevel, message: &str) {
    eprintln!("[plugin {level}] {message}");
    with(|h| h.logs.push((level, message.to_string())));
}

fn kv_op<R>(f: impl FnOnce(&mut HashMap<String, (Vec<u8>, Option<Instant>)>) -> R) -> Result<R, KvError> {
    with(|h| {
        if h.kv_denied {
            return Err(KvError::Denied);
        }
        let now = Instant::now();
        h.kv.retain(|_, (_, expires)| expires.is_none_or(|t| t > now));
        Ok(f(&mut h.kv))
    })
}

fn expiry(ttl_ms: Option<u64>) -> Option<Instant> {
    ttl_ms.map(|ms| Instant::now() + Duration::from_millis(ms))
}

pub(crate) fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    kv_op(|kv| kv.get(key).map(|(v, _)| v.clone()))
}

pub(crate) fn kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), KvError> {
    kv_op(|kv| {
        kv.insert(key.to_string(), (value.to_vec(), expiry(ttl_ms)));
    })
}

pub(crate) fn kv_delete(key: &str) -> Result<bool, KvError> {
    kv_op(|kv| kv.remove(key).is_some())
}

pub(crate) fn kv_increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, KvError> {
    kv_op(|kv| {
        let (current, expires) = match kv.get(key) {
            Some((bytes, expires)) => {
                let text = std::str::from_utf8(bytes).map_err(|_| KvError::NotANumber)?;
                (text.trim().parse::<i64>().map_err(|_| KvError::NotANumber)?, *expires)
            }
            None => (0, expiry(ttl_ms)),
        };
        let next = current.checked_add(delta).ok_or(KvError::NotANumber)?;
        kv.insert(key.to_string(), (next.to_string().into_bytes(), expires));
        Ok(next)
    })?
}

pub(crate) fn kv_cas(key: &str, expected: Option<&[u8]>, value: &[u8], ttl_ms: Option<u64>) -> Result<bool, KvError> {
    kv_op(|kv| {
        let current = kv.get(key).map(|(v, _)| v.as_slice());
        if current != expected {
            return false;
        }
        kv.insert(key.to_string(), (value.to_vec(), expiry(ttl_ms)));
        true
    })
}

/// The default bound on held text, as the manifest's `limits.max-held`
/// (16 KiB).
pub const DEFAULT_MAX_HELD: usize = 16 * 1024;

/// What [`run_stream`] produced: the chunks the client would receive, and the
/// error the stream was aborted with, if a hook returned
/// [`ChunkAction::Fail`].
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRun {
    /// The chunks that went on (edited, merged, appended), in order.
    pub chunks: Vec<CompletionChunk>,
    /// The error a hook aborted the stream with.
    pub failed: Option<LlmError>,
}

impl StreamRun {
    /// The text deltas of choice 0 of every chunk, joined.
    pub fn text(&self) -> String {
        self.chunks.iter().filter_map(CompletionChunk::text_delta).collect()
    }
}

fn held_len(chunk: &CompletionChunk) -> usize {
    chunk
        .choices
        .iter()
        .map(|c| {
            let d = &c.delta;
            [&d.content, &d.reasoning_content, &d.refusal]
                .iter()
                .filter_map(|t| t.as_ref())
                .map(String::len)
                .sum::<usize>()
        })
        .sum()
}

fn join(first: Option<String>, then: Option<String>) -> Option<String> {
    match (first, then) {
        (None, then) => then,
        (Some(a), None) => Some(a),
        (Some(a), Some(b)) => Some(a + &b),
    }
}

/// `held` merged into `next`: per choice, the held text comes first.
fn merge(held: CompletionChunk, mut next: CompletionChunk) -> CompletionChunk {
    for old in held.choices {
        match next.choices.iter_mut().find(|c| c.index == old.index) {
            Some(new) => {
                let (d, o) = (&mut new.delta, old.delta);
                d.role = d.role.or(o.role);
                d.content = join(o.content, d.content.take());
                d.reasoning_content = join(o.reasoning_content, d.reasoning_content.take());
                d.refusal = join(o.refusal, d.refusal.take());
                let mut calls = o.tool_calls;
                calls.append(&mut d.tool_calls);
                d.tool_calls = calls;
            }
            None => next.choices.push(ChunkChoice { finish_reason: None, ..old }),
        }
    }
    next.choices.sort_by_key(|c| c.index);
    next
}

/// Play `chunks` through `plugin` as the host streams a response for `req`:
/// `on_chunk` for each chunk (with the request's permission; the request is
/// read-only meanwhile), [`ChunkAction::Drop`] and [`ChunkAction::Hold`]
/// applied (held text is merged into the next chunk, bounded by `max_held`
/// bytes, and offered once more as a [`last`](Chunk::last) chunk at the end),
/// then `on_stream_end`, whose appended chunks go last.
///
/// `Err` is a plugin failure as the host would count it: a hook's `Err`, a
/// drop or hold without `messages: write`, held text over `max_held`, or a
/// hold of the last chunk.
pub fn run_stream<P: Plugin>(
    plugin: &mut P,
    req: &Request,
    chunks: impl IntoIterator<Item = CompletionChunk>,
    max_held: usize,
) -> Result<StreamRun, String> {
    let access = req.access();
    req.set_editable(false);
    let result = play(plugin, req, chunks, max_held, access);
    req.set_editable(true);
    result
}

fn play<P: Plugin>(
    plugin: &mut P,
    req: &Request,
    chunks: impl IntoIterator<Item = CompletionChunk>,
    max_held: usize,
    access: Access,
) -> Result<StreamRun, String> {
    let needs_write = |what: &str| {
        if access == Access::Write {
            Ok(())
        } else {
            Err(format!("`{what}` needs `messages: write`; the plugin has `messages: {access}`"))
        }
    };
    let mut out = Vec::new();
    let mut held: Option<CompletionChunk> = None;
    let mut usage = None;
    for chunk in chunks {
        usage = chunk.usage.or(usage);
        let chunk = match held.take() {
            Some(h) => merge(h, chunk),
            None => chunk,
        };
        let handle = Chunk::builder_from(chunk).access(access).build();
        match plugin.on_chunk(req, &handle)? {
            ChunkAction::Continue => out.push(handle.snapshot()),
            ChunkAction::Drop => needs_write("drop")?,
            ChunkAction::Hold => {
                needs_write("hold")?;
                let kept = handle.snapshot();
                if held_len(&kept) > max_held {
                    return Err(format!("the held text exceeds `limits.max-held` (`{max_held}` bytes)"));
                }
                held = Some(kept);
            }
            ChunkAction::Fail(e) => return Ok(StreamRun { chunks: out, failed: Some(e) }),
        }
    }
    if let Some(h) = held {
        let handle = Chunk::builder_from(h).access(access).last(true).build();
        match plugin.on_chunk(req, &handle)? {
            ChunkAction::Continue => out.push(handle.snapshot()),
            ChunkAction::Drop => needs_write("drop")?,
            ChunkAction::Hold => return Err("`hold` is refused on the last chunk of a stream".into()),
            ChunkAction::Fail(e) => return Ok(StreamRun { chunks: out, failed: Some(e) }),
        }
    }
    let end = StreamEnd::new(usage, access);
    plugin.on_stream_end(req, &end)?;
    out.extend(end.appended());
    Ok(StreamRun { chunks: out, failed: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Usage};

    /// Holds every chunk until it ends with a space, then uppercases it.
    struct Words;

    impl Plugin for Words {
        fn init(_: Config) -> Result<Self, String> {
            Ok(Words)
        }

        fn on_chunk(&mut self, _req: &Request, chunk: &Chunk) -> Result<ChunkAction, String> {
            let Some(text) = chunk.text(0).unwrap_or(None) else { return Ok(ChunkAction::Continue) };
            if !text.ends_with(' ') && !chunk.last() {
                return Ok(ChunkAction::Hold);
            }
            chunk.set_text(0, &text.to_uppercase())?;
            Ok(ChunkAction::Continue)
        }

        fn on_stream_end(&mut self, _req: &Request, end: &StreamEnd) -> Result<(), String> {
            end.append_text(&format!("[{} tokens]", end.usage().map_or(0, |u| u.total_tokens)))?;
            Ok(())
        }
    }

    fn pieces(texts: &[&str]) -> Vec<CompletionChunk> {
        let mut all: Vec<_> = texts.iter().map(|t| CompletionChunk::text("c", "m", *t)).collect();
        all.push(CompletionChunk::usage("c", "m", Usage::new(1, 2)));
        all
    }

    #[test]
    fn holds_merge_and_the_rest_is_offered_last() {
        let req = Request::builder("m").access(Access::Write).build();
        let run = run_stream(&mut Words, &req, pieces(&["he", "llo ", "wor", "ld"]), DEFAULT_MAX_HELD).unwrap();
        assert_eq!(run.text(), "HELLO WORLD[3 tokens]");
        assert_eq!(run.failed, None);
        // The request is editable again afterwards.
        req.set_model("x").unwrap();
    }

    #[test]
    fn holds_need_write_and_are_bounded() {
        let req = Request::builder("m").access(Access::Read).build();
        let err = run_stream(&mut Words, &req, pieces(&["he"]), DEFAULT_MAX_HELD).unwrap_err();
        assert!(err.contains("`hold` needs `messages: write`"), "{err}");
        let req = Request::builder("m").access(Access::Write).build();
        let err = run_stream(&mut Words, &req, pieces(&["abc", "def"]), 4).unwrap_err();
        assert!(err.contains("`limits.max-held` (`4` bytes)"), "{err}");
    }
}
