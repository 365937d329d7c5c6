//! The standalone adapter: the `plugin` world's imports implemented with standard WASI
//! only, so that the composed component runs under a generic host (`wasmtime run`).
//!
//! Everything lives in the directory preopened as `/state`:
//! - `config.toml`: the same configuration file as the reference host's (the embedded
//!   default when absent); its `[registry] services` are the active services;
//! - `reservations.bin`: the reservation state, replaced atomically (written to a
//!   temporary file, synced, renamed) on every commit, so a crash mid-write leaves the
//!   previous state whole;
//! - `reservations.lock`: held (created exclusively) by a commit from its read of the
//!   state to its rename, so invocations that overlap (scripts running several
//!   `wasmtime run` at once) never lose each other's writes. Reads need no lock: they
//!   read the file afresh each time, and a rename replaces it whole.
//!
//! The store logic is plain Rust ([`FileStore`]) so it is tested natively; the wasm
//! shell (`component.rs`) only maps the WIT exports onto it.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use request_access_guest::api::{CommitOutcome, Entry, KeyRange, Mutation, Precondition, Snapshot};
use request_access_state::RevisionedMap;
use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
mod component;
mod fs;

/// Where the preopened state directory is mounted in the guest.
pub const STATE_DIR: &str = "/state";
const CONFIG_FILE: &str = "config.toml";
const STATE_FILE: &str = "reservations.bin";
const LOCK_FILE: &str = "reservations.lock";
const TEMPORARY_FILE: &str = "reservations.tmp";
/// Longest a commit waits for another invocation's lock.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);
/// A lock older than this was left by an invocation that died holding it (a commit
/// holds it for milliseconds).
const LOCK_STALE: Duration = Duration::from_secs(30);
const FORMAT_V1: u8 = 1;

/// The configuration in `dir`, or the embedded default when there is none.
pub fn load_config(dir: &Path) -> Result<request_access_config::Config, String> {
    let path = dir.join(CONFIG_FILE);
    if path.exists() {
        request_access_config::Config::load(&path).map_err(|e| e.to_string())
    } else {
        Ok(request_access_config::Config::embedded())
    }
}

/// The state file's layout (format 1, postcard after the format byte).
#[derive(Default, Serialize, Deserialize)]
struct StateFile {
    revision: u64,
    /// key -> (revision, value)
    entries: BTreeMap<String, (u64, Vec<u8>)>,
}

/// The reservation state kept in one file, shared by every invocation on the directory.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// The state file in `dir` (an absent file is an empty state); a file that cannot
    /// be read is refused now rather than at the first call.
    pub fn open(dir: &Path) -> Result<FileStore, String> {
        let store = FileStore {
            dir: dir.to_path_buf(),
        };
        store.load()?;
        Ok(store)
    }

    /// The state as the file holds it now.
    fn load(&self) -> Result<RevisionedMap, String> {
        let path = self.dir.join(STATE_FILE);
        let file: StateFile = match fs::read(&self.dir, STATE_FILE) {
            Ok(Some(bytes)) => match bytes.split_first() {
                Some((&FORMAT_V1, body)) => postcard::from_bytes(body)
                    .map_err(|e| format!("{}: unreadable: {e}", path.display()))?,
                _ => return Err(format!("{}: unknown format", path.display())),
            },
            Ok(None) => StateFile::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let entries = file
            .entries
            .into_iter()
            .map(|(key, (revision, value))| Entry {
                key,
                value,
                revision,
            });
        Ok(RevisionedMap::with_entries(file.revision, entries))
    }

    /// `reservation-state.get`, on the file as it is now.
    pub fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, String> {
        self.load()?.get(keys)
    }

    /// `reservation-state.scan`, on the file as it is now.
    pub fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, String> {
        Ok(self.load()?.scan(start, end, limit))
    }

    /// `reservation-state.read`: the keys and ranges from one load of the file, so one
    /// state.
    pub fn read(&self, keys: &[String], ranges: &[KeyRange]) -> Result<Snapshot, String> {
        self.load()?.read(keys, ranges)
    }

    /// Under the lock: read the state afresh, check, apply, and persist before
    /// answering; a commit acknowledged is on disk.
    pub fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, String> {
        let _held = Lock::take(&self.dir)?;
        let mut state = self.load()?;
        let outcome = state.commit(preconditions, mutations)?;
        if matches!(outcome, CommitOutcome::Committed(_)) {
            self.persist(&state)?;
        }
        Ok(outcome)
    }

    fn persist(&self, state: &RevisionedMap) -> Result<(), String> {
        let file = StateFile {
            revision: state.revision(),
            entries: state
                .entries()
                .map(|e| (e.key, (e.revision, e.value)))
                .collect(),
        };
        let mut bytes = vec![FORMAT_V1];
        bytes.extend(postcard::to_stdvec(&file).map_err(|e| e.to_string())?);
        fs::replace(&self.dir, STATE_FILE, TEMPORARY_FILE, &bytes)
            .map_err(|e| format!("{}: cannot write: {e}", self.dir.join(STATE_FILE).display()))
    }
}

/// The commit lock: a file created exclusively in the state directory, removed when
/// dropped.
struct Lock<'a>(&'a Path);

