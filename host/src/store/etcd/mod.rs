//! The etcd backend: any number of hosts share one state in an etcd cluster, which
//! keeps every acknowledged commit through the loss of any minority of its members
//! (raft: a commit is acknowledged once a majority has it on disk).
//!
//! Layout, under the configured prefix `P`: every stored key is the etcd key `Pkey`,
//! its value the value, and the entry's revision the key's `mod_revision`, the
//! cluster's own revision of the transaction that last wrote it. etcd orders keys byte
//! by byte, as Rust orders `String`, so `scan` is one range read.
//!
//! Each call is one request to one member:
//! - `get` is one read-only transaction of a range read per key (an atomic snapshot);
//!   more keys than a transaction may hold take several, each reading at the first's
//!   revision, so the answer is still one snapshot.
//! - `commit` is one transaction: it compares each precondition's key's `mod_revision`
//!   (0 for "absent", which is what etcd compares a missing key as), writes on success
//!   and, on failure, reads the compared keys so that the answer names the key that
//!   failed. A commit larger than the cluster's `--max-txn-ops` or `--max-request-bytes`
//!   (mirrored by `[store] etcd_max_txn_ops` and `etcd_max_request_bytes`) is refused
//!   whole before it is sent.
//! - Reads are linearizable (etcd's default: served through the leader's read index),
//!   so a node never reads an older state than one another node already acknowledged.
//!
//! Failover: the store knows every member the URL lists and talks to one at a time,
//! starting with the leader. A member that fails a call (refused, reset, no leader, no
//! answer within the command timeout) hands the next call to the next member. A read
//! tries the next member at once; a commit does only when the failed member cannot have
//! applied it (it could not be reached, or it had no leader to propose to), because a
//! commit that timed out may have landed, as the [`StateStore`] contract allows. Every
//! call is bounded by the command timeout, so calls during an election fail fast as
//! [`StoreError::Unavailable`] (a 503 with Retry-After) rather than hang.

mod members;
mod proto;
#[cfg(test)]
mod tests;
mod txn;

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use prost::Message;
use request_access_config::{StoreConfig, redact_url};
use request_access_guest::api::{CommitOutcome, Entry, KeyRange, Mutation, Precondition, Snapshot};
use request_access_state::{check_commit, check_keys, check_read, clamp_limit, mutation_key};
use tonic::transport::Endpoint;

use self::members::{Cluster, Member, Retry, members_of};
use self::proto::request_op;
use self::txn::{range, ranges, revision};
use super::{StateStore, StoreError};

/// Room left under `--max-request-bytes` for what etcd adds around a transaction
/// before it checks the size (its raft request's envelope).
const REQUEST_ENVELOPE_BYTES: usize = 1024;

/// Many hosts' shared state in one etcd cluster.
pub struct EtcdStore {
    /// The members, the one calls go to first, the command timeout and the URL.
    cluster: Cluster,
    prefix: Vec<u8>,
    max_txn_ops: usize,
    max_request_bytes: usize,
}

