//! Host-owned state behind the `reservation-state` import: the reservations and the
//! registered services, as keys of one ordered store.
//!
//! Backends implement a handful of backend-neutral primitives (batched get, ordered
//! scan, atomic multi-key compare-and-swap commit) that hold no request-access logic.
//! The memory and durable backends cost O(log n) per key, n being the number of
//! stored keys; the Redis backend costs one network round trip per call on top.

use request_access_guest::api::{CommitOutcome, Entry, Mutation, Precondition};
pub use request_access_state::{MAX_KEY_BYTES, MAX_KEYS_PER_CALL, MAX_VALUE_BYTES, mutation_key};

mod durable;
mod log;
mod memory;
mod redis;

pub use durable::DurableStore;
pub use memory::MemoryStore;
pub use redis::RedisStore;

use std::path::Path;
use std::sync::Arc;

use request_access_config::{StoreConfig, is_redis_url};

/// The store at `location`: a `redis://` or `rediss://` URL (a shared state, with
/// `config`'s prefix and timeouts), or the path of an embedded data file.
pub async fn open(location: &str, config: &StoreConfig) -> Result<Arc<dyn StateStore>, StoreError> {
    if is_redis_url(location) {
        Ok(Arc::new(RedisStore::connect(location, config).await?))
    } else {
        Ok(Arc::new(DurableStore::open(Path::new(location))?))
    }
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call broke a limit.
    #[error("refused: {0}")]
    Refused(String),
}

/// Keys that start with this character belong to the host (the registrations, see
/// [`crate::registry`]); the plugin may neither read nor write them. Validation keeps
/// control characters out of every id, and the plugin's keys start with a letter.
pub const HOST_KEY_PREFIX: char = '\u{1e}';

/// A reservation-state backend: an ordered key-value store with revisions. It holds
/// every piece of state the host keeps, the registrations included, so a backend
/// implements these three calls and nothing else.
///
/// The calls are asynchronous, so a backend that waits (for an fsync, for a network
/// round trip) costs an `await`, not a blocked thread. A `commit` whose future is
/// dropped before it answers has applied all of its mutations or none of them; which
/// one, the caller cannot tell (as with a lost answer on a network): each backend says
/// when its commit takes effect.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// One entry per key, in order.
    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError>;
    /// Up to `limit` entries with `start <= key < end`, ascending.
    async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError>;
    /// Check every precondition, then apply every mutation: all or nothing, durably.
    async fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError>;

    /// Whether each call crosses a network, so that a caller's reads and its commit are
    /// round trips apart (the host then admits fewer concurrent writers per group).
    fn is_remote(&self) -> bool {
        false
    }
}

/// The largest key of all: scans to it reach the end of the key space.
pub const KEY_SPACE_END: &str = "\u{10ffff}";

/// Copy every entry of `from` (registrations included) into `to`, a page of
/// [`MAX_KEYS_PER_CALL`] entries per commit: to move the state to another backend, or to
/// seed one. Revisions are `to`'s own, which is all the plugin relies on. Run it while
/// nothing else writes to either store.
pub async fn copy_state(from: &dyn StateStore, to: &dyn StateStore) -> Result<u64, StoreError> {
    let mut copied = 0;
    let mut start = String::new();
    loop {
        let page = from
            .scan(&start, KEY_SPACE_END, MAX_KEYS_PER_CALL as u32)
            .await?;
        let Some(last) = page.last() else { break };
        // The smallest key after `last`.
        start = format!("{}\0", last.key);
        let full = page.len() == MAX_KEYS_PER_CALL;
        let mutations: Vec<Mutation> = page
            .into_iter()
            .map(|e| Mutation::Put(e.key, e.value))
            .collect();
        copied += mutations.len() as u64;
        to.commit(&[], &mutations).await?;
        if !full {
            break;
        }
    }
    Ok(copied)
}

#[cfg(test)]
pub(crate) mod contract {
    //! Behaviour every backend owes its callers, run against each one.
    use super::*;

    pub fn put(k: &str, v: &[u8]) -> Mutation {
        Mutation::Put(k.into(), v.to_vec())
    }

