//! The `reservation-state` contract's shared parts, in plain Rust for every backend
//! (the host's memory and durable stores, the WASI adapter's state file, the embedding
//! example):
//! - the limits a backend enforces on what one call asks of it ([`MAX_KEYS_PER_CALL`],
//!   [`MAX_KEY_BYTES`], [`MAX_VALUE_BYTES`]) and their checks;
//! - [`RevisionedMap`], an ordered map with a revision per key and all-or-nothing,
//!   revision-checked commits: the contract's reference semantics.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::ops::Bound;

use request_access_guest::api::{CommitOutcome, Entry, KeyRange, Mutation, Precondition, Snapshot};

/// Most keys one `get` or commit may name, and most entries one `scan` answers.
pub const MAX_KEYS_PER_CALL: usize = 1024;
/// Most ranges one `read` may name.
pub const MAX_RANGES_PER_READ: usize = 16;
/// Longest key, in bytes: room for the longest key the plugin makes, a group name of
/// 128 and a service id of 256 four-byte characters (1,539 bytes).
pub const MAX_KEY_BYTES: usize = 2048;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Refuse more than [`MAX_KEYS_PER_CALL`] keys, or a key over [`MAX_KEY_BYTES`]; the
/// answer says which limit was broken.
pub fn check_keys<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> Result<(), String> {
    if keys.len() > MAX_KEYS_PER_CALL {
        return Err(format!(
            "{} keys in one call, at most {MAX_KEYS_PER_CALL}",
            keys.len()
        ));
    }
    for key in keys {
        if key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "a key of {} bytes, at most {MAX_KEY_BYTES}",
                key.len()
            ));
        }
    }
    Ok(())
}

/// Refuse a `read` of more than [`MAX_RANGES_PER_READ`] ranges, or whose keys break
/// [`check_keys`]'s limits (each range is limited as one `scan`: see [`clamp_limit`]).
pub fn check_read(keys: &[String], ranges: &[KeyRange]) -> Result<(), String> {
    if ranges.len() > MAX_RANGES_PER_READ {
        return Err(format!(
            "{} ranges in one read, at most {MAX_RANGES_PER_READ}",
            ranges.len()
        ));
    }
    check_keys(keys.iter().map(String::as_str))
}

/// Check a commit's size before touching a backend.
pub fn check_commit(preconditions: &[Precondition], mutations: &[Mutation]) -> Result<(), String> {
    check_keys(preconditions.iter().map(|p| p.key.as_str()))?;
    check_keys(mutations.iter().map(mutation_key))?;
    for m in mutations {
        if let Mutation::Put(_, value) = m
            && value.len() > MAX_VALUE_BYTES
        {
            return Err(format!(
                "a value of {} bytes, at most {MAX_VALUE_BYTES}",
                value.len()
            ));
        }
    }
    Ok(())
}

/// The key a mutation changes.
pub fn mutation_key(m: &Mutation) -> &str {
    match m {
        Mutation::Put(k, _) | Mutation::Delete(k) => k,
    }
}

/// A scan's `limit`, capped at [`MAX_KEYS_PER_CALL`].
pub fn clamp_limit(limit: u32) -> usize {
    (limit as usize).min(MAX_KEYS_PER_CALL)
}

/// An ordered map of keys to (revision, value) and the last revision it handed out.
///
/// [`RevisionedMap::commit`] checks every precondition before it changes anything, so a
/// commit applies whole or not at all; every commit takes the next revision, which
/// every key it puts carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevisionedMap {
    revision: u64,
    entries: BTreeMap<String, (u64, Vec<u8>)>,
}

