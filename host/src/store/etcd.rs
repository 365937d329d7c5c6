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

mod proto;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use request_access_config::{StoreConfig, redact_url};
use request_access_guest::api::{CommitOutcome, Entry, KeyRange, Mutation, Precondition, Snapshot};
use request_access_state::{check_commit, check_keys, check_read, clamp_limit, mutation_key};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use self::proto::{request_op, response_op};
use super::{StateStore, StoreError};

/// etcd's own client port, where the URL names none.
const DEFAULT_PORT: u16 = 2379;

/// Room left under `--max-request-bytes` for what etcd adds around a transaction
/// before it checks the size (its raft request's envelope).
const REQUEST_ENVELOPE_BYTES: usize = 1024;

/// Largest answer accepted: a full scan of the largest values, with room to spare.
const MAX_ANSWER_BYTES: usize = 96 * 1024 * 1024;

/// One member of the cluster, as the URL names it.
struct Member {
    address: String,
    channel: Channel,
}

/// Many hosts' shared state in one etcd cluster.
pub struct EtcdStore {
    members: Vec<Member>,
    /// The member the next call goes to first: the leader at start, then whichever
    /// answered last.
    current: AtomicUsize,
    prefix: Vec<u8>,
    command_timeout: Duration,
    max_txn_ops: usize,
    max_request_bytes: usize,
    /// The URL, for messages.
    location: String,
}

/// Whether a failed call may be sent to another member.
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    /// A read: always (it changes nothing).
    Read,
    /// A commit: only when the member cannot have applied it.
    Unapplied,
}

/// The members `url` lists: `etcd://host[:port][,host[:port]...][/]`.
fn members_of(url: &str) -> Result<Vec<String>, String> {
    let rest = url
        .strip_prefix("etcd://")
        .ok_or("an etcd URL starts with etcd://")?;
    let hosts = rest.strip_suffix('/').unwrap_or(rest);
    if hosts.contains('@') {
        return Err(
            "etcd authentication is not supported: reach the cluster over a \
                    private network, without user and password in the URL"
                .into(),
        );
    }
    if hosts.contains(['/', '?', '#']) {
        return Err("an etcd URL lists members only: etcd://host:port,host:port".into());
    }
    hosts
        .split(',')
        .map(|member| {
            let member = member.trim();
            let (host, port) = match member.rsplit_once(':') {
                // An IPv6 address without a port is all colons inside brackets.
                Some((host, port)) if !port.ends_with(']') => (
                    host,
                    port.parse::<u16>()
                        .map_err(|_| format!("{member:?}: the port must be a number"))?,
                ),
                _ => (member, DEFAULT_PORT),
            };
            if host.is_empty() {
                return Err(format!("{member:?}: a member needs a host"));
            }
            Ok(format!("{host}:{port}"))
        })
        .collect()
}

