//! The host side of the plugin's imports: each instance's [`InstanceState`], and the
//! clock, the service registry, the resource groups and the reservation state served
//! from it. Time spent in the host is off the guest's clock; a store outage, and
//! contention, are noted for the call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use request_access_guest::api;
use request_access_guest::conversions::{each, each_present};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::{CallTime, GuestMemory};
use crate::bindings::contact_center::request_access::{
    clock, reservation_state as state, resource_groups as groups, service_registry,
};
use crate::registry::RegistryError;
use crate::services::Services;
use crate::store::StoreError;

/// Per-instance host state: WASI, the memory limiter and the shared services.
pub(crate) struct InstanceState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) memory: GuestMemory,
    pub(super) services: Arc<Services>,
    pub(super) call: CallTime,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
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
