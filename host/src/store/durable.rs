//! The embedded durable backend on redb, with group commit.
//!
//! Durability: a commit is acknowledged (`Committed` or `Conflict`) only after the redb
//! write transaction holding it has been committed with redb's default
//! `Durability::Immediate`, i.e. fsynced, so an acknowledged reservation survives a crash
//! of the process. If that transaction fails, every commit in it gets `Unavailable`:
//! none is acknowledged.
//!
//! Why group commit: redb serialises writers and each write transaction costs an fsync,
//! so one transaction per commit caps throughput at one commit per fsync however many
//! callers there are. Instead a single writer thread owns the commit path: it takes the
//! next queued commit, then everything else already queued (up to `MAX_BATCH`), and
//! applies them in order in one transaction with one fsync. Each commit keeps its own
//! semantics: its preconditions see the state left by the commits before it, a conflict
//! writes nothing and leaves the others alone, and each applied commit gets its own
//! revision. A lone caller never waits for company: when the queue is empty its commit
//! goes out at once.
//!
//! Readers never block each other nor wait for the writer. `register`/`deregister` run
//! their own write transactions, which redb serialises with the writer's.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use request_access_guest::api::{CommitOutcome, Entry, Mutation, Precondition};

use super::{Registration, StateStore, StoreError, check_commit, check_keys, clamp_limit};

/// key -> (revision, value)
const STATE: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("state");
/// service id -> expiry (ms since the epoch), `None` for no expiry
const SERVICES: TableDefinition<&str, Option<u64>> = TableDefinition::new("services");
/// "revision" -> the last committed revision
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// The most commits one transaction carries, which bounds how long the first of them
/// waits for the rest to be applied.
const MAX_BATCH: usize = 256;

type StateTable<'txn> = Table<'txn, &'static str, (u64, &'static [u8])>;
type Reply = Result<CommitOutcome, StoreError>;

/// A commit waiting for the writer thread.
struct Request {
    preconditions: Vec<Precondition>,
    mutations: Vec<Mutation>,
    reply: SyncSender<Reply>,
}

/// The writer thread and the queue it serves.
struct Writer {
    requests: Sender<Request>,
    thread: JoinHandle<()>,
}

