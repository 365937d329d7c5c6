//! The one home of the conversions between [`api`](crate::api) and any bindings
//! generated from `wit/`: wit-bindgen's on either side of an interface (the plugin
//! imports `reservation-state`, the WASI adapter exports it) and wasmtime's `bindgen!`
//! in a host. Each generator makes types of its own, with the same field and case
//! names, so one macro per interface writes `From` in both directions for any of them:
//!
//! ```ignore
//! request_access_guest::convert_reservation_state!(bindings::contact_center::request_access::reservation_state);
//! ```
//!
//! Invoke them in the crate that generated the bindings (the orphan rule wants one local
//! type in each impl).

/// Convert every item of a list (a list of entries, preconditions, ...).
pub fn each<A, B: From<A>>(items: Vec<A>) -> Vec<B> {
    items.into_iter().map(B::from).collect()
}

/// Convert every present item of a list of optional ones (what `get` answers).
pub fn each_present<A, B: From<A>>(items: Vec<Option<A>>) -> Vec<Option<B>> {
    items.into_iter().map(|item| item.map(B::from)).collect()
}

/// `From` both ways between two enums with the same cases.
#[doc(hidden)]
#[macro_export]
macro_rules! __convert_enum {
    ($api:ty, $wit:ty { $($case:ident),* $(,)? }) => {
        impl ::core::convert::From<$api> for $wit {
            fn from(v: $api) -> Self {
                match v { $(<$api>::$case => Self::$case),* }
            }
        }
        impl ::core::convert::From<$wit> for $api {
            fn from(v: $wit) -> Self {
                match v { $(<$wit>::$case => Self::$case),* }
            }
        }
    };
}

/// `From` both ways between two records with the same fields.
#[doc(hidden)]
#[macro_export]
macro_rules! __convert_record {
    ($api:ty, $wit:ty { $($field:ident),* $(,)? }) => {
        // `into` also converts the fields whose types are generated (a strategy).
        #[allow(clippy::useless_conversion)]
        impl ::core::convert::From<$api> for $wit {
            fn from(v: $api) -> Self {
                Self { $($field: v.$field.into()),* }
            }
        }
        #[allow(clippy::useless_conversion)]
        impl ::core::convert::From<$wit> for $api {
            fn from(v: $wit) -> Self {
                Self { $($field: v.$field.into()),* }
            }
        }
    };
}

/// `From` both ways for `reservation-state.key-range`, `snapshot`, `event-kind` and
/// `event` (since 0.1.1), in bindings that have them.
#[cfg(not(feature = "released-wit"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __convert_read {
    ($($wit:ident)::+) => {
        $crate::__convert_record!($crate::api::Event, $($wit)::+::Event {
            kind, resource_group, access_number, service_id, caller, expires_at,
        });
        $crate::__convert_enum!($crate::api::EventKind, $($wit)::+::EventKind {
            Created, Extended, Matched, WrongCode, Revoked, Released, Replaced, Expired,
            UnreservedCall,
        });
        $crate::__convert_record!($crate::api::KeyRange, $($wit)::+::KeyRange { start, end, limit });
        impl ::core::convert::From<$crate::api::Snapshot> for $($wit)::+::Snapshot {
            fn from(s: $crate::api::Snapshot) -> Self {
                Self {
                    entries: $crate::conversions::each_present(s.entries),
                    ranges: s.ranges.into_iter().map($crate::conversions::each).collect(),
                }
            }
        }
        impl ::core::convert::From<$($wit)::+::Snapshot> for $crate::api::Snapshot {
            fn from(s: $($wit)::+::Snapshot) -> Self {
                Self {
                    entries: $crate::conversions::each_present(s.entries),
                    ranges: s.ranges.into_iter().map($crate::conversions::each).collect(),
                }
            }
        }
    };
}

/// The 0.1.0 contract has no `read`: nothing to convert.
#[cfg(feature = "released-wit")]
#[doc(hidden)]
#[macro_export]
macro_rules! __convert_read {
    ($($wit:ident)::+) => {};
}

