//! What the host provides to the plugin, independent of how it is called: the
//! configuration, the state store, the registry and the clock. The wasmtime imports
//! (`runtime/imports.rs`) and the native path ([`NativeImports`]) both delegate here.

use std::sync::Arc;

use futures::executor::block_on;

use request_access_guest::api::{
    self, CommitOutcome, Entry, Event, Group, Imports, KeyRange, Mutation, Precondition, Snapshot,
};

use crate::clock::Clock;
use crate::config::Config;
use crate::journal::Journal;
use crate::registry::Registry;
use crate::store::{HOST_KEY_PREFIX, StateStore, StoreError, mutation_key};

/// The configuration, the state store, the registry and the clock, shared by every
/// call.
pub struct Services {
    /// The configuration the host started with.
    pub config: Arc<Config>,
    /// Where reservations and registrations live.
    pub store: Arc<dyn StateStore>,
    /// Which services are active.
    pub registry: Registry,
    /// The time the plugin sees.
    pub clock: Arc<dyn Clock>,
    /// Where the plugin's events are kept, with the commits that report them.
    pub journal: Arc<Journal>,
}

impl Services {
    /// Services over `store` and `clock`, with the registry the configuration describes.
    pub fn new(config: Config, store: Arc<dyn StateStore>, clock: Arc<dyn Clock>) -> Self {
        let mut registry =
            Registry::new(config.static_services.clone(), store.clone(), clock.clone());
        if let Some(remote) = &config.remote_registry {
            registry = registry.with_remote(remote.clone());
        }
        Services {
            config: Arc::new(config),
            store,
            registry,
            clock,
            journal: Arc::new(Journal::new()),
        }
    }

    /// These services under `config`, keeping this node's journal (a reload).
    pub fn reconfigured(&self, config: Config) -> Self {
        Services {
            journal: self.journal.clone(),
            ..Services::new(config, self.store.clone(), self.clock.clone())
        }
    }

    /// Whether the state store answers: a read of a key nobody writes (readiness, and
    /// the operator's page's store latency).
    pub async fn store_answers(&self) -> Result<(), StoreError> {
        self.store.get(&["readiness-probe".into()]).await.map(drop)
    }

    /// `resource-groups.group`.
    pub fn group(&self, name: &str) -> Option<Group> {
        self.config.group(name).map(|g| g.info())
    }

    /// `resource-groups.number-at`.
    pub fn number_at(&self, group: &str, index: u32) -> Option<String> {
        self.config.group(group)?.pool.number_at(index)
    }

    /// `resource-groups.index-of`.
    pub fn index_of(&self, group: &str, number: &str) -> Option<u32> {
        self.config.group(group)?.pool.index_of(number)
    }

    /// The policy of `group`, if it is configured.
    pub fn policy(&self, group: &str) -> Option<api::Policy> {
        Some(self.config.group(group)?.policy.clone())
    }

    /// The lease policy of `group`, if it is configured.
    pub fn lease_policy(&self, group: &str) -> Option<api::LeasePolicy> {
        Some(self.config.group(group)?.lease)
    }

