//! The warm instance pool: each plugin generation's idle instances, how one is made
//! (under the call limits), lent to a call and taken back, and what a call's outcome
//! means once it has ended (an answer, a store outage, a fault).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rand::rngs::ChaCha20Rng;
use rand::{Rng, SeedableRng};
use request_access_guest::api;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use super::imports::InstanceState;
use super::limits::{CallTime, GuestMemory, ticks};
use super::{CallError, PluginImage, Runtime};
use crate::bindings;
use crate::services::Services;

/// An instance of a plugin, ready for a call.
pub(super) struct Warm {
    pub(super) store: Store<InstanceState>,
    pub(super) plugin: bindings::PluginExports,
}

/// One loaded plugin and its warm instances. A reload installs a new generation; calls
/// already running finish on the old one, whose instances are then dropped.
pub(super) struct Generation {
    pub(super) image: Arc<PluginImage>,
    pub(super) idle: Mutex<Vec<Warm>>,
}

impl Generation {
    pub(super) fn new(image: Arc<PluginImage>) -> Arc<Generation> {
        Arc::new(Generation {
            image,
            idle: Mutex::new(Vec::new()),
        })
    }
}

impl Runtime {
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

    pub(super) fn fault(&self, why: String) -> CallError {
        self.faults.inc();
        CallError::PluginFault(why)
    }

    /// A warm instance of the current plugin, its clock started for one call. If the
    /// call's future is dropped before [`Runtime::check_in`], the instance goes with it.
    pub(super) async fn check_out(
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
    pub(super) fn check_in<T, E: Into<api::Error>>(
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
}