impl EtcdStore {
    /// Connect to the cluster `url` lists with `config`'s timeouts, prefix and limits,
    /// starting with its leader; refused when no member answers within the connect
    /// timeout.
    pub async fn connect(url: &str, config: &StoreConfig) -> Result<EtcdStore, StoreError> {
        let location = redact_url(url);
        let refused = |why: String| StoreError::Unavailable(format!("{location}: {why}"));
        let addresses = members_of(url).map_err(refused)?;
        let members = addresses
            .into_iter()
            .map(|address| {
                let endpoint = Endpoint::from_shared(format!("http://{address}"))
                    .map_err(|e| refused(format!("{address}: {e}")))?
                    .connect_timeout(config.connect_timeout)
                    .tcp_nodelay(true)
                    // An idle connection to a member that vanished is found and closed.
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .keep_alive_while_idle(true);
                Ok(Member {
                    address,
                    channel: endpoint.connect_lazy(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let store = EtcdStore {
            cluster: Cluster {
                members,
                current: AtomicUsize::new(0),
                command_timeout: config.command_timeout,
                location,
            },
            prefix: config.prefix.as_bytes().to_vec(),
            max_txn_ops: config.etcd_max_txn_ops as usize,
            max_request_bytes: config.etcd_max_request_bytes as usize,
        };
        store.cluster.find_leader(config.connect_timeout).await?;
        if store.cluster.members.len() == 1 {
            tracing::warn!(store = %store.cluster.location, "the URL names one etcd member: list every member so that the store can fail over");
        }
        Ok(store)
    }

    /// `key` under the prefix.
    fn key(&self, key: &str) -> Vec<u8> {
        let mut name = Vec::with_capacity(self.prefix.len() + key.len());
        name.extend_from_slice(&self.prefix);
        name.extend_from_slice(key.as_bytes());
        name
    }

    /// The key a commit that puts nothing puts, so that it too takes a revision of its
    /// own (the contract gives every commit a greater one). A byte no UTF-8 string holds
    /// keeps it outside every scan.
    fn bump_key(&self) -> Vec<u8> {
        let mut name = self.prefix.clone();
        name.push(0xff);
        name
    }

    /// An entry read from the cluster, its key without the prefix.
    fn entry(&self, kv: proto::KeyValue) -> Result<Entry, StoreError> {
        let key = kv
            .key
            .strip_prefix(self.prefix.as_slice())
            .and_then(|k| String::from_utf8(k.to_vec()).ok())
            .ok_or_else(|| self.malformed("a key outside the prefix"))?;
        Ok(Entry {
            key,
            value: kv.value,
            revision: revision(kv.mod_revision).ok_or_else(|| self.malformed("a revision"))?,
        })
    }

    fn malformed(&self, what: &str) -> StoreError {
        StoreError::Unavailable(format!(
            "{}: malformed answer ({what})",
            self.cluster.location
        ))
    }

    /// Refuse a transaction the cluster would refuse, before sending it.
    fn check_size(&self, txn: &proto::TxnRequest) -> Result<(), StoreError> {
        let ops = txn
            .compare
            .len()
            .max(txn.success.len())
            .max(txn.failure.len());
        if ops > self.max_txn_ops {
            return Err(StoreError::Refused(format!(
                "a commit of {ops} operations, more than the {} one etcd transaction may \
                 hold: start the cluster with a larger --max-txn-ops and set [store] \
                 etcd_max_txn_ops to it",
                self.max_txn_ops
            )));
        }
        let bytes = txn.encoded_len() + REQUEST_ENVELOPE_BYTES;
        if bytes > self.max_request_bytes {
            return Err(StoreError::Refused(format!(
                "a commit of {bytes} bytes, more than the {} one etcd request may carry: \
                 start the cluster with a larger --max-request-bytes and set [store] \
                 etcd_max_request_bytes to it",
                self.max_request_bytes
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl StateStore for EtcdStore {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn is_remote(&self) -> bool {
        true
    }

    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, StoreError> {
        check_keys(keys.iter().map(String::as_str)).map_err(StoreError::Refused)?;
        let mut found = Vec::with_capacity(keys.len());
        // Later transactions read at the first one's revision: one snapshot in all.
        let mut at = 0;
        for chunk in keys.chunks(self.max_txn_ops) {
            let success = chunk
                .iter()
                .map(|k| {
                    let mut op = range(self.key(k));
                    if let Some(request_op::Request::Range(r)) = &mut op.request {
                        r.revision = at;
                    }
                    op
                })
                .collect();
            let txn = proto::TxnRequest {
                success,
                ..Default::default()
            };
            let answer: proto::TxnResponse =
                self.cluster.call(proto::TXN, txn, Retry::Read).await?;
            if at == 0 {
                at = answer.header.as_ref().map_or(0, |h| h.revision);
            }
            let kvs = ranges(answer, chunk.len()).ok_or_else(|| self.malformed("get"))?;
            for kvs in kvs {
                found.push(
                    kvs.into_iter()
                        .next()
                        .map(|kv| self.entry(kv))
                        .transpose()?,
                );
            }
        }
        Ok(found)
    }

    async fn scan(&self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, StoreError> {
        let limit = clamp_limit(limit);
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let request = proto::RangeRequest {
            key: self.key(start),
            range_end: self.key(end),
            limit: limit as i64,
            ..Default::default()
        };
        let answer: proto::RangeResponse = self
            .cluster
            .call(proto::RANGE, request, Retry::Read)
            .await?;
        if answer.kvs.len() > limit {
            return Err(self.malformed("scan"));
        }
        answer.kvs.into_iter().map(|kv| self.entry(kv)).collect()
    }

    async fn read(
        &self,
        keys: &[String],
        asked_ranges: &[KeyRange],
    ) -> Result<Snapshot, StoreError> {
        check_read(keys, asked_ranges).map_err(StoreError::Refused)?;
        // An empty range is answered empty without asking.
        let asked: Vec<(usize, &KeyRange)> = asked_ranges
            .iter()
            .map(|r| (clamp_limit(r.limit), r))
            .filter(|(limit, r)| r.start < r.end && *limit > 0)
            .collect();
        if keys.len() + asked.len() > self.max_txn_ops {
            // More than one transaction holds: a get, then a scan per range.
            let entries = self.get(keys).await?;
            let mut scanned = Vec::with_capacity(asked_ranges.len());
            for range in asked_ranges {
                scanned.push(self.scan(&range.start, &range.end, range.limit).await?);
            }
            return Ok(Snapshot {
                entries,
                ranges: scanned,
            });
        }
        // One read-only transaction: a range read per key, then one per range.
        let mut success: Vec<proto::RequestOp> = keys.iter().map(|k| range(self.key(k))).collect();
        success.extend(asked.iter().map(|(limit, r)| proto::RequestOp {
            request: Some(request_op::Request::Range(proto::RangeRequest {
                key: self.key(&r.start),
                range_end: self.key(&r.end),
                limit: *limit as i64,
                ..Default::default()
            })),
        }));
        let txn = proto::TxnRequest {
            success,
            ..Default::default()
        };
        let answer: proto::TxnResponse = self.cluster.call(proto::TXN, txn, Retry::Read).await?;
        let mut answers =
            ranges(answer, keys.len() + asked.len()).ok_or_else(|| self.malformed("read"))?;
        let mut entries = Vec::with_capacity(keys.len());
        for kvs in answers.by_ref().take(keys.len()) {
            entries.push(
                kvs.into_iter()
                    .next()
                    .map(|kv| self.entry(kv))
                    .transpose()?,
            );
        }
        let mut scanned = Vec::with_capacity(asked_ranges.len());
        for range in asked_ranges {
            let limit = clamp_limit(range.limit);
            if range.start >= range.end || limit == 0 {
                scanned.push(Vec::new());
                continue;
            }
            let kvs = answers.next().ok_or_else(|| self.malformed("read"))?;
            if kvs.len() > limit {
                return Err(self.malformed("read"));
            }
            scanned.push(
                kvs.into_iter()
                    .map(|kv| self.entry(kv))
                    .collect::<Result<_, _>>()?,
            );
        }
        Ok(Snapshot {
            entries,
            ranges: scanned,
        })
    }

    async fn commit(
        &self,
        preconditions: &[Precondition],
        mutations: &[Mutation],
    ) -> Result<CommitOutcome, StoreError> {
        check_commit(preconditions, mutations).map_err(StoreError::Refused)?;
        let mut compare = Vec::with_capacity(preconditions.len());
        for p in preconditions {
            // Absent compares as revision 0; a revision etcd cannot have fails as such.
            let expected = match p.revision {
                None => 0,
                Some(r) => match i64::try_from(r) {
                    Ok(r) if r > 0 => r,
                    _ => return Ok(CommitOutcome::Conflict(p.key.clone())),
                },
            };
            compare.push(proto::Compare {
                result: proto::COMPARE_EQUAL,
                target: proto::COMPARE_MOD,
                key: self.key(&p.key),
                target_union: Some(proto::compare::TargetUnion::ModRevision(expected)),
            });
        }
        // etcd refuses a transaction that touches a key twice; the last change of a
        // key is the one that stands, as in every other backend.
        let mut last = std::collections::HashMap::with_capacity(mutations.len());
        for (i, m) in mutations.iter().enumerate() {
            last.insert(mutation_key(m), i);
        }
        let mut success: Vec<proto::RequestOp> = mutations
            .iter()
            .enumerate()
            .filter(|(i, m)| last[mutation_key(m)] == *i)
            .map(|(_, m)| proto::RequestOp {
                request: Some(match m {
                    Mutation::Put(k, v) => request_op::Request::Put(proto::PutRequest {
                        key: self.key(k),
                        value: v.clone(),
                    }),
                    Mutation::Delete(k) => {
                        request_op::Request::DeleteRange(proto::DeleteRangeRequest {
                            key: self.key(k),
                        })
                    }
                }),
            })
            .collect();
        // etcd gives a transaction that changes nothing (deleting absent keys only) no
        // revision of its own; the contract gives every commit one.
        let puts = success
            .iter()
            .any(|op| matches!(op.request, Some(request_op::Request::Put(_))));
        if !puts {
            success.push(proto::RequestOp {
                request: Some(request_op::Request::Put(proto::PutRequest {
                    key: self.bump_key(),
                    value: Vec::new(),
                })),
            });
        }
        // On failure, the compared keys' revisions say which precondition failed.
        let failure = preconditions
            .iter()
            .map(|p| proto::RequestOp {
                request: Some(request_op::Request::Range(proto::RangeRequest {
                    key: self.key(&p.key),
                    keys_only: true,
                    ..Default::default()
                })),
            })
            .collect();
        let txn = proto::TxnRequest {
            compare,
            success,
            failure,
        };
        self.check_size(&txn)?;
        let answer: proto::TxnResponse =
            self.cluster.call(proto::TXN, txn, Retry::Unapplied).await?;
        if answer.succeeded {
            let r = answer
                .header
                .as_ref()
                .and_then(|h| revision(h.revision))
                .ok_or_else(|| self.malformed("commit"))?;
            return Ok(CommitOutcome::Committed(r));
        }
        let current =
            ranges(answer, preconditions.len()).ok_or_else(|| self.malformed("commit"))?;
        for (p, kvs) in preconditions.iter().zip(current) {
            let have = kvs.first().and_then(|kv| revision(kv.mod_revision));
            if have != p.revision {
                return Ok(CommitOutcome::Conflict(p.key.clone()));
            }
        }
        Err(self.malformed("a failed commit whose preconditions all hold"))
    }
}