    /// `reservation-state.get` for the plugin: the host's own keys are refused.
    pub async fn guest_get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        guest_keys(keys.iter().map(String::as_str))?;
        self.store.get(keys).await
    }

    /// `reservation-state.scan` for the plugin: a range that reaches the host's own
    /// keys is refused.
    pub async fn guest_scan(
        &self,
        start: &str,
        end: &str,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        guest_range(start, end)?;
        self.store.scan(start, end, limit).await
    }

    /// `reservation-state.read` for the plugin: the host's own keys are refused, named
    /// or in a range.
    pub async fn guest_read(
        &self,
        keys: &[String],
        ranges: &[KeyRange],
    ) -> Result<Snapshot, StoreError> {
        guest_keys(keys.iter().map(String::as_str))?;
        for range in ranges {
            guest_range(&range.start, &range.end)?;
        }
        self.store.read(keys, ranges).await
    }

    /// `reservation-state.commit` for the plugin: the host's own keys are refused.
    pub async fn guest_commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        guest_keys(preconditions.iter().map(|p| p.key.as_str()))?;
        guest_keys(mutations.iter().map(mutation_key))?;
        self.store.commit(preconditions, mutations).await
    }

    /// `reservation-state.commit-recorded` for the plugin: its commit, with the events
    /// kept as the configuration says ([`Journal`]), in the same atomic commit.
    pub async fn guest_commit_recorded(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
        events: &[Event],
    ) -> Result<CommitOutcome, StoreError> {
        guest_keys(preconditions.iter().map(|p| p.key.as_str()))?;
        guest_keys(mutations.iter().map(mutation_key))?;
        let recorded = self
            .journal
            .mutations(&self.config, events, self.clock.now_ms());
        if recorded.is_empty() {
            if mutations.is_empty() {
                return Ok(CommitOutcome::Committed(0));
            }
            return self.store.commit(preconditions, mutations).await;
        }
        let mut all = mutations.to_vec();
        all.extend(recorded);
        self.store.commit(preconditions, &all).await
    }
}

fn host_keys_refused() -> StoreError {
    StoreError::Refused(format!(
        "keys starting with {HOST_KEY_PREFIX:?} belong to the host"
    ))
}

/// Refuse the plugin a range that reaches the host's own keys, those in
/// [U+001E, U+001F).
fn guest_range(start: &str, end: &str) -> Result<(), StoreError> {
    let host_keys = HOST_KEY_PREFIX.to_string();
    match start < "\u{1f}" && end > host_keys.as_str() && start < end {
        true => Err(host_keys_refused()),
        false => Ok(()),
    }
}

/// Refuse the plugin any of the host's own keys (the registrations): it must not
/// read them, nor forge them.
fn guest_keys<'a>(mut keys: impl Iterator<Item = &'a str>) -> Result<(), StoreError> {
    match keys.any(|k| k.starts_with(HOST_KEY_PREFIX)) {
        true => Err(host_keys_refused()),
        false => Ok(()),
    }
}

/// The imports served straight from [`Services`], with no component in between: the
/// native baseline for tests and benchmarks. The logic calls its imports synchronously,
/// so each store call is driven to its end on the calling thread: use it outside an
/// async runtime's workers.
pub struct NativeImports<'a>(
    /// What the imports are served from.
    pub &'a Services,
);

