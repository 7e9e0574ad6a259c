//! The smallest useful plugbox plugin: `pre-request` logs a greeting with the
//! model's name and leaves a mark in the request context
//! (`hello-world.greeted = true`) that later plugins can read; `post-response`
//! only logs at debug level what became of the request.
//!
//! The manifest is embedded, so `hello_world.wasm` can be dropped into a
//! plugin directory on its own.

use plugbox_sdk::{Config, LlmError, Plugin, PostAction, PreAction, Request, RequestInfo, Response, context, log};

plugbox_sdk::embed_manifest!("../../../manifests/hello-world.yaml");

struct HelloWorld;

impl Plugin for HelloWorld {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(HelloWorld)
    }

    fn pre_request(&mut self, info: &RequestInfo, _req: Request) -> Result<PreAction, String> {
        log::info!("hello from plugbox: request `{}` for model `{}`", info.request_id, info.model);
        context::set("hello-world.greeted", "true");
        Ok(PreAction::Continue)
    }

    fn post_response(&mut self, info: &RequestInfo, outcome: Result<Response, LlmError>) -> Result<PostAction, String> {
        let how = if outcome.is_ok() { "answered" } else { "failed" };
        log::debug!("goodbye from plugbox: request `{}` {how}", info.request_id);
        Ok(PostAction::Continue)
    }
}

plugbox_sdk::export!(HelloWorld);
