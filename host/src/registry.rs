//! The service registry behind the `service-registry` import: services listed in the
//! configuration are always active; services registered through the host are active
//! until their optional TTL runs out, and are kept in the state store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use request_access_guest::validate;

use crate::clock::Clock;
use crate::store::{Registration, StateStore, StoreError};

pub struct Registry {
    static_services: HashSet<String>,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
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
        }
    }

    pub fn is_active(&self, service_id: &str) -> Result<bool, StoreError> {
        if self.static_services.contains(service_id) {
            return Ok(true);
        }
        let now = self.clock.now_ms();
        Ok(self
            .store
            .registration(service_id)?
            .is_some_and(|r| r.expires_at.is_none_or(|at| at > now)))
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
