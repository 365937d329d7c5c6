//! The part of etcd's v3 gRPC API the etcd store speaks: `KV.Range`, `KV.Txn` and
//! `Maintenance.Status`, as prost messages declared by hand with the field numbers of
//! etcd's `api/etcdserverpb/rpc.proto` and `api/mvccpb/kv.proto` (stable since v3.0).
//! Declaring the dozen messages used, rather than generating all of them, keeps `protoc`
//! out of the build: a fresh clone builds with the Rust toolchain alone. Fields the store
//! never sets or reads are left out; protobuf skips unknown fields, so answers carrying
//! them decode all the same.

/// `etcdserverpb.KV/Range`.
pub const RANGE: &str = "/etcdserverpb.KV/Range";
/// `etcdserverpb.KV/Txn`.
pub const TXN: &str = "/etcdserverpb.KV/Txn";
/// `etcdserverpb.Maintenance/Status`.
pub const STATUS: &str = "/etcdserverpb.Maintenance/Status";

/// What every answer starts with.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    /// The cluster's id.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// The member that answered.
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    /// The key-value store's revision when the request was applied.
    #[prost(int64, tag = "3")]
    pub revision: i64,
    /// The raft term when the request was applied.
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The revision of the key's latest creation.
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    /// The revision of the key's latest change: the store's entry revision.
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    /// The value (empty in a keys-only range).
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// A read of one key (`range_end` empty) or of `key <= k < range_end`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    /// The key, or the range's first key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The range's end, exclusive; empty for one key.
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    /// Most keys answered; 0 for all.
    #[prost(int64, tag = "3")]
    pub limit: i64,
    /// Read the store as it was at this revision; 0 for now.
    #[prost(int64, tag = "4")]
    pub revision: i64,
    /// Revisions only, no values.
    #[prost(bool, tag = "8")]
    pub keys_only: bool,
}

/// The keys read, in key order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    /// The answer's header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// The keys found.
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    /// Whether more keys were in the range than the limit let through.
    #[prost(bool, tag = "3")]
    pub more: bool,
}

/// Write one key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Its new value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// Remove one key (`range_end` empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeRequest {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// One operation of a transaction's branch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    /// Which.
    #[prost(oneof = "request_op::Request", tags = "1, 2, 3")]
    pub request: Option<request_op::Request>,
}

/// The kinds of [`RequestOp`].
pub mod request_op {
    /// `RequestOp.request`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Request {
        /// A read.
        #[prost(message, tag = "1")]
        Range(super::RangeRequest),
        /// A write.
        #[prost(message, tag = "2")]
        Put(super::PutRequest),
        /// A removal.
        #[prost(message, tag = "3")]
        DeleteRange(super::DeleteRangeRequest),
    }
}

/// One operation's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseOp {
    /// Which.
    #[prost(oneof = "response_op::Response", tags = "1")]
    pub response: Option<response_op::Response>,
}

/// The kinds of [`ResponseOp`] the store reads (a put's or a delete's answer decodes as
/// an empty one, which the store does not read).
pub mod response_op {
    /// `ResponseOp.response`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Response {
        /// A read's answer.
        #[prost(message, tag = "1")]
        Range(super::RangeResponse),
    }
}

/// `Compare.result`: equal.
pub const COMPARE_EQUAL: i32 = 0;
/// `Compare.target`: the key's `mod_revision`.
pub const COMPARE_MOD: i32 = 2;

/// A transaction's condition on one key. A key that does not exist has a `mod_revision`
/// of 0 in a comparison.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Compare {
    /// [`COMPARE_EQUAL`].
    #[prost(int32, tag = "1")]
    pub result: i32,
    /// [`COMPARE_MOD`].
    #[prost(int32, tag = "2")]
    pub target: i32,
    /// The key.
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    /// The value compared with.
    #[prost(oneof = "compare::TargetUnion", tags = "6")]
    pub target_union: Option<compare::TargetUnion>,
}

/// `Compare.target_union`.
pub mod compare {
    /// The compared value.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum TargetUnion {
        /// A `mod_revision`.
        #[prost(int64, tag = "6")]
        ModRevision(i64),
    }
}

/// If every comparison holds, `success`, else `failure`: one atomic step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    /// The conditions.
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    /// What runs when they all hold.
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    /// What runs otherwise.
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

/// A transaction's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    /// The header; its revision is the transaction's when it wrote.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// Whether every comparison held.
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
    /// One answer per operation of the branch that ran.
    #[prost(message, repeated, tag = "3")]
    pub responses: Vec<ResponseOp>,
}

/// `Maintenance.Status` takes nothing.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

/// A member's view of the cluster.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    /// The header; `member_id` is the member answering.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// Its etcd version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// The leader's member id; 0 while there is none.
    #[prost(uint64, tag = "4")]
    pub leader: u64,
    /// Alarms and other errors the member reports (a full database among them).
    #[prost(string, repeated, tag = "8")]
    pub errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_comparison_with_revision_zero_is_sent() {
        // proto3 leaves zero scalars out, but a oneof's member is always sent: without
        // it, "the key is absent" would compare against nothing.
        let c = Compare {
            result: COMPARE_EQUAL,
            target: COMPARE_MOD,
            key: b"k".to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(0)),
        };
        let bytes = c.encode_to_vec();
        // target = 2 (field 2, varint), key (field 3), mod_revision = 0 (field 6).
        assert_eq!(bytes, [0x10, 2, 0x1a, 1, b'k', 0x30, 0]);
    }
}
