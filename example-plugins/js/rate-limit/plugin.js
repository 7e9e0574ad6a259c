// Token-bucket rate limiting per caller. The JavaScript port of
// example-plugins/rate-limit: the same buckets, in the same kv format.
//
// Each caller (`req.caller()`, or `anonymous`) has a bucket of `burst` tokens
// that refills at `rps` tokens per second; a request takes one token, and a
// request that finds less than one is refused with a `rate-limited` error (no
// fallback) that says when a token will be there.
//
// The bucket lives in the plugin's kv store (16 bytes: tokens as a
// little-endian f64, then the last refill time in milliseconds as a
// little-endian u64), updated with compare-and-swap and retried when another
// instance wrote meanwhile. A bucket that would be full again expires. The
// tokens left are in the context key `rate-limit.remaining`.
//
// Config: `rps` (number, default 10), `burst` (integer, default 20).

import { LlmError, Plugin, PreAction, context, exportPlugin, kv, log } from "../../../plugin-sdk/js/plugbox.js";

/** How often to retry a compare-and-swap that lost a race. */
const MAX_ATTEMPTS = 32;

function encode(bucket) {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setFloat64(0, bucket.tokens, true);
  view.setBigUint64(8, BigInt(bucket.atMs), true);
  return bytes;
}

function decode(bytes) {
  if (!bytes || bytes.length !== 16) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, 16);
  const tokens = view.getFloat64(0, true);
  const atMs = Number(view.getBigUint64(8, true));
  return Number.isFinite(tokens) ? { tokens, atMs } : undefined;
}

class RateLimit extends Plugin {
  constructor(config) {
    super(config);
    this.rps = config.getNumber("rps", 10);
    const burst = config.getNumber("burst", 20);
    if (!(this.rps > 0)) throw new Error(`config \`rps\` must be a positive number, got \`${this.rps}\``);
    if (!Number.isInteger(burst)) throw new Error(`config \`burst\` must be an integer, got \`${burst}\``);
    if (burst < 1) throw new Error(`config \`burst\` must be at least 1, got \`${burst}\``);
    this.burst = burst;
  }

  /** Takes a token at `nowMs`: `{allowed: bucket}` or `{waitMs}`. */
  take(stored, nowMs) {
    const bucket = stored ?? { tokens: this.burst, atMs: nowMs };
    const elapsedS = Math.max(0, nowMs - bucket.atMs) / 1000;
    const tokens = Math.min(bucket.tokens + elapsedS * this.rps, this.burst);
    const atMs = Math.max(nowMs, bucket.atMs);
    if (tokens >= 1) return { allowed: { tokens: tokens - 1, atMs } };
    return { waitMs: Math.ceil(((1 - tokens) / this.rps) * 1000) };
  }

  /** How long until a bucket with `tokens` is full: when it may expire (ms). */
  ttlMs(tokens) {
    return (Math.max(0, (this.burst - tokens) / this.rps) + 1) * 1000;
  }

  preRequest(req) {
    // Only the caller crosses into the plugin: no message is read.
    const caller = req.callerOr("anonymous");
    const key = `bucket:${caller}`;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const current = kv.get(key);
      const outcome = this.take(decode(current), Date.now());
      if (outcome.waitMs !== undefined) {
        context.set("rate-limit.remaining", "0");
        log.debug(`caller \`${caller}\` is rate limited for ${outcome.waitMs} ms`);
        return PreAction.fail(
          LlmError.rateLimited(`rate limit exceeded for \`${caller}\`: retry in ${outcome.waitMs} ms`, outcome.waitMs),
        );
      }
      const bucket = outcome.allowed;
      if (kv.compareAndSwap(key, current, encode(bucket), this.ttlMs(bucket.tokens))) {
        context.set("rate-limit.remaining", String(Math.floor(bucket.tokens)));
        return PreAction.continue();
      }
    }
    throw new Error(`the bucket of \`${caller}\` changed ${MAX_ATTEMPTS} times in a row while updating it`);
  }
}

export const { lifecycle, requestHooks, streamHooks, toolHooks, provider, deviceHooks, deviceProbe, endpoint } =
  exportPlugin(RateLimit);
