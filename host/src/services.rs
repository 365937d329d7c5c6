//! What the host provides to the plugin, independent of how it is called: the
//! configuration, the state store, the registry and the clock. The wasmtime bindings
//! (`runtime.rs`) and the native path (`native.rs`) both delegate here.

use std::sync::Arc;

use request_access_guest::api::{
    self, CommitOutcome, Entry, Group, Imports, Mutation, Precondition,
};

use crate::clock::Clock;
use crate::config::Config;
use crate::registry::Registry;
use crate::store::{StateStore, StoreError};

pub struct Services {
    pub config: Arc<Config>,
    pub store: Arc<dyn StateStore>,
    pub registry: Registry,
    pub clock: Arc<dyn Clock>,
}

impl Services {
    pub fn new(config: Config, store: Arc<dyn StateStore>, clock: Arc<dyn Clock>) -> Self {
        let registry = Registry::new(config.static_services.clone(), store.clone(), clock.clone());
        Services {
            config: Arc::new(config),
            store,
            registry,
            clock,
        }
    }

    pub fn group(&self, name: &str) -> Option<Group> {
        self.config.group(name).map(|g| Group {
            name: g.name.clone(),
            strategy: g.strategy,
            booking_expiration_timeout: g.booking_expiration_timeout,
            size: g.pool.size(),
            pool_id: g.pool.id(),
        })
    }

    pub fn number_at(&self, group: &str, index: u32) -> Option<String> {
        self.config.group(group)?.pool.number_at(index)
    }

    pub fn index_of(&self, group: &str, number: &str) -> Option<u32> {
        self.config.group(group)?.pool.index_of(number)
    }
}

/// The imports served straight from [`Services`], with no component in between: the
/// native baseline for tests and benchmarks.
pub struct NativeImports<'a>(pub &'a Services);

impl Imports for NativeImports<'_> {
    fn now(&mut self) -> api::Instant {
        self.0.clock.now_ms()
    }
    fn is_active(&mut self, service_id: &str) -> Result<bool, String> {
        self.0
            .registry
            .is_active(service_id)
            .map_err(|e| e.to_string())
    }
    fn options(&mut self) -> api::Options {
        self.0.config.options
    }
    fn group(&mut self, name: &str) -> Option<Group> {
        self.0.group(name)
    }
    fn number_at(&mut self, group: &str, index: u32) -> Option<String> {
        self.0.number_at(group, index)
    }
    fn index_of(&mut self, group: &str, number: &str) -> Option<u32> {
        self.0.index_of(group, number)
    }
    fn get(&mut self, keys: &[String]) -> Result<Vec<Option<Entry>>, String> {
        self.0
            .store
            .get(keys)
            .map_err(|e: StoreError| e.to_string())
    }
    fn scan(&mut self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, String> {
        self.0
            .store
            .scan(start, end, limit)
            .map_err(|e| e.to_string())
    }
    fn commit(
        &mut self,
        preconditions: Vec<Precondition>,
        mutations: Vec<Mutation>,
    ) -> Result<CommitOutcome, String> {
        self.0
            .store
            .commit(&preconditions, &mutations)
            .map_err(|e| e.to_string())
    }
}
