//! The service registry behind the `service-registry` import: services listed in the
//! configuration are always active; services registered through the host are active
//! until their optional TTL runs out; when another system owns the services, it is
//! asked over HTTP (with a timeout and a short cache).
//!
//! Registrations are keys of the state store, `{HOST_KEY_PREFIX}service{SEP}{id}`, each
//! holding its expiry (8 bytes, little endian, ms since the epoch) or nothing for none
//! (the encoding lives in `store/host_keys.rs`, which the durable store shares). They
//! are written through `commit` like reservations, so every backend keeps them with no
//! code of its own, and every node that shares a store sees the same registrations.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use request_access_guest::api::{CommitOutcome, Error as ServiceError, Mutation, Precondition};
use request_access_guest::validate;

use crate::clock::Clock;
use crate::config::RemoteRegistryConfig;
// Defined beside the store (the durable store migrates legacy registrations with them),
// used here under their old paths.
pub use crate::store::host_keys::Registration;
pub(crate) use crate::store::host_keys::registration_entry;
use crate::store::host_keys::{
    REGISTRATIONS, REGISTRATIONS_END, decode_registration, registration_key,
};
use crate::store::{MAX_KEYS_PER_CALL, StateStore, StoreError};

/// The registration a stored value encodes; a malformed one is the store's failure.
fn decode(value: &[u8]) -> Result<Registration, StoreError> {
    decode_registration(value).map_err(StoreError::Unavailable)
}

/// The registry: configured services, registrations in the store, and an optional
/// remote registry.
pub struct Registry {
    static_services: HashSet<String>,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    remote: Option<RemoteRegistry>,
}

/// One entry of [`Registry::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The service's `_id`.
    pub service_id: String,
    /// `true` for a service from the configuration.
    pub static_entry: bool,
    /// When a registration runs out (ms since the epoch).
    pub expires_at: Option<u64>,
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A parameter was refused ([`ServiceError::InvalidParameter`] names it).
    #[error("{0}")]
    Invalid(ServiceError),
    /// The state store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The remote registry did not answer usably.
    #[error("remote registry: {0}")]
    Remote(String),
}

impl Registry {
    /// A registry of `static_services` and of the registrations kept in `store`.
    pub fn new(
        static_services: HashSet<String>,
        store: Arc<dyn StateStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Registry {
            static_services,
            store,
            clock,
            remote: None,
        }
    }

    /// Also ask the registry at `config.url` about services this host does not know.
    pub fn with_remote(mut self, config: RemoteRegistryConfig) -> Self {
        self.remote = Some(RemoteRegistry::new(config));
        self
    }

    /// Whether `service_id` may ask for access information now.
    pub async fn is_active(&self, service_id: &str) -> Result<bool, RegistryError> {
        if self.static_services.contains(service_id) {
            return Ok(true);
        }
        let now = self.clock.now_ms();
        let registered = self
            .registration(service_id)
            .await?
            .is_some_and(|r| r.expires_at.is_none_or(|at| at > now));
        match &self.remote {
            Some(remote) if !registered => remote.is_active(service_id).await,
            _ => Ok(registered),
        }
    }

    /// Register `service_id`, active for `ttl` (or until deregistered). Answers the
    /// registration as stored.
    pub async fn register(
        &self,
        service_id: &str,
        ttl: Option<Duration>,
    ) -> Result<Registration, RegistryError> {
        validate::service_id(service_id).map_err(RegistryError::Invalid)?;
        if ttl.is_some_and(|t| t.is_zero()) {
            return Err(RegistryError::Invalid(ServiceError::InvalidParameter {
                field: "_ttl".into(),
                reason: "must be positive".into(),
            }));
        }
        let registration = Registration {
            expires_at: ttl.map(|t| self.clock.now_ms().saturating_add(t.as_millis() as u64)),
        };
        let (key, value) = registration_entry(service_id, registration);
        self.store.commit(&[], &[Mutation::Put(key, value)]).await?;
        Ok(registration)
    }

