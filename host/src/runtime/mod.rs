//! The reference wasmtime host for the `plugin` world.
//!
//! A [`PluginImage`] compiles the component once per process and links it; a [`Runtime`]
//! serves calls from any number of threads with warm, pre-instantiated instances. Every
//! call runs under a memory cap and a deadline (epoch interruption); an instance that
//! traps is dropped and the next call gets a fresh one. Every value the guest returns is
//! checked before it reaches a caller.
//!
//! - `instances`: the warm instance pool, and what a call's outcome means;
//! - `limits`: each call's memory cap and deadline;
//! - `admission`: one changing call per group at a time on a remote store;
//! - `calls`: the operations, each answer checked;
//! - `imports`: each instance's host state, and the host side of the plugin's imports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use request_access_guest::api;

pub use crate::plugin::{
    InstanceAllocation, PLUGIN_WASM, POOLED_INSTANCES, POOLED_MEMORY_BYTES, PluginImage,
    PluginSource, STANDALONE_WASM,
};
use crate::services::Services;

mod admission;
mod calls;
// `imports` and `limits` name nothing of `plugin`: it may link the component for their
// `InstanceState` and tick the epoch by their `EPOCH_TICK` without an import circle.
pub(crate) mod imports;
mod instances;
pub(crate) mod limits;

use instances::Generation;

pub use request_access_config::Limits;

/// Why a call did not produce the plugin's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin's documented answer: bad input, no match, pool exhausted, ...
    #[error(transparent)]
    Service(#[from] api::Error),
    /// The plugin trapped, ran out of time or memory, or answered something invalid.
    /// No state was changed by the failed call beyond what it committed atomically.
    #[error("plugin fault: {0}")]
    PluginFault(String),
    /// The state store did not answer during the call, or refused the call's last
    /// commit for a concurrent change (the host saw either happen), and the plugin gave
    /// up; or the call waited too long for its group's earlier calls. Transient: worth
    /// retrying shortly. Nothing was half-applied.
    #[error("state store unavailable: {0}")]
    StoreUnavailable(String),
    /// The plugin does not offer the operation (it was built against an earlier
    /// contract); the text names it. Nothing was changed.
    #[error("not supported: {0}")]
    Unsupported(String),
}

/// A create that failed, and, for an exhausted pool, when a number is first known to
/// become lendable (checked to be plausible; `None` when the plugin does not say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Refusal {
    /// Why it failed.
    pub error: CallError,
    /// When to retry, in milliseconds since the Unix epoch.
    pub retry_at: Option<api::Instant>,
}

impl Refusal {
    /// Whole seconds from `now` until `retry_at`, rounded up, at least 1 (what
    /// `Retry-After` says), if the plugin said when.
    pub fn retry_after_seconds(&self, now: api::Instant) -> Option<u64> {
        self.retry_at
            .map(|at| at.saturating_sub(now).div_ceil(1000).max(1))
    }
}

impl From<CallError> for Refusal {
    fn from(error: CallError) -> Self {
        Refusal {
            error,
            retry_at: None,
        }
    }
}

/// Counters for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Instances created (the first ones, and after traps and reloads).
    pub instantiations: u64,
    /// Calls that trapped, overran, or answered outside the contract.
    pub faults: u64,
    /// Plugin swaps.
    pub reloads: u64,
    /// The most linear memory any instance has grown to, in bytes.
    pub peak_guest_memory_bytes: u64,
    /// Warm instances of the current plugin waiting for a call.
    pub idle_instances: usize,
}

/// Serves the request-access operations through the component.
pub struct Runtime {
    current: ArcSwap<Generation>,
    /// What the imports are served from; swapped whole by [`Runtime::reconfigure`],
    /// and each call keeps the one it started with.
    services: ArcSwap<Services>,
    limits: Limits,
    /// One gate per configured group where the store is remote (see [`Runtime::gate`]),
    /// made on a group's first call.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Seeds each new instance's `wasi:random` when set (tests); the OS otherwise.
    seeded_random: Option<Mutex<ChaCha20Rng>>,
    instantiations: Counter,
    faults: Counter,
    reloads: Counter,
    peak_guest_memory: AtomicU64,
}

impl Runtime {
    /// Serve `services` through the plugin `image`, within `limits`.
    pub fn new(image: Arc<PluginImage>, services: Arc<Services>, limits: Limits) -> Self {
        Runtime {
            current: ArcSwap::new(Generation::new(image)),
            services: ArcSwap::new(services),
            limits,
            gates: Mutex::new(HashMap::new()),
            seeded_random: None,
            instantiations: Counter::default(),
            faults: Counter::default(),
            reloads: Counter::default(),
            peak_guest_memory: AtomicU64::new(0),
        }
    }

    /// Swap in another plugin while calls continue. Calls that started on the old one
    /// finish there; every later call runs the new one. Reservations live in the host,
    /// so none is lost or duplicated by the swap.
    pub fn reload(&self, image: Arc<PluginImage>) {
        self.current.store(Generation::new(image));
        self.reloads.inc();
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Make every random draw of the plugin reproducible from `seed`. For tests only:
    /// access codes become predictable.
    pub fn with_random_seed(mut self, seed: u64) -> Self {
        self.seeded_random = Some(Mutex::new(ChaCha20Rng::seed_from_u64(seed)));
        self
    }

    /// What the plugin's imports are served from now.
    pub fn services(&self) -> Arc<Services> {
        self.services.load_full()
    }

    /// Serve `config` from now on: its groups, options and services. Calls that started
    /// under the old configuration finish under it. The store and the clock stay;
    /// `[store]`, `[limits]` and `[server]` take a restart, and a change there is
    /// answered with the names of the sections left as they were.
    pub fn reconfigure(&self, config: request_access_config::Config) -> Vec<&'static str> {
        let old = self.services.load_full();
        let mut kept = Vec::new();
        if config.store != old.config.store {
            kept.push("store");
        }
        if config.limits != old.config.limits {
            kept.push("limits");
        }
        if config.server != old.config.server {
            kept.push("server");
        }
        let services = old.reconfigured(config);
        self.services.store(Arc::new(services));
        kept
    }

    /// The counters so far.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            instantiations: self.instantiations.get(),
            faults: self.faults.get(),
            reloads: self.reloads.get(),
            peak_guest_memory_bytes: self.peak_guest_memory.load(Ordering::Relaxed),
            idle_instances: self.current.load().idle.lock().map_or(0, |idle| idle.len()),
        }
    }

    /// The plugin calls run on now.
    pub fn plugin(&self) -> Arc<PluginImage> {
        self.current.load().image.clone()
    }

    /// Add the plugin counters to a Prometheus registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "request_access_plugin_instantiations",
            "Plugin instances created (the first ones, and after traps and reloads)",
            self.instantiations.clone(),
        );
        registry.register(
            "request_access_plugin_faults",
            "Calls that trapped, overran their deadline or memory, or answered invalid values",
            self.faults.clone(),
        );
        registry.register(
            "request_access_plugin_reloads",
            "Plugin swaps",
            self.reloads.clone(),
        );
    }
}