    pub fn absent(k: &str) -> Precondition {
        Precondition {
            key: k.into(),
            revision: None,
        }
    }

    /// `copy_state` into `to` carries every entry across pages.
    pub async fn check_copy(to: &dyn StateStore) {
        let from = MemoryStore::new();
        let keys: Vec<String> = (0..MAX_KEYS_PER_CALL * 2 + 3)
            .map(|i| format!("k{i:05}"))
            .collect();
        for chunk in keys.chunks(100) {
            let puts: Vec<Mutation> = chunk.iter().map(|k| put(k, k.as_bytes())).collect();
            from.commit(&[], &puts).await.unwrap();
        }
        assert_eq!(copy_state(&from, to).await.unwrap(), keys.len() as u64);
        for chunk in keys.chunks(MAX_KEYS_PER_CALL) {
            let got = to.get(chunk).await.unwrap();
            for (key, entry) in chunk.iter().zip(got) {
                assert_eq!(entry.unwrap().value, key.as_bytes());
            }
        }
    }

    pub async fn check(store: &dyn StateStore) {
        // Create-if-absent succeeds once.
        let CommitOutcome::Committed(r1) = store
            .commit(&[absent("a")], &[put("a", b"1")])
            .await
            .unwrap()
        else {
            panic!("first create must commit")
        };
        assert_eq!(
            store
                .commit(&[absent("a")], &[put("a", b"2")])
                .await
                .unwrap(),
            CommitOutcome::Conflict("a".into())
        );
        let got = store.get(&["a".into(), "b".into()]).await.unwrap();
        assert_eq!(
            got,
            vec![
                Some(Entry {
                    key: "a".into(),
                    value: b"1".to_vec(),
                    revision: r1
                }),
                None
            ]
        );

        // Compare-and-swap on the revision; a conflict applies nothing at all.
        let stale = Precondition {
            key: "a".into(),
            revision: Some(r1 + 100),
        };
        assert!(matches!(
            store.commit(&[stale], &[put("b", b"x")]).await.unwrap(),
            CommitOutcome::Conflict(_)
        ));
        assert_eq!(store.get(&["b".into()]).await.unwrap(), vec![None]);
        let current = Precondition {
            key: "a".into(),
            revision: Some(r1),
        };
        let CommitOutcome::Committed(r2) = store
            .commit(
                std::slice::from_ref(&current),
                &[put("a", b"3"), put("b", b"4"), put("c", b"5")],
            )
            .await
            .unwrap()
        else {
            panic!("a current revision must commit")
        };
        assert!(r2 > r1, "revisions grow");
        assert!(matches!(
            store.commit(&[current], &[put("a", b"6")]).await.unwrap(),
            CommitOutcome::Conflict(_)
        ));

        // Ordered, bounded, half-open scans.
        let keys = |entries: Vec<Entry>| entries.into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(keys(store.scan("a", "c", 10).await.unwrap()), ["a", "b"]);
        assert_eq!(keys(store.scan("a", "z", 2).await.unwrap()), ["a", "b"]);
        assert_eq!(keys(store.scan("b", "z", 10).await.unwrap()), ["b", "c"]);

        // Deletes, including of a missing key; a deleted key is absent again.
        store
            .commit(
                &[],
                &[Mutation::Delete("c".into()), Mutation::Delete("zz".into())],
            )
            .await
            .unwrap();
        assert_eq!(store.get(&["c".into()]).await.unwrap(), vec![None]);
        assert!(matches!(
            store
                .commit(&[absent("c")], &[put("c", b"7")])
                .await
                .unwrap(),
            CommitOutcome::Committed(_)
        ));

        // Limits.
        let huge = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            store.commit(&[], &[put("h", &huge)]).await,
            Err(StoreError::Refused(_))
        ));
        let many: Vec<String> = (0..=MAX_KEYS_PER_CALL).map(|i| i.to_string()).collect();
        assert!(matches!(
            store.get(&many).await,
            Err(StoreError::Refused(_))
        ));
    }
}
