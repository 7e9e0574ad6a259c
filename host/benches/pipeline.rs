//! Pipeline overhead, all measured in one run so the ratios hold on a noisy
//! machine. Run with `cargo bench -p plugbox-host --bench pipeline`.
//!
//! - `floor/bare-call`: a typed call of an exported no-argument function
//!   (`lifecycle.shutdown` of the `hello-world` example) straight through
//!   wasmtime, on an engine set up like the host's: what crossing into wasm
//!   and back costs, with no host machinery around it.
//! - `hook/noop-1KB`: one pre-request hook that reads nothing
//!   (`bare-request-hooks`), through the host, 1 KB request, including what
//!   the embedder spends per request (a fresh `RequestContext`, a copy of
//!   the request to hand over).
//! - `hook/noop-call`: the same hook call with the context and the request
//!   copy made (and dropped) outside the timed part: what the host adds per
//!   hook call on top of the bare floor.
//! - `pipeline/wasm-4-plugins`: 4 plugins (pre + post), 1 KB request, pooled
//!   instances; each pre hook reads the last user message's text and writes
//!   it and its tag to the request context, each post hook appends its tag.
//! - `pipeline/native-4-plugins`: the same logic as native Rust trait objects.
//! - `pipeline/floor-4-noop-plugins`: 4 plugins whose hooks do nothing (the
//!   same number of hook calls).
//! - `read/1KB`, `read/32KB`: the `pii-redact` example's pre-request hook
//!   with every mask off: it reads every message's text (and the assistant
//!   message as JSON, for its tool calls) and changes nothing.
//! - `redact/1KB`, `redact/32KB`: the same with its default masks: it also
//!   scans every text for card numbers, e-mail addresses and phone numbers.
//! - `chunk/read-delta`: one on-chunk hook that reads the delta and writes it
//!   back upper-cased (`scripted`, `chunk: upper`).
//! - `instance/pooled-call` vs `instance/fresh` (pooled slots) vs
//!   `instance/fresh-on-demand` (no instance pool): a call on a warm
//!   instance against creating, instantiating and initialising a fresh
//!   instance of a plugin without grants (`hello-world`);
//!   `instance/fresh-keep-2MiB`: the pool keeping 2 MiB of a freed slot's
//!   memory mapped (the default keeps 64 KiB).
//! - `peer/plugbox`: the `system-prompt` and `pii-redact` examples' pre hooks
//!   on the peer bench's request (see benches/extism-peer).
//! - `load/cold` (compile) vs `load/warm` (compile cache).
//! - `limits/*`: the 4-plugin pipeline with epoch deadlines (the default),
//!   without them, and with fuel metering on top: what the limits cost.
//!
//! The memory of idle instances is measured by `benches/idle.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use parking_lot::Mutex;
use plugbox_host::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, EngineOptions, Host, HostBuilder, InstancePooling, Outcome,
    RequestContext, Role,
};

fn request(bytes: usize) -> ChatRequest {
    // 4 messages totalling `bytes` of text.
    let part = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(bytes / 4 / 56 + 1);
    let text = &part[..bytes / 4];
    let roles = [Role::System, Role::User, Role::Assistant, Role::User];
    ChatRequest::new("bench", roles.into_iter().map(|r| ChatMessage::new(r, text)).collect())
}

/// The peer bench's request: 4 messages, ~1 KB, two e-mail addresses and a
/// phone number to mask (benches/extism-peer/benches/peer.rs builds the same).
fn peer_request() -> ChatRequest {
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(4);
    ChatRequest::new(
        "bench",
        vec![
            ChatMessage::system(format!("You are terse. {filler}")),
            ChatMessage::user(format!("Hi, I am bob@example.com. {filler}")),
            ChatMessage::assistant(format!("Noted. {filler}")),
            ChatMessage::user(format!("Call me at +1 555 123 4567 or mail ann@example.org. {filler}")),
        ],
    )
}

async fn provider(req: Arc<ChatRequest>) -> Outcome {
    Ok(ChatResponse::text("b", &req.model, "ok"))
}

fn scripted(name: &str, priority: i32, chunk: &str) -> String {
    format!(
        "name: {name}\nversion: 0.1.0\nhooks: [pre-request, post-response, on-chunk]\npriority: {priority}\n\
         permissions: {{ messages: write }}\nconfig:\n  tag: {{ type: string, default: {name} }}\n\
         \x20 pre: {{ type: string, default: continue }}\n  post: {{ type: string, default: continue }}\n\
         \x20 chunk: {{ type: string, default: {chunk} }}\n"
    )
}

