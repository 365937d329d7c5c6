//! The standalone adapter: the `plugin` world's imports implemented with standard WASI
//! only, so that the composed component runs under a generic host (`wasmtime run`).
//!
//! Everything lives in the directory preopened as `/state`:
//! - `config.toml`: the same configuration file as the reference host's (the embedded
//!   default when absent); its `[registry] services` are the active services;
//! - `reservations.bin`: the reservation state, loaded once per process and replaced
//!   atomically (written to a temporary file, synced, renamed) on every commit, so a
//!   crash mid-write leaves the previous state whole.
//!
//! The store logic is plain Rust ([`FileStore`]) so it is tested natively; the wasm
//! shell (`component.rs`) only maps the WIT exports onto it.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use request_access_guest::api::{CommitOutcome, Entry, Mutation, Precondition};
use request_access_state::RevisionedMap;
use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
mod component;

/// Where the preopened state directory is mounted in the guest.
pub const STATE_DIR: &str = "/state";
const CONFIG_FILE: &str = "config.toml";
const STATE_FILE: &str = "reservations.bin";
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

/// The reservation state kept in one file.
pub struct FileStore {
    path: PathBuf,
    state: RevisionedMap,
}

impl FileStore {
    /// Load the state file in `dir` (an absent file is an empty state).
    pub fn open(dir: &Path) -> Result<FileStore, String> {
        let path = dir.join(STATE_FILE);
        let file: StateFile = match std::fs::read(&path) {
            Ok(bytes) => match bytes.split_first() {
                Some((&FORMAT_V1, body)) => postcard::from_bytes(body)
                    .map_err(|e| format!("{}: unreadable: {e}", path.display()))?,
                _ => return Err(format!("{}: unknown format", path.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
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
        Ok(FileStore {
            path,
            state: RevisionedMap::with_entries(file.revision, entries),
        })
    }

    /// `reservation-state.get`.
    pub fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, String> {
        self.state.get(keys)
    }

    /// `reservation-state.scan`.
    pub fn scan(&self, start: &str, end: &str, limit: u32) -> Vec<Entry> {
        self.state.scan(start, end, limit)
    }

    /// Check, apply, and persist before answering: a commit acknowledged is on disk.
    pub fn commit(
        &mut self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, String> {
        let mut next = self.state.clone();
        let outcome = next.commit(preconditions, mutations)?;
        if matches!(outcome, CommitOutcome::Committed(_)) {
            self.persist(&next)?;
            self.state = next;
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
        let temporary = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)
        };
        write().map_err(|e| format!("{}: cannot write: {e}", self.path.display()))
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
        let mut store = FileStore::open(dir.path()).unwrap();
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
                .iter()
                .map(|e| e.key.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(!dir.path().join("reservations.tmp").exists());
    }

    #[test]
    fn a_torn_temporary_file_does_not_touch_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path()).unwrap();
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
