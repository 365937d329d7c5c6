//! The plugin as loaded code: [`PluginImage`] compiles and links a component once per
//! process (optionally caching the compiled code on disk), and [`PluginSource`] says
//! where it comes from, for start-up and reloads.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings;
use crate::runtime::imports::InstanceState;
use crate::runtime::limits::EPOCH_TICK;

/// The component built from `guest/`, embedded at build time.
pub const PLUGIN_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/request_access_guest.wasm"));

/// The plugin composed with the WASI-only adapter (`adapter/`): the `standalone` world,
/// for generic hosts such as `wasmtime run --dir STATE::/state`.
pub const STANDALONE_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/request-access-standalone.wasm"));

/// The contract (`wit/`) as a binary WIT package, for hosts that generate bindings of
/// their own and for registries (`wkg`).
pub const WIT_PACKAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/request-access.wit.wasm"));

/// [`WIT_PACKAGE`]'s name and version, as `namespace:name@version`.
pub const WIT_PACKAGE_NAME: &str = env!("REQUEST_ACCESS_WIT_PACKAGE");

/// Where instances get their memory from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InstanceAllocation {
    /// Map memory for each instance when it is created (wasmtime's default). With warm
    /// instances reused across calls, instantiation is rare and this costs nothing.
    #[default]
    OnDemand,
    /// Pre-reserve [`POOLED_INSTANCES`] slots of [`POOLED_MEMORY_BYTES`] each: cheaper
    /// instantiation, at the price of address space reserved up front. The slot size
    /// also caps each instance's memory, whatever [`crate::runtime::Limits::memory_bytes`] says.
    Pooling,
}

/// Instance slots reserved by [`InstanceAllocation::Pooling`].
pub const POOLED_INSTANCES: u32 = 64;
/// Linear memory per slot of [`InstanceAllocation::Pooling`].
pub const POOLED_MEMORY_BYTES: usize = 64 << 20;

/// A compiled, linked component and the engine that runs it. Build it once per process.
pub struct PluginImage {
    pub(crate) engine: Engine,
    component: Component,
    pub(crate) pre: InstancePre<InstanceState>,
    pub(crate) exports: bindings::ExportIndices,
    /// `sha256:` and the hexadecimal SHA-256 of the component's bytes.
    digest: String,
    /// When it was compiled (or read from the cache) in this process.
    loaded_at: SystemTime,
    ticker: Option<JoinHandle<()>>,
    stop_ticker: Arc<AtomicBool>,
}

impl PluginImage {
    /// Compile `wasm` and check that it targets the `plugin` world.
    pub fn new(wasm: &[u8]) -> wasmtime::Result<Arc<PluginImage>> {
        Self::with_allocation(wasm, InstanceAllocation::OnDemand)
    }

    /// Like [`PluginImage::new`], with a choice of instance allocator.
    pub fn with_allocation(
        wasm: &[u8],
        allocation: InstanceAllocation,
    ) -> wasmtime::Result<Arc<PluginImage>> {
        let mut config = Self::engine_config();
        if allocation == InstanceAllocation::Pooling {
            let mut pooling = PoolingAllocationConfig::default();
            pooling
                .total_component_instances(POOLED_INSTANCES)
                .total_core_instances(POOLED_INSTANCES * 4)
                .total_memories(POOLED_INSTANCES * 2)
                .total_tables(POOLED_INSTANCES * 4)
                .total_stacks(POOLED_INSTANCES)
                .max_memory_size(POOLED_MEMORY_BYTES);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        }
        let engine = Engine::new(&config)?;
        let component = Component::new(&engine, wasm)?;
        Self::link(engine, component, wasm)
    }

