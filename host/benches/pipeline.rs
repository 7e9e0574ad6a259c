//! Pipeline overhead, all measured in one run so the ratios hold on a noisy
//! machine. Run with `cargo bench -p plugbox-host --bench pipeline`.
//!
//! - `pipeline/wasm-4-plugins`: 4 plugins (pre + post), 1 KB request, pooled
//!   instances; each hook appends its tag to the request context (two host calls).
//! - `pipeline/native-4-plugins`: the same logic as native Rust trait objects.
//! - `pipeline/floor-4-noop-plugins`: 4 plugins whose hooks do nothing (the
//!   same number of hook calls: the cost of crossing into wasm and back).
//! - `hook/1KB`, `hook/32KB`: one no-op pre-request hook, request size varies.
//! - `instance/pooled-call` vs `instance/fresh`: a pooled call against
//!   creating, instantiating and initialising a fresh instance.
//! - `load/cold` (compile) vs `load/warm` (compile cache).
//! - `limits/*`: the 4-plugin pipeline with epoch deadlines (the default),
//!   without them, and with fuel metering on top: what the limits cost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use parking_lot::Mutex;
use plugbox_host::EngineOptions;
use plugbox_host::{Choice, Host, HostBuilder, Message, Outcome, Request, RequestContext, Response, Role};

fn request(bytes: usize) -> Request {
    // 4 messages totalling `bytes` of text.
    let part = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(bytes / 4 / 56 + 1);
    let msg = |role, n: usize| Message {
        role,
        content: part[..bytes / 4 - n].to_string(),
        name: None,
        tool_calls: vec![],
        tool_call_id: None,
    };
    Request {
        model: "bench".into(),
        messages: vec![msg(Role::System, 0), msg(Role::User, 0), msg(Role::Assistant, 0), msg(Role::User, 0)],
        temperature: None,
        max_tokens: None,
        stream: false,
        tools: vec![],
        extra: None,
    }
}

async fn provider(req: Request) -> Outcome {
    Ok(Response {
        id: "b".into(),
        model: req.model,
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: Role::Assistant,
                content: "ok".into(),
                name: None,
                tool_calls: vec![],
                tool_call_id: None,
            },
            finish_reason: None,
        }],
        usage: None,
        extra: None,
    })
}

fn scripted(name: &str, priority: i32) -> String {
    format!(
        "name: {name}\nversion: 0.1.0\nhooks: [pre-request, post-response]\npriority: {priority}\n\
         permissions: {{ messages: read }}\nconfig:\n  tag: {{ type: string, default: {name} }}\n\
         \x20 pre: {{ type: string, default: continue }}\n  post: {{ type: string, default: continue }}\n"
    )
}

fn noop(name: &str, priority: i32, hooks: &str) -> String {
    format!("name: {name}\nversion: 0.1.0\nhooks: [{hooks}]\npriority: {priority}\npermissions: {{ messages: read }}\n")
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

/// The native equivalent of the `scripted` plugin in `continue` mode.
trait NativePlugin: Send + Sync {
    fn pre(&self, ctx: &Mutex<HashMap<String, String>>, req: &Request) -> Option<Request>;
    fn post(&self, ctx: &Mutex<HashMap<String, String>>, resp: &Response) -> Option<Response>;
}

struct Tagger(String);

impl Tagger {
    fn append(&self, ctx: &Mutex<HashMap<String, String>>, stage: &str) {
        let current = ctx.lock().get("trace").cloned();
        let next = match current {
            Some(t) if !t.is_empty() => format!("{t},{stage}:{}", self.0),
            _ => format!("{stage}:{}", self.0),
        };
        ctx.lock().insert("trace".into(), next);
    }
}

impl NativePlugin for Tagger {
    fn pre(&self, ctx: &Mutex<HashMap<String, String>>, req: &Request) -> Option<Request> {
        self.append(ctx, "pre");
        std::hint::black_box(req);
        None
    }
    fn post(&self, ctx: &Mutex<HashMap<String, String>>, resp: &Response) -> Option<Response> {
        self.append(ctx, "post");
        std::hint::black_box(resp);
        None
    }
}

async fn native_pipeline(plugins: &[Arc<dyn NativePlugin>], req: Request) -> Outcome {
    let ctx = Mutex::new(HashMap::new());
    let mut req = req;
    for p in plugins {
        if let Some(r) = p.pre(&ctx, &req) {
            req = r;
        }
    }
    let mut resp = provider(req).await?;
    for p in plugins.iter().rev() {
        if let Some(r) = p.post(&ctx, &resp) {
            resp = r;
        }
    }
    Ok(resp)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let req_1k = request(1024);
    let req_32k = request(32 * 1024);

    let four = plugin_dir(
        &(1..=4)
            .map(|i| {
                let n = format!("p{i}");
                (Box::leak(n.clone().into_boxed_str()) as &str, plugbox_artifacts::SCRIPTED, scripted(&n, i))
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

    let wasm4 = rt.block_on(host_for(four.path()));
    let floor = rt.block_on(host_for(noops.path()));
    let one = rt.block_on(host_for(single.path()));
    let native: Vec<Arc<dyn NativePlugin>> =
        (1..=4).map(|i| Arc::new(Tagger(format!("p{i}"))) as Arc<dyn NativePlugin>).collect();

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
            floor.run_request(&ctx, req_1k.clone(), provider).await.unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("hook");
    for (label, req) in [("1KB", &req_1k), ("32KB", &req_32k)] {
        g.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                let ctx = RequestContext::new("bench");
                one.pre_request(&ctx, req.clone()).await
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("instance");
    let plugin = one.plugin("one").unwrap();
    g.bench_function("pooled-call", |b| {
        b.to_async(&rt).iter(|| async {
            let ctx = RequestContext::new("bench");
            one.pre_request(&ctx, req_1k.clone()).await
        })
    });
    g.bench_function("fresh", |b| b.to_async(&rt).iter(|| async { plugin.instantiate_fresh().await.unwrap() }));
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
