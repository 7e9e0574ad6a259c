//! What an idle instance costs in memory, and what creating one costs in
//! time, with and without the instance pool. A bench-like binary (it prints
//! figures rather than running criterion): `cargo bench -p plugbox-host
//! --bench idle`.
//!
//! For each engine setting it loads the `hello-world` example plugin (no
//! grants), creates [`INSTANCES`] initialised instances and holds them, and
//! prints the growth of the process's `Private_Dirty` memory
//! (`/proc/self/smaps_rollup`) per instance, and the mean time to create one.
//! Target: at most 64 KiB per idle pooled instance. After the instances are
//! dropped it prints what their slots keep resident (the pool's
//! `keep_resident`; `pooled-keep-2MiB` shows the cost of a larger one).

use std::time::Instant;

use plugbox_host::{EngineOptions, HostBuilder, InstancePooling};

/// How many idle instances are held.
const INSTANCES: usize = 1000;

/// A field of `/proc/self/smaps_rollup`, in KiB.
fn rollup_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").expect("read /proc/self/smaps_rollup");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{field}` in smaps_rollup"))
}

fn measure(rt: &tokio::runtime::Runtime, label: &str, options: EngineOptions) {
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugbox-bench-cache");
    let host = HostBuilder::new().engine_options(EngineOptions { cache_dir: Some(cache), ..options }).build().unwrap();
    rt.block_on(host.load_plugin(std::path::Path::new(plugbox_artifacts::HELLO_WORLD))).unwrap();
    let plugin = host.plugin("hello-world").unwrap();
    // Warm up: the first instances fault in the host's code and allocator arenas.
    for _ in 0..20 {
        rt.block_on(plugin.instantiate_fresh()).unwrap();
    }
    let (dirty, rss) = (rollup_kib("Private_Dirty"), rollup_kib("Rss"));
    let started = Instant::now();
    let held: Vec<_> = (0..INSTANCES).map(|_| rt.block_on(plugin.instantiate_held()).unwrap()).collect();
    let per_create = started.elapsed() / INSTANCES as u32;
    let (dirty_after, rss_after) = (rollup_kib("Private_Dirty"), rollup_kib("Rss"));
    let per_dirty = (dirty_after.saturating_sub(dirty)) as f64 / INSTANCES as f64;
    let per_rss = (rss_after.saturating_sub(rss)) as f64 / INSTANCES as f64;
    println!(
        "idle/{label}: {per_dirty:.1} KiB Private_Dirty and {per_rss:.1} KiB Rss per idle instance \
         ({INSTANCES} held); {per_create:.2?} to create and initialise one"
    );
    drop(held);
    let rss_freed = rollup_kib("Rss");
    let per_freed = (rss_freed.saturating_sub(rss)) as f64 / INSTANCES as f64;
    println!("idle/{label}: {per_freed:.1} KiB Rss per slot still resident after the instances were dropped");
}

fn main() {
    // `cargo bench` passes `--bench`; an argument names one setting. Without
    // one, each setting runs in a process of its own (so no setting inherits
    // the heap another one grew).
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let pooled = InstancePooling { instances: INSTANCES as u32 + 100, ..Default::default() };
    let keep_2mib = InstancePooling { keep_resident: 2 << 20, ..pooled };
    let settings = [
        ("pooled", EngineOptions { pooling: Some(pooled), ..Default::default() }),
        ("pooled-keep-2MiB", EngineOptions { pooling: Some(keep_2mib), ..Default::default() }),
        ("on-demand", EngineOptions { pooling: None, ..Default::default() }),
    ];
    for (label, options) in settings {
        match &only {
            Some(name) if name == label => {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                measure(&rt, label, options);
            }
            Some(_) => {}
            None => {
                let me = std::env::current_exe().expect("the bench's own path");
                let status = std::process::Command::new(me).arg(label).status().expect("run one setting");
                assert!(status.success(), "setting `{label}` failed");
            }
        }
    }
}
