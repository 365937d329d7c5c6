//! The in-memory backend: a [`RevisionedMap`] behind a read-write lock. For tests,
//! benchmarks and as the durable store's cache; everything is gone when the process
//! ends.

use std::sync::RwLock;

use request_access_guest::api::{CommitOutcome, Entry, Mutation, Precondition};
use request_access_state::RevisionedMap;

use super::{StateStore, StoreError};

/// Every entry in a B-tree, shared by threads.
#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<RevisionedMap>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `entries`, whose last committed revision is `revision`, or that
    /// of its newest entry if greater: to serve a state loaded from elsewhere, handing
    /// out only revisions beyond any it holds.
    pub(super) fn with_state(revision: u64, entries: impl IntoIterator<Item = Entry>) -> Self {
        Self {
            inner: RwLock::new(RevisionedMap::with_entries(revision, entries)),
        }
    }

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, RevisionedMap> {
        // A panic while holding the lock cannot leave a half-applied commit (commits
        // validate before mutating), so a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, RevisionedMap> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every call answers at once: nothing in it waits.
#[async_trait::async_trait]
impl StateStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        self.read().get(keys).map_err(StoreError::Refused)
    }

    async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        Ok(self.read().scan(start, end, limit))
    }

    async fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        self.write()
            .commit(preconditions, mutations)
            .map_err(StoreError::Refused)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn honours_the_store_contract() {
        super::super::contract::check(&super::MemoryStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_histories_are_linearizable() {
        super::super::contract::check_linearizable(
            std::sync::Arc::new(super::MemoryStore::new()),
            6,
            150,
        )
        .await;
    }

    #[tokio::test]
    async fn receives_a_copy_of_another_store() {
        super::super::contract::check_copy(&super::MemoryStore::new()).await;
    }
}
