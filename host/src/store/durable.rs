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

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
    TableHandle, WriteTransaction,
};
use request_access_guest::api::{CommitOutcome, Entry, Mutation, Precondition};

use tokio::sync::oneshot;

use super::log::Log;
use super::{MemoryStore, StateStore, StoreError};
use crate::registry::{Registration, registration_entry};

/// key -> (revision, value)
const STATE: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("state");
/// service id -> expiry (ms since the epoch), `None` for no expiry: the registrations of
/// files written before they became keys; emptied into `STATE` on open.
const LEGACY_SERVICES: TableDefinition<&str, Option<u64>> = TableDefinition::new("services");
/// "revision" -> the last committed revision
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// The most write sets one flush carries. The queue never holds more than one write set
/// per caller blocked in `commit`, so this only splits very large crowds.
const MAX_BATCH: usize = 1024;

/// What one commit changed, to be written behind under its revision.
struct WriteSet {
    revision: u64,
    mutations: Vec<Mutation>,
}

/// Writes a batch of write sets, in revision order, durably; `Err` if it did not.
trait Flush: FnMut(&mut Disk, &[WriteSet]) -> Result<(), StoreError> + Send + 'static {}
impl<F: FnMut(&mut Disk, &[WriteSet]) -> Result<(), StoreError> + Send + 'static> Flush for F {}

/// The environment variable that injects write failures (see [`DurableStore::open`]).
pub const INJECT_WRITE_FAILURE: &str = "REQUEST_ACCESS_INJECT_WRITE_FAILURE_AFTER";

/// A checkpoint folds the log into the redb file once the log holds this much.
const CHECKPOINT_BYTES: u64 = 16 << 20;

/// What the flusher writes to: the log every flush appends to, and the redb file the
/// log is folded into.
struct Disk {
    db: Arc<Database>,
    log: Log,
    /// Each key's last change since the last checkpoint (`None`: deleted), and the
    /// revision of the newest write set among them.
    pending: BTreeMap<String, Option<(u64, Vec<u8>)>>,
    pending_revision: u64,
    checkpoint_bytes: u64,
}

impl Disk {
    /// Write every change since the last checkpoint into redb (one transaction,
    /// fsynced), then empty the log.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        if !self.pending.is_empty() {
            let txn = self.db.begin_write().map_err(unavailable)?;
            let net = self
                .pending
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_ref().map(|(r, v)| (*r, v.as_slice()))));
            write_net(&txn, net, self.pending_revision)?;
            txn.commit().map_err(unavailable)?;
        }
        if self.log.bytes() > 0 {
            self.log.reset()?;
        }
        self.pending.clear();
        Ok(())
    }
}

/// What the flusher tells the committers waiting for it.
struct Durability {
    progress: Mutex<Progress>,
    /// Set once the store has failed: memory may then hold commits the disk never got.
    failure: OnceLock<String>,
}

struct Progress {
    /// The highest revision known to be on disk.
    flushed: u64,
    /// Who waits for which revision. A flush wakes only the commits it made durable,
    /// not every waiting committer only for most to go back to sleep.
    waiters: BTreeMap<u64, oneshot::Sender<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks halfway through a change.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Durability {
    fn new(flushed: u64) -> Self {
        Durability {
            progress: Mutex::new(Progress {
                flushed,
                waiters: BTreeMap::new(),
            }),
            failure: OnceLock::new(),
        }
    }

    /// `Unavailable` once the store has failed.
    fn check(&self) -> Result<(), StoreError> {
        match self.failure.get() {
            Some(why) => Err(StoreError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    /// Fail the store for good (the first reason wins) and wake every waiter (a
    /// dropped sender tells its waiter the revision will never be durable).
    fn fail(&self, why: String) {
        let mut progress = lock(&self.progress);
        let _ = self.failure.set(why);
        progress.waiters.clear();
    }

    /// Everything up to `revision` is durable.
    fn flushed(&self, revision: u64) {
        let mut progress = lock(&self.progress);
        progress.flushed = revision;
        let later = progress.waiters.split_off(&(revision + 1));
        for waiter in std::mem::replace(&mut progress.waiters, later).into_values() {
            // A waiter that went away (its commit future dropped) needs no word.
            let _ = waiter.send(());
        }
    }

    /// Wait until `revision` is durable, or the store has failed.
    async fn wait_for(&self, revision: u64) -> Result<(), StoreError> {
        let durable = {
            let mut progress = lock(&self.progress);
            // A revision flushed before a later failure stays acknowledged.
            if progress.flushed >= revision {
                return Ok(());
            }
            self.check()?;
            let (tell, durable) = oneshot::channel();
            progress.waiters.insert(revision, tell);
            durable
        };
        match durable.await {
            Ok(()) => Ok(()),
            // The sender was dropped: the store failed before this revision was flushed.
            Err(_) => self.check().and(Err(flusher_gone())),
        }
    }
}

/// Fails the store if the flusher thread unwinds, so nobody waits for it in vain.
struct FailOnPanic<'a>(&'a Durability);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .fail("the durable store's flusher thread has stopped; restart to reload".into());
        }
    }
}

