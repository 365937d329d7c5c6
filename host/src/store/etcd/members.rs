//! The cluster's members, and failing over between them: which member a call goes to,
//! and when a failed call may go to the next one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use super::super::StoreError;
use super::proto;

/// etcd's own client port, where the URL names none.
const DEFAULT_PORT: u16 = 2379;

/// Largest answer accepted: a full scan of the largest values, with room to spare.
const MAX_ANSWER_BYTES: usize = 96 * 1024 * 1024;

/// One member of the cluster, as the URL names it.
pub(super) struct Member {
    pub(super) address: String,
    pub(super) channel: Channel,
}

/// The members of one cluster, and which one the next call goes to first.
pub(super) struct Cluster {
    pub(super) members: Vec<Member>,
    /// The member the next call goes to first: the leader at start, then whichever
    /// answered last.
    pub(super) current: AtomicUsize,
    pub(super) command_timeout: Duration,
    /// The URL, for messages.
    pub(super) location: String,
}

/// Whether a failed call may be sent to another member.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Retry {
    /// A read: always (it changes nothing).
    Read,
    /// A commit: only when the member cannot have applied it.
    Unapplied,
}

/// The members `url` lists: `etcd://host[:port][,host[:port]...][/]`.
pub(super) fn members_of(url: &str) -> Result<Vec<String>, String> {
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

impl Cluster {
    /// Ask every member for its status at once; the first call then goes to the
    /// leader, which saves a forwarding hop per commit. Fails when none answers.
    pub(super) async fn find_leader(&self, limit: Duration) -> Result<(), StoreError> {
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

    /// Send `request` to the current member, moving to the next one on a failure that
    /// `retry` allows, all within the command timeout.
    pub(super) async fn call<Req, Resp>(
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
