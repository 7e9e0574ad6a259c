//! The one wasmtime [`Engine`] of a host: configuration, epoch ticker and the
//! on-disk compile cache.
//!
//! Defaults:
//! - component model on, `concurrency_support` off (component-model async is not
//!   used; leaving it on makes every call ~2x slower);
//! - epoch interruption on, with a ticker thread advancing the epoch every
//!   [`EPOCH_TICK`]; callers give a wall-clock budget, never raw ticks;
//! - wasm stack capped at [`DEFAULT_MAX_WASM_STACK`];
//! - compiled components cached on disk, keyed by the SHA-256 of the component
//!   bytes and the engine's compatibility hash, so a warm load is a `mmap`;
//! - instances allocated from a pool of pre-reserved slots (wasmtime's pooling
//!   allocator, sized by [`InstancePooling`]) with copy-on-write memory images:
//!   creating an instance maps no memory and copies no data segment, and a
//!   dropped instance's slot is reset and reused. When the pool cannot be
//!   reserved (a process with a small address-space limit), the engine falls
//!   back to allocating each instance on demand, with a warning.
//!
//! # The compile cache is private
//!
//! A cache entry is native code: loading it skips wasmtime's validation and
//! compilation, so whoever can write an entry can run code in the host. The
//! host therefore deserializes compiled code only from a cache that only its
//! own user can write (on Unix):
//! - a missing cache directory is created with mode `0700`;
//! - an existing one owned by another user, or writable by its group or by
//!   others, is refused when the host is built ([`Error::CompileCache`] names
//!   the directory and says how to fix it);
//! - entries are written with mode `0600`, through a temporary file and a
//!   rename, and are never rewritten in place.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{Error, Result};

/// How often the epoch advances; the resolution of hook deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Maximum wasm stack of any call, engine-wide (a deep recursion traps with
/// "call stack exhausted" instead of taking the host down).
pub const DEFAULT_MAX_WASM_STACK: usize = 512 * 1024;

/// Engine settings a host is built with.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where compiled components are cached; `None` disables the cache.
    /// The directory must be private to the host's user (see the module docs).
    pub cache_dir: Option<PathBuf>,
    /// Maximum wasm stack size in bytes.
    pub max_wasm_stack: usize,
    /// Fuel metering (deterministic instruction budgets, `limits.fuel`).
    pub fuel: bool,
    /// Epoch interruption: what enforces hook deadlines inside wasm code.
    /// Only turn it off to measure what deadlines cost: without it a plugin
    /// that loops forever keeps its thread busy forever.
    pub epoch_interruption: bool,
    /// The instance pool; `None` allocates every instance on demand (slower
    /// to create, nothing reserved up front).
    pub pooling: Option<InstancePooling>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_dir: default_cache_dir(),
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            fuel: false,
            epoch_interruption: true,
            pooling: Some(InstancePooling::default()),
        }
    }
}

/// Sizes of the engine's instance pool (wasmtime's pooling allocator).
///
/// Every slot is reserved (address space, not memory) when the host is built;
/// memory is committed only as instances touch it, and given back when an
/// instance is dropped beyond [`keep_resident`](Self::keep_resident).
/// Creating an instance when every slot is taken fails (the call fails as a
/// plugin failure), so [`instances`](Self::instances) must cover the sum of
/// the loaded plugins' `limits.instances` (4 each by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePooling {
    /// Most instances alive at once, host-wide (default 1,000).
    pub instances: u32,
    /// Most linear memory one instance may grow to (default 4 GiB, the
    /// largest `limits.memory`; a plugin's own limit still applies below it).
    /// Each slot reserves this much address space plus a guard region.
    pub max_memory: u64,
    /// Bytes at the start of a dropped instance's linear memory that are
    /// zeroed and kept mapped for the next instance instead of given back to
    /// the kernel (default 0). Every slot that was ever used then keeps that
    /// much resident; it pays only when it covers the pages `init` touches
    /// (a Rust guest touches its stack top and heap past its first MiB: 2 MiB
    /// cuts a fresh instance by about a third, for 1.1 MiB resident per used
    /// slot).
    pub keep_resident: usize,
}

impl Default for InstancePooling {
    fn default() -> Self {
        InstancePooling { instances: DEFAULT_POOLED_INSTANCES, max_memory: 4 * 1024 * 1024 * 1024, keep_resident: 0 }
    }
}