    /// Like [`PluginImage::new`], but keeps the compiled code in `cache_dir`, keyed by
    /// the plugin's bytes and the engine's settings, so that later processes skip the
    /// compilation. The directory must be writable by this service only: its files are
    /// loaded as native code.
    pub fn cached(wasm: &[u8], cache_dir: &Path) -> wasmtime::Result<Arc<PluginImage>> {
        let engine = Engine::new(&Self::engine_config())?;
        let mut key = std::hash::DefaultHasher::new();
        wasm.hash(&mut key);
        engine.precompile_compatibility_hash().hash(&mut key);
        let path = cache_dir.join(format!("plugin-{:016x}.cwasm", key.finish()));
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` below for this very
            // engine configuration (its name carries both hashes), in a directory the
            // operator reserves for this service.
            if let Ok(component) = unsafe { Component::deserialize_file(&engine, &path) } {
                return Self::link(engine, component, wasm);
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        // Write to a temporary name and rename, so a reader never sees half a file.
        // Failing to cache is not fatal: the compiled code is in hand.
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::create_dir_all(cache_dir).is_ok()
            && std::fs::write(&temporary, &compiled).is_ok()
        {
            let _ = std::fs::rename(&temporary, &path);
        }
        // SAFETY: these bytes were just produced by `precompile_component` on this engine.
        let component = unsafe { Component::deserialize(&engine, &compiled)? };
        Self::link(engine, component, wasm)
    }

    fn engine_config() -> wasmtime::Config {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        // `REQUEST_ACCESS_PERF_MAP=1` names the plugin's compiled functions for `perf`
        // (in /tmp/perf-<pid>.map); without it a profile shows them as bare addresses.
        if std::env::var_os("REQUEST_ACCESS_PERF_MAP").is_some_and(|v| !v.is_empty() && v != "0") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // Calls run on a fiber so that the imports can await: wasmtime's `async`
        // feature (not `component-model-async`) turns that on for `*_async` linking.
        config
    }

    /// Link `component`, compiled from `wasm`, against the host's imports.
    fn link(
        engine: Engine,
        component: Component,
        wasm: &[u8],
    ) -> wasmtime::Result<Arc<PluginImage>> {
        let mut linker = Linker::<InstanceState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
        let pre = linker.instantiate_pre(&component)?;
        let exports = bindings::ExportIndices::new(&pre)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(Arc::new(PluginImage {
            engine,
            component,
            pre,
            exports,
            digest: format!("sha256:{:x}", Sha256::digest(wasm)),
            loaded_at: SystemTime::now(),
            ticker: Some(ticker),
            stop_ticker,
        }))
    }

    /// `sha256:` and the hexadecimal SHA-256 of the component's bytes: which plugin runs.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// When this process compiled the plugin (or read it from the cache).
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// The names of the component's imports and exports (e.g.
    /// `contact-center:request-access/clock@0.1.0`).
    pub fn interface(&self) -> (Vec<String>, Vec<String>) {
        let ty = self.component.component_type();
        let names = |it: &mut dyn Iterator<Item = &str>| it.map(String::from).collect();
        (
            names(&mut ty.imports(&self.engine).map(|(n, _)| n)),
            names(&mut ty.exports(&self.engine).map(|(n, _)| n)),
        )
    }

    /// The embedded plugin.
    pub fn embedded() -> wasmtime::Result<Arc<PluginImage>> {
        Self::new(PLUGIN_WASM)
    }
}

impl Drop for PluginImage {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// Where the plugin comes from, for start-up and reloads.
#[derive(Debug, Clone, Default)]
pub struct PluginSource {
    /// A `.wasm` file; the embedded plugin when `None`.
    pub path: Option<PathBuf>,
    /// Where compiled code is cached; nothing is cached when `None`.
    pub cache_dir: Option<PathBuf>,
}

impl PluginSource {
    /// Load (and check against the world) the configured plugin.
    pub fn load(&self) -> anyhow::Result<Arc<PluginImage>> {
        match &self.path {
            Some(path) => {
                let wasm = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                self.compile(&wasm)
            }
            None => self.compile(PLUGIN_WASM),
        }
    }

    /// Compile `wasm` and check that it targets the `plugin` world.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<Arc<PluginImage>> {
        match &self.cache_dir {
            Some(dir) => PluginImage::cached(wasm, dir),
            None => PluginImage::new(wasm),
        }
        .map_err(|e| anyhow::anyhow!("not a usable request-access plugin: {e:#}"))
    }
}