impl<'a> Lock<'a> {
    /// Wait (a few milliseconds at a time, at most [`LOCK_PATIENCE`]) until no other
    /// invocation holds the lock, then hold it. A lock older than [`LOCK_STALE`] is
    /// taken over.
    fn take(dir: &'a Path) -> Result<Lock<'a>, String> {
        let path = dir.join(LOCK_FILE);
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match fs::create_exclusive(dir, LOCK_FILE) {
                Ok(true) => return Ok(Lock(dir)),
                Ok(false) => {}
                Err(e) => return Err(format!("{}: cannot create: {e}", path.display())),
            }
            if fs::age(dir, LOCK_FILE).is_some_and(|age| age > LOCK_STALE) {
                // Its holder died; a concurrent taker may have removed it already.
                fs::remove(dir, LOCK_FILE);
                continue;
            }
            if started.elapsed() > LOCK_PATIENCE {
                return Err(format!(
                    "{}: another invocation has held it for over {} s; if none is \
                     running, delete the file",
                    path.display(),
                    LOCK_PATIENCE.as_secs()
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        fs::remove(self.0, LOCK_FILE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &[u8]) -> Mutation {
        Mutation::Put(k.into(), v.to_vec())
    }

    #[test]
    fn commits_persist_and_conflicts_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let absent = Precondition {
            key: "a".into(),
            revision: None,
        };
        assert_eq!(
            store.commit(
                std::slice::from_ref(&absent),
                &[put("a", b"1"), put("b", b"2")]
            ),
            Ok(CommitOutcome::Committed(1))
        );
        assert_eq!(
            store.commit(&[absent], &[put("a", b"x")]),
            Ok(CommitOutcome::Conflict("a".into()))
        );
        let reopened = FileStore::open(dir.path()).unwrap();
        let got = reopened.get(&["a".into(), "c".into()]).unwrap();
        assert_eq!(got[0].as_ref().unwrap().value, b"1");
        assert_eq!(got[1], None);
        assert_eq!(
            reopened
                .scan("a", "z", 10)
                .unwrap()
                .iter()
                .map(|e| e.key.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(!dir.path().join("reservations.tmp").exists());
        assert!(!dir.path().join("reservations.lock").exists());
    }

    #[test]
    fn overlapping_stores_on_one_directory_lose_no_write() {
        let dir = tempfile::tempdir().unwrap();
        // Eight "invocations" at once, each opened before any writes, each adding 25
        // keys with read-then-compare-and-swap on a shared counter.
        std::thread::scope(|scope| {
            for t in 0..8 {
                let dir = dir.path();
                scope.spawn(move || {
                    let store = FileStore::open(dir).unwrap();
                    for i in 0..25 {
                        loop {
                            let counter = store.get(&["n".into()]).unwrap().remove(0);
                            let next = counter.as_ref().map_or(0, |e| e.value[0] as u32 + 1);
                            let precondition = Precondition {
                                key: "n".into(),
                                revision: counter.map(|e| e.revision),
                            };
                            let outcome = store
                                .commit(
                                    &[precondition],
                                    &[put("n", &[next as u8]), put(&format!("k{t}.{i}"), b"")],
                                )
                                .unwrap();
                            if matches!(outcome, CommitOutcome::Committed(_)) {
                                break;
                            }
                        }
                    }
                });
            }
        });
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(
            store.get(&["n".into()]).unwrap()[0].as_ref().unwrap().value,
            [199]
        );
        assert_eq!(store.scan("k", "l", 1000).unwrap().len(), 200);
        assert!(!dir.path().join("reservations.lock").exists());
    }

    #[test]
    fn a_lock_left_by_a_dead_invocation_is_taken_over_and_a_live_one_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let lock = dir.path().join("reservations.lock");
        // Another invocation holds the lock for 300 ms.
        std::fs::write(&lock, b"").unwrap();
        let held = std::thread::spawn({
            let lock = lock.clone();
            move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::remove_file(lock).unwrap();
            }
        });
        // Released after 300 ms: the commit waits and lands.
        assert!(matches!(
            store.commit(&[], &[put("a", b"1")]),
            Ok(CommitOutcome::Committed(_))
        ));
        held.join().unwrap();
        // A lock whose holder died long ago is taken over.
        std::fs::write(&lock, b"").unwrap();
        let long_ago = std::time::SystemTime::now() - LOCK_STALE - Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        assert!(matches!(
            store.commit(&[], &[put("b", b"2")]),
            Ok(CommitOutcome::Committed(_))
        ));
        assert!(!lock.exists());
    }

    #[test]
    fn a_torn_temporary_file_does_not_touch_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        store.commit(&[], &[put("k", b"v")]).unwrap();
        // A crash between writing the temporary file and renaming it.
        std::fs::write(dir.path().join("reservations.tmp"), b"\x01garbage").unwrap();
        let reopened = FileStore::open(dir.path()).unwrap();
        assert_eq!(
            reopened.get(&["k".into()]).unwrap()[0]
                .as_ref()
                .unwrap()
                .value,
            b"v"
        );
    }

    #[test]
    fn a_damaged_state_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reservations.bin"), b"\x07??").unwrap();
        assert!(FileStore::open(dir.path()).is_err());
    }
}
