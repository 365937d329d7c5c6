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

fn with_config<R>(f: impl FnOnce(&Config) -> R) -> R {
    CONFIG.with(|cell| {
        let mut cell = cell.borrow_mut();
        let loaded = cell.get_or_insert_with(|| load_config(Path::new(STATE_DIR)));
        match loaded {
            Ok(config) => f(config),
            // resource-groups has no error channel: a broken configuration must stop the
            // call loudly rather than look like an empty one.
            Err(why) => panic!("configuration: {why}"),
        }
    })
}

fn with_store<R>(f: impl FnOnce(&FileStore) -> Result<R, String>) -> Result<R, state::StateError> {
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
        Ok(with_config(|c| c.static_services.contains(&service_id)))
    }
}

impl groups::Guest for Adapter {
    fn options() -> groups::GlobalOptions {
        with_config(|c| c.options.into())
    }

    fn group(name: String) -> Option<groups::GroupInfo> {
        with_config(|c| c.group(&name).map(|g| g.info().into()))
    }

    fn number_at(group: String, index: u32) -> Option<String> {
        with_config(|c| c.group(&group)?.pool.number_at(index))
    }

    fn index_of(group: String, number: String) -> Option<u32> {
        with_config(|c| c.group(&group)?.pool.index_of(&number))
    }

    fn policy(name: String) -> Option<groups::GroupPolicy> {
        with_config(|c| c.group(&name).map(|g| g.policy.clone().into()))
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

    fn commit(
        preconditions: Vec<state::Precondition>,
        mutations: Vec<state::Mutation>,
    ) -> Result<state::CommitOutcome, state::StateError> {
        let (preconditions, mutations): (Vec<api::Precondition>, Vec<api::Mutation>) =
            (each(preconditions), each(mutations));
        with_store(|s| s.commit(&preconditions, &mutations)).map(Into::into)
    }
}
