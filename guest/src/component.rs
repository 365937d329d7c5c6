//! The component shell: wit-bindgen glue between the `plugin` world and the logic.
//! Only conversions live here; every decision is made in the plain-Rust modules.

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
    });
}

use bindings::contact_center::request_access::{
    clock, reservation_state as state, resource_groups as groups, service_registry,
};
use bindings::exports::contact_center::request_access::request_access as wit;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wit::{Error as WitError, InvalidParameter};

use crate::api::{self, Imports};

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

fn entry(e: state::Entry) -> api::Entry {
    api::Entry {
        key: e.key,
        value: e.value,
        revision: e.revision,
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
        let o = groups::options();
        api::Options {
            access_code_length: o.access_code_length,
            booking_expiration_timeout: o.booking_expiration_timeout,
            max_code_attempts: o.max_code_attempts,
        }
    }

    fn group(&mut self, name: &str) -> Option<api::Group> {
        groups::group(name).map(|g| api::Group {
            name: g.name,
            strategy: match g.strategy {
                groups::Strategy::RoundRobin => api::Strategy::RoundRobin,
                groups::Strategy::Random => api::Strategy::Random,
            },
            booking_expiration_timeout: g.booking_expiration_timeout,
            size: g.size,
            pool_id: g.pool_id,
        })
    }

    fn number_at(&mut self, group: &str, index: u32) -> Option<String> {
        groups::number_at(group, index)
    }

    fn index_of(&mut self, group: &str, number: &str) -> Option<u32> {
        groups::index_of(group, number)
    }

    fn get(&mut self, keys: &[String]) -> Result<Vec<Option<api::Entry>>, String> {
        state::get(keys)
            .map(|entries| entries.into_iter().map(|e| e.map(entry)).collect())
            .map_err(state_error)
    }

    fn scan(&mut self, start: &str, end: &str, limit: u32) -> Result<Vec<api::Entry>, String> {
        state::scan(start, end, limit)
            .map(|entries| entries.into_iter().map(entry).collect())
            .map_err(state_error)
    }

    fn commit(
        &mut self,
        preconditions: Vec<api::Precondition>,
        mutations: Vec<api::Mutation>,
    ) -> Result<api::CommitOutcome, String> {
        let preconditions: Vec<_> = preconditions
            .into_iter()
            .map(|p| state::Precondition {
                key: p.key,
                revision: p.revision,
            })
            .collect();
        let mutations: Vec<_> = mutations
            .into_iter()
            .map(|m| match m {
                api::Mutation::Put(k, v) => state::Mutation::Put((k, v)),
                api::Mutation::Delete(k) => state::Mutation::Delete(k),
            })
            .collect();
        match state::commit(&preconditions, &mutations).map_err(state_error)? {
            state::CommitOutcome::Committed(r) => Ok(api::CommitOutcome::Committed(r)),
            state::CommitOutcome::Conflict(k) => Ok(api::CommitOutcome::Conflict(k)),
        }
    }
}

/// A generator seeded from `wasi:random` for this call only: nothing survives the call.
fn call_rng() -> StdRng {
    let mut seed = [0u8; 32];
    // wasi:random cannot fail; should it, a zero seed would be a silent weakness, so trap.
    getrandom::fill(&mut seed).expect("wasi:random/random failed");
    StdRng::from_seed(seed)
}

fn to_wit(e: api::Error) -> WitError {
    match e {
        api::Error::InvalidParameter { field, reason } => {
            WitError::InvalidParameter(InvalidParameter { field, reason })
        }
        api::Error::ServiceNotActive(id) => WitError::ServiceNotActive(id),
        api::Error::UnknownResourceGroup(g) => WitError::UnknownResourceGroup(g),
        api::Error::NoAccessNumberAvailable(g) => WitError::NoAccessNumberAvailable(g),
        api::Error::NoMatch => WitError::NoMatch,
        api::Error::TooManyAttempts => WitError::TooManyAttempts,
        api::Error::RegistryFailure(why) => WitError::RegistryFailure(why),
        api::Error::StateStoreFailure(why) => WitError::StateStoreFailure(why),
    }
}

impl wit::Guest for Component {
    fn create(request: wit::CreateRequest) -> Result<wit::AccessInfo, WitError> {
        let request = api::CreateRequest {
            service_id: request.service_id,
            resource_group: request.resource_group,
            provide_code: request.provide_code,
            phone_number: request.phone_number,
            booking_expiration_timeout: request.booking_expiration_timeout,
        };
        crate::create(&mut WitImports, &mut call_rng(), &request)
            .map(|info| wit::AccessInfo {
                access_number: info.access_number,
                access_code: info.access_code,
                expiration_time: info.expiration_time,
                expires_at: info.expires_at,
            })
            .map_err(to_wit)
    }

    fn match_access(request: wit::MatchRequest) -> Result<wit::Matched, WitError> {
        let request = api::MatchRequest {
            access_number: request.access_number,
            access_code: request.access_code,
            phone_number: request.phone_number,
        };
        crate::match_access(&mut WitImports, &request)
            .map(|m| wit::Matched {
                service_id: m.service_id,
                resource_group: m.resource_group,
            })
            .map_err(to_wit)
    }

    fn release(service_id: String, resource_group: String) -> Result<String, WitError> {
        crate::release(&mut WitImports, &service_id, &resource_group).map_err(to_wit)
    }

    fn pool_status(resource_group: String) -> Result<wit::PoolOccupancy, WitError> {
        crate::pool_status(&mut WitImports, &resource_group)
            .map(|s| wit::PoolOccupancy {
                size: s.size,
                live: s.live,
                free: s.free,
            })
            .map_err(to_wit)
    }
}