pub struct DurableStore {
    db: Arc<Database>,
    /// `None` only while dropping.
    writer: Option<Writer>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl DurableStore {
    /// Open the store at `path`, creating it if needed, and start its writer thread.
    pub fn open(path: &Path) -> Result<DurableStore, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(STATE).map_err(unavailable)?;
        txn.open_table(SERVICES).map_err(unavailable)?;
        txn.open_table(META).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let (requests, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("durable-store-writer".into())
            .spawn({
                let db = Arc::clone(&db);
                move || write_loop(&db, &queue)
            })
            .map_err(|e| StoreError::Unavailable(format!("starting the writer thread: {e}")))?;
        Ok(DurableStore {
            db,
            writer: Some(Writer { requests, thread }),
        })
    }
}

impl Drop for DurableStore {
    /// Stop the writer and wait for it, so that the database file is closed once the
    /// store is gone and can be reopened at once.
    fn drop(&mut self) {
        if let Some(Writer { requests, thread }) = self.writer.take() {
            // Closing the queue ends the writer's loop once it has drained it.
            drop(requests);
            // A writer that panicked has already failed its callers; nothing to add.
            let _ = thread.join();
        }
    }
}

/// Serve queued commits until the queue closes, a batch at a time.
fn write_loop(db: &Database, queue: &Receiver<Request>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        match commit_batch(db, &mut batch, queue) {
            Ok(outcomes) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    // A caller that went away needs no answer.
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                for request in batch {
                    let _ = request.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Apply `batch`, topped up from `queue`, in one write transaction and commit it durably.
/// Answers nobody: on `Ok` the outcomes are durable; on `Err` the batch failed as a whole.
fn commit_batch(
    db: &Database,
    batch: &mut Vec<Request>,
    queue: &Receiver<Request>,
) -> Result<Vec<CommitOutcome>, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    // Drain only now: commits queued while we waited for the write lock (held by a
    // registration, say) ride along too.
    batch.extend(queue.try_iter().take(MAX_BATCH - batch.len()));
    let outcomes = apply_batch(
        &txn,
        batch
            .iter()
            .map(|r| (r.preconditions.as_slice(), r.mutations.as_slice())),
    )?;
    // One fsync for the whole batch. On error the transaction is dropped, which aborts it.
    txn.commit().map_err(unavailable)?;
    Ok(outcomes)
}

/// Apply `commits` in order within `txn`, each with its own preconditions and revision,
/// and record the last revision. An error means the transaction must not be committed.
fn apply_batch<'a>(
    txn: &WriteTransaction,
    commits: impl IntoIterator<Item = (&'a [Precondition], &'a [Mutation])>,
) -> Result<Vec<CommitOutcome>, StoreError> {
    let mut state = txn.open_table(STATE).map_err(unavailable)?;
    let mut meta = txn.open_table(META).map_err(unavailable)?;
    let last = meta
        .get(REVISION)
        .map_err(unavailable)?
        .map_or(0, |g| g.value());
    let mut revision = last;
    let outcomes = commits
        .into_iter()
        .map(|(preconditions, mutations)| {
            apply_one(&mut state, &mut revision, preconditions, mutations)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if revision != last {
        meta.insert(REVISION, revision).map_err(unavailable)?;
    }
    Ok(outcomes)
}

/// One commit of a batch: check every precondition before writing anything, so that a
/// conflict leaves no trace; otherwise take the next revision and apply the mutations.
fn apply_one(
    state: &mut StateTable<'_>,
    revision: &mut u64,
    preconditions: &[Precondition],
    mutations: &[Mutation],
) -> Result<CommitOutcome, StoreError> {
    for p in preconditions {
        let current = state
            .get(p.key.as_str())
            .map_err(unavailable)?
            .map(|g| g.value().0);
        if current != p.revision {
            return Ok(CommitOutcome::Conflict(p.key.clone()));
        }
    }
    *revision += 1;
    for m in mutations {
        match m {
            Mutation::Put(k, v) => {
                state
                    .insert(k.as_str(), (*revision, v.as_slice()))
                    .map_err(unavailable)?;
            }
            Mutation::Delete(k) => {
                state.remove(k.as_str()).map_err(unavailable)?;
            }
        }
    }
    Ok(CommitOutcome::Committed(*revision))
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the durable store's writer thread has stopped".into())
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
        // Refuse oversized commits here, so one caller cannot fail a whole batch.
        check_commit(preconditions, mutations)?;
        let writer = self.writer.as_ref().ok_or_else(writer_gone)?;
        let (reply, answer) = mpsc::sync_channel(1);
        writer
            .requests
            .send(Request {
                preconditions: preconditions.to_vec(),
                mutations: mutations.to_vec(),
                reply,
            })
            .map_err(|_| writer_gone())?;
        // The writer answers only once the batch holding this commit is durable, or failed.
        answer.recv().map_err(|_| {
            StoreError::Unavailable(
                "the durable store's writer thread stopped before confirming the commit".into(),
            )
        })?
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
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn put(k: &str, v: &[u8]) -> Mutation {
        Mutation::Put(k.into(), v.to_vec())
    }

    fn absent(k: &str) -> Precondition {
        Precondition {
            key: k.into(),
            revision: None,
        }
    }

    fn at(k: &str, revision: u64) -> Precondition {
        Precondition {
            key: k.into(),
            revision: Some(revision),
        }
    }

    fn committed(outcome: Result<CommitOutcome, StoreError>) -> u64 {
        match outcome {
            Ok(CommitOutcome::Committed(r)) => r,
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    #[test]
    fn honours_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        super::super::contract::check(&DurableStore::open(&dir.path().join("s.redb")).unwrap());
    }

    #[test]
    fn receives_a_copy_of_another_store() {
        let dir = tempfile::tempdir().unwrap();
        super::super::contract::check_copy(
            &DurableStore::open(&dir.path().join("s.redb")).unwrap(),
        );
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

    #[test]
    fn concurrent_creates_have_one_winner_per_key_and_all_survive_reopening() {
        const THREADS: usize = 16;
        const COMMITS: usize = 50;
        const KEYS: usize = 40;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = DurableStore::open(&path).unwrap();
        // (key, thread, revision) of every acknowledged create.
        let wins: Vec<(String, usize, u64)> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|t| {
                    let store = &store;
                    s.spawn(move || {
                        let mut wins = Vec::new();
                        for i in 0..COMMITS {
                            // Every key is contended by several threads, in varied orders.
                            let key = format!("k{:02}", (i * 7 + t * 3) % KEYS);
                            let value = t.to_string();
                            match store
                                .commit(&[absent(&key)], &[put(&key, value.as_bytes())])
                                .unwrap()
                            {
                                CommitOutcome::Committed(r) => wins.push((key, t, r)),
                                CommitOutcome::Conflict(k) => assert_eq!(k, key),
                            }
                        }
                        wins
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });

        let mut winner = HashMap::new();
        for (key, t, r) in &wins {
            assert!(
                winner.insert(key.clone(), (*t, *r)).is_none(),
                "{key} created twice"
            );
        }
        assert_eq!(winner.len(), KEYS, "every key has a winner");
        let revisions: HashSet<u64> = wins.iter().map(|w| w.2).collect();
        assert_eq!(revisions.len(), wins.len(), "revisions are never shared");

        drop(store);
        let store = DurableStore::open(&path).unwrap();
        let keys: Vec<String> = winner.keys().cloned().collect();
        for (key, entry) in keys.iter().zip(store.get(&keys).unwrap()) {
            let entry = entry.unwrap_or_else(|| panic!("acknowledged {key} lost"));
            let (t, r) = winner[key];
            assert_eq!(
                (entry.value, entry.revision),
                (t.to_string().into_bytes(), r)
            );
        }
        let last = *revisions.iter().max().unwrap();
        assert!(committed(store.commit(&[], &[put("after", b"x")])) > last);
    }

    #[test]
    fn a_conflict_in_a_batch_leaves_the_other_commits_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableStore::open(&dir.path().join("s.redb")).unwrap();
        let r0 = committed(store.commit(&[], &[put("a", b"0")]));

        let commits: Vec<(Vec<Precondition>, Vec<Mutation>)> = vec![
            (vec![absent("b")], vec![put("b", b"1")]),
            // Sees the create just before it in the same batch.
            (vec![absent("b")], vec![put("b", b"2")]),
            (vec![at("a", r0)], vec![put("a", b"3")]),
            (vec![at("b", r0 + 1)], vec![put("c", b"4")]),
            // Stale since the third commit: nothing of it may land.
            (vec![at("a", r0)], vec![put("d", b"5")]),
            // The first precondition holds, the second fails: still nothing.
            (
                vec![at("b", r0 + 1), absent("a")],
                vec![put("e", b"6"), Mutation::Delete("b".into())],
            ),
            (vec![], vec![Mutation::Delete("c".into()), put("f", b"7")]),
        ];
        let txn = store.db.begin_write().unwrap();
        let outcomes = apply_batch(
            &txn,
            commits.iter().map(|(p, m)| (p.as_slice(), m.as_slice())),
        )
        .unwrap();
        txn.commit().unwrap();
        assert_eq!(
            outcomes,
            [
                CommitOutcome::Committed(r0 + 1),
                CommitOutcome::Conflict("b".into()),
                CommitOutcome::Committed(r0 + 2),
                CommitOutcome::Committed(r0 + 3),
                CommitOutcome::Conflict("a".into()),
                CommitOutcome::Conflict("a".into()),
                CommitOutcome::Committed(r0 + 4),
            ]
        );
        let keys: Vec<String> = ["a", "b", "c", "d", "e", "f"].map(String::from).into();
        let got: Vec<Option<(Vec<u8>, u64)>> = store
            .get(&keys)
            .unwrap()
            .into_iter()
            .map(|e| e.map(|e| (e.value, e.revision)))
            .collect();
        assert_eq!(
            got,
            [
                Some((b"3".to_vec(), r0 + 2)),
                Some((b"1".to_vec(), r0 + 1)),
                None,
                None,
                None,
                Some((b"7".to_vec(), r0 + 4)),
            ]
        );
        // The batch's last revision is persisted, so the next commit goes beyond it.
        assert!(committed(store.commit(&[], &[put("g", b"8")])) > r0 + 4);
    }

    #[test]
    fn a_batch_through_the_writer_answers_each_caller_after_committing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableStore::open(&dir.path().join("s.redb")).unwrap();
        let r0 = committed(store.commit(&[], &[put("a", b"0")]));
        let requests = &store.writer.as_ref().unwrap().requests;
        let enqueue = |preconditions: Vec<Precondition>, mutations: Vec<Mutation>| {
            let (reply, answer) = mpsc::sync_channel(1);
            requests
                .send(Request {
                    preconditions,
                    mutations,
                    reply,
                })
                .unwrap();
            answer
        };
        // Holding the write lock keeps the writer from starting a transaction, so the
        // commits below all queue up and go out together once it is released.
        let lock = store.db.begin_write().unwrap();
        let answers = [
            enqueue(vec![absent("x")], vec![put("x", b"1")]),
            enqueue(vec![absent("x")], vec![put("x", b"2")]),
            enqueue(vec![at("a", r0)], vec![put("a", b"3")]),
            enqueue(vec![at("a", r0)], vec![put("a", b"4")]),
        ];
        for answer in &answers {
            assert!(
                matches!(answer.try_recv(), Err(mpsc::TryRecvError::Empty)),
                "no answer before the commit"
            );
        }
        drop(lock);
        let outcomes: Vec<Reply> = answers.iter().map(|a| a.recv().unwrap()).collect();
        assert_eq!(
            outcomes,
            [
                Ok(CommitOutcome::Committed(r0 + 1)),
                Ok(CommitOutcome::Conflict("x".into())),
                Ok(CommitOutcome::Committed(r0 + 2)),
                Ok(CommitOutcome::Conflict("a".into())),
            ]
        );
        let got = store.get(&["x".into(), "a".into()]).unwrap();
        assert_eq!(got[0].as_ref().unwrap().value, b"1");
        assert_eq!(got[1].as_ref().unwrap().value, b"3");
    }

    #[test]
    fn a_missing_writer_makes_commits_unavailable_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DurableStore::open(&dir.path().join("s.redb")).unwrap();
        // Stand in for a writer that dies holding a request, then is gone for good.
        let (requests, queue) = mpsc::channel::<Request>();
        let dying = std::thread::spawn(move || drop(queue.recv()));
        let real = std::mem::replace(&mut store.writer.as_mut().unwrap().requests, requests);
        drop(real); // lets the real writer stop; Drop still joins it.
        let unanswered = store.commit(&[], &[put("k", b"v")]);
        assert!(
            matches!(&unanswered, Err(StoreError::Unavailable(m)) if m.contains("writer")),
            "{unanswered:?}"
        );
        dying.join().unwrap();
        let unsent = store.commit(&[], &[put("k", b"v")]);
        assert!(
            matches!(&unsent, Err(StoreError::Unavailable(m)) if m.contains("writer")),
            "{unsent:?}"
        );
        // Reads do not need the writer.
        assert_eq!(store.get(&["k".into()]).unwrap(), vec![None]);
    }
}