    /// `false` if the service was not registered. Services from the configuration stay.
    pub async fn deregister(&self, service_id: &str) -> Result<bool, RegistryError> {
        validate::service_id(service_id).map_err(RegistryError::Invalid)?;
        let key = registration_key(service_id);
        loop {
            let read = self.store.get(std::slice::from_ref(&key)).await?;
            let Some(entry) = read.into_iter().next().flatten() else {
                return Ok(false);
            };
            // Delete what was read: a registration renewed meanwhile is read again.
            let current = Precondition {
                key: key.clone(),
                revision: Some(entry.revision),
            };
            let delete = [Mutation::Delete(key.clone())];
            match self.store.commit(&[current], &delete).await? {
                CommitOutcome::Committed(_) => return Ok(true),
                CommitOutcome::Conflict(_) => continue,
            }
        }
    }

    /// The stored registration of `service_id`, expired or not.
    pub async fn registration(
        &self,
        service_id: &str,
    ) -> Result<Option<Registration>, RegistryError> {
        let key = registration_key(service_id);
        match self.store.get(&[key]).await?.pop().flatten() {
            Some(entry) => Ok(Some(decode(&entry.value)?)),
            None => Ok(None),
        }
    }

    /// Every stored registration, expired or not, ordered by service id.
    pub async fn registrations(&self) -> Result<Vec<(String, Registration)>, RegistryError> {
        let mut all = Vec::new();
        let mut start = REGISTRATIONS.to_string();
        loop {
            let page = self
                .store
                .scan(&start, REGISTRATIONS_END, MAX_KEYS_PER_CALL as u32)
                .await?;
            let full = page.len() == MAX_KEYS_PER_CALL;
            if let Some(last) = page.last() {
                // The smallest key after `last`.
                start = format!("{}\0", last.key);
            }
            for entry in page {
                let id = entry.key[REGISTRATIONS.len()..].to_string();
                all.push((id, decode(&entry.value)?));
            }
            if !full {
                return Ok(all);
            }
        }
    }

    /// Every active service: the configuration's and the registered ones.
    pub async fn list(&self) -> Result<Vec<ServiceEntry>, RegistryError> {
        let now = self.clock.now_ms();
        let mut entries: Vec<ServiceEntry> = self
            .static_services
            .iter()
            .map(|id| ServiceEntry {
                service_id: id.clone(),
                static_entry: true,
                expires_at: None,
            })
            .collect();
        entries.extend(
            self.registrations()
                .await?
                .into_iter()
                .filter(|(id, r)| {
                    !self.static_services.contains(id) && r.expires_at.is_none_or(|at| at > now)
                })
                .map(|(service_id, r)| ServiceEntry {
                    service_id,
                    static_entry: false,
                    expires_at: r.expires_at,
                }),
        );
        entries.sort_by(|a, b| a.service_id.cmp(&b.service_id));
        Ok(entries)
    }
}

/// Most answers the remote registry's cache keeps; it starts afresh when full.
const REMOTE_CACHE_ENTRIES: usize = 10_000;

/// A registry another system owns: `GET {url}?id={service id}` answers 200 with
/// `{"active": true|false}`, or 404 for a service it does not know (not active).
struct RemoteRegistry {
    config: RemoteRegistryConfig,
    agent: ureq::Agent,
    cache: Mutex<HashMap<String, (bool, Instant)>>,
}

#[derive(serde::Deserialize)]
struct RemoteAnswer {
    active: bool,
}

impl RemoteRegistry {
    fn new(config: RemoteRegistryConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        RemoteRegistry {
            config,
            agent,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn is_active(&self, service_id: &str) -> Result<bool, RegistryError> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service_id)
            .filter(|(_, at)| at.elapsed() < self.config.cache_ttl)
            .map(|(active, _)| *active);
        if let Some(active) = cached {
            return Ok(active);
        }
        let active = self.ask_off_the_runtime(service_id).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= REMOTE_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(service_id.to_string(), (active, Instant::now()));
        Ok(active)
    }

