//! The component shell: wit-bindgen glue between the `plugin` world and the logic.
//! Only calls live here (the conversions are `crate::conversions`); every decision is
//! made in the plain-Rust modules.

mod bindings {
    #[cfg(not(feature = "released-wit"))]
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
    });
    // The contract as released in 0.1.0: the plugin a host of that release ran, built
    // to check that a newer host still loads and serves it.
    #[cfg(feature = "released-wit")]
    wit_bindgen::generate!({
        path: "../host/tests/released-wit",
        world: "plugin",
    });
}

use bindings::contact_center::request_access::{
    clock, reservation_state as state, resource_groups as groups, service_registry,
};
use bindings::exports::contact_center::request_access::request_access as wit;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::api::{self, Imports};
use crate::conversions::{each, each_present};

crate::convert_reservation_state!(bindings::contact_center::request_access::reservation_state);
crate::convert_resource_groups!(bindings::contact_center::request_access::resource_groups);
#[cfg(not(feature = "released-wit"))]
crate::convert_group_policy!(bindings::contact_center::request_access::resource_groups);
#[cfg(not(feature = "released-wit"))]
crate::convert_lease_policy!(bindings::contact_center::request_access::resource_groups);
crate::convert_request_access!(bindings::exports::contact_center::request_access::request_access);
#[cfg(not(feature = "released-wit"))]
crate::convert_placement!(bindings::exports::contact_center::request_access::placement);
#[cfg(not(feature = "released-wit"))]
crate::convert_lease!(bindings::exports::contact_center::request_access::lease);

struct Component;
bindings::export!(Component with_types_in bindings);

/// 256 KiB serve a call's allocations many times over; the rest goes to dlmalloc.
#[global_allocator]
static ALLOCATOR: crate::arena::Arena<{ 256 * 1024 }> = crate::arena::Arena::new();

/// The world's imports, as the logic sees them.
struct WitImports;

fn state_error(e: state::StateError) -> String {
    match e {
        state::StateError::Unavailable(why) => format!("unavailable: {why}"),
        state::StateError::Refused(why) => format!("refused: {why}"),
    }
}

impl Imports for WitImports {
    fn now(&mut self) -> api::Instant {
        clock::now()
    }

    fn is_active(&mut self, service_id: &str) -> Result<bool, String> {
        service_registry::is_active(service_id).map_err(|e| match e {
            service_registry::RegistryError::Unavailable(why) => why,
        })
    }

    fn options(&mut self) -> api::Options {
        groups::options().into()
    }

    fn group(&mut self, name: &str) -> Option<api::Group> {
        groups::group(name).map(Into::into)
    }

    fn number_at(&mut self, group: &str, index: u32) -> Option<String> {
        groups::number_at(group, index)
    }

    fn index_of(&mut self, group: &str, number: &str) -> Option<u32> {
        groups::index_of(group, number)
    }

    #[cfg(not(feature = "released-wit"))]
    fn policy(&mut self, group: &str) -> api::Policy {
        groups::policy(group).map(Into::into).unwrap_or_default()
    }

    #[cfg(not(feature = "released-wit"))]
    fn lease_policy(&mut self, group: &str) -> api::LeasePolicy {
        groups::lease_policy(group)
            .map(Into::into)
            .unwrap_or_default()
    }

    fn get(&mut self, keys: &[String]) -> Result<Vec<Option<api::Entry>>, String> {
        state::get(keys).map(each_present).map_err(state_error)
    }

    fn scan(&mut self, start: &str, end: &str, limit: u32) -> Result<Vec<api::Entry>, String> {
        state::scan(start, end, limit)
            .map(each)
            .map_err(state_error)
    }

    #[cfg(not(feature = "released-wit"))]
    fn read(&mut self, keys: &[String], ranges: &[api::KeyRange]) -> Result<api::Snapshot, String> {
        let ranges: Vec<state::KeyRange> = each(ranges.to_vec());
        state::read(keys, &ranges)
            .map(Into::into)
            .map_err(state_error)
    }

    fn commit(
        &mut self,
        preconditions: Vec<api::Precondition>,
        mutations: Vec<api::Mutation>,
    ) -> Result<api::CommitOutcome, String> {
        let (preconditions, mutations): (Vec<state::Precondition>, Vec<state::Mutation>) =
            (each(preconditions), each(mutations));
        state::commit(&preconditions, &mutations)
            .map(Into::into)
            .map_err(state_error)
    }

    #[cfg(not(feature = "released-wit"))]
    fn commit_recorded(
        &mut self,
        preconditions: Vec<api::Precondition>,
        mutations: Vec<api::Mutation>,
        events: Vec<api::Event>,
    ) -> Result<api::CommitOutcome, String> {
        let (preconditions, mutations): (Vec<state::Precondition>, Vec<state::Mutation>) =
            (each(preconditions), each(mutations));
        let events: Vec<state::Event> = each(events);
        state::commit_recorded(&preconditions, &mutations, &events)
            .map(Into::into)
            .map_err(state_error)
    }
}

/// A generator seeded from `wasi:random` for this call only: nothing survives the call.
fn call_rng() -> StdRng {
    let mut seed = [0u8; 32];
    // wasi:random cannot fail; should it, a zero seed would be a silent weakness, so trap.
    getrandom::fill(&mut seed).expect("wasi:random/random failed");
    StdRng::from_seed(seed)
}

impl wit::Guest for Component {
    fn create(request: wit::CreateRequest) -> Result<wit::AccessInfo, wit::Error> {
        crate::create(&mut WitImports, &mut call_rng(), &request.into())
            .map(Into::into)
            .map_err(Into::into)
    }

    fn match_access(request: wit::MatchRequest) -> Result<wit::Matched, wit::Error> {
        crate::match_access(&mut WitImports, &request.into())
            .map(Into::into)
            .map_err(Into::into)
    }

    fn release(service_id: String, resource_group: String) -> Result<String, wit::Error> {
        crate::release(&mut WitImports, &service_id, &resource_group).map_err(Into::into)
    }

    fn pool_status(resource_group: String) -> Result<wit::PoolOccupancy, wit::Error> {
        crate::pool_status(&mut WitImports, &resource_group)
            .map(Into::into)
            .map_err(Into::into)
    }
}

#[cfg(not(feature = "released-wit"))]
impl bindings::exports::contact_center::request_access::placement::Guest for Component {
    fn place(
        request: wit::CreateRequest,
    ) -> Result<
        bindings::exports::contact_center::request_access::placement::Placed,
        bindings::exports::contact_center::request_access::placement::Refused,
    > {
        crate::create_placed(&mut WitImports, &mut call_rng(), &request.into())
            .map(Into::into)
            .map_err(Into::into)
    }
}

#[cfg(not(feature = "released-wit"))]
impl bindings::exports::contact_center::request_access::lease::Guest for Component {
    fn extend(
        request: bindings::exports::contact_center::request_access::lease::ExtendRequest,
    ) -> Result<bindings::exports::contact_center::request_access::lease::Extended, wit::Error>
    {
        crate::extend(&mut WitImports, &request.into())
            .map(Into::into)
            .map_err(Into::into)
    }
}
