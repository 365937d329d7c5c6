//! The write-behind thread: it takes the queued write sets a batch at a time, has them
//! written durably, and wakes the commits each batch made durable (or fails the store).

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, MutexGuard, OnceLock};

use tokio::sync::oneshot;

use super::super::StoreError;
use super::disk::{Disk, WriteSet};

/// The most write sets one flush carries. The queue never holds more than one write set
/// per caller blocked in `commit`, so this only splits very large crowds.
const MAX_BATCH: usize = 1024;

/// Writes a batch of write sets, in revision order, durably; `Err` if it did not.
pub(super) trait Flush:
    FnMut(&mut Disk, &[WriteSet]) -> Result<(), StoreError> + Send + 'static
{
}
impl<F: FnMut(&mut Disk, &[WriteSet]) -> Result<(), StoreError> + Send + 'static> Flush for F {}

/// What the flusher tells the committers waiting for it.
pub(super) struct Durability {
    progress: Mutex<Progress>,
    /// Set once the store has failed: memory may then hold commits the disk never got.
    pub(super) failure: OnceLock<String>,
}

struct Progress {
    /// The highest revision known to be on disk.
    flushed: u64,
    /// Who waits for which revision. A flush wakes only the commits it made durable,
    /// not every waiting committer only for most to go back to sleep.
    waiters: BTreeMap<u64, oneshot::Sender<()>>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks halfway through a change.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Durability {
    pub(super) fn new(flushed: u64) -> Self {
        Durability {
            progress: Mutex::new(Progress {
                flushed,
                waiters: BTreeMap::new(),
            }),
            failure: OnceLock::new(),
        }
    }

    /// `Unavailable` once the store has failed.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        match self.failure.get() {
            Some(why) => Err(StoreError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    /// Fail the store for good (the first reason wins) and wake every waiter (a
    /// dropped sender tells its waiter the revision will never be durable).
    pub(super) fn fail(&self, why: String) {
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
    pub(super) async fn wait_for(&self, revision: u64) -> Result<(), StoreError> {
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

pub(super) fn flusher_gone() -> StoreError {
    StoreError::Unavailable("the durable store's flusher thread has stopped".into())
}

/// Flush queued write sets until the queue closes, a batch at a time, and report each
/// batch durable; on the first failure fail the store and stop.
pub(super) fn flush_loop(
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
