//! The embedded durable backend: state served from memory, written behind to a
//! group-synced append-only log, folded into a redb file at checkpoints.
//!
//! On `open` the whole state table and the last revision are loaded into a
//! [`MemoryStore`], which serves every `get` and `scan`. A `commit` checks its
//! preconditions against memory and applies itself there exactly as [`MemoryStore`] does,
//! taking the next revision, then hands its write set (revision, mutations) to a flusher
//! thread, both under one sequencing mutex so that the flusher's queue is in revision
//! order. It then awaits, outside the mutex, the flusher's word that this revision is
//! durable, and only then answers `Committed`. A `Conflict` is answered at once: it wrote
//! nothing, so there is nothing to make durable.
//!
//! Everything up to the queuing happens in the commit future's first poll, with no
//! `await` in between: a commit whose future is dropped either never ran or is applied
//! whole and flushed like any other; only its acknowledgement is lost.
//!
//! The flusher takes the next write set, then everything else already queued (up to
//! `MAX_BATCH`), appends them in revision order as one frame to an append-only log beside
//! the redb file (`{file}.log`, see `log.rs`) and syncs it (`fdatasync`); then it wakes
//! the callers whose write sets that made durable. So concurrent commits share one sync,
//! and a lone commit goes out at once: there are no timers. Once the log holds
//! `CHECKPOINT_BYTES` (and when the store closes), a checkpoint writes each key's last
//! change since the previous one into redb in one transaction (fsynced, with the last
//! revision) and empties the log. On `open`, the log's write sets beyond the file's
//! revision are replayed into it first, so a crash at any point loses nothing that was
//! acknowledged; a torn frame at the log's end was never acknowledged and is cut off.
//! (Appending and syncing a frame costs a sequential write; a redb transaction per batch
//! rewrote B-tree pages up to the root, which took a quarter of the CPU under load.)
//!
//! Why acknowledging this way is safe (the classic early-lock-release argument): a
//! commit may read, and be checked against, state that is committed in memory but not yet
//! durable. It cannot be acknowledged before its own write set is durable, and write sets
//! are flushed in revision order, so everything it depended on is durable no later than
//! it is. A crash can lose only commits nobody was told had committed, and every commit
//! built on them is lost with them. Preconditions therefore see the newest state, so
//! concurrent optimistic transactions do not conflict merely because an fsync is in
//! flight.
//!
//! What is not covered: an answer that writes nothing, whether a read (`get`, `scan`) or
//! a `Conflict`, may reflect commits that are not durable yet, and that a crash would
//! lose; a caller that must only ever report durable state has to commit what it relies
//! on. Likewise the revision of a commit lost in a crash may be handed out again after the
//! restart; the plugin only compares revisions within one transaction, which does not
//! outlive the process.
//!
//! If a flush fails, memory is ahead of the disk and nothing built on the lost writes may
//! be acknowledged: the store fails for good, answering `Unavailable` to the callers of
//! that batch and to every later `get`, `scan` and `commit`. Reopening reloads the disk,
//! which is the truth. The same holds if the flusher thread dies.
//!
//! Registrations are keys like any other (see [`crate::registry`]). Files written before
//! that kept them in a table of their own: `open` moves them into the state, once, in
//! one write transaction.
//!
//! Cost: the whole state is held in memory, besides the redb file.

mod disk;
mod flusher;
mod log;
mod migrate;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use request_access_guest::api::{CommitOutcome, Entry, Mutation, Precondition};

use self::disk::{
    CHECKPOINT_BYTES, Disk, META, STATE, WriteSet, damaged, flush, load, log_path, open_database,
    stored_revision, unavailable, write_batch,
};
use self::flusher::{Durability, Flush, flush_loop, flusher_gone, lock};
use self::log::Log;
use self::migrate::migrate_registrations;
use super::{MemoryStore, StateStore, StoreError};

