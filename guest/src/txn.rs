//! An optimistic transaction over the state import: reads are cached and remembered as
//! preconditions, writes are buffered, and `commit` sends them all in one atomic call.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::api::{CommitOutcome, Entry, Error, Event, Imports, KeyRange, Mutation, Precondition};

pub struct Txn<'a, I: Imports> {
    imports: &'a mut I,
    /// Revision of every key read (`None`: it was absent): the commit's preconditions.
    read_revisions: BTreeMap<String, Option<u64>>,
    /// The transaction's view: committed values read, overlaid with its own writes.
    /// A B-tree, not a hash map: a handful of keys, and no hashing to pay for.
    view: BTreeMap<String, Option<Vec<u8>>>,
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// Ranges read ahead by [`Txn::prefetch_with`], answered to the first scan of each.
    read_ahead: Vec<(KeyRange, Vec<Entry>)>,
    /// Keys taken to be absent unread ([`Txn::assume_absent`]).
    assumed: Vec<String>,
    /// What the writes do, told to the host with them ([`Txn::record`]).
    events: Vec<Event>,
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// A key read changed since; `on_assumed`: the key was one taken to be absent.
    Conflict {
        on_assumed: bool,
    },
}

fn store_failure(why: String) -> Error {
    Error::StateStoreFailure(why)
}

/// What the host answered for `range`, cut to its limit; a key outside it is a host
/// fault, not something to act on.
fn checked_range(range: &KeyRange, mut entries: Vec<Entry>) -> Result<Vec<Entry>, Error> {
    entries.truncate(range.limit as usize);
    let (start, end) = (range.start.as_str(), range.end.as_str());
    if let Some(stray) = entries
        .iter()
        .find(|e| !(start <= e.key.as_str() && e.key.as_str() < end))
    {
        return Err(store_failure(format!(
            "scan answered {:?}, outside the range asked for",
            stray.key
        )));
    }
    Ok(entries)
}