impl RevisionedMap {
    /// An empty map at revision 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map holding `entries`, whose last revision is `revision` or that of its newest
    /// entry if greater: to serve a state loaded from elsewhere, handing out only
    /// revisions beyond any it holds.
    pub fn with_entries(revision: u64, entries: impl IntoIterator<Item = Entry>) -> Self {
        let entries: BTreeMap<String, (u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.key, (e.revision, e.value)))
            .collect();
        let revision = entries.values().map(|(r, _)| *r).fold(revision, u64::max);
        RevisionedMap { revision, entries }
    }

    /// The last revision a commit took.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.entries.iter().map(|(k, v)| entry(k, v))
    }

    /// One entry per key, in order. Enforces the limits.
    pub fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, String> {
        check_keys(keys.iter().map(String::as_str))?;
        Ok(keys
            .iter()
            .map(|k| self.entries.get(k).map(|v| entry(k, v)))
            .collect())
    }

    /// Up to `limit` (at most [`MAX_KEYS_PER_CALL`]) entries with `start <= key < end`,
    /// ascending.
    pub fn scan(&self, start: &str, end: &str, limit: u32) -> Vec<Entry> {
        if start >= end {
            return Vec::new();
        }
        self.entries
            .range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
            .take(clamp_limit(limit))
            .map(|(k, v)| entry(k, v))
            .collect()
    }

    /// `get` of `keys` and `scan` of each range, at this one revision. Enforces the
    /// limits.
    pub fn read(&self, keys: &[String], ranges: &[KeyRange]) -> Result<Snapshot, String> {
        check_read(keys, ranges)?;
        Ok(Snapshot {
            entries: self.get(keys)?,
            ranges: ranges
                .iter()
                .map(|r| self.scan(&r.start, &r.end, r.limit))
                .collect(),
        })
    }

    /// Check every precondition, then apply every mutation under the next revision.
    /// Enforces the limits; a conflict or a refusal changes nothing.
    pub fn commit(
        &mut self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, String> {
        check_commit(preconditions, mutations)?;
        if let Some(stale) = preconditions
            .iter()
            .find(|p| self.entries.get(&p.key).map(|(r, _)| *r) != p.revision)
        {
            return Ok(CommitOutcome::Conflict(stale.key.clone()));
        }
        self.revision += 1;
        for m in mutations {
            match m {
                Mutation::Put(k, v) => {
                    self.entries.insert(k.clone(), (self.revision, v.clone()));
                }
                Mutation::Delete(k) => {
                    self.entries.remove(k);
                }
            }
        }
        Ok(CommitOutcome::Committed(self.revision))
    }
}

fn entry(key: &str, (revision, value): &(u64, Vec<u8>)) -> Entry {
    Entry {
        key: key.to_string(),
        value: value.clone(),
        revision: *revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &[u8]) -> Mutation {
        Mutation::Put(k.into(), v.to_vec())
    }

    #[test]
    fn a_conflicting_commit_changes_nothing_and_takes_no_revision() {
        let mut map = RevisionedMap::new();
        let absent = Precondition {
            key: "a".into(),
            revision: None,
        };
        assert_eq!(
            map.commit(std::slice::from_ref(&absent), &[put("a", b"1")]),
            Ok(CommitOutcome::Committed(1))
        );
        let before = map.clone();
        assert_eq!(
            map.commit(&[absent], &[put("b", b"2")]),
            Ok(CommitOutcome::Conflict("a".into()))
        );
        assert_eq!(map, before);
        assert_eq!(
            map.commit(&[], &[put("b", b"2")]),
            Ok(CommitOutcome::Committed(2))
        );
    }

    #[test]
    fn loading_never_hands_out_a_revision_it_holds() {
        let newest = Entry {
            key: "k".into(),
            value: vec![],
            revision: 9,
        };
        let mut map = RevisionedMap::with_entries(3, [newest]);
        assert_eq!(map.revision(), 9);
        assert_eq!(map.commit(&[], &[]), Ok(CommitOutcome::Committed(10)));
    }

    #[test]
    fn limits_are_refused_with_the_limit_named() {
        let mut map = RevisionedMap::new();
        let huge = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(
            map.commit(&[], &[put("h", &huge)])
                .unwrap_err()
                .contains("value")
        );
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(map.get(&[long_key]).unwrap_err().contains("key of"));
        assert_eq!(map.scan("a", "z", u32::MAX), []);
        assert_eq!(map.revision(), 0);
    }
}