fn noop(name: &str, priority: i32, hooks: &str) -> String {
    format!("name: {name}\nversion: 0.1.0\nhooks: [{hooks}]\npriority: {priority}\npermissions: {{ messages: read }}\n")
}

/// An example plugin with its own manifest (`manifests/<name>.yaml`).
fn example(name: &str) -> (&'static str, String) {
    let a = plugbox_artifacts::EXAMPLES.iter().find(|a| a.name == name).unwrap();
    (a.wasm, std::fs::read_to_string(a.manifest).unwrap())
}

fn plugin_dir(plugins: &[(&str, &str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, wasm, manifest) in plugins {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(wasm, d.join("p.wasm")).unwrap();
        std::fs::write(d.join("plugin.yaml"), manifest).unwrap();
    }
    dir
}

/// A compile cache private to this user, under the target directory (the
/// host refuses one that another user can write).
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugbox-bench-cache")
}

async fn host_for(dir: &Path) -> Host {
    host_with(dir, HostBuilder::new()).await
}

async fn host_with(dir: &Path, builder: HostBuilder) -> Host {
    let host = builder.cache_dir(Some(cache_dir())).build().unwrap();
    let report = host.load_dir(dir).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    host
}

type Ctx = Mutex<HashMap<String, String>>;

/// The native equivalent of the `scripted` plugin in `continue` mode.
trait NativePlugin: Send + Sync {
    fn pre(&self, ctx: &Ctx, req: &ChatRequest) -> Option<ChatRequest>;
    fn post(&self, ctx: &Ctx, resp: &ChatResponse) -> Option<ChatResponse>;
}

struct Tagger(String);

impl Tagger {
    fn append(&self, ctx: &Ctx, stage: &str) {
        let current = ctx.lock().get("trace").cloned();
        let next = match current {
            Some(t) if !t.is_empty() => format!("{t},{stage}:{}", self.0),
            _ => format!("{stage}:{}", self.0),
        };
        ctx.lock().insert("trace".into(), next);
    }
}

impl NativePlugin for Tagger {
    fn pre(&self, ctx: &Ctx, req: &ChatRequest) -> Option<ChatRequest> {
        self.append(ctx, "pre");
        let last_user = req.messages.iter().rev().find(|m| m.role == Role::User);
        let seen = last_user.and_then(|m| m.text()).map(|t| t.into_owned()).unwrap_or_default();
        ctx.lock().insert(format!("seen:{}", self.0), seen);
        None
    }
    fn post(&self, ctx: &Ctx, resp: &ChatResponse) -> Option<ChatResponse> {
        self.append(ctx, "post");
        std::hint::black_box(resp);
        None
    }
}

async fn native_pipeline(plugins: &[Arc<dyn NativePlugin>], req: ChatRequest) -> Outcome {
    let ctx = Mutex::new(HashMap::new());
    let mut req = req;
    for p in plugins {
        if let Some(r) = p.pre(&ctx, &req) {
            req = r;
        }
    }
    let mut resp = provider(Arc::new(req)).await?;
    for p in plugins.iter().rev() {
        if let Some(r) = p.post(&ctx, &resp) {
            resp = r;
        }
    }
    Ok(resp)
}

/// The bare floor: `lifecycle.shutdown` (no arguments, no result) of a
/// `hello-world` instance, called through wasmtime on an engine configured
/// like the host's (component model, async calls, epoch interruption,
/// pooled instances). The plugin's imports are traps: `shutdown` calls none.
struct Floor {
    store: wasmtime::Store<()>,
    shutdown: wasmtime::component::TypedFunc<(), ()>,
}

impl Floor {
    async fn new() -> Floor {
        use wasmtime::component::{Component, Linker};
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .concurrency_support(false)
            .epoch_interruption(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::pooling());
        let engine = wasmtime::Engine::new(&config).unwrap();
        let component = Component::from_file(&engine, example("hello-world").0).unwrap();
        let mut linker: Linker<()> = Linker::new(&engine);
        linker.define_unknown_imports_as_traps(&component).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker.instantiate_async(&mut store, &component).await.unwrap();
        let iface = instance.get_export_index(&mut store, None, "plugbox:plugin/lifecycle@0.2.0").unwrap();
        let func = instance.get_export_index(&mut store, Some(&iface), "shutdown").unwrap();
        let shutdown = instance.get_typed_func::<(), ()>(&mut store, &func).unwrap();
        Floor { store, shutdown }
    }

