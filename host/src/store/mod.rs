//! Host-owned state behind the `reservation-state` import: the reservations and the
//! registered services, as keys of one ordered store.
//!
//! Backends implement a handful of backend-neutral primitives (batched get, ordered
//! scan, atomic multi-key compare-and-swap commit) that hold no request-access logic.
//! The memory and durable backends cost O(log n) per key, n being the number of
//! stored keys; the Redis and etcd backends cost one network round trip per call on top.

use request_access_guest::api::{CommitOutcome, Entry, KeyRange, Mutation, Precondition, Snapshot};
pub use request_access_state::{
    MAX_KEY_BYTES, MAX_KEYS_PER_CALL, MAX_RANGES_PER_READ, MAX_VALUE_BYTES, mutation_key,
};

mod durable;
mod etcd;
pub(crate) mod host_keys;
mod memory;
mod redis;

pub use durable::DurableStore;
pub use etcd::EtcdStore;
pub use host_keys::HOST_KEY_PREFIX;
pub use memory::MemoryStore;
pub use redis::RedisStore;

use std::path::Path;
use std::sync::Arc;

use request_access_config::{StoreConfig, is_server_url};

/// The store at `location`: an `etcd://` URL (a consensus cluster), a `redis://`,
/// `rediss://` or `redis-sentinel://` URL (a shared state on one Redis primary, found
/// through Sentinel for the last), each with `config`'s prefix and timeouts, or the
/// path of an embedded data file.
pub async fn open(location: &str, config: &StoreConfig) -> Result<Arc<dyn StateStore>, StoreError> {
    if location.starts_with("etcd://") {
        Ok(Arc::new(EtcdStore::connect(location, config).await?))
    } else if is_server_url(location) {
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

impl StoreError {
    /// What went wrong, without the kind of failure in front.
    pub fn detail(&self) -> &str {
        match self {
            StoreError::Unavailable(why) | StoreError::Refused(why) => why,
        }
    }
}

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

    /// `get` of `keys` and `scan` of each range, as those calls would answer them. A
    /// networked backend answers in one round trip; this default makes the calls one
    /// after the other, which an in-process store can afford.
    async fn read(&self, keys: &[String], ranges: &[KeyRange]) -> Result<Snapshot, StoreError> {
        request_access_state::check_read(keys, ranges).map_err(StoreError::Refused)?;
        let entries = match keys.is_empty() {
            true => Vec::new(),
            false => self.get(keys).await?,
        };
        let mut scanned = Vec::with_capacity(ranges.len());
        for range in ranges {
            scanned.push(self.scan(&range.start, &range.end, range.limit).await?);
        }
        Ok(Snapshot {
            entries,
            ranges: scanned,
        })
    }

    /// Whether each call crosses a network, so that a caller's reads and its commit are
    /// round trips apart (the host then admits fewer concurrent writers per group).
    fn is_remote(&self) -> bool {
        false
    }

    /// What backs it, for operators (`memory`, `redb`, `redis`, `redis-sentinel`, `etcd`).
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Why the store has stopped serving for good, if it has: it answers every call
    /// with an error until the process restarts and reloads it (a durable store whose
    /// disk failed a write). `None` for failures a retry may outlast.
    fn failure(&self) -> Option<String> {
        None
    }
}

/// The largest key of all: scans to it reach the end of the key space.
pub const KEY_SPACE_END: &str = "\u{10ffff}";

/// Entries per commit of [`copy_state`]: within etcd's default limit of 128 operations
/// per transaction.
const COPY_PAGE_ENTRIES: usize = 100;

/// Bytes of values per commit of [`copy_state`]: within etcd's default 1.5 MiB request.
const COPY_PAGE_BYTES: usize = 1024 * 1024;

/// Copy every entry of `from` (registrations included) into `to`, in commits small
/// enough for every backend's limits: to move the state to another backend, or to seed
/// one. Revisions are `to`'s own, which is all the plugin relies on. Run it while
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
        let mut batch: Vec<Mutation> = Vec::with_capacity(COPY_PAGE_ENTRIES);
        let mut bytes = 0;
        for entry in page {
            if batch.len() == COPY_PAGE_ENTRIES || bytes + entry.value.len() > COPY_PAGE_BYTES {
                to.commit(&[], &std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            bytes += entry.key.len() + entry.value.len();
            batch.push(Mutation::Put(entry.key, entry.value));
            copied += 1;
        }
        if !batch.is_empty() {
            to.commit(&[], &batch).await?;
        }
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

    /// One call of a recorded history.
    #[derive(Clone, Debug)]
    pub enum Op {
        Get(Vec<String>),
        Scan(String, String, u32),
        Commit(Vec<Precondition>, Vec<Mutation>),
    }

    /// What it answered (failures are not recorded: the histories are of a healthy store).
    #[derive(Clone, Debug, PartialEq)]
    pub enum Ret {
        Got(Vec<Option<Entry>>),
        Scanned(Vec<Entry>),
        Committed(CommitOutcome),
    }

    /// The contract as a sequential object: the state a linearization has reached.
    /// Revisions are the store's own, and each commit's must exceed every earlier one's;
    /// so in any valid order the commits come in the order of their revisions, and the
    /// next one must carry the smallest revision not yet used (`committed` holds every
    /// revision the history's commits answered). That prunes the search early.
    #[derive(Clone, Default)]
    pub struct Spec {
        entries: std::collections::BTreeMap<String, (u64, Vec<u8>)>,
        revision: u64,
        committed: std::sync::Arc<std::collections::BTreeSet<u64>>,
    }

    impl Spec {
        fn entry(&self, key: &str) -> Option<Entry> {
            self.entries.get(key).map(|(revision, value)| Entry {
                key: key.to_string(),
                value: value.clone(),
                revision: *revision,
            })
        }

        fn holds(&self, p: &Precondition) -> bool {
            self.entries.get(&p.key).map(|(r, _)| *r) == p.revision
        }
    }

    impl stateright::semantics::SequentialSpec for Spec {
        type Op = Op;
        type Ret = Ret;

        fn invoke(&mut self, _: &Op) -> Ret {
            unreachable!("the tester only asks is_valid_step")
        }

        fn is_valid_step(&mut self, op: &Op, ret: &Ret) -> bool {
            match (op, ret) {
                (Op::Get(keys), Ret::Got(got)) => {
                    keys.iter().map(|k| self.entry(k)).collect::<Vec<_>>() == *got
                }
                (Op::Scan(start, end, limit), Ret::Scanned(got)) => {
                    let want: Vec<Entry> = self
                        .entries
                        .range(start.clone()..end.clone())
                        .take(*limit as usize)
                        .map(|(k, _)| self.entry(k).expect("present"))
                        .collect();
                    want == *got
                }
                (Op::Commit(preconditions, _), Ret::Committed(CommitOutcome::Conflict(key))) => {
                    preconditions
                        .iter()
                        .any(|p| &p.key == key && !self.holds(p))
                }
                (
                    Op::Commit(preconditions, mutations),
                    Ret::Committed(CommitOutcome::Committed(revision)),
                ) => {
                    let next = self.committed.range(self.revision + 1..).next();
                    if next != Some(revision) || !preconditions.iter().all(|p| self.holds(p)) {
                        return false;
                    }
                    self.revision = *revision;
                    for m in mutations {
                        match m {
                            Mutation::Put(k, v) => {
                                self.entries.insert(k.clone(), (*revision, v.clone()));
                            }
                            Mutation::Delete(k) => {
                                self.entries.remove(k);
                            }
                        }
                    }
                    true
                }
                _ => false,
            }
        }
    }

    /// `threads` tasks each run `ops` random calls on a few keys of `store` at once
    /// (reads, then compare-and-swap commits on what they read); the recorded history
    /// must be linearizable: some order of the calls, each taking effect between its
    /// start and its answer, explains every answer. The store is expected empty.
    pub async fn check_linearizable(
        store: std::sync::Arc<dyn StateStore>,
        threads: usize,
        ops: usize,
    ) {
        assert!(
            linearizable(store, threads, ops).await,
            "not linearizable: {} calls on {threads} threads",
            threads * ops
        );
    }

    /// Whether a concurrent history of `threads` x `ops` calls on `store` is
    /// linearizable (see [`check_linearizable`]).
    pub async fn linearizable(
        store: std::sync::Arc<dyn StateStore>,
        threads: usize,
        ops: usize,
    ) -> bool {
        use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
        use std::sync::{Arc, Mutex};

        const KEYS: [&str; 4] = ["a", "b", "c", "d"];
        /// A call's start or its answer, in the order they happened.
        enum Event {
            Invoke(usize, Op),
            Return(usize, Ret),
        }
        let events = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..threads)
            .map(|thread| {
                let (store, events) = (store.clone(), events.clone());
                tokio::spawn(async move {
                    // A small xorshift per thread: reproducible, varied interleavings.
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (thread as u64 + 1);
                    let mut next = move || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x
                    };
                    let mut seen: Vec<Option<Entry>> = vec![None; KEYS.len()];
                    for i in 0..ops {
                        let pick = next() as usize;
                        let op = match pick % 4 {
                            0 => Op::Get(KEYS.iter().map(|k| k.to_string()).collect()),
                            1 => Op::Scan("b".into(), "z".into(), 1 + (pick / 4 % 3) as u32),
                            _ => {
                                // Compare-and-swap on one key as last read, writing another.
                                let (k1, k2) = (pick / 4 % KEYS.len(), pick / 16 % KEYS.len());
                                let precondition = Precondition {
                                    key: KEYS[k1].into(),
                                    revision: seen[k1].as_ref().map(|e| e.revision),
                                };
                                let mutation = if (pick / 64).is_multiple_of(5) {
                                    Mutation::Delete(KEYS[k2].into())
                                } else {
                                    Mutation::Put(
                                        KEYS[k2].into(),
                                        format!("{thread}.{i}").into_bytes(),
                                    )
                                };
                                Op::Commit(vec![precondition], vec![mutation])
                            }
                        };
                        events
                            .lock()
                            .unwrap()
                            .push(Event::Invoke(thread, op.clone()));
                        let ret = match &op {
                            Op::Get(keys) => {
                                let got = store.get(keys).await.unwrap();
                                seen = got.clone();
                                Ret::Got(got)
                            }
                            Op::Scan(start, end, limit) => {
                                Ret::Scanned(store.scan(start, end, *limit).await.unwrap())
                            }
                            Op::Commit(p, m) => Ret::Committed(store.commit(p, m).await.unwrap()),
                        };
                        events.lock().unwrap().push(Event::Return(thread, ret));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let events = std::mem::take(&mut *events.lock().unwrap());
        let committed = events
            .iter()
            .filter_map(|e| match e {
                Event::Return(_, Ret::Committed(CommitOutcome::Committed(r))) => Some(*r),
                _ => None,
            })
            .collect();
        let mut history = LinearizabilityTester::new(Spec {
            committed: Arc::new(committed),
            ..Spec::default()
        });
        for event in events {
            match event {
                Event::Invoke(thread, op) => history.on_invoke(thread, op).map(|_| ()),
                Event::Return(thread, ret) => history.on_return(thread, ret).map(|_| ()),
            }
            .unwrap();
        }
        assert_eq!(history.len(), threads * ops);
        // The search recurses once per call: give it a stack to match.
        std::thread::Builder::new()
            .stack_size(1 << 30)
            .spawn(move || history.serialized_history().is_some())
            .unwrap()
            .join()
            .unwrap()
    }

    /// A store that loses updates: it commits whatever the preconditions say.
    struct IgnoresPreconditions(MemoryStore);

    #[async_trait::async_trait]
    impl StateStore for IgnoresPreconditions {
        async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
            self.0.get(keys).await
        }
        async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
            self.0.scan(start, end, limit).await
        }
        async fn commit(
            &self,
            _: &[Precondition],
            mutations: &[Mutation],
        ) -> Result<CommitOutcome, StoreError> {
            self.0.commit(&[], mutations).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_linearizability_check_catches_a_store_that_loses_updates() {
        let broken = std::sync::Arc::new(IgnoresPreconditions(MemoryStore::new()));
        assert!(!linearizable(broken, 3, 40).await);
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
        // A commit that changes nothing (it deletes an absent key) still takes a
        // revision greater than every earlier one.
        let CommitOutcome::Committed(r3) = store
            .commit(&[], &[Mutation::Delete("zz".into())])
            .await
            .unwrap()
        else {
            panic!("an unconditional commit commits")
        };
        let CommitOutcome::Committed(r4) = store
            .commit(&[], &[Mutation::Delete("zz".into())])
            .await
            .unwrap()
        else {
            panic!("an unconditional commit commits")
        };
        assert!(r3 > r2 && r4 > r3, "{r2} {r3} {r4}");
        assert!(matches!(
            store
                .commit(&[absent("c")], &[put("c", b"7")])
                .await
                .unwrap(),
            CommitOutcome::Committed(_)
        ));

        // A batched read answers what a get and a scan per range would, an empty or
        // inverted range with nothing.
        let range = |start: &str, end: &str, limit| KeyRange {
            start: start.into(),
            end: end.into(),
            limit,
        };
        let asked = ["a".to_string(), "zz".to_string(), "c".to_string()];
        let ranges = [range("a", "z", 2), range("b", "z", 10), range("z", "a", 5)];
        let read = store.read(&asked, &ranges).await.unwrap();
        assert_eq!(read.entries, store.get(&asked).await.unwrap());
        assert_eq!(read.ranges.len(), 3);
        assert_eq!(read.ranges[0], store.scan("a", "z", 2).await.unwrap());
        assert_eq!(keys(read.ranges[1].clone()), ["b", "c"]);
        assert_eq!(read.ranges[2], vec![]);
        let only_ranges = store.read(&[], &ranges[..1]).await.unwrap();
        assert_eq!(
            (only_ranges.entries, only_ranges.ranges),
            (vec![], vec![read.ranges[0].clone()])
        );
        let too_many = vec![range("a", "z", 1); MAX_RANGES_PER_READ + 1];
        assert!(matches!(
            store.read(&[], &too_many).await,
            Err(StoreError::Refused(_))
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
