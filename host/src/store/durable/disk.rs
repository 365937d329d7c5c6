//! What the flusher writes to: the append-only log every flush appends to (`log.rs`) and
//! the redb file it is folded into at checkpoints; and opening and loading that file,
//! damage reported as such.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
    WriteTransaction,
};
use request_access_guest::api::{Entry, Mutation};

use super::super::StoreError;
use super::log::Log;

/// key -> (revision, value)
pub(super) const STATE: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("state");
/// "revision" -> the last committed revision
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const REVISION: &str = "revision";

/// A checkpoint folds the log into the redb file once the log holds this much.
pub(super) const CHECKPOINT_BYTES: u64 = 16 << 20;

/// What one commit changed, to be written behind under its revision.
pub(super) struct WriteSet {
    pub(super) revision: u64,
    pub(super) mutations: Vec<Mutation>,
}

/// What the flusher writes to: the log every flush appends to, and the redb file the
/// log is folded into.
pub(super) struct Disk {
    pub(super) db: Arc<Database>,
    pub(super) log: Log,
    /// Each key's last change since the last checkpoint (`None`: deleted), and the
    /// revision of the newest write set among them.
    pub(super) pending: BTreeMap<String, Option<(u64, Vec<u8>)>>,
    pub(super) pending_revision: u64,
    pub(super) checkpoint_bytes: u64,
}

impl Disk {
    /// Write every change since the last checkpoint into redb (one transaction,
    /// fsynced), then empty the log.
    pub(super) fn checkpoint(&mut self) -> Result<(), StoreError> {
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

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Open the redb file at `path` (a missing one is created empty when `create`), as one
/// line naming the file, what is wrong and what to do when it cannot be. redb repairs a
/// file that was not closed cleanly on open; it asserts on some damage (a file cut
/// short) instead of answering an error, and that panic is reported as damage too.
pub(super) fn open_database(path: &Path, create: bool) -> Result<Database, StoreError> {
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
pub(super) fn damaged(path: &Path, why: impl std::fmt::Display) -> StoreError {
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

/// Where the log of the redb file at `path` lives: beside it, `{path}.log`.
pub(super) fn log_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".log");
    name.into()
}

/// The last revision and every entry on disk.
pub(super) fn load(db: &Database) -> Result<(u64, Vec<Entry>), StoreError> {
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

/// Append `batch` to the log and sync it (the flusher's default `Flush`); fold the
/// log into the file once it holds `checkpoint_bytes`.
pub(super) fn flush(disk: &mut Disk, batch: &[WriteSet]) -> Result<(), StoreError> {
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
pub(super) fn write_batch(txn: &WriteTransaction, batch: &[WriteSet]) -> Result<(), StoreError> {
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

/// The last revision the redb file holds, as `txn` sees it.
pub(super) fn stored_revision(txn: &WriteTransaction) -> Result<u64, StoreError> {
    Ok(txn
        .open_table(META)
        .map_err(unavailable)?
        .get(REVISION)
        .map_err(unavailable)?
        .map_or(0, |g| g.value()))
}
