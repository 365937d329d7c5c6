//! Host-owned state behind the `reservation-state` import, and the registered services.
//!
//! Backends implement a handful of backend-neutral primitives (batched get, ordered
//! scan, atomic multi-key compare-and-swap commit) that hold no request-access logic.
//! Both backends here cost O(log n) per key, n being the number of stored keys.

use request_access_guest::api::{CommitOutcome, Entry, Mutation, Precondition};

mod durable;
mod memory;

pub use durable::DurableStore;
pub use memory::MemoryStore;

/// Limits on what one call may ask of the store: the host does not trust the guest.
pub const MAX_KEYS_PER_CALL: usize = 1024;
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call broke a limit.
    #[error("refused: {0}")]
    Refused(String),
}

/// A registered service: active until `expires_at` (ms since the epoch), or for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub expires_at: Option<u64>,
}

/// A reservation-state and registry backend.
pub trait StateStore: Send + Sync {
    /// One entry per key, in order.
    fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError>;
    /// Up to `limit` entries with `start <= key < end`, ascending.
    fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError>;
    /// Check every precondition, then apply every mutation: all or nothing, durably.
    fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError>;

    /// Register (or re-register) a service.
    fn register(&self, service_id: &str, registration: Registration) -> Result<(), StoreError>;
    /// Remove a registration; `false` if there was none.
    fn deregister(&self, service_id: &str) -> Result<bool, StoreError>;
    fn registration(&self, service_id: &str) -> Result<Option<Registration>, StoreError>;
    /// Every registration, ordered by service id.
    fn registrations(&self) -> Result<Vec<(String, Registration)>, StoreError>;
}

fn check_keys<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> Result<(), StoreError> {
    if keys.len() > MAX_KEYS_PER_CALL {
        return Err(StoreError::Refused(format!(
            "{} keys in one call, at most {MAX_KEYS_PER_CALL}",
            keys.len()
        )));
    }
    for key in keys {
        if key.len() > MAX_KEY_BYTES {
            return Err(StoreError::Refused(format!(
                "a key of {} bytes, at most {MAX_KEY_BYTES}",
                key.len()
            )));
        }
    }
    Ok(())
}

