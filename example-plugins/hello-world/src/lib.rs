//! The smallest useful plugbox plugin: `pre-request` logs a greeting with the
//! model's name and leaves a mark in the request context
//! (`hello-world.greeted = true`) that later plugins can read; `post-response`
//! only logs at debug level what became of the request.
//!
//! The manifest is embedded, so `hello_world.wasm` can be dropped into a
//! plugin directory on its own.

use plugbox_sdk::{Config, Plugin, PostAction, PreAction, Request, Response, context, log};

plugbox_sdk::embed_manifest!("../../../manifests/hello-world.yaml");

struct HelloWorld;

impl Plugin for HelloWorld {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(HelloWorld)
    }

    fn pre_request(&mut self, req: &Request) -> Result<PreAction, String> {
        log::info!("hello from plugbox: request `{}` for model `{}`", req.id(), req.model());
        context::set("hello-world.greeted", "true");
        Ok(PreAction::Continue)
    }

    fn post_response(&mut self, req: &Request, resp: &Response) -> Result<PostAction, String> {
        let how = if resp.is_error() { "failed" } else { "answered" };
        log::debug!("goodbye from plugbox: request `{}` {how}", req.id());
        Ok(PostAction::Continue)
    }
}

plugbox_sdk::export!(HelloWorld);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbox_sdk::{Access, LlmError, LogLevel, testing};

    #[test]
    fn greets_and_marks_the_context() {
        testing::reset();
        let mut plugin = HelloWorld::init(Config::empty()).unwrap();
        let req = Request::builder("gpt-4o").id("r-7").user("hi").access(Access::None).build();
        assert_eq!(plugin.pre_request(&req).unwrap(), PreAction::Continue);
        assert_eq!(testing::context()["hello-world.greeted"], "true");
        let logs = testing::logs();
        assert_eq!(logs[0], (LogLevel::Info, "hello from plugbox: request `r-7` for model `gpt-4o`".to_string()));

        let failed = Response::failed(LlmError::timeout("slow")).build();
        assert_eq!(plugin.post_response(&req, &failed).unwrap(), PostAction::Continue);
        assert_eq!(testing::logs()[1].1, "goodbye from plugbox: request `r-7` failed");
    }
}
