//! The hook-ABI spike: what handing a chat request to a hook costs in three
//! shapes, against the bare floor, all in one run (see README.md).
//!
//! - A, `resource`: a host-owned `request` passed as `borrow<request>`; the
//!   hook calls getters (and `set-text`) for what it needs.
//! - B, `record`: the request as a record (model + list of messages) lowered
//!   into every call; an edit hands the whole record back.
//! - C, `json`: the request as one OpenAI JSON string; the guest parses it.
//!
//! Cases: `noop` (1 KB request), `read` (every message's text, 1 KB and
//! 32 KB), `edit` (replace message 0's text, 1 KB). The engine and store are
//! set up like the host's (component model, async calls on fibers, epoch
//! interruption); the guest is built by this bench before it runs.

use std::path::PathBuf;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "wit",
    world: "spike",
    imports: { default: trappable },
    exports: { default: async },
    with: { "plugbox:spike/llm.request": ReqData },
});

use plugbox::spike::records::Message;

/// The host's side of a request: what shape A keeps out of the guest.
#[derive(Clone, Default)]
pub struct ReqData {
    model: String,
    messages: Vec<(String, String)>,
}

struct State {
    table: ResourceTable,
    wasi: WasiCtx,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl plugbox::spike::llm::Host for State {}
impl plugbox::spike::records::Host for State {}

impl plugbox::spike::llm::HostRequest for State {
    fn model(&mut self, r: Resource<ReqData>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.model.clone())
    }
    fn message_count(&mut self, r: Resource<ReqData>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&r)?.messages.len() as u32)
    }
    fn text(&mut self, r: Resource<ReqData>, index: u32) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&r)?.messages.get(index as usize).map(|m| m.1.clone()))
    }
    fn set_text(&mut self, r: Resource<ReqData>, index: u32, text: String) -> wasmtime::Result<()> {
        if let Some(m) = self.table.get_mut(&r)?.messages.get_mut(index as usize) {
            m.1 = text;
        }
        Ok(())
    }
    fn drop(&mut self, r: Resource<ReqData>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

/// 4 messages totalling `bytes` of text, like the pipeline bench's request.
fn request(bytes: usize) -> ReqData {
    let part = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(bytes / 4 / 56 + 1);
    let text = part[..bytes / 4].to_string();
    let roles = ["system", "user", "assistant", "user"];
    ReqData { model: "bench".into(), messages: roles.iter().map(|r| (r.to_string(), text.clone())).collect() }
}

fn record(r: &ReqData) -> RequestRec {
    RequestRec {
        model: r.model.clone(),
        messages: r.messages.iter().map(|(role, content)| Message { role: role.clone(), content: content.clone() }).collect(),
    }
}

fn json(r: &ReqData) -> String {
    let messages: Vec<_> =
        r.messages.iter().map(|(role, content)| serde_json::json!({"role": role, "content": content})).collect();
    serde_json::json!({"model": r.model, "messages": messages}).to_string()
}

/// Builds the guest component (release, wasm32-wasip2) and returns its path.
fn build_guest() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .current_dir(&dir)
        .args(["build", "-p", "spike-guest", "--release", "--target", "wasm32-wasip2"])
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the spike guest failed");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| dir.join("target"));
    target.join("wasm32-wasip2/release/spike_guest.wasm")
}

