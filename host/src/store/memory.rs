//! The in-memory backend: a B-tree behind a read-write lock. For tests and benchmarks;
//! everything is gone when the process ends.

use std::collections::BTreeMap;
use std::sync::RwLock;

use request_access_guest::api::{CommitOutcome, Entry, Mutation, Precondition};

use super::{Registration, StateStore, StoreError, check_commit, check_keys, clamp_limit};

#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    revision: u64,
    state: BTreeMap<String, (u64, Vec<u8>)>,
    services: BTreeMap<String, Registration>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `entries` and no registrations, whose last committed revision is
    /// `revision`, or that of its newest entry if greater: to serve a state loaded from
    /// elsewhere, handing out only revisions beyond any it holds.
    pub(super) fn with_state(revision: u64, entries: impl IntoIterator<Item = Entry>) -> Self {
        let state: BTreeMap<String, (u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.key, (e.revision, e.value)))
            .collect();
        let revision = state.values().map(|(r, _)| *r).fold(revision, u64::max);
        Self {
            inner: RwLock::new(Inner {
                revision,
                state,
                services: BTreeMap::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied commit (commits
        // validate before mutating), so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn entry(key: &str, (revision, value): &(u64, Vec<u8>)) -> Entry {
    Entry {
        key: key.to_string(),
        value: value.clone(),
        revision: *revision,
    }
}

impl StateStore for MemoryStore {
    fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        check_keys(keys.iter().map(String::as_str))?;
        let inner = self.read();
        Ok(keys
            .iter()
            .map(|k| inner.state.get(k).map(|v| entry(k, v)))
            .collect())
    }

    fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let inner = self.read();
        Ok(inner
            .state
            .range::<str, _>((
                std::ops::Bound::Included(start),
                std::ops::Bound::Excluded(end),
            ))
            .take(clamp_limit(limit))
            .map(|(k, v)| entry(k, v))
            .collect())
    }

    fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        check_commit(preconditions, mutations)?;
        let mut inner = self.write();
        for p in preconditions {
            if inner.state.get(&p.key).map(|(r, _)| *r) != p.revision {
                return Ok(CommitOutcome::Conflict(p.key.clone()));
            }
        }
        inner.revision += 1;
        let revision = inner.revision;
        for m in mutations {
            match m {
                Mutation::Put(k, v) => {
                    inner.state.insert(k.clone(), (revision, v.clone()));
                }
                Mutation::Delete(k) => {
                    inner.state.remove(k);
                }
            }
        }
        Ok(CommitOutcome::Committed(revision))
    }

    fn register(&self, service_id: &str, registration: Registration) -> Result<(), StoreError> {
        self.write()
            .services
            .insert(service_id.to_string(), registration);
        Ok(())
    }

    fn deregister(&self, service_id: &str) -> Result<bool, StoreError> {
        Ok(self.write().services.remove(service_id).is_some())
    }

    fn registration(&self, service_id: &str) -> Result<Option<Registration>, StoreError> {
        Ok(self.read().services.get(service_id).copied())
    }

    fn registrations(&self) -> Result<Vec<(String, Registration)>, StoreError> {
        Ok(self
            .read()
            .services
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn honours_the_store_contract() {
        super::super::contract::check(&super::MemoryStore::new());
    }

    #[test]
    fn receives_a_copy_of_another_store() {
        super::super::contract::check_copy(&super::MemoryStore::new());
    }
}