impl Imports for NativeImports<'_> {
    fn now(&mut self) -> api::Instant {
        self.0.clock.now_ms()
    }
    fn is_active(&mut self, service_id: &str) -> Result<bool, String> {
        block_on(self.0.registry.is_active(service_id)).map_err(|e| e.to_string())
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
    fn policy(&mut self, group: &str) -> api::Policy {
        self.0.policy(group).unwrap_or_default()
    }
    fn lease_policy(&mut self, group: &str) -> api::LeasePolicy {
        self.0.lease_policy(group).unwrap_or_default()
    }
    fn get(&mut self, keys: &[String]) -> Result<Vec<Option<Entry>>, String> {
        block_on(self.0.guest_get(keys)).map_err(|e| e.to_string())
    }
    fn scan(&mut self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, String> {
        block_on(self.0.guest_scan(start, end, limit)).map_err(|e| e.to_string())
    }
    fn read(&mut self, keys: &[String], ranges: &[KeyRange]) -> Result<Snapshot, String> {
        block_on(self.0.guest_read(keys, ranges)).map_err(|e| e.to_string())
    }
    fn commit(
        &mut self,
        preconditions: Vec<Precondition>,
        mutations: Vec<Mutation>,
    ) -> Result<CommitOutcome, String> {
        block_on(self.0.guest_commit(&preconditions, &mutations)).map_err(|e| e.to_string())
    }
    fn commit_recorded(
        &mut self,
        preconditions: Vec<Precondition>,
        mutations: Vec<Mutation>,
        events: Vec<Event>,
    ) -> Result<CommitOutcome, String> {
        block_on(
            self.0
                .guest_commit_recorded(&preconditions, &mutations, &events),
        )
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    //! The guest's logic run natively against the real in-memory store.
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use request_access_guest::api::{CreateRequest, Error, MatchRequest};

    fn services(numbers: &str, store: Arc<dyn StateStore>) -> Services {
        let config = Config::parse(
            &format!(
                "[[resource_group]]\nname = \"G\"\nnumbers = [\"{numbers}\"]\n\
                 [registry]\nservices = [{}]\n",
                (0..20)
                    .map(|i| format!("\"s{i}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "test",
        )
        .unwrap();
        Services::new(config, store, Arc::new(ManualClock::new(1_000_000)))
    }

    fn create(s: &Services, id: &str) -> Result<String, Error> {
        let request = CreateRequest {
            service_id: id.into(),
            resource_group: "G".into(),
            provide_code: false,
            phone_number: None,
            booking_expiration_timeout: None,
        };
        let mut rng = StdRng::seed_from_u64(1);
        request_access_guest::create(&mut NativeImports(s), &mut rng, &request)
            .map(|i| i.access_number)
    }

    fn match_number(s: &Services, number: &str) -> Result<String, Error> {
        let request = MatchRequest {
            access_number: number.into(),
            access_code: None,
            phone_number: None,
        };
        request_access_guest::match_access(&mut NativeImports(s), &request).map(|m| m.service_id)
    }

    #[test]
    fn growing_a_pool_keeps_live_reservations_and_never_lends_them_twice() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let before = services("5551000..5551004", store.clone());
        let held: Vec<String> = (0..3)
            .map(|i| create(&before, &format!("s{i}")).unwrap())
            .collect();

        let after = services("5551000..5551009", store);
        let fresh: Vec<String> = (3..10)
            .map(|i| create(&after, &format!("s{i}")).unwrap())
            .collect();
        for n in &fresh {
            assert!(!held.contains(n), "{n} is still held");
        }
        assert_eq!(
            create(&after, "s10"),
            Err(Error::NoAccessNumberAvailable("G".into()))
        );
        // The old reservations still match, and their numbers join the new pool.
        assert_eq!(match_number(&after, &held[0]).unwrap(), "s0");
        assert_eq!(create(&after, "s10").unwrap(), held[0]);
    }

    #[test]
    fn shrinking_a_pool_retires_numbers_no_longer_in_it() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let before = services("5551000..5551004", store.clone());
        for i in 0..3 {
            create(&before, &format!("s{i}")).unwrap();
        }
        let after = services("5551000..5551001", store);
        assert_eq!(
            create(&after, "s5"),
            Err(Error::NoAccessNumberAvailable("G".into()))
        );
        // 5551002 left the pool: matching it still works, but it is not lent again.
        assert_eq!(match_number(&after, "5551002").unwrap(), "s2");
        assert_eq!(
            create(&after, "s5"),
            Err(Error::NoAccessNumberAvailable("G".into()))
        );
        assert_eq!(match_number(&after, "5551000").unwrap(), "s0");
        assert_eq!(create(&after, "s5").unwrap(), "5551000");
        let status = request_access_guest::pool_status(&mut NativeImports(&after), "G").unwrap();
        assert_eq!((status.size, status.live, status.free), (2, 2, 0));
    }

    #[test]
    fn occupancy_counts_more_expired_reservations_than_one_scan_returns() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let config = Config::parse(
            "[[resource_group]]\nname = \"G\"\nnumbers = [\"5550000..5552999\"]\n",
            "test",
        )
        .unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let s = Services::new(config, store, clock.clone());
        for i in 0..1500 {
            block_on(s.registry.register(&format!("s{i}"), None)).unwrap();
            create(&s, &format!("s{i}")).unwrap();
        }
        let status =
            |s: &Services| request_access_guest::pool_status(&mut NativeImports(s), "G").unwrap();
        assert_eq!(status(&s).live, 1500);
        clock.advance(std::time::Duration::from_secs(30));
        assert_eq!(status(&s).live, 0, "all 1,500 expired, more than one page");
    }
}