/// Check a commit's size before touching the backend.
fn check_commit(preconditions: &[Precondition], mutations: &[Mutation]) -> Result<(), StoreError> {
    check_keys(preconditions.iter().map(|p| p.key.as_str()))?;
    check_keys(mutations.iter().map(|m| match m {
        Mutation::Put(k, _) | Mutation::Delete(k) => k.as_str(),
    }))?;
    for m in mutations {
        if let Mutation::Put(_, value) = m
            && value.len() > MAX_VALUE_BYTES
        {
            return Err(StoreError::Refused(format!(
                "a value of {} bytes, at most {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
    }
    Ok(())
}

/// Copy every entry and registration of `from` into `to`, a page of
/// [`MAX_KEYS_PER_CALL`] entries per commit: to move the state to another backend, or to
/// seed one. Revisions are `to`'s own, which is all the plugin relies on. Run it while
/// nothing else writes to either store.
pub fn copy_state(from: &dyn StateStore, to: &dyn StateStore) -> Result<u64, StoreError> {
    let mut copied = 0;
    let mut start = String::new();
    loop {
        let page = from.scan(&start, "\u{10ffff}", MAX_KEYS_PER_CALL as u32)?;
        let Some(last) = page.last() else { break };
        // The smallest key after `last`.
        start = format!("{}\0", last.key);
        let full = page.len() == MAX_KEYS_PER_CALL;
        let mutations: Vec<Mutation> = page
            .into_iter()
            .map(|e| Mutation::Put(e.key, e.value))
            .collect();
        copied += mutations.len() as u64;
        to.commit(&[], &mutations)?;
        if !full {
            break;
        }
    }
    for (service_id, registration) in from.registrations()? {
        to.register(&service_id, registration)?;
    }
    Ok(copied)
}

fn clamp_limit(limit: u32) -> usize {
    (limit as usize).min(MAX_KEYS_PER_CALL)
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

    /// `copy_state` into `to` carries every entry and registration across pages.
    pub fn check_copy(to: &dyn StateStore) {
        let from = MemoryStore::new();
        let keys: Vec<String> = (0..MAX_KEYS_PER_CALL * 2 + 3)
            .map(|i| format!("k{i:05}"))
            .collect();
        for chunk in keys.chunks(100) {
            let puts: Vec<Mutation> = chunk.iter().map(|k| put(k, k.as_bytes())).collect();
            from.commit(&[], &puts).unwrap();
        }
        let forever = Registration { expires_at: None };
        from.register("s", forever).unwrap();
        assert_eq!(copy_state(&from, to).unwrap(), keys.len() as u64);
        for chunk in keys.chunks(MAX_KEYS_PER_CALL) {
            let got = to.get(chunk).unwrap();
            for (key, entry) in chunk.iter().zip(got) {
                assert_eq!(entry.unwrap().value, key.as_bytes());
            }
        }
        assert_eq!(
            to.registrations().unwrap(),
            vec![("s".to_string(), forever)]
        );
    }

    pub fn check(store: &dyn StateStore) {
        // Create-if-absent succeeds once.
        let CommitOutcome::Committed(r1) = store.commit(&[absent("a")], &[put("a", b"1")]).unwrap()
        else {
            panic!("first create must commit")
        };
        assert_eq!(
            store.commit(&[absent("a")], &[put("a", b"2")]).unwrap(),
            CommitOutcome::Conflict("a".into())
        );
        let got = store.get(&["a".into(), "b".into()]).unwrap();
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
            store.commit(&[stale], &[put("b", b"x")]).unwrap(),
            CommitOutcome::Conflict(_)
        ));
        assert_eq!(store.get(&["b".into()]).unwrap(), vec![None]);
        let current = Precondition {
            key: "a".into(),
            revision: Some(r1),
        };
        let CommitOutcome::Committed(r2) = store
            .commit(
                std::slice::from_ref(&current),
                &[put("a", b"3"), put("b", b"4"), put("c", b"5")],
            )
            .unwrap()
        else {
            panic!("a current revision must commit")
        };
        assert!(r2 > r1, "revisions grow");
        assert!(matches!(
            store.commit(&[current], &[put("a", b"6")]).unwrap(),
            CommitOutcome::Conflict(_)
        ));

        // Ordered, bounded, half-open scans.
        let keys = |entries: Vec<Entry>| entries.into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(keys(store.scan("a", "c", 10).unwrap()), ["a", "b"]);
        assert_eq!(keys(store.scan("a", "z", 2).unwrap()), ["a", "b"]);
        assert_eq!(keys(store.scan("b", "z", 10).unwrap()), ["b", "c"]);

        // Deletes, including of a missing key; a deleted key is absent again.
        store
            .commit(
                &[],
                &[Mutation::Delete("c".into()), Mutation::Delete("zz".into())],
            )
            .unwrap();
        assert_eq!(store.get(&["c".into()]).unwrap(), vec![None]);
        assert!(matches!(
            store.commit(&[absent("c")], &[put("c", b"7")]).unwrap(),
            CommitOutcome::Committed(_)
        ));

        // Limits.
        let huge = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            store.commit(&[], &[put("h", &huge)]),
            Err(StoreError::Refused(_))
        ));
        let many: Vec<String> = (0..=MAX_KEYS_PER_CALL).map(|i| i.to_string()).collect();
        assert!(matches!(store.get(&many), Err(StoreError::Refused(_))));

        // The registry.
        let forever = Registration { expires_at: None };
        let until = Registration {
            expires_at: Some(42),
        };
        store.register("s1", forever).unwrap();
        store.register("s0", until).unwrap();
        assert_eq!(store.registration("s1").unwrap(), Some(forever));
        assert_eq!(
            store.registrations().unwrap(),
            vec![("s0".to_string(), until), ("s1".to_string(), forever)]
        );
        assert!(store.deregister("s1").unwrap());
        assert!(!store.deregister("s1").unwrap());
        assert_eq!(store.registration("s1").unwrap(), None);
    }
}