/// `From` both ways for the types of `reservation-state` (`entry`, `precondition`,
/// `mutation`, `commit-outcome`, and since 0.1.1 `key-range` and `snapshot`) in the
/// generated module `$wit`.
#[macro_export]
macro_rules! convert_reservation_state {
    ($($wit:ident)::+) => {
        $crate::__convert_record!($crate::api::Entry, $($wit)::+::Entry { key, value, revision });
        $crate::__convert_record!($crate::api::Precondition, $($wit)::+::Precondition { key, revision });
        $crate::__convert_read!($($wit)::+);
        impl ::core::convert::From<$crate::api::Mutation> for $($wit)::+::Mutation {
            fn from(m: $crate::api::Mutation) -> Self {
                match m {
                    $crate::api::Mutation::Put(k, v) => Self::Put((k, v)),
                    $crate::api::Mutation::Delete(k) => Self::Delete(k),
                }
            }
        }
        impl ::core::convert::From<$($wit)::+::Mutation> for $crate::api::Mutation {
            fn from(m: $($wit)::+::Mutation) -> Self {
                match m {
                    $($wit)::+::Mutation::Put((k, v)) => Self::Put(k, v),
                    $($wit)::+::Mutation::Delete(k) => Self::Delete(k),
                }
            }
        }
        impl ::core::convert::From<$crate::api::CommitOutcome> for $($wit)::+::CommitOutcome {
            fn from(o: $crate::api::CommitOutcome) -> Self {
                match o {
                    $crate::api::CommitOutcome::Committed(r) => Self::Committed(r),
                    $crate::api::CommitOutcome::Conflict(k) => Self::Conflict(k),
                }
            }
        }
        impl ::core::convert::From<$($wit)::+::CommitOutcome> for $crate::api::CommitOutcome {
            fn from(o: $($wit)::+::CommitOutcome) -> Self {
                match o {
                    $($wit)::+::CommitOutcome::Committed(r) => Self::Committed(r),
                    $($wit)::+::CommitOutcome::Conflict(k) => Self::Conflict(k),
                }
            }
        }
    };
}

/// `From` both ways for the types of `resource-groups` (`strategy`, `global-options`,
/// `group-info`) in the generated module `$wit`.
#[macro_export]
macro_rules! convert_resource_groups {
    ($($wit:ident)::+) => {
        impl ::core::convert::From<$crate::api::Strategy> for $($wit)::+::Strategy {
            fn from(s: $crate::api::Strategy) -> Self {
                match s {
                    $crate::api::Strategy::RoundRobin => Self::RoundRobin,
                    $crate::api::Strategy::Random => Self::Random,
                }
            }
        }
        impl ::core::convert::From<$($wit)::+::Strategy> for $crate::api::Strategy {
            fn from(s: $($wit)::+::Strategy) -> Self {
                match s {
                    $($wit)::+::Strategy::RoundRobin => Self::RoundRobin,
                    $($wit)::+::Strategy::Random => Self::Random,
                }
            }
        }
        $crate::__convert_record!($crate::api::Options, $($wit)::+::GlobalOptions {
            access_code_length, booking_expiration_timeout, max_code_attempts,
        });
        $crate::__convert_record!($crate::api::Group, $($wit)::+::GroupInfo {
            name, strategy, booking_expiration_timeout, size, pool_id,
        });
    };
}

/// `From` both ways for `resource-groups.group-policy` (since 0.1.1) in the generated
/// module `$wit`.
#[macro_export]
macro_rules! convert_group_policy {
    ($($wit:ident)::+) => {
        $crate::__convert_record!($crate::api::Policy, $($wit)::+::GroupPolicy {
            reuse_cooldown, match_grace, fallback_group, sticky_memory,
            reservations_per_number, wrong_code_limit, wrong_code_window, prefer_caller_prefix,
        });
    };
}

/// `From` both ways for `resource-groups.group-lease` (since 0.1.1) in the generated
/// module `$wit`.
#[macro_export]
macro_rules! convert_lease_policy {
    ($($wit:ident)::+) => {
        $crate::__convert_record!($crate::api::LeasePolicy, $($wit)::+::GroupLease {
            max_lifetime, sliding_expiry,
        });
    };
}

