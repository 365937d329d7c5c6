//! The service registry behind the `service-registry` import: services listed in the
//! configuration are always active; services registered through the host are active
//! until their optional TTL runs out, and are kept in the state store; when another
//! system owns the services, it is asked over HTTP (with a timeout and a short cache).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use request_access_guest::validate;

use crate::clock::Clock;
use crate::config::RemoteRegistryConfig;
use crate::store::{Registration, StateStore, StoreError};

pub struct Registry {
    static_services: HashSet<String>,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    remote: Option<RemoteRegistry>,
}

/// One entry of [`Registry::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub service_id: String,
    /// `true` for a service from the configuration.
    pub static_entry: bool,
    /// When a registration runs out (ms since the epoch).
    pub expires_at: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("remote registry: {0}")]
    Remote(String),
}

impl Registry {
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

    pub fn is_active(&self, service_id: &str) -> Result<bool, RegistryError> {
        if self.static_services.contains(service_id) {
            return Ok(true);
        }
        let now = self.clock.now_ms();
        let registered = self
            .store
            .registration(service_id)?
            .is_some_and(|r| r.expires_at.is_none_or(|at| at > now));
        match &self.remote {
            Some(remote) if !registered => remote.is_active(service_id),
            _ => Ok(registered),
        }
    }

    /// Register `service_id`, active for `ttl` (or until deregistered). Answers the
    /// registration as stored.
    pub fn register(
        &self,
        service_id: &str,
        ttl: Option<Duration>,
    ) -> Result<Registration, RegistryError> {
        validate::service_id(service_id).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        if ttl.is_some_and(|t| t.is_zero()) {
            return Err(RegistryError::Invalid("the TTL must be positive".into()));
        }
        let registration = Registration {
            expires_at: ttl.map(|t| self.clock.now_ms().saturating_add(t.as_millis() as u64)),
        };
        self.store.register(service_id, registration)?;
        Ok(registration)
    }

    /// `false` if the service was not registered. Services from the configuration stay.
    pub fn deregister(&self, service_id: &str) -> Result<bool, RegistryError> {
        Ok(self.store.deregister(service_id)?)
    }

    /// Every active service: the configuration's and the registered ones.
    pub fn list(&self) -> Result<Vec<ServiceEntry>, RegistryError> {
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
            self.store
                .registrations()?
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

    fn is_active(&self, service_id: &str) -> Result<bool, RegistryError> {
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
        let active = self.ask(service_id)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= REMOTE_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(service_id.to_string(), (active, Instant::now()));
        Ok(active)
    }

    fn ask(&self, service_id: &str) -> Result<bool, RegistryError> {
        let remote =
            |e: &dyn std::fmt::Display| RegistryError::Remote(format!("{}: {e}", self.config.url));
        let mut response = self
            .agent
            .get(&self.config.url)
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
}