/// The failures that show that the member did not take the request at all: it could
/// not be reached, or it refused the request for want of a leader to propose it to.
fn unapplied(status: &tonic::Status) -> bool {
    use std::error::Error;
    if status.message().contains("no leader") {
        return true;
    }
    // A connection that could not be made: the request never left.
    let mut source = status.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = e.source();
    }
    status.message().contains("error trying to connect")
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
            members,
            current: AtomicUsize::new(0),
            prefix: config.prefix.as_bytes().to_vec(),
            command_timeout: config.command_timeout,
            max_txn_ops: config.etcd_max_txn_ops as usize,
            max_request_bytes: config.etcd_max_request_bytes as usize,
            location,
        };
        store.find_leader(config.connect_timeout).await?;
        if store.members.len() == 1 {
            tracing::warn!(store = %store.location, "the URL names one etcd member: list every member so that the store can fail over");
        }
        Ok(store)
    }

    /// Ask every member for its status at once; the first call then goes to the
    /// leader, which saves a forwarding hop per commit. Fails when none answers.
    async fn find_leader(&self, limit: Duration) -> Result<(), StoreError> {
        let asks = self.members.iter().map(|member| async move {
            let answer = tokio::time::timeout(
                limit + self.command_timeout,
                unary::<_, proto::StatusResponse>(
                    member.channel.clone(),
                    proto::STATUS,
                    proto::StatusRequest {},
                ),
            )
            .await;
            match answer {
                Ok(Ok(status)) => Ok(status),
                Ok(Err(e)) => Err(format!("{}: {}", member.address, e.message())),
                Err(_) => Err(format!(
                    "{}: no answer within {} ms",
                    member.address,
                    limit.as_millis()
                )),
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut failures = Vec::new();
        let (mut leader, mut answering) = (None, None);
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(status) => {
                    if !status.errors.is_empty() {
                        tracing::warn!(store = %self.location, member = %self.members[i].address, errors = ?status.errors, "the etcd member reports errors");
                    }
                    let id = status.header.as_ref().map_or(0, |h| h.member_id);
                    if status.leader != 0 && status.leader == id {
                        leader = Some(i);
                    }
                    answering.get_or_insert(i);
                }
                Err(why) => failures.push(why),
            }
        }
        if failures.len() == self.members.len() {
            return Err(StoreError::Unavailable(format!(
                "{}: no member answered: {}",
                self.location,
                failures.join("; ")
            )));
        }
        for why in &failures {
            tracing::warn!(store = %self.location, failure = %why, "an etcd member does not answer");
        }
        // Any answering member beats one that did not answer.
        if let Some(i) = leader.or(answering) {
            self.current.store(i, Ordering::Relaxed);
        }
        Ok(())
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
        StoreError::Unavailable(format!("{}: malformed answer ({what})", self.location))
    }

    /// Send `request` to the current member, moving to the next one on a failure that
    /// `retry` allows, all within the command timeout.
    async fn call<Req, Resp>(
        &self,
        path: &'static str,
        request: Req,
        retry: Retry,
    ) -> Result<Resp, StoreError>
    where
        Req: Message + Clone + Send + Sync + 'static,
        Resp: Message + Default + Send + Sync + 'static,
    {
        let deadline = Instant::now() + self.command_timeout;
        let count = self.members.len();
        let mut failures = Vec::new();
        for attempt in 0..count {
            let index = self.current.load(Ordering::Relaxed) % count;
            let member = &self.members[index];
            let now = Instant::now();
            let mut limit = deadline.saturating_duration_since(now);
            // A read keeps half its time for a second member when the first is stalled.
            if retry == Retry::Read && attempt == 0 && count > 1 {
                limit /= 2;
            }
            let answer =
                tokio::time::timeout(limit, unary(member.channel.clone(), path, request.clone()))
                    .await;
            let (why, retryable) = match answer {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(status)) => {
                    if let Some(refusal) = self.refusal(&status) {
                        return Err(refusal);
                    }
                    let retryable = retry == Retry::Read || unapplied(&status);
                    (status.message().to_string(), retryable)
                }
                Err(_) => (
                    format!("no answer within {} ms", limit.as_millis()),
                    retry == Retry::Read,
                ),
            };
            failures.push(format!("{}: {why}", member.address));
            // The next call starts with the next member, unless another call moved on
            // already.
            let _ = self.current.compare_exchange(
                index,
                (index + 1) % count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if !retryable || Instant::now() >= deadline {
                break;
            }
        }
        Err(StoreError::Unavailable(format!(
            "{}: {}",
            self.location,
            failures.join("; ")
        )))
    }

    /// A failure that no other member would answer differently: the request broke one
    /// of the cluster's limits.
    fn refusal(&self, status: &tonic::Status) -> Option<StoreError> {
        let message = status.message();
        let setting = if message.contains("too many operations") {
            "--max-txn-ops (mirrored by [store] etcd_max_txn_ops)"
        } else if message.contains("request is too large") {
            "--max-request-bytes (mirrored by [store] etcd_max_request_bytes)"
        } else {
            return None;
        };
        Some(StoreError::Refused(format!(
            "{}: {message}; the cluster's {setting} is lower than the store was told",
            self.location
        )))
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

/// A revision as the contract counts it (etcd's are positive).
fn revision(r: i64) -> Option<u64> {
    u64::try_from(r).ok().filter(|r| *r > 0)
}

/// One gRPC call on `channel`.
async fn unary<Req, Resp>(
    channel: Channel,
    path: &'static str,
    request: Req,
) -> Result<Resp, tonic::Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let answer = grpc
        .unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(path),
            codec,
        )
        .await?;
    Ok(answer.into_inner())
}

fn range(key: Vec<u8>) -> proto::RequestOp {
    proto::RequestOp {
        request: Some(request_op::Request::Range(proto::RangeRequest {
            key,
            ..Default::default()
        })),
    }
}

/// The range answers of a transaction, one per operation asked.
fn ranges(
    answer: proto::TxnResponse,
    asked: usize,
) -> Option<impl Iterator<Item = Vec<proto::KeyValue>>> {
    (answer.responses.len() == asked).then(|| {
        answer.responses.into_iter().map(|r| match r.response {
            Some(response_op::Response::Range(range)) => range.kvs,
            None => Vec::new(),
        })
    })
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
            let answer: proto::TxnResponse = self.call(proto::TXN, txn, Retry::Read).await?;
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
        let answer: proto::RangeResponse = self.call(proto::RANGE, request, Retry::Read).await?;
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
        let answer: proto::TxnResponse = self.call(proto::TXN, txn, Retry::Read).await?;
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
        let answer: proto::TxnResponse = self.call(proto::TXN, txn, Retry::Unapplied).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_lists_members_with_etcds_port_by_default() {
        assert_eq!(
            members_of("etcd://10.0.0.1:2379,10.0.0.2,[::1]:2380/").unwrap(),
            ["10.0.0.1:2379", "10.0.0.2:2379", "[::1]:2380"]
        );
        assert_eq!(members_of("etcd://[::1]").unwrap(), ["[::1]:2379"]);
        for (url, why) in [
            ("etcd://u:pw@h:1", "authentication is not supported"),
            ("etcd://h:1/prefix", "lists members only"),
            ("etcd://h:port", "the port must be a number"),
            ("etcd://h:1,,h:2", "a member needs a host"),
        ] {
            let e = members_of(url).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("pw"), "{e}");
        }
    }

    use super::super::contract;
    use request_access_testkit::EtcdCluster;

    async fn connect(cluster: &EtcdCluster) -> EtcdStore {
        EtcdStore::connect(&cluster.url(), &StoreConfig::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn honours_the_store_contract() {
        let Some(cluster) = EtcdCluster::start(1) else {
            return;
        };
        contract::check(&connect(&cluster).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_histories_are_linearizable() {
        let Some(cluster) = EtcdCluster::start(3) else {
            return;
        };
        contract::check_linearizable(std::sync::Arc::new(connect(&cluster).await), 4, 150).await;
    }

    #[tokio::test]
    async fn receives_a_copy_of_another_store() {
        let Some(cluster) = EtcdCluster::start(1) else {
            return;
        };
        contract::check_copy(&connect(&cluster).await).await;
    }
}
