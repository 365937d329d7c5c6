//! The reference wasmtime host for the `plugin` world.
//!
//! A [`PluginImage`] compiles the component once per process and links it; a [`Runtime`]
//! serves calls from any number of threads with warm, pre-instantiated instances. Every
//! call runs under a memory cap and a deadline (epoch interruption); an instance that
//! traps is dropped and the next call gets a fresh one. Every value the guest returns is
//! checked before it reaches a caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use rand::rngs::ChaCha20Rng;
use rand::{Rng, SeedableRng};
use request_access_guest::api;
use request_access_guest::conversions::{each, each_present};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use crate::plugin::{
    InstanceAllocation, PLUGIN_WASM, POOLED_INSTANCES, POOLED_MEMORY_BYTES, PluginImage,
    PluginSource, STANDALONE_WASM,
};
use crate::registry::RegistryError;
use crate::services::Services;
use crate::store::StoreError;
use crate::validate_answer;

use crate::bindings;
use bindings::contact_center::request_access::{
    clock, reservation_state as state, resource_groups as groups, service_registry,
};

/// How often the epoch advances: the granularity of the call deadline.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

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

/// Per-instance host state: WASI, the memory limiter and the shared services.
pub(crate) struct InstanceState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: GuestMemory,
    services: Arc<Services>,
    call: CallTime,
}

/// The memory cap, and the most linear memory the instance has asked for.
struct GuestMemory {
    limits: StoreLimits,
    peak_bytes: usize,
}

impl ResourceLimiter for GuestMemory {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_bytes = self.peak_bytes.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Where the time of the current call goes. The deadline bounds the guest's own time:
/// time blocked in the host (a contended store, a slow registry) does not count, or a
/// busy store would turn into plugin faults after its commits had landed.
#[derive(Debug, Clone, Copy)]
struct CallTime {
    started: Instant,
    in_host: Duration,
    deadline: Duration,
    /// Whether the state store failed to answer during this call.
    store_unavailable: bool,
    /// Commits of this call refused by a precondition so far.
    conflicts: u32,
    /// Whether the call's last store call was a commit refused by a precondition: a
    /// plugin that gives up then gives up on contention, which passes.
    ended_in_conflict: bool,
}

impl CallTime {
    fn start(deadline: Duration) -> Self {
        CallTime {
            started: Instant::now(),
            in_host: Duration::ZERO,
            deadline,
            store_unavailable: false,
            conflicts: 0,
            ended_in_conflict: false,
        }
    }