fn benches(c: &mut Criterion) {
    let mut config = Config::new();
    config.wasm_component_model(true).concurrency_support(false).epoch_interruption(true);
    let engine = Engine::new(&config).unwrap();
    let component = Component::from_file(&engine, build_guest()).unwrap();
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    Spike::add_to_linker::<_, HasSelf<State>>(&mut linker, |s| s).unwrap();
    let pre = SpikePre::new(linker.instantiate_pre(&component).unwrap()).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut store = Store::new(&engine, State { table: ResourceTable::new(), wasi: WasiCtx::builder().build() });
    store.set_epoch_deadline(u64::MAX / 2);
    let spike = rt.block_on(pre.instantiate_async(&mut store)).unwrap();
    let store = std::cell::RefCell::new(store);

    let (r1, r32) = (request(1024), request(32 * 1024));
    let (rec1, rec32) = (record(&r1), record(&r32));
    let (json1, json32) = (json(&r1), json(&r32));

    // Shape A: move the host's request into the table, call, move it back
    // out (what the pipeline does with the one request it owns).
    let call_a = |which: u8, slot: &std::cell::RefCell<ReqData>| {
        let mut store = store.borrow_mut();
        let res = store.data_mut().table.push(std::mem::take(&mut *slot.borrow_mut())).unwrap();
        let borrowed = Resource::<ReqData>::new_borrow(res.rep());
        let out = rt.block_on(async {
            match which {
                0 => spike.call_noop_a(&mut *store, borrowed).await.map(|()| 0),
                1 => spike.call_read_a(&mut *store, borrowed).await,
                _ => spike.call_edit_a(&mut *store, borrowed).await.map(|()| 0),
            }
        });
        *slot.borrow_mut() = store.data_mut().table.delete(res).unwrap();
        out.unwrap()
    };
    // Sanity: every shape sees the same text and makes the same edit.
    let (a1, a32) = (std::cell::RefCell::new(r1.clone()), std::cell::RefCell::new(r32.clone()));
    assert_eq!(call_a(1, &a1) as usize, 1024);
    assert_eq!(call_a(1, &a32) as usize, 32 * 1024);
    let edited = std::cell::RefCell::new(r1.clone());
    call_a(2, &edited);
    assert_eq!(edited.borrow().messages[0].1, "[redacted]");
    {
        let mut s = store.borrow_mut();
        assert_eq!(rt.block_on(spike.call_read_b(&mut *s, &rec32)).unwrap() as usize, 32 * 1024);
        assert_eq!(rt.block_on(spike.call_read_c(&mut *s, &json32)).unwrap() as usize, 32 * 1024);
        let edited = rt.block_on(spike.call_edit_b(&mut *s, &rec1)).unwrap().unwrap();
        assert_eq!(edited.messages[0].content, "[redacted]");
        let edited = rt.block_on(spike.call_edit_c(&mut *s, &json1)).unwrap().unwrap();
        assert!(edited.contains("[redacted]"));
    }

    let mut g = c.benchmark_group("spike");
    g.bench_function("floor", |b| {
        b.iter(|| rt.block_on(spike.call_floor(&mut *store.borrow_mut())).unwrap());
    });
    g.bench_function("noop-1KB/resource", |b| b.iter(|| call_a(0, &a1)));
    g.bench_function("read-1KB/resource", |b| b.iter(|| call_a(1, &a1)));
    g.bench_function("read-32KB/resource", |b| b.iter(|| call_a(1, &a32)));
    g.bench_function("edit-1KB/resource", |b| b.iter(|| call_a(2, &edited)));

    g.bench_function("noop-1KB/record", |b| {
        b.iter(|| rt.block_on(spike.call_noop_b(&mut *store.borrow_mut(), &rec1)).unwrap())
    });
    for (label, rec) in [("read-1KB/record", &rec1), ("read-32KB/record", &rec32)] {
        g.bench_function(label, |b| b.iter(|| rt.block_on(spike.call_read_b(&mut *store.borrow_mut(), rec)).unwrap()));
    }
    g.bench_function("edit-1KB/record", |b| {
        b.iter(|| rt.block_on(spike.call_edit_b(&mut *store.borrow_mut(), &rec1)).unwrap())
    });

    g.bench_function("noop-1KB/json", |b| {
        b.iter(|| rt.block_on(spike.call_noop_c(&mut *store.borrow_mut(), &json1)).unwrap())
    });
    for (label, j) in [("read-1KB/json", &json1), ("read-32KB/json", &json32)] {
        g.bench_function(label, |b| b.iter(|| rt.block_on(spike.call_read_c(&mut *store.borrow_mut(), j)).unwrap()));
    }
    g.bench_function("edit-1KB/json", |b| {
        b.iter(|| rt.block_on(spike.call_edit_c(&mut *store.borrow_mut(), &json1)).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = spike;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(spike);
