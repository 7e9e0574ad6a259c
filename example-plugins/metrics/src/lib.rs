//! Request, error, token and latency metrics, kept as counters in the
//! plugin's kv store (so they add up across instances and replicas).
//!
//! `pre-request` counts the request and puts its start time in the context;
//! `post-response` counts errors (in total and per kind), prompt and
//! completion tokens, and files the latency into a fixed histogram of
//! bucket counters, from which p50/p95/p99 are estimated. Every
//! `report_every` responses it logs a summary.
//!
//! kv keys: `requests`, `responses`, `errors`, `errors.<kind>`,
//! `tokens.prompt`, `tokens.completion`, `latency.sum_us`, and
//! `latency.le_<ms>` (count of responses with latency in the bucket ending at
//! `<ms>` milliseconds; `latency.le_inf` for the rest).
//!
//! It reads only facts (usage, the error), never message data: its manifest
//! has `messages: none`.
//!
//! Config: `report_every` (integer, default 100; 0 never logs).

use std::time::{SystemTime, UNIX_EPOCH};

use plugbox_sdk::{Config, Plugin, PostAction, PreAction, Request, Response, context, kv, log};

plugbox_sdk::embed_manifest!("../../../manifests/metrics.yaml");

const START_KEY: &str = "metrics.start_us";

/// Upper bounds of the latency buckets, in milliseconds (roughly 1-2-5 per
/// decade); one more bucket catches everything above the last.
const BUCKETS_MS: [u64; 16] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 60_000, 120_000];

struct Metrics {
    report_every: i64,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn bucket_key(index: usize) -> String {
    match BUCKETS_MS.get(index) {
        Some(ms) => format!("latency.le_{ms}"),
        None => "latency.le_inf".to_string(),
    }
}

/// The index of the bucket for a latency of `us` microseconds.
fn bucket_of(us: u64) -> usize {
    BUCKETS_MS.iter().position(|&ms| us <= ms * 1000).unwrap_or(BUCKETS_MS.len())
}

/// The upper bound (ms) of the bucket holding quantile `q` of `counts`;
/// `None` for the overflow bucket or an empty histogram.
fn quantile(counts: &[i64], q: f64) -> Option<Option<u64>> {
    let total: i64 = counts.iter().sum();
    if total <= 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(BUCKETS_MS.get(i).copied());
        }
    }
    Some(None)
}

fn describe(q: Option<Option<u64>>) -> String {
    match q {
        None => "n/a".to_string(),
        Some(Some(ms)) => format!("<={ms}ms"),
        Some(None) => format!(">{}ms", BUCKETS_MS[BUCKETS_MS.len() - 1]),
    }
}

fn incr(key: &str, delta: i64) -> Result<i64, String> {
    kv::increment(key, delta, None).map_err(|e| format!("kv increment of `{key}` failed: {e}"))
}

/// Read a counter. `increment` by 0 reads it whatever encoding the host uses
/// for integers.
fn read(key: &str) -> Result<i64, String> {
    incr(key, 0)
}

impl Metrics {
    fn report(&self) -> Result<(), String> {
        let counts = (0..=BUCKETS_MS.len()).map(|i| read(&bucket_key(i))).collect::<Result<Vec<_>, _>>()?;
        let responses = read("responses")?;
        let sum_us = read("latency.sum_us")?;
        let mean_ms = if responses > 0 { sum_us as f64 / responses as f64 / 1000.0 } else { 0.0 };
        log::info!(
            "metrics: {} requests, {} responses, {} errors, tokens {} prompt / {} completion, \
             latency mean {mean_ms:.1}ms p50 {} p95 {} p99 {}",
            read("requests")?,
            responses,
            read("errors")?,
            read("tokens.prompt")?,
            read("tokens.completion")?,
            describe(quantile(&counts, 0.50)),
            describe(quantile(&counts, 0.95)),
            describe(quantile(&counts, 0.99)),
        );
        Ok(())
    }
}

impl Plugin for Metrics {
    fn init(config: Config) -> Result<Self, String> {
        let report_every = config.get_i64("report_every")?.unwrap_or(100);
        if report_every < 0 {
            return Err(format!("config `report_every` must not be negative, got `{report_every}`"));
        }
        Ok(Metrics { report_every })
    }

    fn pre_request(&mut self, _req: &Request) -> Result<PreAction, String> {
        incr("requests", 1)?;
        context::set(START_KEY, &now_us().to_string());
        Ok(PreAction::Continue)
    }

    fn post_response(&mut self, _req: &Request, resp: &Response) -> Result<PostAction, String> {
        let responses = incr("responses", 1)?;
        match resp.error() {
            None => {
                if let Some(usage) = resp.usage() {
                    incr("tokens.prompt", i64::from(usage.prompt_tokens))?;
                    incr("tokens.completion", i64::from(usage.completion_tokens))?;
                }
            }
            Some(error) => {
                incr("errors", 1)?;
                incr(&format!("errors.{}", error.kind), 1)?;
            }
        }
        if let Some(start) = context::get(START_KEY).and_then(|s| s.parse::<u64>().ok()) {
            let elapsed_us = now_us().saturating_sub(start);
            incr(&bucket_key(bucket_of(elapsed_us)), 1)?;
            incr("latency.sum_us", i64::try_from(elapsed_us).unwrap_or(i64::MAX))?;
        }
        if self.report_every > 0 && responses % self.report_every == 0 {
            self.report()?;
        }
        Ok(PostAction::Continue)
    }
}

plugbox_sdk::export!(Metrics);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::{Access, LlmError, Usage, testing};

    #[test]
    fn buckets_and_quantiles() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1000), 0);
        assert_eq!(bucket_of(1001), 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS_MS.len());
        let mut counts = vec![0; BUCKETS_MS.len() + 1];
        counts[2] = 90; // <= 5 ms
        counts[6] = 9; // <= 100 ms
        counts[16] = 1; // overflow
        assert_eq!(quantile(&counts, 0.5), Some(Some(5)));
        assert_eq!(quantile(&counts, 0.95), Some(Some(100)));
        assert_eq!(quantile(&counts, 1.0), Some(None));
        assert_eq!(quantile(&[0, 0], 0.5), None);
    }

    #[test]
    fn counts_and_reports() {
        testing::reset();
        let mut m = Metrics::init(Config::from_json(r#"{"report_every": 2}"#).unwrap()).unwrap();
        // `messages: none`, as in the manifest.
        let req = Request::builder("m").user("hi").access(Access::None).build();
        m.pre_request(&req).unwrap();
        let ok = Response::builder("m").text("a").usage(Usage::new(3, 4)).access(Access::None).build();
        m.post_response(&req, &ok).unwrap();
        m.pre_request(&req).unwrap();
        m.post_response(&req, &Response::failed(LlmError::timeout("slow")).access(Access::None).build()).unwrap();
        assert_eq!(read("requests").unwrap(), 2);
        assert_eq!(read("errors").unwrap(), 1);
        assert_eq!(read("errors.timeout").unwrap(), 1);
        assert_eq!(read("tokens.completion").unwrap(), 4);
        assert_eq!(read("latency.le_1").unwrap(), 2);
        let logs = testing::logs();
        assert!(logs.iter().any(|(_, l)| l.starts_with("metrics: 2 requests")), "{logs:?}");
    }
}