/// The environment variable that injects write failures (see [`DurableStore::open`]).
pub const INJECT_WRITE_FAILURE: &str = "REQUEST_ACCESS_INJECT_WRITE_FAILURE_AFTER";

/// The embedded durable backend: see the module's documentation.
pub struct DurableStore {
    /// The whole state, registrations included; the flusher writes it behind to disk.
    memory: MemoryStore,
    /// The flusher's queue, and the sequencing mutex: held from checking a commit's
    /// preconditions to queuing its write set, so the queue is in revision order. `None`
    /// once dropping.
    queue: Mutex<Option<Sender<WriteSet>>>,
    durability: Arc<Durability>,
    /// `None` once dropping.
    flusher: Option<JoinHandle<()>>,
}

impl DurableStore {
    /// Open the store at `path`, creating it if needed, load its state into memory and
    /// start its flusher thread.
    ///
    /// For drills of what a supervisor does when the disk fails (a full disk, an I/O
    /// error): with `REQUEST_ACCESS_INJECT_WRITE_FAILURE_AFTER=N` in the environment, every
    /// write after the first N fails as a full disk would.
    pub fn open(path: &Path) -> Result<DurableStore, StoreError> {
        let injected = std::env::var(INJECT_WRITE_FAILURE)
            .ok()
            .and_then(|n| n.parse::<u64>().ok());
        match injected {
            None => Self::open_with(path, flush),
            Some(writes) => {
                tracing::warn!(
                    writes,
                    "writes after the first {writes} will fail ({INJECT_WRITE_FAILURE})"
                );
                let mut left = writes;
                Self::open_with(path, move |disk: &mut Disk, batch: &[WriteSet]| {
                    if left == 0 {
                        return Err(StoreError::Unavailable(format!(
                            "No space left on device (injected by {INJECT_WRITE_FAILURE})"
                        )));
                    }
                    left -= 1;
                    flush(disk, batch)
                })
            }
        }
    }

    /// Why the store stopped serving for good, if it has (see [`StateStore::failure`]).
    fn failed(&self) -> Option<String> {
        self.durability.failure.get().cloned()
    }

    /// [`DurableStore::open`], flushing with `flush`: tests inject failures here.
    fn open_with(path: &Path, flush_with: impl Flush) -> Result<DurableStore, StoreError> {
        Self::open_with_checkpoints(path, CHECKPOINT_BYTES, flush_with)
    }

    /// [`DurableStore::open_with`], folding the log into the file once it holds
    /// `checkpoint_bytes`.
    fn open_with_checkpoints(
        path: &Path,
        checkpoint_bytes: u64,
        flush_with: impl Flush,
    ) -> Result<DurableStore, StoreError> {
        let db = open_database(path, true)?;
        let (mut log, logged) = Log::open(&log_path(path))?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(STATE).map_err(unavailable)?;
        txn.open_table(META).map_err(unavailable)?;
        // What the log holds beyond the file: the commits acknowledged since the last
        // checkpoint. (A crash after a checkpoint's transaction and before the log was
        // emptied leaves write sets the file already has: skipped.)
        let checkpointed = stored_revision(&txn)?;
        let replay: Vec<WriteSet> = logged
            .into_iter()
            .filter(|(revision, _)| *revision > checkpointed)
            .map(|(revision, mutations)| WriteSet {
                revision,
                mutations,
            })
            .collect();
        write_batch(&txn, &replay)?;
        migrate_registrations(&txn)?;
        txn.commit().map_err(unavailable)?;
        log.reset()?;
        let (revision, entries) = load(&db)?;
        let memory = MemoryStore::with_state(revision, entries);
        let durability = Arc::new(Durability::new(revision));
        let mut disk = Disk {
            db: Arc::new(db),
            log,
            pending: BTreeMap::new(),
            pending_revision: revision,
            checkpoint_bytes,
        };
        let (queue, write_sets) = mpsc::channel();
        let flusher = std::thread::Builder::new()
            .name("durable-store-flusher".into())
            .spawn({
                let durability = Arc::clone(&durability);
                move || flush_loop(&write_sets, &durability, &mut disk, flush_with)
            })
            .map_err(|e| StoreError::Unavailable(format!("starting the flusher thread: {e}")))?;
        Ok(DurableStore {
            memory,
            queue: Mutex::new(Some(queue)),
            durability,
            flusher: Some(flusher),
        })
    }
}