    /// [`ask`] on tokio's blocking pool when there is a runtime (the HTTP client
    /// blocks), inline otherwise.
    async fn ask_off_the_runtime(&self, service_id: &str) -> Result<bool, RegistryError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return ask(&self.agent, &self.config.url, service_id);
        }
        let (agent, url, id) = (
            self.agent.clone(),
            self.config.url.clone(),
            service_id.to_string(),
        );
        tokio::task::spawn_blocking(move || ask(&agent, &url, &id))
            .await
            .map_err(|e| {
                RegistryError::Remote(format!("{}: the request was lost: {e}", self.config.url))
            })?
    }
}

/// `GET {url}?id={service_id}`: whether the remote registry holds the service active.
fn ask(agent: &ureq::Agent, url: &str, service_id: &str) -> Result<bool, RegistryError> {
    let remote = |e: &dyn std::fmt::Display| RegistryError::Remote(format!("{url}: {e}"));
    let mut response = agent
        .get(url)
        .query("id", service_id)
        .call()
        .map_err(|e| remote(&e))?;
    match response.status().as_u16() {
        200 => Ok(response
            .body_mut()
            .read_json::<RemoteAnswer>()
            .map_err(|e| remote(&e))?
            .active),
        404 => Ok(false),
        status => Err(remote(&format!("answered HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{DurableStore, MemoryStore, copy_state};

    fn registry(store: Arc<dyn StateStore>) -> Registry {
        Registry::new(
            HashSet::from(["configured".to_string()]),
            store,
            Arc::new(ManualClock::new(0)),
        )
    }

    /// Registration, listing and removal, on any backend.
    async fn check(store: Arc<dyn StateStore>) {
        let r = registry(store);
        let forever = Registration { expires_at: None };
        let until = Registration {
            expires_at: Some(42),
        };
        assert_eq!(r.register("s1", None).await.unwrap(), forever);
        assert_eq!(
            r.register("s0", Some(Duration::from_millis(42)))
                .await
                .unwrap(),
            until
        );
        assert_eq!(r.registration("s1").await.unwrap(), Some(forever));
        assert_eq!(
            r.registrations().await.unwrap(),
            vec![("s0".to_string(), until), ("s1".to_string(), forever)]
        );
        assert!(r.is_active("s0").await.unwrap() && r.is_active("configured").await.unwrap());
        assert!(r.deregister("s1").await.unwrap());
        assert!(!r.deregister("s1").await.unwrap());
        assert_eq!(r.registration("s1").await.unwrap(), None);
        assert!(!r.is_active("s1").await.unwrap());
        assert!(matches!(
            r.register("s2", Some(Duration::ZERO)).await,
            Err(RegistryError::Invalid(ServiceError::InvalidParameter { field, .. })) if field == "_ttl"
        ));
    }

    #[tokio::test]
    async fn registrations_live_in_the_memory_store() {
        check(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn registrations_live_in_the_durable_store() {
        let dir = tempfile::tempdir().unwrap();
        check(Arc::new(
            DurableStore::open(&dir.path().join("s.redb")).unwrap(),
        ))
        .await;
    }

    #[tokio::test]
    async fn more_registrations_than_one_scan_answers_are_all_listed() {
        let r = registry(Arc::new(MemoryStore::new()));
        let ids: Vec<String> = (0..MAX_KEYS_PER_CALL + 5)
            .map(|i| format!("s{i:05}"))
            .collect();
        for id in &ids {
            r.register(id, None).await.unwrap();
        }
        let listed: Vec<String> = r
            .registrations()
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(listed, ids);
    }

    #[tokio::test]
    async fn copying_a_store_carries_its_registrations() {
        let from: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        registry(from.clone()).register("s", None).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let to: Arc<dyn StateStore> =
            Arc::new(DurableStore::open(&dir.path().join("s.redb")).unwrap());
        copy_state(from.as_ref(), to.as_ref()).await.unwrap();
        assert_eq!(
            registry(to).registrations().await.unwrap(),
            vec![("s".to_string(), Registration { expires_at: None })]
        );
    }
}
