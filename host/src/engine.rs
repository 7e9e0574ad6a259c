//! The one wasmtime [`Engine`] of a host: configuration, epoch ticker and the
//! on-disk compile cache.
//!
//! Defaults (DESIGN.md, "Facts measured here"):
//! - component model on, `concurrency_support` off (component-model async is not
//!   used; leaving it on makes every call ~2x slower);
//! - epoch interruption on, with a ticker thread advancing the epoch every
//!   [`EPOCH_TICK`]; callers give a wall-clock budget, never raw ticks;
//! - wasm stack capped at [`DEFAULT_MAX_WASM_STACK`];
//! - compiled components cached on disk, keyed by the SHA-256 of the component
//!   bytes and the engine's compatibility hash, so a warm load is a `mmap`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

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
    pub cache_dir: Option<PathBuf>,
    /// Maximum wasm stack size in bytes.
    pub max_wasm_stack: usize,
    /// Fuel metering (deterministic instruction budgets, `limits.fuel`).
    pub fuel: bool,
    /// Epoch interruption: what enforces hook deadlines inside wasm code.
    /// Only turn it off to measure what deadlines cost: without it a plugin
    /// that loops forever keeps its thread busy forever.
    pub epoch_interruption: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_dir: default_cache_dir(),
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            fuel: false,
            epoch_interruption: true,
        }
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
            .async_stack_size(options.max_wasm_stack + 1024 * 1024);
        let engine = Engine::new(&config).map_err(|e| Error::Engine(format!("{e:#}")))?;
        if options.epoch_interruption {
            spawn_epoch_ticker(&engine);
        }
        let cache = options.cache_dir.as_ref().map(|dir| CompileCache::new(dir.clone(), &engine));
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
    fn new(dir: PathBuf, engine: &Engine) -> Self {
        // DefaultHasher::new() uses fixed keys: stable for a given build of plugbox,
        // which is exactly the scope an engine compatibility hash has.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompileCache { dir, engine_hash: format!("{:016x}", hasher.finish()) }
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
        // SAFETY: the file was written by `store` below for this exact engine
        // configuration (the name carries the compatibility hash) into a
        // directory owned by the host; wasmtime also checks the header.
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
            std::fs::create_dir_all(&self.dir)?;
            let artifact = component.serialize().map_err(std::io::Error::other)?;
            write_atomically(&path, &artifact)
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), "cannot write compile cache: {e}");
        }
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// The first line of an error chain's message: wasmtime errors carry long
/// backtraces that belong in debug logs, not in an operator's terminal.
pub(crate) fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}
