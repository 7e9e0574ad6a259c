//! The glue between the generated `Guest` traits and [`Plugin`]: the
//! [`export!`](crate::export) and [`embed_manifest!`](crate::embed_manifest)
//! macros and the [`Adapter`] they instantiate.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::time::Duration;

use crate::bindings::exports::plugbox::plugin::{device_hooks, device_probe, endpoint, lifecycle};
#[cfg(target_arch = "wasm32")]
use crate::bindings::exports::plugbox::plugin::{provider, request_hooks, stream_hooks, tool_hooks};
#[cfg(target_arch = "wasm32")]
use crate::bindings::plugbox::plugin::llm;
#[cfg(target_arch = "wasm32")]
use crate::{Chunk, ChunkStream, LlmError, Request, Response, StreamEnd, ToolCallRef};
use crate::{Config, DeviceReport, Health, Plugin};

/// Register a [`Plugin`] type as the component's implementation of every
/// exported interface of the `plugbox:plugin` world.
///
/// Use it once per plugin crate, at the top level:
///
/// ```
/// struct Nothing;
/// impl plugbox_sdk::Plugin for Nothing {
///     fn init(_: plugbox_sdk::Config) -> Result<Self, String> { Ok(Nothing) }
/// }
/// plugbox_sdk::export!(Nothing);
/// # fn main() {}
/// ```
///
/// Off wasm the macro exports nothing (there is no host); the type is still
/// checked.
///
/// The value `init` returns is kept for the life of the instance and every
/// hook is called on it. If the host calls a hook before `init` (it should
/// not), the plugin is first initialised with an empty config.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        type __PlugboxAdapter = $crate::Adapter<$plugin>;
        // Off wasm there is no host to export to: the plugin is unit tested
        // through its `Plugin` methods and the stand-ins.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_plugin_world!(__PlugboxAdapter with_types_in $crate::bindings);
    };
}

/// Put a plugin manifest (a `plugin.yaml`) into the component, in a custom
/// section named `plugbox-manifest`, so that the `.wasm` file can be deployed
/// on its own.
///
/// The path is relative to the source file that invokes the macro, as with
/// `include_bytes!`:
///
/// ```text
/// // in src/lib.rs of a plugin crate whose manifest is beside Cargo.toml
/// plugbox_sdk::embed_manifest!("../plugin.yaml");
/// ```
///
/// (Shown as text: a doctest has no `plugin.yaml` beside it. The loader's
/// tests load plugins built this way.)
///
/// The section survives `strip = "debuginfo"` but not `strip = true` (which
/// removes every custom section): keep `strip = "debuginfo"` or less in the
/// release profile. In the component it lives in the nested core module.
#[macro_export]
macro_rules! embed_manifest {
    ($path:literal) => {
        const _: () = {
            const __PLUGBOX_MANIFEST_LEN: usize = ::core::include_bytes!($path).len();
            #[unsafe(link_section = "plugbox-manifest")]
            #[used]
            static __PLUGBOX_MANIFEST: [u8; __PLUGBOX_MANIFEST_LEN] = *::core::include_bytes!($path);
        };
    };
}

/// Implements the generated `Guest` traits for a [`Plugin`]; instantiated by
/// [`export!`](crate::export). Not meant to be used directly.
#[doc(hidden)]
pub struct Adapter<P>(PhantomData<P>);

thread_local! {
    /// The plugin value of this instance. A component instance is single
    /// threaded, so this is effectively a global; it holds one `P`, boxed as
    /// `Any` because a `static` cannot be generic.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn install<P: Plugin>(plugin: P) {
    INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
}

/// Run `f` on the plugin value, initialising it with an empty config first
/// if the host never called `init`.
fn with_plugin<P: Plugin, R>(f: impl FnOnce(&mut P) -> R) -> Result<R, String> {
    INSTANCE.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            let plugin = P::init(Config::empty())
                .map_err(|e| format!("the plugin was not initialised, and init with an empty config failed: {e}"))?;
            *slot = Some(Box::new(plugin));
        }
        let plugin = slot
            .as_mut()
            .and_then(|b| b.downcast_mut::<P>())
            .ok_or_else(|| "the plugin instance has an unexpected type".to_string())?;
        Ok(f(plugin))
    })
}

impl<P: Plugin> lifecycle::Guest for Adapter<P> {
    fn init(config: String) -> Result<(), String> {
        let config = Config::from_json(&config)?;
        install(P::init(config)?);
        Ok(())
    }

