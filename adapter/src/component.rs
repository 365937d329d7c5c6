//! The wit-bindgen shell of the adapter: the `standalone-adapter` world's exports mapped
//! onto [`FileStore`](crate::FileStore) and the configuration file. Its generated
//! types convert to and from `guest::api` by the guest's conversion macros.

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "standalone-adapter",
    });
}
request_access_guest::convert_reservation_state!(
    bindings::exports::contact_center::request_access::reservation_state
);
request_access_guest::convert_resource_groups!(
    bindings::exports::contact_center::request_access::resource_groups
);
request_access_guest::convert_group_policy!(
    bindings::exports::contact_center::request_access::resource_groups
);
request_access_guest::convert_lease_policy!(
    bindings::exports::contact_center::request_access::resource_groups
);

use std::cell::RefCell;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bindings::exports::contact_center::request_access::{
    clock, reservation_state as state, resource_groups as groups, service_registry,
};
use request_access_config::Config;
use request_access_guest::api;
use request_access_guest::conversions::{each, each_present};

use crate::{FileStore, STATE_DIR, load_config};

struct Adapter;
bindings::export!(Adapter with_types_in bindings);

thread_local! {
    /// Loaded on first use; one process serves one invocation.
    static CONFIG: RefCell<Option<Result<Config, String>>> = const { RefCell::new(None) };
    static STORE: RefCell<Option<Result<FileStore, String>>> = const { RefCell::new(None) };
}

/// `f` of the configuration, or why it does not load (`configuration: FILE:LINE: ...`).
fn with_config<R>(f: impl FnOnce(&Config) -> R) -> Result<R, String> {
    CONFIG.with(|cell| {
        let mut cell = cell.borrow_mut();
        match cell.get_or_insert_with(|| load_config(Path::new(STATE_DIR))) {
            Ok(config) => Ok(f(config)),
            Err(why) => Err(format!("configuration: {why}")),
        }
    })
}

/// `f` of the state file. A configuration that does not load fails every call with its
/// message, so that the plugin answers it as an error result instead of serving an
/// empty configuration (`resource-groups` has no error channel of its own).
fn with_store<R>(f: impl FnOnce(&FileStore) -> Result<R, String>) -> Result<R, state::StateError> {
    with_config(|_| ()).map_err(state::StateError::Unavailable)?;
    STORE.with(|cell| {
        let mut cell = cell.borrow_mut();
        match cell.get_or_insert_with(|| FileStore::open(Path::new(STATE_DIR))) {
            Ok(store) => f(store).map_err(state::StateError::Unavailable),
            Err(why) => Err(state::StateError::Unavailable(why.clone())),
        }
    })
}

impl clock::Guest for Adapter {
    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

impl service_registry::Guest for Adapter {
    fn is_active(service_id: String) -> Result<bool, service_registry::RegistryError> {
        with_config(|c| c.static_services.contains(&service_id))
            .map_err(service_registry::RegistryError::Unavailable)
    }
}

impl groups::Guest for Adapter {
    fn options() -> groups::GlobalOptions {
        with_config(|c| c.options)
            .unwrap_or_else(|_| Config::embedded().options)
            .into()
    }

    fn group(name: String) -> Option<groups::GroupInfo> {
        match with_config(|c| c.group(&name).map(|g| g.info())) {
            Ok(group) => group.map(Into::into),
            // A group of one number that the plugin cannot lend: it goes on to ask the
            // registry or the state, whose answer is the configuration's error.
            Err(_) => Some(
                api::Group {
                    name,
                    strategy: api::Strategy::RoundRobin,
                    booking_expiration_timeout: None,
                    size: 1,
                    pool_id: 0,
                }
                .into(),
            ),
        }
    }

    fn number_at(group: String, index: u32) -> Option<String> {
        with_config(|c| c.group(&group)?.pool.number_at(index))
            .ok()
            .flatten()
    }

    fn index_of(group: String, number: String) -> Option<u32> {
        with_config(|c| c.group(&group)?.pool.index_of(&number))
            .ok()
            .flatten()
    }

    fn policy(name: String) -> Option<groups::GroupPolicy> {
        with_config(|c| c.group(&name).map(|g| g.policy.clone().into()))
            .ok()
            .flatten()
    }

    fn lease_policy(name: String) -> Option<groups::GroupLease> {
        with_config(|c| c.group(&name).map(|g| g.lease.into()))
            .ok()
            .flatten()
    }
}

impl state::Guest for Adapter {
    fn get(keys: Vec<String>) -> Result<Vec<Option<state::Entry>>, state::StateError> {
        with_store(|s| s.get(&keys)).map(each_present)
    }

    fn scan(
        start: String,
        end: String,
        limit: u32,
    ) -> Result<Vec<state::Entry>, state::StateError> {
        with_store(|s| s.scan(&start, &end, limit)).map(each)
    }

    fn read(
        keys: Vec<String>,
        ranges: Vec<state::KeyRange>,
    ) -> Result<state::Snapshot, state::StateError> {
        let ranges: Vec<api::KeyRange> = each(ranges);
        with_store(|s| s.read(&keys, &ranges)).map(Into::into)
    }

    fn commit(
        preconditions: Vec<state::Precondition>,
        mutations: Vec<state::Mutation>,
    ) -> Result<state::CommitOutcome, state::StateError> {
        let (preconditions, mutations): (Vec<api::Precondition>, Vec<api::Mutation>) =
            (each(preconditions), each(mutations));
        with_store(|s| s.commit(&preconditions, &mutations)).map(Into::into)
    }

    /// The commit alone: the state file keeps no events (a generic host has nobody to
    /// tell them to).
    fn commit_recorded(
        preconditions: Vec<state::Precondition>,
        mutations: Vec<state::Mutation>,
        _events: Vec<state::Event>,
    ) -> Result<state::CommitOutcome, state::StateError> {
        <Adapter as state::Guest>::commit(preconditions, mutations)
    }
}