/// `From` both ways for the types of `lease` (since 0.1.1) in the generated module
/// `$wit`; its `error` converts by [`convert_request_access!`](crate::convert_request_access!).
#[macro_export]
macro_rules! convert_lease {
    ($($wit:ident)::+) => {
        $crate::__convert_record!($crate::api::ExtendRequest, $($wit)::+::ExtendRequest {
            service_id, resource_group, booking_expiration_timeout,
        });
        $crate::__convert_record!($crate::api::Extended, $($wit)::+::Extended {
            access_number, expiration_time, expires_at, capped,
        });
    };
}

/// `From` both ways for the types of `placement` (since 0.1.1) in the generated module
/// `$wit`; its `request-access` types convert by [`convert_request_access!`](crate::convert_request_access!).
#[macro_export]
macro_rules! convert_placement {
    ($($wit:ident)::+) => {
        $crate::__convert_record!($crate::api::Placed, $($wit)::+::Placed {
            access, resource_group,
        });
        $crate::__convert_record!($crate::api::Refused, $($wit)::+::Refused {
            error, retry_at,
        });
    };
}

/// `From` both ways for the types of `request-access` (the requests, the answers and
/// `error`) in the generated module `$wit`.
#[macro_export]
macro_rules! convert_request_access {
    ($($wit:ident)::+) => {
        $crate::__convert_record!($crate::api::CreateRequest, $($wit)::+::CreateRequest {
            service_id, resource_group, provide_code, phone_number, booking_expiration_timeout,
        });
        $crate::__convert_record!($crate::api::AccessInfo, $($wit)::+::AccessInfo {
            access_number, access_code, expiration_time, expires_at,
        });
        $crate::__convert_record!($crate::api::MatchRequest, $($wit)::+::MatchRequest {
            access_number, access_code, phone_number,
        });
        $crate::__convert_record!($crate::api::Matched, $($wit)::+::Matched {
            service_id, resource_group,
        });
        $crate::__convert_record!($crate::api::PoolStatus, $($wit)::+::PoolOccupancy {
            size, live, free,
        });
        impl ::core::convert::From<$crate::api::Error> for $($wit)::+::Error {
            fn from(e: $crate::api::Error) -> Self {
                use $crate::api::Error as E;
                match e {
                    E::InvalidParameter { field, reason } => {
                        Self::InvalidParameter($($wit)::+::InvalidParameter { field, reason })
                    }
                    E::ServiceNotActive(id) => Self::ServiceNotActive(id),
                    E::UnknownResourceGroup(g) => Self::UnknownResourceGroup(g),
                    E::NoAccessNumberAvailable(g) => Self::NoAccessNumberAvailable(g),
                    E::NoMatch => Self::NoMatch,
                    E::TooManyAttempts => Self::TooManyAttempts,
                    E::RegistryFailure(why) => Self::RegistryFailure(why),
                    E::StateStoreFailure(why) => Self::StateStoreFailure(why),
                }
            }
        }
        impl ::core::convert::From<$($wit)::+::Error> for $crate::api::Error {
            fn from(e: $($wit)::+::Error) -> Self {
                use $($wit)::+::Error as E;
                match e {
                    E::InvalidParameter(p) => Self::InvalidParameter {
                        field: p.field,
                        reason: p.reason,
                    },
                    E::ServiceNotActive(id) => Self::ServiceNotActive(id),
                    E::UnknownResourceGroup(g) => Self::UnknownResourceGroup(g),
                    E::NoAccessNumberAvailable(g) => Self::NoAccessNumberAvailable(g),
                    E::NoMatch => Self::NoMatch,
                    E::TooManyAttempts => Self::TooManyAttempts,
                    E::RegistryFailure(why) => Self::RegistryFailure(why),
                    E::StateStoreFailure(why) => Self::StateStoreFailure(why),
                }
            }
        }
    };
}