    /// The guest's time left, or `None` once it has run past the deadline.
    fn guest_time_left(&self) -> Option<Duration> {
        let in_guest = self.started.elapsed().saturating_sub(self.in_host);
        self.deadline.checked_sub(in_guest).filter(|d| !d.is_zero())
    }
}

fn ticks(duration: Duration) -> u64 {
    (duration.as_micros() / EPOCH_TICK.as_micros()) as u64 + 1
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct Warm {
    store: Store<InstanceState>,
    plugin: bindings::PluginExports,
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

/// One loaded plugin and its warm instances. A reload installs a new generation; calls
/// already running finish on the old one, whose instances are then dropped.
struct Generation {
    image: Arc<PluginImage>,
    idle: Mutex<Vec<Warm>>,
}

impl Generation {
    fn new(image: Arc<PluginImage>) -> Arc<Generation> {
        Arc::new(Generation {
            image,
            idle: Mutex::new(Vec::new()),
        })
    }
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

    async fn instantiate(&self, image: &PluginImage) -> Result<Warm, CallError> {
        let mut wasi = WasiCtxBuilder::new();
        if let Some(master) = &self.seeded_random {
            let seed = master.lock().unwrap_or_else(|p| p.into_inner()).next_u64();
            wasi.secure_random(ChaCha20Rng::seed_from_u64(seed));
        }
        let state = InstanceState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: GuestMemory {
                limits: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    .build(),
                peak_bytes: 0,
            },
            services: self.services.load_full(),
            call: CallTime::start(self.limits.call_deadline),
        };
        let mut store = Store::new(&image.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(ticks(self.limits.call_deadline));
        store.epoch_deadline_callback(|store| {
            Ok(match store.data().call.guest_time_left() {
                Some(left) => UpdateDeadline::Continue(ticks(left)),
                None => UpdateDeadline::Interrupt,
            })
        });
        let plugin = bindings::instantiate(&mut store, &image.pre, &image.exports)
            .await
            .map_err(|e| self.fault(format!("instantiation failed: {e:#}")))?;
        self.instantiations.inc();
        Ok(Warm { store, plugin })
    }

    fn fault(&self, why: String) -> CallError {
        self.faults.inc();
        CallError::PluginFault(why)
    }

    /// A warm instance of the current plugin, its clock started for one call. If the
    /// call's future is dropped before [`Runtime::check_in`], the instance goes with it.
    async fn check_out(
        &self,
        services: &Arc<Services>,
    ) -> Result<(Arc<Generation>, Warm), CallError> {
        let generation = self.current.load_full();
        let idle = generation
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let mut warm = match idle {
            Some(warm) => warm,
            None => self.instantiate(&generation.image).await?,
        };
        warm.store.data_mut().call = CallTime::start(self.limits.call_deadline);
        warm.store.data_mut().services = services.clone();
        warm.store
            .set_epoch_deadline(ticks(self.limits.call_deadline));
        Ok((generation, warm))
    }

    /// Keep the instance for the next call if it answered; a trap drops it (a trapped
    /// store is poisoned). The guest's committed state is untouched either way. A
    /// state-store failure the host saw happen (an outage, or contention the plugin
    /// gave up on) is [`CallError::StoreUnavailable`].
    fn check_in<T, E: Into<api::Error>>(
        &self,
        generation: Arc<Generation>,
        warm: Warm,
        outcome: wasmtime::Result<Result<T, E>>,
    ) -> Result<T, CallError> {
        let call = warm.store.data().call;
        let transient = call.store_unavailable || call.ended_in_conflict;
        self.peak_guest_memory.fetch_max(
            warm.store.data().memory.peak_bytes as u64,
            Ordering::Relaxed,
        );
        match outcome {
            Ok(answer) => {
                let mut idle = generation.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < self.limits.max_idle_instances {
                    idle.push(warm);
                }
                answer.map_err(|e| match e.into() {
                    api::Error::StateStoreFailure(why) | api::Error::RegistryFailure(why)
                        if transient =>
                    {
                        CallError::StoreUnavailable(why)
                    }
                    other => CallError::Service(other),
                })
            }
            Err(error) => Err(self.fault(match error.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => format!(
                    "the call ran past its deadline of {:?}",
                    self.limits.call_deadline
                ),
                Some(trap) => format!("the plugin trapped: {trap}"),
                None => format!("{error:#}"),
            })),
        }
    }

    /// Admission for a call that changes `group`, on a remote store: one such call of
    /// the group at a time from this process. Every change of a group rewrites its
    /// ring's head or tail, so concurrent calls of one group conflict, and on a remote
    /// store a call's reads and its commit are network round trips apart: without the
    /// gate most of them would conflict and retry (64 clients on three nodes saw 20 to
    /// 30 refused commits per create). Calls of other processes still conflict and
    /// retry, with a back-off. A waiting call holds no instance. On an in-process store,
    /// no gate: its commits apply at once, and batching them is what makes its syncs
    /// cheap.
    ///
    /// The gate is an optimisation, not a lock the state depends on (commits check
    /// their preconditions anyway). A call waits for it at most as long as one store
    /// call may take, then is refused as [`CallError::StoreUnavailable`] (503, retry):
    /// a store that stops answering makes requests fail after a bounded time instead
    /// of queueing behind each other, and a backlog that built up during an outage is
    /// shed rather than let through ungated all at once, where it would contend until
    /// calls gave up.
    async fn gate(
        &self,
        services: &Services,
        group: Option<&str>,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, CallError> {
        let Some(name) =
            group.filter(|g| services.store.is_remote() && services.config.group(g).is_some())
        else {
            return Ok(None);
        };
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let wait = services.config.store.command_timeout;
        match tokio::time::timeout(wait, gate.lock_owned()).await {
            Ok(admitted) => Ok(Some(admitted)),
            Err(_) => Err(CallError::StoreUnavailable(format!(
                "group {name:?} is busy: earlier calls held it for {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// The configured group that holds `number`, if any (only where gates are used).
    fn group_of<'s>(services: &'s Services, number: &str) -> Option<&'s str> {
        if !services.store.is_remote() {
            return None;
        }
        services
            .config
            .groups
            .iter()
            .find(|g| g.pool.index_of(number).is_some())
            .map(|g| g.name.as_str())
    }

    /// Reserve an access number (the seed's Create).
    pub async fn create(&self, request: &api::CreateRequest) -> Result<api::AccessInfo, CallError> {
        self.create_placed(request)
            .await
            .map(|placed| placed.access)
            .map_err(|refusal| refusal.error)
    }

    /// [`Runtime::create`], answering the group that lent the number (the requested one,
    /// or its fallback group) and, for an exhausted pool, when to retry. A plugin that
    /// does not export `placement` (built against 0.1.0) lends from the requested group
    /// and says nothing of when to retry.
    pub async fn create_placed(
        &self,
        request: &api::CreateRequest,
    ) -> Result<api::Placed, Refusal> {
        let services = self.services.load_full();
        let _admitted = self.gate(&services, Some(&request.resource_group)).await?;
        let wit_request = request.clone().into();
        let before = services.clock.now_ms();
        let (generation, mut warm) = self.check_out(&services).await?;
        let outcome = match &warm.plugin.placement {
            Some(placement) => placement
                .call_place(&mut warm.store, &wit_request)
                .await
                .map(|answer| answer.map(api::Placed::from).map_err(api::Refused::from)),
            None => warm
                .plugin
                .request_access
                .call_create(&mut warm.store, &wit_request)
                .await
                .map(|answer| {
                    answer
                        .map(|info| api::Placed {
                            access: info.into(),
                            resource_group: request.resource_group.clone(),
                        })
                        .map_err(|e| api::Error::from(e).into())
                }),
        };
        let retry_at = match &outcome {
            Ok(Err(refused)) => refused.retry_at,
            _ => None,
        };
        let outcome = outcome.map(|answer| answer.map_err(|refused| refused.error));
        let placed = self
            .check_in(generation, warm, outcome)
            .map_err(|error| Refusal {
                retry_at: retry_at
                    .filter(|_| {
                        matches!(
                            error,
                            CallError::Service(api::Error::NoAccessNumberAvailable(_))
                        )
                    })
                    .and_then(|at| {
                        validate_answer::retry_at(&services, &request.resource_group, at, before)
                    }),
                error,
            })?;
        let after = services.clock.now_ms();
        validate_answer::placed(&services, request, &placed, before..=after)
            .map_err(|why| self.fault(why))?;
        Ok(placed)
    }

    /// Match an incoming call to its reservation, releasing it.
    pub async fn match_access(
        &self,
        request: &api::MatchRequest,
    ) -> Result<api::Matched, CallError> {
        let services = self.services.load_full();
        let group = Self::group_of(&services, &request.access_number);
        let _admitted = self.gate(&services, group).await?;
        let wit_request = request.clone().into();
        let (generation, mut warm) = self.check_out(&services).await?;
        let outcome = warm
            .plugin
            .request_access
            .call_match_access(&mut warm.store, &wit_request)
            .await;
        let matched: api::Matched = self.check_in(generation, warm, outcome)?.into();
        validate_answer::matched(&matched).map_err(|why| self.fault(why))?;
        Ok(matched)
    }

    /// Give a service's reservation back; answers the number released.
    pub async fn release(
        &self,
        service_id: &str,
        resource_group: &str,
    ) -> Result<String, CallError> {
        let services = self.services.load_full();
        let _admitted = self.gate(&services, Some(resource_group)).await?;
        let (generation, mut warm) = self.check_out(&services).await?;
        let outcome = warm
            .plugin
            .request_access
            .call_release(&mut warm.store, service_id, resource_group)
            .await;
        let number = self.check_in(generation, warm, outcome)?;
        validate_answer::released(&number).map_err(|why| self.fault(why))?;
        Ok(number)
    }

    /// Extend a service's live reservation without changing its number. A plugin that
    /// does not export `lease` (built against 0.1.0) cannot: [`CallError::Unsupported`].
    pub async fn extend(&self, request: &api::ExtendRequest) -> Result<api::Extended, CallError> {
        let services = self.services.load_full();
        let _admitted = self.gate(&services, Some(&request.resource_group)).await?;
        let wit_request = request.clone().into();
        let before = services.clock.now_ms();
        let (generation, mut warm) = self.check_out(&services).await?;
        let Some(lease) = &warm.plugin.lease else {
            self.check_in(generation, warm, Ok(Ok::<(), api::Error>(())))?;
            return Err(CallError::Unsupported(
                "extend: the plugin does not export `lease` (it was built against the 0.1.0 \
                 contract)"
                    .into(),
            ));
        };
        let outcome = lease
            .call_extend(&mut warm.store, &wit_request)
            .await
            .map(|answer| answer.map(api::Extended::from).map_err(api::Error::from));
        let extended = self.check_in(generation, warm, outcome)?;
        let after = services.clock.now_ms();
        validate_answer::extended(&extended, before..=after).map_err(|why| self.fault(why))?;
        Ok(extended)
    }

    /// The occupancy of a group.
    pub async fn pool_status(&self, resource_group: &str) -> Result<api::PoolStatus, CallError> {
        let services = self.services.load_full();
        let (generation, mut warm) = self.check_out(&services).await?;
        let outcome = warm
            .plugin
            .request_access
            .call_pool_status(&mut warm.store, resource_group)
            .await;
        let status: api::PoolStatus = self.check_in(generation, warm, outcome)?.into();
        validate_answer::pool_status(&services, resource_group, &status)
            .map_err(|why| self.fault(why))?;
        Ok(status)
    }
}

impl clock::Host for InstanceState {
    fn now(&mut self) -> u64 {
        self.services.clock.now_ms()
    }
}

/// Await host work on behalf of the guest, off the guest's clock.
async fn off_the_clock<R>(call: &mut CallTime, work: impl std::future::Future<Output = R>) -> R {
    let started = Instant::now();
    let answer = work.await;
    call.in_host += started.elapsed();
    answer
}

impl service_registry::Host for InstanceState {
    async fn is_active(
        &mut self,
        service_id: String,
    ) -> Result<bool, service_registry::RegistryError> {
        let services = self.services.clone();
        off_the_clock(&mut self.call, services.registry.is_active(&service_id))
            .await
            .map_err(|e| {
                // Registrations are kept in the state store.
                if matches!(e, RegistryError::Store(StoreError::Unavailable(_))) {
                    self.call.store_unavailable = true;
                }
                service_registry::RegistryError::Unavailable(e.to_string())
            })
    }
}

impl groups::Host for InstanceState {
    fn options(&mut self) -> groups::GlobalOptions {
        self.services.config.options.into()
    }

    fn group(&mut self, name: String) -> Option<groups::GroupInfo> {
        self.services.group(&name).map(Into::into)
    }

    fn number_at(&mut self, group: String, index: u32) -> Option<String> {
        self.services.number_at(&group, index)
    }

    fn index_of(&mut self, group: String, number: String) -> Option<u32> {
        self.services.index_of(&group, &number)
    }

    fn policy(&mut self, name: String) -> Option<groups::GroupPolicy> {
        self.services.policy(&name).map(Into::into)
    }

    fn lease_policy(&mut self, name: String) -> Option<groups::GroupLease> {
        self.services.lease_policy(&name).map(Into::into)
    }
}

/// Before the plugin reads again after its `conflicts`-th refused commit: a random
/// pause of up to 0.2 ms x 2^conflicts (at most 25 ms), so that callers contending for
/// one key (a group's ring on a shared store) spread out instead of colliding again
/// at once. Where no tokio runtime drives the call, no pause.
async fn back_off(conflicts: u32) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }

    let cap = (200u64 << conflicts.min(7)).min(25_000);
    // Jitter, not a secret: the clock's low bits are random enough.
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) / 1000);
    tokio::time::sleep(Duration::from_micros(jitter % cap)).await;
}

/// The plugin's view of a store failure; an unavailable store is noted for the call.
fn state_error(call: &mut CallTime, e: crate::store::StoreError) -> state::StateError {
    match e {
        crate::store::StoreError::Unavailable(why) => {
            call.store_unavailable = true;
            state::StateError::Unavailable(why)
        }
        crate::store::StoreError::Refused(why) => state::StateError::Refused(why),
    }
}

impl InstanceState {
    /// A commit's outcome for the plugin: after a conflict, a pause first, so that
    /// contending callers spread out.
    async fn committed(
        &mut self,
        outcome: api::CommitOutcome,
    ) -> Result<state::CommitOutcome, state::StateError> {
        if let api::CommitOutcome::Conflict(_) = outcome {
            self.call.conflicts += 1;
            self.call.ended_in_conflict = true;
            let pause = back_off(self.call.conflicts);
            off_the_clock(&mut self.call, pause).await;
        }
        Ok(outcome.into())
    }
}

impl state::Host for InstanceState {
    async fn get(
        &mut self,
        keys: Vec<String>,
    ) -> Result<Vec<Option<state::Entry>>, state::StateError> {
        self.call.ended_in_conflict = false;
        let services = self.services.clone();
        off_the_clock(&mut self.call, services.guest_get(&keys))
            .await
            .map(each_present)
            .map_err(|e| state_error(&mut self.call, e))
    }

    async fn scan(
        &mut self,
        start: String,
        end: String,
        limit: u32,
    ) -> Result<Vec<state::Entry>, state::StateError> {
        self.call.ended_in_conflict = false;
        let services = self.services.clone();
        off_the_clock(&mut self.call, services.guest_scan(&start, &end, limit))
            .await
            .map(each)
            .map_err(|e| state_error(&mut self.call, e))
    }

    async fn read(
        &mut self,
        keys: Vec<String>,
        ranges: Vec<state::KeyRange>,
    ) -> Result<state::Snapshot, state::StateError> {
        let ranges: Vec<api::KeyRange> = each(ranges);
        self.call.ended_in_conflict = false;
        let services = self.services.clone();
        off_the_clock(&mut self.call, services.guest_read(&keys, &ranges))
            .await
            .map(Into::into)
            .map_err(|e| state_error(&mut self.call, e))
    }

    async fn commit(
        &mut self,
        preconditions: Vec<state::Precondition>,
        mutations: Vec<state::Mutation>,
    ) -> Result<state::CommitOutcome, state::StateError> {
        let (preconditions, mutations): (Vec<api::Precondition>, Vec<api::Mutation>) =
            (each(preconditions), each(mutations));
        self.call.ended_in_conflict = false;
        let services = self.services.clone();
        let outcome = off_the_clock(
            &mut self.call,
            services.guest_commit(&preconditions, &mutations),
        )
        .await
        .map_err(|e| state_error(&mut self.call, e))?;
        self.committed(outcome).await
    }

    async fn commit_recorded(
        &mut self,
        preconditions: Vec<state::Precondition>,
        mutations: Vec<state::Mutation>,
        events: Vec<state::Event>,
    ) -> Result<state::CommitOutcome, state::StateError> {
        let (preconditions, mutations): (Vec<api::Precondition>, Vec<api::Mutation>) =
            (each(preconditions), each(mutations));
        let events: Vec<api::Event> = each(events);
        self.call.ended_in_conflict = false;
        let services = self.services.clone();
        let outcome = off_the_clock(
            &mut self.call,
            services.guest_commit_recorded(&preconditions, &mutations, &events),
        )
        .await
        .map_err(|e| state_error(&mut self.call, e))?;
        self.committed(outcome).await
    }
}
