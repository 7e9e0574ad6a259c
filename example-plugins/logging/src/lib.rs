//! Logs each request (`pre-request`: id, model, provider, caller, message
//! count, streaming) and its outcome (`post-response`: ok or the error,
//! finish reason, tokens, time taken). Never logs message text.
//!
//! Config: `level` (`trace`, `debug`, `info` (default), `warn`, `error`).

use std::time::{SystemTime, UNIX_EPOCH};

use plugbox_sdk::{Config, LogLevel, Plugin, PostAction, PreAction, Request, Response, context, log};

plugbox_sdk::embed_manifest!("../../../manifests/logging.yaml");

const START_KEY: &str = "logging.start_us";

struct Logging {
    level: LogLevel,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A line describing an outcome. Reads only facts: no message data.
fn outcome_line(req: &Request, resp: &Response, elapsed_ms: Option<f64>) -> String {
    let took = elapsed_ms.map(|ms| format!(" in {ms:.1}ms")).unwrap_or_default();
    match resp.error() {
        None => {
            let finish = resp.finish_reason(0).ok().flatten().unwrap_or_else(|| "none".to_string());
            let tokens = resp
                .usage()
                .map(|u| format!("{}+{}={}", u.prompt_tokens, u.completion_tokens, u.total_tokens))
                .unwrap_or_else(|| "unknown".to_string());
            format!(
                "request `{}` ok{took}: model={} choices={} finish={finish} tokens={tokens}",
                req.id(),
                resp.model(),
                resp.choice_count()
            )
        }
        Some(error) => format!(
            "request `{}` failed{took}: {} error: {} (fallback {})",
            req.id(),
            error.kind,
            error.message,
            if error.allow_fallback { "allowed" } else { "not allowed" }
        ),
    }
}

impl Plugin for Logging {
    fn init(config: Config) -> Result<Self, String> {
        let name = config.get_str("level")?.unwrap_or("info");
        let level = LogLevel::parse(name)
            .ok_or_else(|| format!("config `level` must be one of trace, debug, info, warn, error; got `{name}`"))?;
        Ok(Logging { level })
    }

    fn pre_request(&mut self, req: &Request) -> Result<PreAction, String> {
        context::set(START_KEY, &now_us().to_string());
        let provider = req.provider();
        log::log(
            self.level,
            &format!(
                "request `{}`: model={} provider={} caller={} messages={} stream={}",
                req.id(),
                req.model(),
                if provider.is_empty() { "-" } else { &provider },
                req.caller_or("-"),
                req.message_count(),
                req.streaming(),
            ),
        );
        Ok(PreAction::Continue)
    }

    fn post_response(&mut self, req: &Request, resp: &Response) -> Result<PostAction, String> {
        let elapsed_ms = context::get(START_KEY)
            .and_then(|s| s.parse::<u64>().ok())
            .map(|start| now_us().saturating_sub(start) as f64 / 1000.0);
        log::log(self.level, &outcome_line(req, resp, elapsed_ms));
        Ok(PostAction::Continue)
    }
}

plugbox_sdk::export!(Logging);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::{Access, LlmError, Usage, testing};

    #[test]
    fn logs_both_ends_at_the_configured_level() {
        testing::reset();
        let mut p = Logging::init(Config::from_json(r#"{"level": "warn"}"#).unwrap()).unwrap();
        // `messages: none`, as in the manifest: reading any text would fail.
        let req = Request::builder("gpt").id("r7").user("secret").caller("alice").access(Access::None).build();
        p.pre_request(&req).unwrap();
        let ok = Response::builder("gpt").text("x").usage(Usage::new(1, 2)).access(Access::None).build();
        p.post_response(&req, &ok).unwrap();
        let failed = Response::failed(LlmError::rate_limited("slow", Default::default())).access(Access::None).build();
        p.post_response(&req, &failed).unwrap();
        let logs = testing::logs();
        assert_eq!(logs.len(), 3);
        assert!(logs.iter().all(|(l, _)| *l == LogLevel::Warn));
        assert_eq!(logs[0].1, "request `r7`: model=gpt provider=- caller=alice messages=1 stream=false");
        assert!(logs[1].1.contains("ok in ") && logs[1].1.ends_with("finish=stop tokens=1+2=3"), "{}", logs[1].1);
        assert!(logs[2].1.contains("rate-limited error: slow (fallback not allowed)"));
        assert!(logs.iter().all(|(_, l)| !l.contains("secret")));
    }

    #[test]
    fn bad_level() {
        assert!(Logging::init(Config::from_json(r#"{"level": "loud"}"#).unwrap()).is_err());
    }
}