impl Drop for DurableStore {
    /// Stop the flusher once it has flushed everything queued, and wait for it, so that
    /// the database file is closed once the store is gone and can be reopened at once.
    fn drop(&mut self) {
        // Closing the queue ends the flusher's loop once it has drained it.
        drop(
            self.queue
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        if let Some(flusher) = self.flusher.take() {
            // A flusher that panicked has already failed the store; nothing to add.
            let _ = flusher.join();
        }
    }
}

/// What `store check` found in a data file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileCheck {
    /// Whether redb's integrity check passed as the file was (`false`: it repaired it).
    pub intact: bool,
    /// Write sets the log beside the file held, which the check folded into it.
    pub logged_write_sets: usize,
    /// The last revision, and the keys of the state (registrations included).
    pub revision: u64,
    pub keys: usize,
}

impl DurableStore {
    /// Check the data file at `path` without serving it: open it as `open` does (redb
    /// repairs a file that was not closed cleanly), run redb's full integrity check
    /// (which repairs what it can), fold the log beside it into it as `open` does, and
    /// load every entry. It changes nothing a running service would see differently,
    /// and it needs the file to itself, as `open` does.
    pub fn check(path: &Path) -> Result<FileCheck, StoreError> {
        let intact = open_database(path, false)?
            .check_integrity()
            .map_err(|e| damaged(path, e))?;
        let logged_write_sets = Log::open(&log_path(path))?.1.len();
        // Opened as a service opens it: the log's write sets are folded into the file.
        drop(Self::open_with(path, flush)?);
        let db = open_database(path, false)?;
        let (revision, entries) = load(&db).map_err(|e| damaged(path, e))?;
        Ok(FileCheck {
            intact,
            logged_write_sets,
            revision,
            keys: entries.len(),
        })
    }
}

impl DurableStore {
    /// Check and apply a commit in memory and queue its write set: the synchronous part
    /// of `commit`, answering the revision to wait for (or an outcome with nothing to
    /// wait for).
    fn apply(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<Result<u64, CommitOutcome>, StoreError> {
        let queue = lock(&self.queue);
        self.durability.check()?;
        let queue = queue.as_ref().ok_or_else(flusher_gone)?;
        // The map validates the commit's size before applying anything.
        let outcome = self
            .memory
            .write()
            .commit(preconditions, mutations)
            .map_err(StoreError::Refused)?;
        let CommitOutcome::Committed(revision) = outcome else {
            return Ok(Err(outcome));
        };
        let write_set = WriteSet {
            revision,
            mutations: mutations.to_vec(),
        };
        if queue.send(write_set).is_err() {
            // Applied in memory, but it can never be made durable.
            self.durability
                .fail("the durable store's flusher thread has stopped; restart to reload".into());
            return Err(flusher_gone());
        }
        Ok(Ok(revision))
    }
}

#[async_trait::async_trait]
impl StateStore for DurableStore {
    fn failure(&self) -> Option<String> {
        self.failed()
    }

    fn kind(&self) -> &'static str {
        "redb"
    }

    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        self.durability.check()?;
        self.memory.read().get(keys).map_err(StoreError::Refused)
    }

    async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        self.durability.check()?;
        Ok(self.memory.read().scan(start, end, limit))
    }

    async fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        let revision = match self.apply(preconditions, mutations)? {
            Ok(revision) => revision,
            Err(outcome) => return Ok(outcome),
        };
        // Acknowledge only once this write set, and so every one before it, is durable.
        self.durability.wait_for(revision).await?;
        Ok(CommitOutcome::Committed(revision))
    }
}
