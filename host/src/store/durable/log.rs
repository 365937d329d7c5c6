//! The durable store's append-only log: each flush appends one frame holding a batch of
//! write sets and syncs it, which costs one sequential write and one `fdatasync`, where
//! a redb transaction per batch rewrote B-tree pages up to the root. The log is folded
//! into the redb file now and then (a checkpoint) and emptied.
//!
//! A frame is `[body length: u32 LE][CRC-32 of the body: u32 LE][body]`, the body the
//! postcard encoding of `[(revision, [(key, value or none for a delete)])]`. Reading
//! stops at the first frame that is short or fails its checksum: a crash in the middle
//! of an append leaves such a tail, and its write sets were never acknowledged (a commit
//! is answered only once its frame is synced), so the tail is cut off.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use request_access_guest::api::Mutation;

use super::super::StoreError;

/// Bytes of a frame's header.
const HEADER: usize = 8;
/// The largest frame read back: anything longer is a torn or foreign tail.
const MAX_FRAME: usize = 1 << 30;

/// One write set as the log keeps it.
pub(super) type LoggedWriteSet = (u64, Vec<Mutation>);

/// A frame's body as read back.
type Body = Vec<(u64, Vec<(String, Option<Vec<u8>>)>)>;
/// The same body as written, borrowing the write sets.
type BorrowedBody<'a> = Vec<(u64, Vec<(&'a str, Option<&'a [u8]>)>)>;

/// The log file, open for appending.
pub(super) struct Log {
    file: File,
    path: PathBuf,
    bytes: u64,
}

fn failed(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: cannot {what}: {e}", path.display()))
}

impl Log {
    /// Open (or create) the log at `path` and read back its write sets, in order; a torn
    /// tail is cut off.
    pub(super) fn open(path: &Path) -> Result<(Log, Vec<LoggedWriteSet>), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| failed(path, "open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| failed(path, "read", e))?;
        let (write_sets, valid) = decode(&bytes);
        if valid < bytes.len() {
            file.set_len(valid as u64)
                .and_then(|()| file.sync_data())
                .map_err(|e| failed(path, "cut the torn tail", e))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| failed(path, "seek", e))?;
        let log = Log {
            file,
            path: path.to_path_buf(),
            bytes: valid as u64,
        };
        Ok((log, write_sets))
    }

    /// Bytes in the log.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Append `batch` as one frame and sync it: once this returns, the batch survives a
    /// crash.
    pub(super) fn append<'a>(
        &mut self,
        batch: impl Iterator<Item = (u64, &'a [Mutation])>,
    ) -> Result<(), StoreError> {
        // Borrowed, so nothing is copied: postcard writes `&str`/`&[u8]` exactly as it
        // writes `String`/`Vec<u8>`, which is what `decode` reads back.
        let body: BorrowedBody = batch
            .map(|(revision, mutations)| {
                let changes = mutations
                    .iter()
                    .map(|m| match m {
                        Mutation::Put(k, v) => (k.as_str(), Some(v.as_slice())),
                        Mutation::Delete(k) => (k.as_str(), None),
                    })
                    .collect();
                (revision, changes)
            })
            .collect();
        let body = postcard::to_stdvec(&body).map_err(|e| failed(&self.path, "encode", e))?;
        let mut frame = Vec::with_capacity(HEADER + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        self.file
            .write_all(&frame)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| failed(&self.path, "append", e))?;
        self.bytes += frame.len() as u64;
        Ok(())
    }

    /// Empty the log (after a checkpoint made its contents durable elsewhere).
    pub(super) fn reset(&mut self) -> Result<(), StoreError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| failed(&self.path, "empty", e))?;
        self.bytes = 0;
        Ok(())
    }
}

/// The write sets of every whole, intact frame of `bytes`, and where they end.
fn decode(bytes: &[u8]) -> (Vec<LoggedWriteSet>, usize) {
    let mut write_sets = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let length = u32::from_le_bytes(header[..4].try_into().unwrap_or_default()) as usize;
        let checksum = u32::from_le_bytes(header[4..].try_into().unwrap_or_default());
        if length > MAX_FRAME {
            break;
        }
        let Some(body) = bytes.get(at + HEADER..at + HEADER + length) else {
            break;
        };
        if crc32fast::hash(body) != checksum {
            break;
        }
        let Ok(frame) = postcard::from_bytes::<Body>(body) else {
            break;
        };
        write_sets.extend(frame.into_iter().map(|(revision, changes)| {
            let mutations = changes
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => Mutation::Put(k, v),
                    None => Mutation::Delete(k),
                })
                .collect();
            (revision, mutations)
        }));
        at += HEADER + length;
    }
    (write_sets, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &[u8]) -> Mutation {
        Mutation::Put(k.into(), v.to_vec())
    }

    #[test]
    fn frames_read_back_in_order_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let first = [put("a", b"1"), Mutation::Delete("b".into())];
        let second = [put("c", b"3")];
        {
            let (mut log, read) = Log::open(&path).unwrap();
            assert!(read.is_empty());
            log.append([(1, &first[..]), (2, &second[..])].into_iter())
                .unwrap();
            log.append([(3, &second[..])].into_iter()).unwrap();
        }
        let whole = std::fs::read(&path).unwrap();
        // A crash in the middle of a fourth append: half a frame.
        let mut torn = whole.clone();
        torn.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5]);
        std::fs::write(&path, &torn).unwrap();
        let (log, read) = Log::open(&path).unwrap();
        assert_eq!(
            read,
            vec![
                (1, first.to_vec()),
                (2, second.to_vec()),
                (3, second.to_vec())
            ]
        );
        assert_eq!(log.bytes(), whole.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), whole, "the tail is gone");

        // A flipped bit in the last frame: it and what follows are dropped.
        let mut damaged = whole.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let (_, read) = Log::open(&path).unwrap();
        assert_eq!(read.len(), 2);
    }

    #[test]
    fn an_emptied_log_reads_back_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut log, _) = Log::open(&path).unwrap();
        log.append([(1, &[put("a", b"1")][..])].into_iter())
            .unwrap();
        log.reset().unwrap();
        log.append([(2, &[put("b", b"2")][..])].into_iter())
            .unwrap();
        drop(log);
        let (_, read) = Log::open(&path).unwrap();
        assert_eq!(read, vec![(2, vec![put("b", b"2")])]);
    }
}
