//! The embedded durable backend on redb: every commit is an fsynced write transaction,
//! so a reservation acknowledged to a caller survives a crash of the process. Readers
//! never block each other; writers are serialised by redb.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use request_access_guest::api::{CommitOutcome, Entry, Mutation, Precondition};

use super::{Registration, StateStore, StoreError, check_commit, check_keys, clamp_limit};

/// key -> (revision, value)
const STATE: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("state");
/// service id -> expiry (ms since the epoch), `None` for no expiry
const SERVICES: TableDefinition<&str, Option<u64>> = TableDefinition::new("services");
/// "revision" -> the last committed revision
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

pub struct DurableStore {
    db: Database,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl DurableStore {
    /// Open the store at `path`, creating it if needed.
    pub fn open(path: &Path) -> Result<DurableStore, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(STATE).map_err(unavailable)?;
        txn.open_table(SERVICES).map_err(unavailable)?;
        txn.open_table(META).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(DurableStore { db })
    }
}

impl StateStore for DurableStore {
    fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        check_keys(keys.iter().map(String::as_str))?;
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(STATE).map_err(unavailable)?;
        keys.iter()
            .map(|key| {
                Ok(table.get(key.as_str()).map_err(unavailable)?.map(|guard| {
                    let (revision, value) = guard.value();
                    Entry {
                        key: key.clone(),
                        value: value.to_vec(),
                        revision,
                    }
                }))
            })
            .collect()
    }

    fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(STATE).map_err(unavailable)?;
        let range = table.range::<&str>(start..end).map_err(unavailable)?;
        range
            .take(clamp_limit(limit))
            .map(|item| {
                let (key, value) = item.map_err(unavailable)?;
                let (revision, value) = value.value();
                Ok(Entry {
                    key: key.value().to_string(),
                    value: value.to_vec(),
                    revision,
                })
            })
            .collect()
    }

    fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        check_commit(preconditions, mutations)?;
        let txn = self.db.begin_write().map_err(unavailable)?;
        let revision = {
            let mut state = txn.open_table(STATE).map_err(unavailable)?;
            for p in preconditions {
                let current = state
                    .get(p.key.as_str())
                    .map_err(unavailable)?
                    .map(|g| g.value().0);
                if current != p.revision {
                    // Dropping the transaction aborts it: nothing is written.
                    return Ok(CommitOutcome::Conflict(p.key.clone()));
                }
            }
            let mut meta = txn.open_table(META).map_err(unavailable)?;
            let revision = meta
                .get(REVISION)
                .map_err(unavailable)?
                .map_or(0, |g| g.value())
                + 1;
            meta.insert(REVISION, revision).map_err(unavailable)?;
            for m in mutations {
                match m {
                    Mutation::Put(k, v) => {
                        state
                            .insert(k.as_str(), (revision, v.as_slice()))
                            .map_err(unavailable)?;
                    }
                    Mutation::Delete(k) => {
                        state.remove(k.as_str()).map_err(unavailable)?;
                    }
                }
            }
            revision
        };
        txn.commit().map_err(unavailable)?;
        Ok(CommitOutcome::Committed(revision))
    }

    fn register(&self, service_id: &str, registration: Registration) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        txn.open_table(SERVICES)
            .map_err(unavailable)?
            .insert(service_id, registration.expires_at)
            .map_err(unavailable)?;
        txn.commit().map_err(unavailable)
    }

    fn deregister(&self, service_id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        let existed = txn
            .open_table(SERVICES)
            .map_err(unavailable)?
            .remove(service_id)
            .map_err(unavailable)?
            .is_some();
        txn.commit().map_err(unavailable)?;
        Ok(existed)
    }

    fn registration(&self, service_id: &str) -> Result<Option<Registration>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(SERVICES).map_err(unavailable)?;
        Ok(table
            .get(service_id)
            .map_err(unavailable)?
            .map(|g| Registration {
                expires_at: g.value(),
            }))
    }

    fn registrations(&self) -> Result<Vec<(String, Registration)>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(SERVICES).map_err(unavailable)?;
        table
            .iter()
            .map_err(unavailable)?
            .map(|item| {
                let (k, v) = item.map_err(unavailable)?;
                Ok((
                    k.value().to_string(),
                    Registration {
                        expires_at: v.value(),
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        super::super::contract::check(&DurableStore::open(&dir.path().join("s.redb")).unwrap());
    }

    #[test]
    fn committed_state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let revision = {
            let store = DurableStore::open(&path).unwrap();
            store
                .register(
                    "svc",
                    Registration {
                        expires_at: Some(9),
                    },
                )
                .unwrap();
            match store
                .commit(&[], &[Mutation::Put("k".into(), b"v".to_vec())])
                .unwrap()
            {
                CommitOutcome::Committed(r) => r,
                other => panic!("{other:?}"),
            }
        };
        let store = DurableStore::open(&path).unwrap();
        assert_eq!(
            store.get(&["k".into()]).unwrap()[0]
                .as_ref()
                .unwrap()
                .revision,
            revision
        );
        assert_eq!(
            store.registration("svc").unwrap(),
            Some(Registration {
                expires_at: Some(9)
            })
        );
        // Revisions keep growing across restarts, so no revision is ever reused.
        match store.commit(&[], &[Mutation::Delete("k".into())]).unwrap() {
            CommitOutcome::Committed(r) => assert!(r > revision),
            other => panic!("{other:?}"),
        }
    }
}