    async fn call(&mut self) {
        self.shutdown.call_async(&mut self.store, ()).await.unwrap();
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let req_1k = request(1024);
    let req_32k = request(32 * 1024);

    let four = plugin_dir(
        &(1..=4)
            .map(|i| {
                let n = format!("p{i}");
                (
                    Box::leak(n.clone().into_boxed_str()) as &str,
                    plugbox_artifacts::SCRIPTED,
                    scripted(&n, i, if i == 1 { "upper" } else { "continue" }),
                )
            })
            .collect::<Vec<_>>(),
    );
    let noops = plugin_dir(
        &(1..=4)
            .map(|i| {
                let n = format!("n{i}");
                (
                    Box::leak(n.clone().into_boxed_str()) as &str,
                    plugbox_artifacts::BARE_REQUEST_HOOKS,
                    noop(&n, i, "pre-request, post-response"),
                )
            })
            .collect::<Vec<_>>(),
    );
    let single = plugin_dir(&[("one", plugbox_artifacts::BARE_REQUEST_HOOKS, noop("one", 1, "pre-request"))]);
    let (hello_wasm, hello_manifest) = example("hello-world");
    let hello = plugin_dir(&[("hello-world", hello_wasm, hello_manifest)]);
    let (redact_wasm, redact_manifest) = example("pii-redact");
    let redact = plugin_dir(&[("pii-redact", redact_wasm, redact_manifest.clone())]);
    let (prompt_wasm, prompt_manifest) = example("system-prompt");
    let peer = plugin_dir(&[
        ("system-prompt", prompt_wasm, prompt_manifest),
        ("pii-redact", redact_wasm, redact_manifest.clone()),
    ]);
    let chunker = plugin_dir(&[("c1", plugbox_artifacts::SCRIPTED, scripted("c1", 1, "upper"))]);

    let wasm4 = rt.block_on(host_for(four.path()));
    let floor4 = rt.block_on(host_for(noops.path()));
    let one = rt.block_on(host_for(single.path()));
    let hello_pooled = rt.block_on(host_for(hello.path()));
    let hello_on_demand = rt.block_on(host_with(
        hello.path(),
        HostBuilder::new().engine_options(EngineOptions { pooling: None, ..Default::default() }),
    ));
    let masks_off = serde_json::json!({"cards": false, "emails": false, "phones": false});
    let keep_2mib_host = rt.block_on(host_with(
        hello.path(),
        HostBuilder::new().engine_options(EngineOptions {
            pooling: Some(InstancePooling { keep_resident: 2 << 20, ..Default::default() }),
            ..Default::default()
        }),
    ));
    let keep_2mib = keep_2mib_host.plugin("hello-world").unwrap();
    let reader = rt.block_on(host_with(
        redact.path(),
        HostBuilder::new().plugin_config("pii-redact", masks_off.as_object().unwrap().clone()),
    ));
    let redactor = rt.block_on(host_for(redact.path()));
    let prompt = serde_json::json!({"prompt": "You are a helpful assistant. Answer briefly."});
    let peer_host = rt.block_on(host_with(
        peer.path(),
        HostBuilder::new().plugin_config("system-prompt", prompt.as_object().unwrap().clone()),
    ));
    let chunk_host = rt.block_on(host_for(chunker.path()));
    let native: Vec<Arc<dyn NativePlugin>> =
        (1..=4).map(|i| Arc::new(Tagger(format!("p{i}"))) as Arc<dyn NativePlugin>).collect();
    let mut floor = rt.block_on(Floor::new());

    // Sanity: the plugins do what the benches say they do.
    {
        let ctx = RequestContext::new("bench");
        rt.block_on(wasm4.run_request(&ctx, req_1k.clone(), provider)).unwrap();
        let trace = ctx.get("trace").unwrap();
        assert_eq!(trace, "pre:p1,pre:p2,pre:p3,pre:p4,post:p4,post:p3,post:p2,post:p1");
        assert_eq!(ctx.get("seen:p1").unwrap().len(), 256, "the pre hooks read the last user message");
        let ctx = RequestContext::new("bench");
        let stage = rt.block_on(peer_host.pre_request(&ctx, peer_request()));
        let body = serde_json::to_string(&*stage.request).unwrap();
        assert_eq!(stage.request.messages.len(), 5, "{body}");
        assert!(!body.contains("bob@example.com") && !body.contains("555 123"), "{body}");
        let ctx = RequestContext::new("bench");
        let out = rt.block_on(chunk_host.on_chunk(&ctx, ChatChunk::text("abc"))).unwrap().unwrap();
        assert_eq!(out.text_delta(), Some("ABC"));
    }

    let mut g = c.benchmark_group("floor");
    g.bench_function("bare-call", |b| b.iter(|| rt.block_on(floor.call())));
    g.finish();

    let mut g = c.benchmark_group("hook");
    g.bench_function("noop-1KB", |b| {
        b.to_async(&rt).iter(|| async {
            let ctx = RequestContext::new("bench");
            one.pre_request(&ctx, req_1k.clone()).await
        })
    });
    g.bench_function("noop-call", |b| {
        let one = &one;
        b.to_async(&rt).iter_batched(
            || (RequestContext::new("bench"), req_1k.clone()),
            |(ctx, req)| async move {
                let stage = one.pre_request(&ctx, req).await;
                (ctx, stage)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("pipeline");
    g.bench_function("wasm-4-plugins", |b| {
        b.to_async(&rt).iter(|| async {
            let ctx = RequestContext::new("bench");
            wasm4.run_request(&ctx, req_1k.clone(), provider).await.unwrap()
        })
    });
    g.bench_function("native-4-plugins", |b| {
        b.to_async(&rt).iter(|| async { native_pipeline(&native, req_1k.clone()).await.unwrap() })
    });
    g.bench_function("floor-4-noop-plugins", |b| {
        b.to_async(&rt).iter(|| async {
            let ctx = RequestContext::new("bench");
            floor4.run_request(&ctx, req_1k.clone(), provider).await.unwrap()
        })
    });
    g.finish();

    for (group, host) in [("read", &reader), ("redact", &redactor)] {
        let mut g = c.benchmark_group(group);
        for (label, req) in [("1KB", &req_1k), ("32KB", &req_32k)] {
            g.bench_function(label, |b| {
                b.to_async(&rt).iter(|| async {
                    let ctx = RequestContext::new("bench");
                    host.pre_request(&ctx, req.clone()).await
                })
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("chunk");
    g.bench_function("read-delta", |b| {
        let ctx = RequestContext::new("bench");
        b.to_async(&rt).iter(|| async { chunk_host.on_chunk(&ctx, ChatChunk::text("hello, world")).await.unwrap() })
    });
    g.finish();

    let mut g = c.benchmark_group("instance");
    let plugin = hello_pooled.plugin("hello-world").unwrap();
    let on_demand = hello_on_demand.plugin("hello-world").unwrap();
    g.bench_function("pooled-call", |b| {
        b.to_async(&rt).iter(|| async {
            let ctx = RequestContext::new("bench");
            hello_pooled.pre_request(&ctx, req_1k.clone()).await
        })
    });
    g.bench_function("fresh", |b| b.to_async(&rt).iter(|| async { plugin.instantiate_fresh().await.unwrap() }));
    g.bench_function("fresh-keep-2MiB", |b| {
        b.to_async(&rt).iter(|| async { keep_2mib.instantiate_fresh().await.unwrap() })
    });
    g.bench_function("fresh-on-demand", |b| {
        b.to_async(&rt).iter(|| async { on_demand.instantiate_fresh().await.unwrap() })
    });
    g.finish();

    let mut g = c.benchmark_group("peer");
    g.bench_function("plugbox", |b| {
        b.to_async(&rt).iter(|| async {
            let ctx = RequestContext::new("bench");
            peer_host.pre_request(&ctx, peer_request()).await
        })
    });
    g.finish();

    let mut g = c.benchmark_group("limits");
    let no_epochs = rt.block_on(host_with(
        four.path(),
        HostBuilder::new().engine_options(EngineOptions { epoch_interruption: false, ..Default::default() }),
    ));
    let fuel = rt.block_on(host_with(four.path(), HostBuilder::new().fuel(true)));
    for (label, host) in [("epochs (default)", &wasm4), ("no epochs", &no_epochs), ("epochs + fuel", &fuel)] {
        g.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                let ctx = RequestContext::new("bench");
                host.run_request(&ctx, req_1k.clone(), provider).await.unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    let path = single.path().join("one");
    g.bench_function("cold", |b| {
        let host = HostBuilder::new().cache_dir(None).build().unwrap();
        b.to_async(&rt).iter(|| async {
            host.load_plugin(&path).await.unwrap();
            host.unload("one").await.unwrap();
        })
    });
    g.bench_function("warm", |b| {
        let host = HostBuilder::new().cache_dir(Some(cache_dir())).build().unwrap();
        b.to_async(&rt).iter(|| async {
            host.load_plugin(&path).await.unwrap();
            host.unload("one").await.unwrap();
        })
    });
    g.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