impl<'a, I: Imports> Txn<'a, I> {
    pub fn new(imports: &'a mut I) -> Self {
        Txn {
            imports,
            read_revisions: BTreeMap::new(),
            view: BTreeMap::new(),
            writes: BTreeMap::new(),
            read_ahead: Vec::new(),
            assumed: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Tell the host, with the commit, that `event` happened: kept only if it commits.
    pub fn record(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn imports(&mut self) -> &mut I {
        self.imports
    }

    /// Fetch the keys not yet seen in one host call.
    pub fn prefetch(&mut self, keys: &[String]) -> Result<(), Error> {
        self.prefetch_with(keys, None)
    }

    /// Fetch the keys not yet seen and read `range` ahead, in one host call: the first
    /// [`Txn::scan`] of exactly that range is answered from it.
    pub fn prefetch_with(&mut self, keys: &[String], range: Option<KeyRange>) -> Result<(), Error> {
        let missing: Vec<String> = keys
            .iter()
            .filter(|k| !self.view.contains_key(*k))
            .cloned()
            .collect();
        let entries = match range {
            None if missing.is_empty() => return Ok(()),
            None => self.imports.get(&missing).map_err(store_failure)?,
            Some(range) => {
                let ranges = std::slice::from_ref(&range);
                let mut snapshot = self.imports.read(&missing, ranges).map_err(store_failure)?;
                let Some(entries) = snapshot.ranges.pop().filter(|_| snapshot.ranges.is_empty())
                else {
                    return Err(store_failure(format!(
                        "read answered {} ranges for 1",
                        snapshot.ranges.len() + 1
                    )));
                };
                let entries = checked_range(&range, entries)?;
                self.read_ahead.push((range, entries));
                snapshot.entries
            }
        };
        if entries.len() != missing.len() {
            return Err(store_failure(format!(
                "get answered {} entries for {} keys",
                entries.len(),
                missing.len()
            )));
        }
        for (key, entry) in missing.into_iter().zip(entries) {
            self.read_revisions
                .insert(key.clone(), entry.as_ref().map(|e| e.revision));
            self.view.insert(key, entry.map(|e| e.value));
        }
        Ok(())
    }

    /// Take `key` to be absent without reading it: the commit checks it is. For a key
    /// that is nearly always absent where the caller looks, this saves a round trip; when
    /// it is there after all, the commit conflicts and the caller reads it next time.
    pub fn assume_absent(&mut self, key: &str) {
        if !self.view.contains_key(key) {
            self.read_revisions.insert(key.to_string(), None);
            self.view.insert(key.to_string(), None);
            self.assumed.push(key.to_string());
        }
    }

    pub fn get(&mut self, key: &str) -> Result<Option<&[u8]>, Error> {
        if !self.view.contains_key(key) {
            self.prefetch(&[key.to_string()])?;
        }
        Ok(self.view.get(key).and_then(|v| v.as_deref()))
    }

    /// Committed entries in `start..end` (the transaction's own writes are not merged:
    /// scan before writing). Each entry returned becomes a precondition.
    pub fn scan(
        &mut self,
        start: &str,
        end: &str,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let entries = self.scan_unrecorded(start, end, limit)?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            self.read_revisions
                .entry(entry.key.clone())
                .or_insert(Some(entry.revision));
            self.view
                .entry(entry.key.clone())
                .or_insert_with(|| Some(entry.value.clone()));
            out.push((entry.key, entry.value));
        }
        Ok(out)
    }

    /// Committed entries in `start..end`, neither cached nor made preconditions: for a
    /// count over more keys than one commit may check, whose use does not need them.
    pub fn scan_unrecorded(
        &mut self,
        start: &str,
        end: &str,
        limit: u32,
    ) -> Result<Vec<Entry>, Error> {
        let ahead = self
            .read_ahead
            .iter()
            .position(|(r, _)| r.start == start && r.end == end && r.limit == limit);
        if let Some(ahead) = ahead {
            return Ok(self.read_ahead.swap_remove(ahead).1);
        }
        let entries = self
            .imports
            .scan(start, end, limit)
            .map_err(store_failure)?;
        let range = KeyRange {
            start: start.to_string(),
            end: end.to_string(),
            limit,
        };
        checked_range(&range, entries)
    }

    /// The first key of `start..end` as this transaction sees it: committed keys it has
    /// not deleted, and keys it wrote. Not made a precondition.
    pub fn first_key(&mut self, start: &str, end: &str) -> Result<Option<String>, Error> {
        let range = (Bound::Included(start), Bound::Excluded(end));
        let deleted = self
            .writes
            .range::<str, _>(range)
            .filter(|(_, v)| v.is_none())
            .count();
        // Enough committed keys that one survives the deletions, if any does.
        let limit = u32::try_from(deleted + 1).unwrap_or(u32::MAX);
        let committed = self
            .scan_unrecorded(start, end, limit)?
            .into_iter()
            .map(|e| e.key)
            .find(|k| !matches!(self.writes.get(k), Some(None)));
        let written = self
            .writes
            .range::<str, _>(range)
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone());
        Ok(match (committed, written) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    pub fn put(&mut self, key: String, value: Vec<u8>) {
        self.view.insert(key.clone(), Some(value.clone()));
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: String) {
        self.view.insert(key.clone(), None);
        self.writes.insert(key, None);
    }

    /// Apply the writes if nothing read has changed since. `Ok(false)` on a conflict.
    pub fn commit(self) -> Result<bool, Error> {
        Ok(self.commit_for_outcome()? == Outcome::Committed)
    }

    /// [`Txn::commit`], telling a conflict on a key taken to be absent from others.
    pub fn commit_for_outcome(self) -> Result<Outcome, Error> {
        if self.writes.is_empty() && self.events.is_empty() {
            return Ok(Outcome::Committed);
        }
        let preconditions = self
            .read_revisions
            .into_iter()
            .map(|(key, revision)| Precondition { key, revision })
            .collect();
        let mutations = self
            .writes
            .into_iter()
            .map(|(key, value)| match value {
                Some(v) => Mutation::Put(key, v),
                None => Mutation::Delete(key),
            })
            .collect();
        let outcome = match self.events.is_empty() {
            true => self.imports.commit(preconditions, mutations),
            false => self
                .imports
                .commit_recorded(preconditions, mutations, self.events),
        };
        match outcome.map_err(store_failure)? {
            CommitOutcome::Committed(_) => Ok(Outcome::Committed),
            CommitOutcome::Conflict(key) => Ok(Outcome::Conflict {
                on_assumed: self.assumed.contains(&key),
            }),
        }
    }
}
