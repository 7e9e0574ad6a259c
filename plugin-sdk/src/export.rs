//! The glue between the generated `Guest` traits and [`Plugin`]: the
//! [`export!`](crate::export) and [`embed_manifest!`](crate::embed_manifest)
//! macros and the [`Adapter`] they instantiate.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::time::Duration;

use crate::bindings::exports::plugbox::plugin::{
    device_hooks, device_probe, endpoint, lifecycle, provider, request_hooks, stream_hooks, tool_hooks,
};
use crate::{
    ChunkAction, ChunkStream, Config, DeviceReport, Health, LlmError, Plugin, PostAction, PreAction, Request,
    RequestInfo, Response, StreamChunk, ToolAction, ToolCall, Usage,
};

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
/// The value `init` returns is kept for the life of the instance and every
/// hook is called on it. If the host calls a hook before `init` (it should
/// not), the plugin is first initialised with an empty config.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[doc(hidden)]
        type __PlugboxAdapter = $crate::Adapter<$plugin>;
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

impl<P: Plugin> request_hooks::Guest for Adapter<P> {
    fn pre_request(info: RequestInfo, req: Request) -> Result<PreAction, String> {
        with_plugin::<P, _>(|p| p.pre_request(&info, req))?
    }

    fn post_response(info: RequestInfo, outcome: Result<Response, LlmError>) -> Result<PostAction, String> {
        with_plugin::<P, _>(|p| p.post_response(&info, outcome))?
    }
}

impl<P: Plugin> stream_hooks::Guest for Adapter<P> {
    fn on_chunk(info: RequestInfo, chunk: StreamChunk) -> Result<ChunkAction, String> {
        with_plugin::<P, _>(|p| p.on_chunk(&info, chunk))?
    }

    fn on_stream_end(info: RequestInfo, usage: Option<Usage>) -> Result<Vec<StreamChunk>, String> {
        with_plugin::<P, _>(|p| p.on_stream_end(&info, usage))?
    }
}

impl<P: Plugin> tool_hooks::Guest for Adapter<P> {
    fn on_tool_call(info: RequestInfo, call: ToolCall) -> Result<ToolAction, String> {
        with_plugin::<P, _>(|p| p.on_tool_call(&info, call))?
    }
}

/// The `chunk-stream` resource: a [`ChunkStream`] the host pulls from.
#[doc(hidden)]
pub struct StreamResource(RefCell<ChunkStream>);

impl provider::GuestChunkStream for StreamResource {
    fn next(&self) -> Result<Option<StreamChunk>, LlmError> {
        self.0.borrow_mut().next_chunk()
    }
}

fn init_failed(message: String) -> LlmError {
    LlmError::internal(message)
}

impl<P: Plugin> provider::Guest for Adapter<P> {
    type ChunkStream = StreamResource;

    fn provider_type() -> String {
        // A plugin that cannot even initialise has no provider type.
        with_plugin::<P, _>(|p| p.provider_type()).unwrap_or_default()
    }

    fn complete(info: RequestInfo, req: Request) -> Result<Response, LlmError> {
        with_plugin::<P, _>(|p| p.complete(&info, req)).map_err(init_failed)?
    }

    fn start_stream(info: RequestInfo, req: Request) -> Result<provider::ChunkStream, LlmError> {
        let stream = with_plugin::<P, _>(|p| p.start_stream(&info, req)).map_err(init_failed)??;
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
    use crate::{Message, Role, testing};

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

        fn pre_request(&mut self, _info: &RequestInfo, _req: Request) -> Result<PreAction, String> {
            self.calls += 1;
            crate::context::set("calls", &self.calls.to_string());
            Ok(PreAction::Continue)
        }

        fn complete(&mut self, _info: &RequestInfo, req: Request) -> Result<Response, LlmError> {
            Ok(Response::text(req.model, self.greeting.clone()))
        }
    }

    type A = Adapter<Counter>;

    fn info() -> RequestInfo {
        RequestInfo::new("r", "m")
    }

    fn req() -> Request {
        Request::new("m", vec![Message::user("x")])
    }

    #[test]
    fn state_lives_between_calls_and_init_replaces_it() {
        testing::reset();
        // A hook before init initialises with an empty config.
        <A as request_hooks::Guest>::pre_request(info(), req()).unwrap();
        <A as request_hooks::Guest>::pre_request(info(), req()).unwrap();
        assert_eq!(testing::context()["calls"], "2");

        <A as lifecycle::Guest>::init(r#"{"greeting": "hello"}"#.into()).unwrap();
        <A as request_hooks::Guest>::pre_request(info(), req()).unwrap();
        assert_eq!(testing::context()["calls"], "1");
        let response = <A as provider::Guest>::complete(info(), req()).unwrap();
        assert_eq!(response.content(), Some("hello"));

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
        let chunk = StreamChunk::text(0, "c");
        assert!(matches!(<A as stream_hooks::Guest>::on_chunk(info(), chunk).unwrap(), ChunkAction::Continue));
        assert!(<A as stream_hooks::Guest>::on_stream_end(info(), None).unwrap().is_empty());
        let call = ToolCall::new("1", "f", "{}");
        assert!(matches!(<A as tool_hooks::Guest>::on_tool_call(info(), call).unwrap(), ToolAction::Allow));
        assert!(matches!(
            <A as request_hooks::Guest>::post_response(info(), Err(LlmError::internal("x"))).unwrap(),
            PostAction::Continue
        ));
        assert_eq!(<A as provider::Guest>::provider_type(), "");
        assert!(<A as device_probe::Guest>::probe().unwrap().is_empty());
        assert!(<A as device_hooks::Guest>::on_device_probe(Vec::new()).unwrap().is_empty());
        assert_eq!(<A as endpoint::Guest>::mode(), "");
        assert!(<A as endpoint::Guest>::validate_request("/v1/x".into(), "m".into()).is_err());
        assert!(!<A as endpoint::Guest>::health_check("m".into(), "u".into(), 1, 2).healthy);

        // start_stream defaults to complete, chunked.
        let mut plugin = Counter::init(Config::empty()).unwrap();
        let mut stream = plugin.start_stream(&info(), req()).unwrap();
        let first = stream.next_chunk().unwrap().unwrap();
        assert_eq!((first.role, first.content.as_deref()), (Some(Role::Assistant), Some("hi")));
        let last = stream.next_chunk().unwrap().unwrap();
        assert_eq!(last.finish_reason.as_deref(), Some("stop"));
        assert!(stream.next_chunk().unwrap().is_none());

        struct NotAProvider;
        impl Plugin for NotAProvider {
            fn init(_: Config) -> Result<Self, String> {
                Ok(NotAProvider)
            }
        }
        let err = NotAProvider.complete(&info(), req()).unwrap_err();
        assert!(err.message.contains("not a provider"), "{}", err.message);
        assert!(NotAProvider.start_stream(&info(), req()).is_err());
    }
}