/// Default of [`InstancePooling::instances`].
pub const DEFAULT_POOLED_INSTANCES: u32 = 1000;

/// Core instances (modules) of one component: a Rust guest has its main
/// module plus the adapter and shim modules `wit-component` adds (up to 8);
/// a componentize-py guest links libc, libpython and its extension modules
/// as separate core instances (14 with componentize-py 0.25).
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// Elements of a pooled table slot: the instance limiter's cap on table
/// growth (`imports::limiter::MAX_TABLE_ELEMENTS`), so the limiter, not the
/// pool, is what refuses a table that grows too far.
const POOLED_TABLE_ELEMENTS: usize = 100_000;

impl InstancePooling {
    fn config(&self, max_wasm_stack: usize) -> PoolingAllocationConfig {
        let mut p = PoolingAllocationConfig::new();
        let n = self.instances.max(1);
        let cores = n.saturating_mul(CORE_INSTANCES_PER_COMPONENT);
        p.total_component_instances(n)
            .total_core_instances(cores)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            // One linear memory per component (the guest's; shims have none).
            .total_memories(n)
            .max_memories_per_component(2)
            .total_tables(cores)
            .max_tables_per_component(CORE_INSTANCES_PER_COMPONENT)
            // As many elements as the instance limiter lets a table grow to.
            .table_elements(POOLED_TABLE_ELEMENTS)
            // Fiber stacks of running calls: at most one per instance.
            .total_stacks(n)
            .max_memory_size(usize::try_from(self.max_memory).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(self.keep_resident)
            .table_keep_resident(self.keep_resident.min(64 * 1024))
            // Stack pages touched by a call stay mapped for the next one,
            // up to the wasm stack size (they are zeroed on reuse).
            .async_stack_keep_resident(max_wasm_stack.min(64 * 1024));
        p
    }
}

/// `$XDG_CACHE_HOME/plugbox/compiled`, or `~/.cache/plugbox/compiled`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("plugbox").join("compiled"))
}

/// The engine plus what belongs to it for its whole life.
pub(crate) struct PlugboxEngine {
    pub(crate) engine: Engine,
    cache: Option<CompileCache>,
    pub(crate) exec: ExecOptions,
}

/// What every store of this engine must be set up with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExecOptions {
    pub(crate) fuel: bool,
    pub(crate) epochs: bool,
}

/// Where a component came from when loaded: compiled now, or read from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompileSource {
    /// Compiled from the `.wasm` bytes during this load.
    Compiled,
    /// Read precompiled from the on-disk compilation cache.
    Cache,
}