/// The embedded durable backend: see the module's documentation.
pub struct DurableStore {
    /// The whole state; registrations are not kept here but in `db`.
    memory: MemoryStore,
    /// The flusher's queue, and the sequencing mutex: held from checking a commit's
    /// preconditions to queuing its write set, so the queue is in revision order. `None`
    /// once dropping.
    queue: Mutex<Option<Sender<WriteSet>>>,
    durability: Arc<Durability>,
    /// `None` once dropping.
    flusher: Option<JoinHandle<()>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn flusher_gone() -> StoreError {
    StoreError::Unavailable("the durable store's flusher thread has stopped".into())
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

/// Move the registrations of the legacy table into the state, under one new revision,
/// and drop the table. Nothing to do when there is none.
fn migrate_registrations(txn: &WriteTransaction) -> Result<(), StoreError> {
    // Opening a table in a write transaction would create it: look it up first.
    let exists = txn
        .list_tables()
        .map_err(unavailable)?
        .any(|t| t.name() == LEGACY_SERVICES.name());
    if !exists {
        return Ok(());
    }
    let legacy: Vec<(String, Registration)> = {
        let table = txn.open_table(LEGACY_SERVICES).map_err(unavailable)?;
        table
            .iter()
            .map_err(unavailable)?
            .map(|item| {
                let (id, expires_at) = item.map_err(unavailable)?;
                let registration = Registration {
                    expires_at: expires_at.value(),
                };
                Ok((id.value().to_string(), registration))
            })
            .collect::<Result<_, StoreError>>()?
    };
    if legacy.is_empty() {
        txn.delete_table(LEGACY_SERVICES).map_err(unavailable)?;
        return Ok(());
    }
    let mutations = legacy
        .iter()
        .map(|(id, registration)| {
            let (key, value) = registration_entry(id, *registration);
            Mutation::Put(key, value)
        })
        .collect();
    let last = stored_revision(txn)?;
    let write_set = WriteSet {
        revision: last + 1,
        mutations,
    };
    write_batch(txn, std::slice::from_ref(&write_set))?;
    txn.delete_table(LEGACY_SERVICES).map_err(unavailable)?;
    Ok(())
}

/// The last revision the redb file holds, as `txn` sees it.
fn stored_revision(txn: &WriteTransaction) -> Result<u64, StoreError> {
    Ok(txn
        .open_table(META)
        .map_err(unavailable)?
        .get(REVISION)
        .map_err(unavailable)?
        .map_or(0, |g| g.value()))
}

/// Where the log of the redb file at `path` lives: beside it, `{path}.log`.
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

/// Open the redb file at `path` (a missing one is created empty when `create`), as one
/// line naming the file, what is wrong and what to do when it cannot be. redb repairs a
/// file that was not closed cleanly on open; it asserts on some damage (a file cut
/// short) instead of answering an error, and that panic is reported as damage too.
fn open_database(path: &Path, create: bool) -> Result<Database, StoreError> {
    let opened = quietly(|| match create {
        true => Database::builder().create(path),
        false => Database::builder().open(path),
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => Err(StoreError::Unavailable(format!(
            "{}: the data file is in use by another process (a running `request-access \
             serve`?): while it runs, use its admin routes (/admin/pools, /admin/services, \
             /admin/overview), or keep the state in a store both can share (--store \
             redis://...)",
            path.display()
        ))),
        Ok(Err(DatabaseError::Storage(StorageError::Io(e))))
            if e.kind() != std::io::ErrorKind::InvalidData =>
        {
            Err(StoreError::Unavailable(format!(
                "{}: cannot open the data file: {e}",
                path.display()
            )))
        }
        Ok(Err(e)) => Err(damaged(path, e)),
        Err(panicked) => Err(damaged(path, format!("redb: {panicked}"))),
    }
}

/// The data file at `path` is damaged (`why`): what to do about it.
fn damaged(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!(
        "{}: the data file is damaged ({why}); restore it from a backup, or move it aside \
         to start with an empty state",
        path.display()
    ))
}

/// Run `f`; a panic in it comes back as its message instead of unwinding, and without
/// the default hook's report on stderr (other threads' panics are reported as ever).
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    thread_local! {
        static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        static CAUGHT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(std::cell::Cell::get) {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                CAUGHT.with(|caught| *caught.borrow_mut() = Some(message));
            } else {
                report(info);
            }
        }));
    });
    QUIET.with(|quiet| quiet.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|quiet| quiet.set(false));
    outcome.map_err(|_| {
        CAUGHT
            .with(|caught| caught.borrow_mut().take())
            .unwrap_or_else(|| "a panic".into())
    })
}