    fn shutdown() {
        let taken = INSTANCE.with(|slot| slot.borrow_mut().take());
        if let Some(mut boxed) = taken
            && let Some(plugin) = boxed.downcast_mut::<P>()
        {
            plugin.shutdown();
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl<P: Plugin> request_hooks::Guest for Adapter<P> {
    fn pre_request(req: &llm::Request) -> Result<request_hooks::PreAction, String> {
        with_plugin::<P, _>(|p| p.pre_request(Request::from_wit(req)))?.map(Into::into)
    }

    fn post_response(req: &llm::Request, resp: &llm::Response) -> Result<request_hooks::PostAction, String> {
        with_plugin::<P, _>(|p| p.post_response(Request::from_wit(req), Response::from_wit(resp)))?.map(Into::into)
    }
}

#[cfg(target_arch = "wasm32")]
impl<P: Plugin> stream_hooks::Guest for Adapter<P> {
    fn on_chunk(req: &llm::Request, chunk: &llm::Chunk) -> Result<stream_hooks::ChunkAction, String> {
        with_plugin::<P, _>(|p| p.on_chunk(Request::from_wit(req), Chunk::from_wit(chunk)))?.map(Into::into)
    }

    fn on_stream_end(req: &llm::Request, end: &llm::StreamEnd) -> Result<(), String> {
        with_plugin::<P, _>(|p| p.on_stream_end(Request::from_wit(req), StreamEnd::from_wit(end)))?
    }
}

#[cfg(target_arch = "wasm32")]
impl<P: Plugin> tool_hooks::Guest for Adapter<P> {
    fn on_tool_call(req: &llm::Request, call: &llm::ToolCallRef) -> Result<tool_hooks::ToolAction, String> {
        with_plugin::<P, _>(|p| p.on_tool_call(Request::from_wit(req), ToolCallRef::from_wit(call)))?.map(Into::into)
    }
}

/// The `chunk-stream` resource: a [`ChunkStream`] the host pulls from.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub struct StreamResource(RefCell<ChunkStream>);

#[cfg(target_arch = "wasm32")]
impl provider::GuestChunkStream for StreamResource {
    fn next(&self) -> Result<Option<String>, LlmError> {
        Ok(self.0.borrow_mut().next_chunk()?.map(|chunk| chunk.to_json()))
    }
}

#[cfg(target_arch = "wasm32")]
impl<P: Plugin> provider::Guest for Adapter<P> {
    type ChunkStream = StreamResource;

    fn provider_type() -> String {
        // A plugin that cannot even initialise has no provider type.
        with_plugin::<P, _>(|p| p.provider_type()).unwrap_or_default()
    }

    fn complete(req: &llm::Request) -> Result<String, LlmError> {
        let done = with_plugin::<P, _>(|p| p.complete(Request::from_wit(req))).map_err(LlmError::internal)??;
        Ok(done.to_json())
    }

    fn start_stream(req: &llm::Request) -> Result<provider::ChunkStream, LlmError> {
        let stream = with_plugin::<P, _>(|p| p.start_stream(Request::from_wit(req))).map_err(LlmError::internal)??;
        Ok(provider::ChunkStream::new(StreamResource(RefCell::new(stream))))
    }
}

impl<P: Plugin> device_hooks::Guest for Adapter<P> {
    fn on_device_probe(reports: Vec<DeviceReport>) -> Result<Vec<DeviceReport>, String> {
        with_plugin::<P, _>(|p| p.on_device_probe(reports))?
    }
}

impl<P: Plugin> device_probe::Guest for Adapter<P> {
    fn probe() -> Result<Vec<DeviceReport>, String> {
        with_plugin::<P, _>(|p| p.probe())?
    }
}

impl<P: Plugin> endpoint::Guest for Adapter<P> {
    fn mode() -> String {
        with_plugin::<P, _>(|p| p.mode()).unwrap_or_default()
    }

    fn supported_endpoints() -> Vec<String> {
        with_plugin::<P, _>(|p| p.supported_endpoints()).unwrap_or_default()
    }

    fn validate_request(path: String, model_alias: String) -> Result<(), String> {
        with_plugin::<P, _>(|p| p.validate_request(&path, &model_alias))?
    }

    fn health_check(model_alias: String, base_url: String, elapsed_ms: u64, timeout_ms: u64) -> Health {
        with_plugin::<P, _>(|p| {
            p.health_check(
                &model_alias,
                &base_url,
                Duration::from_millis(elapsed_ms),
                Duration::from_millis(timeout_ms),
            )
        })
        .unwrap_or_else(Health::unhealthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Access, ChunkAction, Completion, LlmError, PreAction, Request, Role, testing};

    /// Counts calls; `greeting` comes from the config.
    struct Counter {
        greeting: String,
        calls: u32,
    }

    impl Plugin for Counter {
        fn init(config: Config) -> Result<Self, String> {
            if config.get_bool("fail")?.unwrap_or(false) {
                return Err("asked to fail".into());
            }
            let greeting = config.get_str("greeting")?.unwrap_or("hi").to_string();
            Ok(Counter { greeting, calls: 0 })
        }

        fn shutdown(&mut self) {
            crate::log::info(&format!("shutdown after {} calls", self.calls));
        }

        fn pre_request(&mut self, _req: &Request) -> Result<PreAction, String> {
            self.calls += 1;
            crate::context::set("calls", &self.calls.to_string());
            Ok(PreAction::Continue)
        }

        fn complete(&mut self, req: &Request) -> Result<Completion, LlmError> {
            Ok(Completion::text("c", req.model(), self.greeting.clone()))
        }
    }

    type A = Adapter<Counter>;

    fn req() -> Request {
        Request::builder("m").user("x").build()
    }

    fn call_pre() {
        with_plugin::<Counter, _>(|p| p.pre_request(&req())).unwrap().unwrap();
    }

    #[test]
    fn state_lives_between_calls_and_init_replaces_it() {
        testing::reset();
        // A hook before init initialises with an empty config.
        call_pre();
        call_pre();
        assert_eq!(testing::context()["calls"], "2");

        <A as lifecycle::Guest>::init(r#"{"greeting": "hello"}"#.into()).unwrap();
        call_pre();
        assert_eq!(testing::context()["calls"], "1");
        let done = with_plugin::<Counter, _>(|p| p.complete(&req())).unwrap().unwrap();
        assert_eq!(done.content(), Some("hello"));

        <A as lifecycle::Guest>::shutdown();
        assert_eq!(testing::logs().last().unwrap().1, "shutdown after 1 calls");
    }

    #[test]
    fn init_errors_are_reported() {
        let err = <A as lifecycle::Guest>::init(r#"{"fail": true}"#.into()).unwrap_err();
        assert_eq!(err, "asked to fail");
        assert!(<A as lifecycle::Guest>::init("[]".into()).is_err());
        assert!(<A as lifecycle::Guest>::init(r#"{"greeting": 3}"#.into()).is_err());
    }

    #[test]
    fn defaults() {
        <A as lifecycle::Guest>::init("{}".into()).unwrap();
        assert!(<A as device_probe::Guest>::probe().unwrap().is_empty());
        assert!(<A as device_hooks::Guest>::on_device_probe(Vec::new()).unwrap().is_empty());
        assert_eq!(<A as endpoint::Guest>::mode(), "");
        assert!(<A as endpoint::Guest>::validate_request("/v1/x".into(), "m".into()).is_err());
        assert!(!<A as endpoint::Guest>::health_check("m".into(), "u".into(), 1, 2).healthy);

        let mut plugin = Counter::init(Config::empty()).unwrap();
        let chunk = crate::Chunk::builder().text("c").build();
        assert_eq!(plugin.on_chunk(&req(), &chunk).unwrap(), ChunkAction::Continue);
        let end = crate::StreamEnd::new(None, Access::Write);
        plugin.on_stream_end(&req(), &end).unwrap();
        assert!(end.appended().is_empty());
        let call = crate::ToolCallRef::new("1", "f", "{}", Access::Read);
        assert_eq!(plugin.on_tool_call(&req(), &call).unwrap(), crate::ToolAction::Allow);
        let failed = crate::Response::failed(LlmError::internal("x")).build();
        assert_eq!(plugin.post_response(&req(), &failed).unwrap(), crate::PostAction::Continue);
        assert_eq!(plugin.provider_type(), "");

        // start_stream defaults to complete, chunked.
        let chunks = plugin.start_stream(&req()).unwrap().collect_all().unwrap();
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(chunks[0].text_delta(), Some("hi"));
        assert_eq!(chunks[1].choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(chunks.len(), 2);

        struct NotAProvider;
        impl Plugin for NotAProvider {
            fn init(_: Config) -> Result<Self, String> {
                Ok(NotAProvider)
            }
        }
        let err = NotAProvider.complete(&req()).unwrap_err();
        assert!(err.message.contains("not a provider"), "{}", err.message);
        assert!(NotAProvider.start_stream(&req()).is_err());
    }
}
