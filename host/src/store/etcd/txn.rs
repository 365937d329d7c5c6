//! The operations of a transaction, and the answers etcd gives them.

use super::proto::{self, request_op, response_op};

/// A revision as the contract counts it (etcd's are positive).
pub(super) fn revision(r: i64) -> Option<u64> {
    u64::try_from(r).ok().filter(|r| *r > 0)
}

/// A range read of the one key `key`.
pub(super) fn range(key: Vec<u8>) -> proto::RequestOp {
    proto::RequestOp {
        request: Some(request_op::Request::Range(proto::RangeRequest {
            key,
            ..Default::default()
        })),
    }
}

/// The range answers of a transaction, one per operation asked.
pub(super) fn ranges(
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
