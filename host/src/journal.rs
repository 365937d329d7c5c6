//! The host's record of the events the plugin reports with its commits
//! (`reservation-state.commit-recorded`): kept in the same commit as the change they
//! describe, so that no acknowledged change goes untold and nothing rolled back is told.
//!
//! Two key ranges of the host's own, each event stored as its JSON
//! ([`request_access_wire::answer::event`]):
//!
//! | key | kept |
//! |---|---|
//! | `␞evq␟{at}␟{node}␟{seq}` | the outbox: until the webhook has it and the stream has shown it, or until `retry_for` |
//! | `␞evl␟{number digits}␟{at}␟{node}␟{seq}` | the interaction log: for `log_retention` |
//!
//! `at` is the commit's instant (16 hex digits of ms), `node` a random number drawn at
//! start and `seq` a counter: ids are unique across a cluster and sort by time.

use std::sync::atomic::{AtomicU64, Ordering};

use request_access_guest::api::{Event, Mutation};
use request_access_guest::validate::digits;
use request_access_wire::answer;
use serde_json::Value;

use crate::config::Config;
use crate::store::{HOST_KEY_PREFIX, StateStore, StoreError};

/// The first key of the outbox.
pub const OUTBOX: &str = "\u{1e}evq\u{1f}";
/// The first key past the outbox.
pub const OUTBOX_END: &str = "\u{1e}evq\u{20}";
/// The first key of the interaction log.
pub const LOG: &str = "\u{1e}evl\u{1f}";
/// The first key past the interaction log.
pub const LOG_END: &str = "\u{1e}evl\u{20}";

/// Where this node writes events from.
pub struct Journal {
    node: u64,
    seq: AtomicU64,
}

impl Default for Journal {
    fn default() -> Self {
        Journal::new()
    }
}

impl Journal {
    /// A journal with a node number of its own.
    pub fn new() -> Journal {
        Journal {
            node: rand::random(),
            seq: AtomicU64::new(0),
        }
    }

    /// The puts that keep `events`, reported at `now_ms`, under `config`: nothing when
    /// nobody is told or keeps them. An unreserved call's group is the configured group
    /// holding the number, if one does.
    pub fn mutations(&self, config: &Config, events: &[Event], now_ms: u64) -> Vec<Mutation> {
        let (outbox, log) = (
            config.events.outbox(),
            !config.events.log_retention.is_zero(),
        );
        if !(outbox || log) {
            return Vec::new();
        }
        let mut puts = Vec::with_capacity(events.len() * 2);
        for event in events {
            let mut event = event.clone();
            if event.resource_group.is_empty()
                && let Some(group) = config
                    .groups
                    .iter()
                    .find(|g| g.pool.index_of(&event.access_number).is_some())
            {
                event.resource_group = group.name.clone();
            }
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let id = format!("{now_ms:016x}-{:016x}-{seq:016x}", self.node);
            let value = answer::event(&id, now_ms, &event).to_string().into_bytes();
            let tail = format!("{now_ms:016x}\u{1f}{:016x}\u{1f}{seq:016x}", self.node);
            if outbox {
                puts.push(Mutation::Put(format!("{OUTBOX}{tail}"), value.clone()));
            }
            if log {
                let number = digits(&event.access_number);
                puts.push(Mutation::Put(format!("{LOG}{number}\u{1f}{tail}"), value));
            }
        }
        puts
    }
}

/// The outbox key of events committed at `at_ms`, before any of them.
pub fn outbox_at(at_ms: u64) -> String {
    format!("{OUTBOX}{at_ms:016x}")
}

/// When the event at outbox or log key `key` was committed.
pub fn committed_at(key: &str) -> Option<u64> {
    let tail = key.strip_prefix(OUTBOX).or_else(|| {
        key.strip_prefix(LOG)
            .and_then(|t| t.split_once('\u{1f}'))
            .map(|(_, t)| t)
    })?;
    u64::from_str_radix(tail.get(..16)?, 16).ok()
}

/// What the interaction log holds for the number with these digits, oldest first, at
/// most `limit` events.
pub async fn interactions(
    store: &dyn StateStore,
    number_digits: &str,
    limit: u32,
) -> Result<Vec<Value>, StoreError> {
    let start = format!("{LOG}{number_digits}\u{1f}");
    let end = format!("{LOG}{number_digits}\u{20}");
    let entries = store.scan(&start, &end, limit).await?;
    Ok(entries
        .iter()
        .filter_map(|e| serde_json::from_slice(&e.value).ok())
        .collect())
}

/// Entries the janitor deletes per commit.
const PRUNE_BATCH: u32 = 256;

/// Delete the log's events older than its retention and the outbox's older than
/// `outbox_before_ms` (delivered, or past their retries), a batch per commit. Answers
/// how many went.
pub async fn prune(
    store: &dyn StateStore,
    config: &Config,
    now_ms: u64,
    outbox_before_ms: u64,
) -> Result<u64, StoreError> {
    let retention = u64::try_from(config.events.log_retention.as_millis()).unwrap_or(u64::MAX);
    let log_before = now_ms.saturating_sub(retention);
    let mut pruned = 0;
    // The outbox is ordered by time: its old events come first.
    loop {
        let old = store
            .scan(OUTBOX, &outbox_at(outbox_before_ms), PRUNE_BATCH)
            .await?;
        pruned += delete(store, old.iter().map(|e| e.key.clone())).await?;
        if old.len() < PRUNE_BATCH as usize {
            break;
        }
    }
    // The log is ordered by number: every entry is looked at, a page at a time.
    let mut start = LOG.to_string();
    loop {
        let page = store.scan(&start, LOG_END, PRUNE_BATCH).await?;
        let expired = page
            .iter()
            .filter(|e| committed_at(&e.key).is_some_and(|at| at < log_before))
            .map(|e| e.key.clone());
        pruned += delete(store, expired).await?;
        match page.last() {
            Some(last) if page.len() == PRUNE_BATCH as usize => start = format!("{}\0", last.key),
            _ => return Ok(pruned),
        }
    }
}

async fn delete(
    store: &dyn StateStore,
    keys: impl Iterator<Item = String>,
) -> Result<u64, StoreError> {
    let deletes: Vec<Mutation> = keys.map(Mutation::Delete).collect();
    if deletes.is_empty() {
        return Ok(0);
    }
    store.commit(&[], &deletes).await?;
    Ok(deletes.len() as u64)
}

const _: () = assert!(OUTBOX.as_bytes()[0] == HOST_KEY_PREFIX as u8);