impl PlugboxEngine {
    pub(crate) fn new(options: &EngineOptions) -> Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .concurrency_support(false)
            .epoch_interruption(options.epoch_interruption)
            .consume_fuel(options.fuel)
            .max_wasm_stack(options.max_wasm_stack)
            // Fibers for async calls need room for the wasm stack plus host frames.
            .async_stack_size(options.max_wasm_stack + 1024 * 1024)
            // Linear memories start as copy-on-write mappings of the
            // component's initial image (the default; stated because the
            // cost of a fresh instance depends on it).
            .memory_init_cow(true);
        let engine = match options.pooling {
            Some(pooling) => {
                let mut pooled = config.clone();
                pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling.config(options.max_wasm_stack)));
                Engine::new(&pooled).or_else(|e| {
                    tracing::warn!(
                        "cannot reserve the instance pool ({} instances): {}; allocating instances on demand",
                        pooling.instances,
                        first_line(&e)
                    );
                    Engine::new(&config)
                })
            }
            None => Engine::new(&config),
        }
        .map_err(|e| Error::Engine(format!("{e:#}")))?;
        if options.epoch_interruption {
            spawn_epoch_ticker(&engine);
        }
        let cache = match &options.cache_dir {
            Some(dir) => Some(CompileCache::new(dir.clone(), &engine)?),
            None => None,
        };
        let exec = ExecOptions { fuel: options.fuel, epochs: options.epoch_interruption };
        Ok(PlugboxEngine { engine, cache, exec })
    }

    /// Compiles `bytes` (or loads the cached artifact). Blocking: call it from
    /// `spawn_blocking`, never on an async worker thread.
    pub(crate) fn compile(&self, plugin: &str, bytes: &[u8]) -> Result<(Component, CompileSource)> {
        if let Some(cache) = &self.cache
            && let Some(component) = cache.load(&self.engine, bytes)
        {
            return Ok((component, CompileSource::Cache));
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| Error::Component {
            plugin: plugin.to_string(),
            message: format!("not a valid WebAssembly component: {}", first_line(&e)),
        })?;
        if let Some(cache) = &self.cache {
            cache.store(&component, bytes);
        }
        Ok((component, CompileSource::Compiled))
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`]; the thread holds only a weak
/// handle and stops when the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugbox-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawn epoch ticker thread");
}

/// Compiled components on disk: `<dir>/<sha256 of bytes>-<engine hash>.cwasm`.
///
/// Entries are memory-mapped while a plugin is loaded, so they are written
/// once, through a temporary file and a rename, and never rewritten in place
/// (truncating a mapped file would crash the host with SIGBUS).
struct CompileCache {
    dir: PathBuf,
    engine_hash: String,
}

impl CompileCache {
    /// Opens (or creates, mode `0700`) the cache directory; refuses one that
    /// another user can write.
    fn new(dir: PathBuf, engine: &Engine) -> Result<Self> {
        ensure_private_dir(&dir)?;
        // DefaultHasher::new() uses fixed keys: stable for a given build of plugbox,
        // which is exactly the scope an engine compatibility hash has.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompileCache { dir, engine_hash: format!("{:016x}", hasher.finish()) })
    }

    fn path_for(&self, bytes: &[u8]) -> PathBuf {
        let digest = hex::encode(Sha256::digest(bytes));
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_hash))
    }

    fn load(&self, engine: &Engine, bytes: &[u8]) -> Option<Component> {
        let path = self.path_for(bytes);
        if !path.exists() {
            return None;
        }
        // SAFETY: the directory was checked (or created) private to this user
        // when the host was built (`ensure_private_dir`), so only this user
        // can have written the file: `store` below wrote it for this exact
        // engine configuration (the name carries the compatibility hash), and
        // wasmtime also checks the header.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable compile cache entry: {e}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn store(&self, component: &Component, bytes: &[u8]) {
        let path = self.path_for(bytes);
        let result = (|| -> std::io::Result<()> {
            let artifact = component.serialize().map_err(std::io::Error::other)?;
            write_private_atomically(&path, &artifact)
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), "cannot write compile cache: {e}");
        }
    }
}

/// Makes sure `dir` is a directory only this user can write: creates it (and
/// its missing parents) with mode `0700`, or checks the owner and mode of the
/// one there.
fn ensure_private_dir(dir: &Path) -> Result<()> {
    let refuse = |message: String| Error::CompileCache { dir: dir.to_path_buf(), message };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| refuse(format!("cannot be created: {e}")))?;
        }
        let meta = std::fs::metadata(dir).map_err(|e| refuse(format!("cannot be read: {e}")))?;
        if !meta.is_dir() {
            return Err(refuse("is not a directory".into()));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(refuse(format!(
                "is owned by another user (uid {}, this process runs as uid {me}); compiled code is only \
                 loaded from a cache that only this user can write: use a cache directory of your own",
                meta.uid()
            )));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(refuse(format!(
                "is writable by its group or by others (mode `{mode:o}`); compiled code is only loaded from a \
                 cache that only this user can write: run `chmod 700 {}` or use another cache directory",
                dir.display()
            )));
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| refuse(format!("cannot be created: {e}")))?;
    Ok(())
}

/// Writes a cache entry through a temporary file and a rename, so a reader
/// never sees half a file; the file is created with mode `0600` (on Unix)
/// before any byte is written.
fn write_private_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    // Two loads of one component in one process may store it at once.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = match options.open(&tmp) {
            // Left by a process that crashed with this pid.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp)?;
                options.open(&tmp)?
            }
            other => other?,
        };
        file.write_all(data)?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The first line of an error chain's message: wasmtime errors carry long
/// backtraces that belong in debug logs, not in an operator's terminal.
pub(crate) fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}

/// The WIT package whose version a plugin is checked against.
const API_PACKAGE: &str = "plugbox:plugin";

/// Whether a component built against `plugbox:plugin@built` runs on a host
/// implementing `host`: the Cargo rule (the same major version, and the same
/// minor version while the major is 0). Patch versions never matter: a
/// `0.2.9` plugin loads on a `0.2.0` host and the other way round, and
/// component-model linking matches `0.2.x` names the same way.
pub(crate) fn api_compatible(built: &semver::Version, host: &semver::Version) -> bool {
    built.major == host.major && (host.major != 0 || built.minor == host.minor)
}

/// The `plugbox:plugin` versions a component imports or exports
/// (`plugbox:plugin/log@0.2.0` gives `0.2.0`), each once, in the order found.
pub(crate) fn api_versions(engine: &Engine, component: &Component) -> Vec<semver::Version> {
    let ty = component.component_type();
    let names = ty.imports(engine).map(|(name, _)| name).chain(ty.exports(engine).map(|(name, _)| name));
    let mut versions: Vec<semver::Version> = Vec::new();
    for name in names {
        let Some((package, version)) = name.split_once('@') else { continue };
        if package.split_once('/').is_none_or(|(p, _)| p != API_PACKAGE) {
            continue;
        }
        if let Ok(v) = semver::Version::parse(version)
            && !versions.contains(&v)
        {
            versions.push(v);
        }
    }
    versions
}

/// Refuses a component built against a `plugbox:plugin` version this host
/// cannot run (see [`api_compatible`]), with a message naming both versions
/// and how to rebuild. A component that names no `plugbox:plugin` interface
/// passes here (the hooks it declares are then found missing).
pub(crate) fn check_api_version(engine: &Engine, plugin: &str, component: &Component) -> Result<()> {
    let host = crate::WIT_VERSION;
    match api_versions(engine, component).into_iter().find(|v| !api_compatible(v, &host)) {
        None => Ok(()),
        Some(built) => {
            Err(Error::Component { plugin: plugin.to_string(), message: api_mismatch_message(&built, &host) })
        }
    }
}

/// What a plugin built for `built` is told on a host implementing `host`.
pub(crate) fn api_mismatch_message(built: &semver::Version, host: &semver::Version) -> String {
    let sdk = if host.major == 0 { format!("{}.{}", host.major, host.minor) } else { host.major.to_string() };
    let action = if built < host { "rebuild it" } else { "it needs a newer host, or rebuild it" };
    format!(
        "built for {API_PACKAGE}@{built}, but this host implements {API_PACKAGE}@{host}: {action} with \
         plugbox-sdk {sdk} (`cargo build --release --target wasm32-wasip2`)"
    )
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn engine() -> Engine {
        Engine::new(Config::new().wasm_component_model(true)).unwrap()
    }

    #[test]
    fn instances_come_from_the_pool_and_a_full_pool_refuses_more() {
        let options = EngineOptions {
            cache_dir: None,
            pooling: Some(InstancePooling { instances: 2, max_memory: 16 * 1024 * 1024, keep_resident: 0 }),
            ..Default::default()
        };
        let engine = PlugboxEngine::new(&options).unwrap().engine;
        let bytes = wasm_encoder::Component::new().finish();
        let component = Component::new(&engine, &bytes).unwrap();
        let linker = wasmtime::component::Linker::<()>::new(&engine);
        let mut store = wasmtime::Store::new(&engine, ());
        linker.instantiate(&mut store, &component).unwrap();
        linker.instantiate(&mut store, &component).unwrap();
        let Err(e) = linker.instantiate(&mut store, &component) else { panic!("a third instance in two slots") };
        assert!(format!("{e:#}").contains("maximum concurrent"), "{e:#}");
        // Slots are given back with their store.
        drop(store);
        let mut store = wasmtime::Store::new(&engine, ());
        linker.instantiate(&mut store, &component).unwrap();
    }

    #[test]
    fn the_instance_pool_is_on_by_default() {
        assert_eq!(EngineOptions::default().pooling, Some(InstancePooling::default()));
        assert_eq!(InstancePooling::default().instances, DEFAULT_POOLED_INSTANCES);
    }

    #[test]
    fn a_missing_cache_dir_is_created_private() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b/compiled");
        CompileCache::new(dir.clone(), &engine()).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn a_cache_dir_others_can_write_is_refused() {
        for bad in [0o777, 0o770, 0o757, 0o1777] {
            let base = tempfile::tempdir().unwrap();
            let dir = base.path().join("compiled");
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bad)).unwrap();
            let Err(e) = CompileCache::new(dir.clone(), &engine()) else { panic!("mode {bad:o} was accepted") };
            let text = e.to_string();
            assert!(matches!(e, Error::CompileCache { .. }), "{e:?}");
            assert!(text.contains(&format!("`{}`", dir.display())), "the error names the dir: {text}");
            assert!(text.contains(&format!("chmod 700 {}", dir.display())), "the error says how to fix it: {text}");
            assert!(text.contains(&format!("`{bad:o}`")), "the error shows the mode: {text}");
        }
    }

    #[test]
    fn a_cache_dir_only_its_owner_can_write_is_accepted() {
        for good in [0o700, 0o755, 0o500] {
            let base = tempfile::tempdir().unwrap();
            let dir = base.path().join("compiled");
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(good)).unwrap();
            CompileCache::new(dir.clone(), &engine()).unwrap_or_else(|e| panic!("mode {good:o} refused: {e}"));
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    }

    #[test]
    fn a_cache_dir_owned_by_another_user_is_refused() {
        // `/` belongs to root; when the tests run as root, any directory of
        // another user does, and the check is the same comparison.
        let me = unsafe { libc::geteuid() };
        let other = if me == 0 {
            let base = tempfile::tempdir().unwrap();
            let dir = base.path().join("theirs");
            std::fs::create_dir(&dir).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            (base, dir)
        } else {
            (tempfile::tempdir().unwrap(), PathBuf::from("/"))
        };
        let dir = other.1;
        let e = CompileCache::new(dir.clone(), &engine()).err().expect("another user's dir was accepted");
        let text = e.to_string();
        assert!(text.contains("owned by another user"), "{text}");
        assert!(text.contains(&format!("`{}`", dir.display())), "{text}");
    }

    #[test]
    fn a_cache_that_is_a_file_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let file = base.path().join("compiled");
        std::fs::write(&file, b"x").unwrap();
        let e = CompileCache::new(file, &engine()).err().expect("a file was accepted");
        assert!(e.to_string().contains("is not a directory"), "{e}");
    }

    #[test]
    fn cache_entries_are_written_owner_only_and_load_back() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("compiled");
        let engine = engine();
        let cache = CompileCache::new(dir.clone(), &engine).unwrap();
        let bytes = wasm_encoder::Component::new().finish();
        let component = Component::new(&engine, &bytes).unwrap();
        cache.store(&component, &bytes);
        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(entries.len(), 1, "one entry, no temporary file left: {entries:?}");
        assert_eq!(mode(&entries[0]), 0o600);
        assert!(cache.load(&engine, &bytes).is_some());
    }

    #[test]
    fn api_versions_are_compatible_by_the_cargo_rule() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        assert!(api_compatible(&v("0.2.0"), &v("0.2.0")));
        assert!(api_compatible(&v("0.2.99"), &v("0.2.0")));
        assert!(api_compatible(&v("0.2.0"), &v("0.2.7")));
        assert!(!api_compatible(&v("0.1.0"), &v("0.2.0")));
        assert!(!api_compatible(&v("0.3.0"), &v("0.2.0")));
        assert!(api_compatible(&v("1.4.0"), &v("1.0.0")));
        assert!(!api_compatible(&v("1.0.0"), &v("2.0.0")));
    }

    #[test]
    fn the_mismatch_message_names_both_versions_and_how_to_rebuild() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        assert_eq!(
            api_mismatch_message(&v("0.1.0"), &v("0.2.0")),
            "built for plugbox:plugin@0.1.0, but this host implements plugbox:plugin@0.2.0: rebuild it with \
             plugbox-sdk 0.2 (`cargo build --release --target wasm32-wasip2`)"
        );
        assert!(api_mismatch_message(&v("0.3.1"), &v("0.2.0")).contains("it needs a newer host, or rebuild it"));
    }

    #[test]
    fn a_component_without_plugbox_interfaces_passes_the_version_check() {
        let engine = engine();
        let component = Component::new(&engine, wasm_encoder::Component::new().finish()).unwrap();
        assert!(api_versions(&engine, &component).is_empty());
        check_api_version(&engine, "empty", &component).unwrap();
    }
}