fn log_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".log");
    name.into()
}

/// The last revision and every entry on disk.
fn load(db: &Database) -> Result<(u64, Vec<Entry>), StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let revision = txn
        .open_table(META)
        .map_err(unavailable)?
        .get(REVISION)
        .map_err(unavailable)?
        .map_or(0, |g| g.value());
    let entries = txn
        .open_table(STATE)
        .map_err(unavailable)?
        .iter()
        .map_err(unavailable)?
        .map(|item| {
            let (key, value) = item.map_err(unavailable)?;
            let (revision, value) = value.value();
            Ok(Entry {
                key: key.value().to_string(),
                value: value.to_vec(),
                revision,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((revision, entries))
}

/// Flush queued write sets until the queue closes, a batch at a time, and report each
/// batch durable; on the first failure fail the store and stop.
fn flush_loop(
    queue: &Receiver<WriteSet>,
    durability: &Durability,
    disk: &mut Disk,
    mut flush: impl FnMut(&mut Disk, &[WriteSet]) -> Result<(), StoreError>,
) {
    let _guard = FailOnPanic(durability);
    loop {
        let Ok(first) = queue.recv() else {
            // Closed: fold the log into the file, so the next start replays nothing. If
            // this fails, the log is still there and the next start replays it.
            if let Err(e) = disk.checkpoint() {
                tracing::warn!(error = %e, "the durable store's closing checkpoint failed");
            }
            return;
        };
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        let (first, last) = (batch[0].revision, batch[batch.len() - 1].revision);
        match flush(disk, &batch) {
            Ok(()) => durability.flushed(last),
            Err(e) => {
                // Memory now holds commits the disk does not: serve nothing more.
                durability.fail(format!(
                    "the durable store failed to write revisions {first}..={last} ({e}); \
                     restart to reload the durable state"
                ));
                return;
            }
        }
    }
}

/// Write `batch` in one write transaction and commit it durably (fsync).
fn flush(disk: &mut Disk, batch: &[WriteSet]) -> Result<(), StoreError> {
    disk.log
        .append(batch.iter().map(|w| (w.revision, w.mutations.as_slice())))?;
    for write_set in batch {
        for m in &write_set.mutations {
            match m {
                Mutation::Put(k, v) => disk
                    .pending
                    .insert(k.clone(), Some((write_set.revision, v.clone()))),
                Mutation::Delete(k) => disk.pending.insert(k.clone(), None),
            };
        }
        disk.pending_revision = write_set.revision;
    }
    if disk.log.bytes() >= disk.checkpoint_bytes {
        disk.checkpoint()?;
    }
    Ok(())
}

/// Write `batch`, in order, within `txn`: each write set's puts under its own revision,
/// its deletes, and the last revision. Refuses revisions that do not grow beyond the
/// stored one. An error means the transaction must not be committed.
fn write_batch(txn: &WriteTransaction, batch: &[WriteSet]) -> Result<(), StoreError> {
    let mut last = stored_revision(txn)?;
    // Only each key's last change reaches the file, in key order: within a batch the
    // group's ring head, for one, changes with every create, and sorted writes touch
    // each B-tree page once.
    let mut net: BTreeMap<&str, Option<(u64, &[u8])>> = BTreeMap::new();
    for write_set in batch {
        if write_set.revision <= last {
            return Err(StoreError::Unavailable(format!(
                "write set of revision {} out of order after revision {last}",
                write_set.revision
            )));
        }
        last = write_set.revision;
        for m in &write_set.mutations {
            match m {
                Mutation::Put(k, v) => net.insert(k, Some((last, v))),
                Mutation::Delete(k) => net.insert(k, None),
            };
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    write_net(txn, net.into_iter(), last)
}

/// Write each key's last change (`None`: delete), in key order, and `revision` as the
/// last revision, within `txn`.
fn write_net<'a>(
    txn: &WriteTransaction,
    net: impl Iterator<Item = (&'a str, Option<(u64, &'a [u8])>)>,
    revision: u64,
) -> Result<(), StoreError> {
    let mut state = txn.open_table(STATE).map_err(unavailable)?;
    for (key, change) in net {
        match change {
            Some(row) => {
                state.insert(key, row).map_err(unavailable)?;
            }
            None => {
                state.remove(key).map_err(unavailable)?;
            }
        }
    }
    txn.open_table(META)
        .map_err(unavailable)?
        .insert(REVISION, revision)
        .map_err(unavailable)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use std::time::Duration;

    use super::super::contract::{absent, put};
    use super::*;
    use crate::clock::ManualClock;
    use crate::registry::Registry;

    /// Drive a store future to its end on this thread.
    fn wait<F: std::future::Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
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
        wait(super::super::contract::check(
            &DurableStore::open(&dir.path().join("s.redb")).unwrap(),
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_histories_are_linearizable() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableStore::open(&dir.path().join("s.redb")).unwrap();
        super::super::contract::check_linearizable(std::sync::Arc::new(store), 6, 150).await;
    }

    #[test]
    fn receives_a_copy_of_another_store() {
        let dir = tempfile::tempdir().unwrap();
        wait(super::super::contract::check_copy(
            &DurableStore::open(&dir.path().join("s.redb")).unwrap(),
        ));
    }

    /// A registry over `store`, its clock at 0.
    fn registry(store: Arc<DurableStore>) -> Registry {
        Registry::new(HashSet::new(), store, Arc::new(ManualClock::new(0)))
    }

    #[test]
    fn committed_state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let revision = {
            let store = Arc::new(DurableStore::open(&path).unwrap());
            wait(registry(store.clone()).register("svc", Some(Duration::from_millis(9)))).unwrap();
            match wait(store.commit(&[], &[Mutation::Put("k".into(), b"v".to_vec())])).unwrap() {
                CommitOutcome::Committed(r) => r,
                other => panic!("{other:?}"),
            }
        };
        let store = Arc::new(DurableStore::open(&path).unwrap());
        assert_eq!(
            wait(store.get(&["k".into()])).unwrap()[0]
                .as_ref()
                .unwrap()
                .revision,
            revision
        );
        assert_eq!(
            wait(registry(store.clone()).registration("svc")).unwrap(),
            Some(Registration {
                expires_at: Some(9)
            })
        );
        // Revisions keep growing across restarts, so no revision is ever reused.
        match wait(store.commit(&[], &[Mutation::Delete("k".into())])).unwrap() {
            CommitOutcome::Committed(r) => assert!(r > revision),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn registrations_of_an_older_file_become_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            // A file as written before registrations were keys: one reservation entry
            // at revision 4, and two registrations in their own table.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(STATE)
                .unwrap()
                .insert("n\u{1f}5550000", (4, &b"held"[..]))
                .unwrap();
            txn.open_table(META).unwrap().insert(REVISION, 4).unwrap();
            let mut services = txn.open_table(LEGACY_SERVICES).unwrap();
            services.insert("forever", None).unwrap();
            services.insert("until-9", Some(9)).unwrap();
            drop(services);
            txn.commit().unwrap();
        }
        let store = Arc::new(DurableStore::open(&path).unwrap());
        let listed = wait(registry(store.clone()).registrations()).unwrap();
        let expected = vec![
            ("forever".to_string(), Registration { expires_at: None }),
            (
                "until-9".to_string(),
                Registration {
                    expires_at: Some(9),
                },
            ),
        ];
        assert_eq!(listed, expected);
        assert_eq!(
            wait(store.get(&["n\u{1f}5550000".into()])).unwrap()[0]
                .as_ref()
                .map(|e| e.revision),
            Some(4)
        );
        // The migration took revision 5; reopening migrates nothing again.
        drop(store);
        let store = Arc::new(DurableStore::open(&path).unwrap());
        assert_eq!(
            wait(registry(store.clone()).registrations()).unwrap(),
            expected
        );
        assert_eq!(committed(wait(store.commit(&[], &[put("k", b"v")]))), 6);
        drop(store);
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(
            !txn.list_tables()
                .unwrap()
                .any(|t| t.name() == LEGACY_SERVICES.name()),
            "the legacy table is gone"
        );
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
                            match wait(
                                store.commit(&[absent(&key)], &[put(&key, value.as_bytes())]),
                            )
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
        for (key, entry) in keys.iter().zip(wait(store.get(&keys)).unwrap()) {
            let entry = entry.unwrap_or_else(|| panic!("acknowledged {key} lost"));
            let (t, r) = winner[key];
            assert_eq!(
                (entry.value, entry.revision),
                (t.to_string().into_bytes(), r)
            );
        }
        let last = *revisions.iter().max().unwrap();
        assert!(committed(wait(store.commit(&[], &[put("after", b"x")]))) > last);
    }

    /// Read the counter, add one, commit against the revision read; retry on conflict.
    fn increment(store: &DurableStore, key: &str) -> u64 {
        loop {
            let current = wait(store.get(&[key.to_string()])).unwrap().pop().unwrap();
            let (n, revision) = current.map_or((0, None), |e| {
                let n: u64 = String::from_utf8(e.value).unwrap().parse().unwrap();
                (n, Some(e.revision))
            });
            let precondition = Precondition {
                key: key.into(),
                revision,
            };
            match wait(store.commit(&[precondition], &[put(key, (n + 1).to_string().as_bytes())]))
                .unwrap()
            {
                CommitOutcome::Committed(r) => return r,
                CommitOutcome::Conflict(k) => assert_eq!(k, key),
            }
        }
    }

    #[test]
    fn concurrent_increments_of_one_counter_all_land_and_survive_reopening() {
        const THREADS: usize = 16;
        const INCREMENTS: usize = 50;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = DurableStore::open(&path).unwrap();
        let revisions: Vec<u64> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    let store = &store;
                    s.spawn(move || {
                        (0..INCREMENTS)
                            .map(|_| increment(store, "counter"))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        let distinct: HashSet<u64> = revisions.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            THREADS * INCREMENTS,
            "revisions are never shared"
        );
        let last = *distinct.iter().max().unwrap();

        drop(store);
        let store = DurableStore::open(&path).unwrap();
        let entry = wait(store.get(&["counter".into()])).unwrap()[0]
            .clone()
            .unwrap();
        assert_eq!(entry.value, (THREADS * INCREMENTS).to_string().into_bytes());
        assert_eq!(entry.revision, last);
        assert!(committed(wait(store.commit(&[], &[put("after", b"x")]))) > last);
    }

    fn write_set(revision: u64, mutations: Vec<Mutation>) -> WriteSet {
        WriteSet {
            revision,
            mutations,
        }
    }

    #[test]
    fn a_flushed_batch_lands_in_revision_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(DurableStore::open(&path).unwrap()); // creates the tables
        let db = Database::open(&path).unwrap();
        let batch = [
            write_set(1, vec![put("a", b"1"), put("b", b"1"), put("c", b"1")]),
            write_set(2, vec![put("a", b"2"), Mutation::Delete("b".into())]),
            write_set(3, vec![Mutation::Delete("zz".into()), put("b", b"3")]),
            // A commit that changed nothing still takes its revision.
            write_set(4, vec![]),
            write_set(5, vec![Mutation::Delete("c".into()), put("d", b"5")]),
        ];
        let txn = db.begin_write().unwrap();
        write_batch(&txn, &batch).unwrap();
        txn.commit().unwrap();

        // A batch that does not go beyond the stored revision is refused whole.
        let txn = db.begin_write().unwrap();
        let stale = [write_set(6, vec![put("e", b"6")]), write_set(5, vec![])];
        assert!(matches!(
            write_batch(&txn, &stale),
            Err(StoreError::Unavailable(m)) if m.contains("out of order")
        ));
        drop(txn); // aborts it
        drop(db);

        let store = DurableStore::open(&path).unwrap();
        let keys: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).into();
        let got: Vec<Option<(Vec<u8>, u64)>> = wait(store.get(&keys))
            .unwrap()
            .into_iter()
            .map(|e| e.map(|e| (e.value, e.revision)))
            .collect();
        assert_eq!(
            got,
            [
                Some((b"2".to_vec(), 2)),
                Some((b"3".to_vec(), 3)),
                None,
                Some((b"5".to_vec(), 5)),
                None,
            ]
        );
        // The batch's last revision is persisted, so the next commit goes beyond it.
        assert_eq!(committed(wait(store.commit(&[], &[put("g", b"8")]))), 6);
    }

    #[test]
    fn a_failed_flush_fails_the_store_until_it_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        // A disk that refuses any batch writing "boom".
        let store = DurableStore::open_with(&path, |disk, batch: &[WriteSet]| {
            let boom = batch
                .iter()
                .flat_map(|w| &w.mutations)
                .any(|m| matches!(m, Mutation::Put(k, _) if k == "boom"));
            if boom {
                return Err(StoreError::Unavailable("disk full".into()));
            }
            flush(disk, batch)
        })
        .unwrap();
        let r1 = committed(wait(store.commit(&[], &[put("ok", b"1")])));
        let failed = wait(store.commit(&[absent("boom")], &[put("boom", b"2")]));
        assert!(
            matches!(&failed, Err(StoreError::Unavailable(m)) if m.contains("disk full")),
            "{failed:?}"
        );
        // Memory may hold "boom", which the disk lost: nothing is served any more.
        let unavailable = |r: Result<(), StoreError>| {
            assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        };
        unavailable(wait(store.get(&["ok".into()])).map(drop));
        unavailable(wait(store.scan("a", "z", 10)).map(drop));
        unavailable(wait(store.commit(&[], &[put("later", b"3")])).map(drop));
        unavailable(wait(store.commit(&[absent("ok")], &[])).map(drop));

        drop(store);
        let store = DurableStore::open(&path).unwrap();
        let got = wait(store.get(&["ok".into(), "boom".into(), "later".into()])).unwrap();
        assert_eq!(got[0].as_ref().map(|e| e.revision), Some(r1));
        assert_eq!(got[1..], [None, None]);
        assert!(committed(wait(store.commit(&[], &[put("k", b"v")]))) > r1);
    }

    #[test]
    fn a_dead_flusher_makes_commits_unavailable_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableStore::open_with(&dir.path().join("s.redb"), |_, _: &[WriteSet]| {
            panic!("a flusher bug (expected by this test)")
        })
        .unwrap();
        for _ in 0..2 {
            let outcome = wait(store.commit(&[], &[put("k", b"v")]));
            assert!(
                matches!(&outcome, Err(StoreError::Unavailable(m)) if m.contains("flusher")),
                "{outcome:?}"
            );
        }
        assert!(matches!(
            wait(store.get(&["k".into()])),
            Err(StoreError::Unavailable(_))
        ));
        // Dropping joins the dead thread without panicking.
        drop(store);
    }

    #[test]
    fn a_conflict_is_answered_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = DurableStore::open(&path).unwrap();
        let r1 = committed(wait(store.commit(&[absent("a")], &[put("a", b"1")])));
        assert_eq!(
            wait(store.commit(&[absent("a")], &[put("a", b"2")])).unwrap(),
            CommitOutcome::Conflict("a".into())
        );
        assert_eq!(
            wait(store.commit(&[at("a", r1), absent("a")], &[put("b", b"3")])).unwrap(),
            CommitOutcome::Conflict("a".into())
        );
        drop(store);
        let store = DurableStore::open(&path).unwrap();
        let got = wait(store.get(&["a".into(), "b".into()])).unwrap();
        assert_eq!(
            got[0].as_ref().map(|e| (&e.value[..], e.revision)),
            Some((&b"1"[..], r1))
        );
        assert_eq!(got[1], None);
        // Conflicts took no revision.
        assert_eq!(
            committed(wait(store.commit(&[], &[put("c", b"4")]))),
            r1 + 1
        );
    }

    #[test]
    fn a_commit_whose_future_is_dropped_lands_whole_or_not_at_all() {
        use futures::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        // A slow disk, so that a commit is still waiting for its flush when dropped.
        let store = DurableStore::open_with(&path, |disk, batch: &[WriteSet]| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            flush(disk, batch)
        })
        .unwrap();
        // Never polled: it did nothing.
        drop(store.commit(&[], &[put("never", b"1")]));
        // Polled once: applied and queued whole, then dropped before its acknowledgement.
        let pending = store
            .commit(&[absent("a")], &[put("a", b"2"), put("b", b"2")])
            .now_or_never();
        assert!(pending.is_none(), "the flush was held back");
        let seen = wait(store.get(&["a".into(), "b".into(), "never".into()])).unwrap();
        assert!(seen[0].is_some() && seen[1].is_some() && seen[2].is_none());
        drop(store); // flushes what was queued
        let store = DurableStore::open(&path).unwrap();
        let got = wait(store.get(&["a".into(), "b".into(), "never".into()])).unwrap();
        let values: Vec<Option<Vec<u8>>> = got.into_iter().map(|e| e.map(|e| e.value)).collect();
        assert_eq!(values, [Some(b"2".to_vec()), Some(b"2".to_vec()), None]);
    }

    #[test]
    fn the_log_replays_what_the_file_misses_and_skips_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = DurableStore::open(&path).unwrap();
            assert_eq!(committed(wait(store.commit(&[], &[put("a", b"1")]))), 1);
        } // closed: the log is folded into the file, which is now at revision 1
        assert_eq!(std::fs::metadata(log_path(&path)).unwrap().len(), 0);
        {
            // As a crash would leave it: revision 1 both checkpointed and still logged
            // (the crash came before the log was emptied), then 2 and 3 only logged.
            let (mut log, _) = Log::open(&log_path(&path)).unwrap();
            let stale = [put("a", b"stale")];
            let later = [put("b", b"2"), put("c", b"2")];
            let last = [Mutation::Delete("c".into())];
            log.append([(1, &stale[..]), (2, &later[..])].into_iter())
                .unwrap();
            log.append([(3, &last[..])].into_iter()).unwrap();
        }
        let store = DurableStore::open(&path).unwrap();
        let got = wait(store.get(&["a".into(), "b".into(), "c".into()])).unwrap();
        let rows: Vec<Option<(Vec<u8>, u64)>> = got
            .into_iter()
            .map(|e| e.map(|e| (e.value, e.revision)))
            .collect();
        assert_eq!(
            rows,
            [Some((b"1".to_vec(), 1)), Some((b"2".to_vec(), 2)), None]
        );
        assert_eq!(committed(wait(store.commit(&[], &[put("d", b"4")]))), 4);
        assert!(std::fs::metadata(log_path(&path)).unwrap().len() > 0);
    }

    #[test]
    fn checkpoints_empty_the_log_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        // A checkpoint after every flush.
        let store = DurableStore::open_with_checkpoints(&path, 1, flush).unwrap();
        let mut last = 0;
        for i in 0..50 {
            last = increment(&store, "counter");
            if i % 10 == 0 {
                wait(store.commit(&[], &[Mutation::Delete("counter-shadow".into())])).unwrap();
            }
        }
        assert_eq!(std::fs::metadata(log_path(&path)).unwrap().len(), 0);
        drop(store);
        let store = DurableStore::open(&path).unwrap();
        let entry = wait(store.get(&["counter".into()])).unwrap()[0]
            .clone()
            .unwrap();
        assert_eq!((entry.value, entry.revision), (b"50".to_vec(), last));
    }
}
