//! Plain Rust mirrors of the WIT types, so the logic compiles and runs natively.
//!
//! The component shell (`component.rs`) converts between these and the generated bindings;
//! a native embedder (the host's baseline, its tests) implements [`Imports`] directly.

/// Milliseconds since the Unix epoch, UTC.
pub type Instant = u64;

/// The seed's Create request (`request-access.create-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// `_id`: the service asking; it must be active.
    pub service_id: String,
    /// `_resource_group`: the pool to take a number from.
    pub resource_group: String,
    /// `_provide_code`: also issue an access code.
    pub provide_code: bool,
    /// `_phone_number`: the caller's number, tied to the reservation.
    pub phone_number: Option<String>,
    /// `_booking_expiration_timeout`: seconds, overriding the group's and the global one.
    pub booking_expiration_timeout: Option<u32>,
}

/// Access information reserved for a service (`request-access.access-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessInfo {
    /// The number to dial.
    pub access_number: String,
    /// The code to type in, when one was asked for.
    pub access_code: Option<String>,
    /// How long the reservation lasts, in seconds.
    pub expiration_time: u32,
    /// When it ends.
    pub expires_at: Instant,
}

/// Access information and the group that lent its number (`placement.placed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// What `create` answers.
    pub access: AccessInfo,
    /// The group the number belongs to: the requested one or its fallback group.
    pub resource_group: String,
}

/// Why a create failed, and when asking again may succeed (`placement.refused`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What `create` answers.
    pub error: Error,
    /// For an exhausted pool: when a number is first known to become lendable.
    pub retry_at: Option<Instant>,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Refused {
            error,
            retry_at: None,
        }
    }
}

/// The `match-interaction` request (`request-access.match-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRequest {
    /// The dialled number.
    pub access_number: String,
    /// The code the caller typed in.
    pub access_code: Option<String>,
    /// The caller's number, when the network gives it.
    pub phone_number: Option<String>,
}

/// The reservation a call was matched to (`request-access.matched`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The service that held the number.
    pub service_id: String,
    /// The group the number belongs to.
    pub resource_group: String,
}

/// Which reservation to extend, and for how long (`lease.extend-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendRequest {
    /// `_id`: the service whose reservation it is.
    pub service_id: String,
    /// `_resource_group`: the group the service asked for.
    pub resource_group: String,
    /// `_booking_expiration_timeout`: seconds from now; the group's, then the global one.
    pub booking_expiration_timeout: Option<u32>,
}

/// A reservation's expiry after an extension (`lease.extended`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extended {
    /// The reservation's number, unchanged.
    pub access_number: String,
    /// Whole seconds from now until it expires (rounded up).
    pub expiration_time: u32,
    /// When it expires now.
    pub expires_at: Instant,
    /// The group's maximum lifetime cut the extension short.
    pub capped: bool,
}

/// Occupancy of one group (`request-access.pool-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Numbers in the group.
    pub size: u32,
    /// Numbers not free: held, in a grace window, or resting.
    pub live: u32,
    /// Numbers a reservation could get now.
    pub free: u32,
}

/// Why a call failed (`types.error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A parameter was refused.
    InvalidParameter {
        /// The wire name of the parameter (`_id`, ...).
        field: String,
        /// Why, completing "`field` ...".
        reason: String,
    },
    /// The service is not active in the registry.
    ServiceNotActive(String),
    /// No group has this name.
    UnknownResourceGroup(String),
    /// Every number of the group is held.
    NoAccessNumberAvailable(String),
    /// No live reservation matches the call.
    NoMatch,
    /// Too many wrong codes: the reservation was revoked, or, on a number shared by code,
    /// codes are refused until its wrong-code window ends.
    TooManyAttempts,
    /// The registry could not answer.
    RegistryFailure(String),
    /// The state store failed.
    StateStoreFailure(String),
}

impl Error {
    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidParameter { field, reason } => write!(f, "invalid {field}: {reason}"),
            Error::ServiceNotActive(id) => write!(f, "service {id:?} is not active"),
            Error::UnknownResourceGroup(g) => write!(f, "unknown resource group {g:?}"),
            Error::NoAccessNumberAvailable(g) => {
                write!(f, "no access number available in resource group {g:?}")
            }
            Error::NoMatch => f.write_str("no reservation matches"),
            Error::TooManyAttempts => f.write_str(
                "too many wrong access codes: the reservation was revoked (on a number \
                     shared by code: codes are refused until its wrong-code window ends)",
            ),
            Error::RegistryFailure(why) => write!(f, "service registry failure: {why}"),
            Error::StateStoreFailure(why) => write!(f, "state store failure: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// How a group chooses among its free numbers (`resource-groups.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The number free the longest.
    RoundRobin,
    /// A free number drawn uniformly.
    Random,
}

impl Strategy {
    /// Each strategy by its name in the configuration file and in the host's answers.
    pub const NAMES: [(&'static str, Strategy); 2] = [
        ("round-robin", Strategy::RoundRobin),
        ("random", Strategy::Random),
    ];

    /// This strategy's name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(name, _)| name)
    }

    /// The strategy named `name`, if one is.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
    }
}

/// Global options (`resource-groups.options`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Digits of an access code.
    pub access_code_length: u8,
    /// Seconds a reservation lasts when neither the request nor the group says.
    pub booking_expiration_timeout: u32,
    /// Wrong codes that revoke a reservation.
    pub max_code_attempts: u32,
}

/// How a group lends and takes back its numbers beyond its strategy
/// (`resource-groups.policy`, 0.1.1). The default is the 0.1.0 behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Seconds a number rests once its reservation ended before it is lent again.
    pub reuse_cooldown: u32,
    /// Seconds after expiry during which a call is still matched (at most the cool-off).
    pub match_grace: u32,
    /// The group that lends when this one is exhausted (one hop).
    pub fallback_group: Option<String>,
    /// Seconds a caller's last number is remembered, to lend it to them again (0: never).
    /// Numbers shared by code are not remembered.
    pub sticky_memory: u32,
    /// Live reservations one number carries at once, told apart by access code or by
    /// caller (0 and 1: the number is lent whole).
    pub reservations_per_number: u32,
    /// Wrong access codes a shared number takes within `wrong_code_window`; the next
    /// code tried on it in the window is refused without being compared.
    pub wrong_code_limit: u32,
    /// Seconds of the window `wrong_code_limit` counts in, from its first wrong code.
    pub wrong_code_window: u32,
    /// Prefer, for a create naming a caller, a free number sharing at least this many
    /// leading digits with the caller's (the longest shared prefix first: an area code
    /// over a country code); 0: no preference.
    pub prefer_caller_prefix: u32,
}

impl Policy {
    /// The 0.1.0 behaviour: numbers lent whole, at once again, and matched until expiry.
    pub const WHOLE: Policy = Policy {
        reuse_cooldown: 0,
        match_grace: 0,
        fallback_group: None,
        sticky_memory: 0,
        reservations_per_number: 1,
        wrong_code_limit: 0,
        wrong_code_window: 0,
        prefer_caller_prefix: 0,
    };

    /// Reservations one number carries at once.
    pub fn seats(&self) -> u32 {
        self.reservations_per_number.max(1)
    }

    /// Whether numbers are shared by code.
    pub fn shared(&self) -> bool {
        self.seats() > 1
    }

    /// Whether the group lends a caller their last number again.
    pub fn sticky(&self) -> bool {
        self.sticky_memory > 0 && !self.shared()
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::WHOLE
    }
}

/// How long a group keeps a reservation (`resource-groups.lease-policy`, 0.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    /// Seconds a reservation may last from its create, however often it is extended.
    pub max_lifetime: u32,
    /// A matched call keeps the reservation and restarts its timeout, instead of
    /// releasing it.
    pub sliding_expiry: bool,
}

impl LeasePolicy {
    /// The default maximum lifetime, in seconds: an hour.
    pub const DEFAULT_MAX_LIFETIME: u32 = 3600;
}

impl Default for LeasePolicy {
    fn default() -> LeasePolicy {
        LeasePolicy {
            max_lifetime: LeasePolicy::DEFAULT_MAX_LIFETIME,
            sliding_expiry: false,
        }
    }
}

/// One resource group (`resource-groups.group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// How it picks a free number.
    pub strategy: Strategy,
    /// Its own timeout, overriding the global one.
    pub booking_expiration_timeout: Option<u32>,
    /// Numbers in its pool.
    pub size: u32,
    /// A fingerprint of its numbers: it changes when they do.
    pub pool_id: u64,
}

/// A stored key (`reservation-state.entry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// What is stored under it.
    pub value: Vec<u8>,
    /// The revision of the commit that wrote it.
    pub revision: u64,
}

/// A range of keys as a scan reads it (`reservation-state.key-range`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// The first key that may be answered.
    pub start: String,
    /// The first key past the range.
    pub end: String,
    /// The most entries answered.
    pub limit: u32,
}

/// What a batched read found (`reservation-state.snapshot`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// One element per key asked, in order.
    pub entries: Vec<Option<Entry>>,
    /// One list per range asked, in order.
    pub ranges: Vec<Vec<Entry>>,
}

/// A commit precondition (`reservation-state.precondition`): `None` means "absent".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    /// The key checked.
    pub key: String,
    /// The revision it must have; `None`: it must be absent.
    pub revision: Option<u64>,
}

/// One change (`reservation-state.mutation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Store a value under a key.
    Put(String, Vec<u8>),
    /// Remove a key (absent or not).
    Delete(String),
}

/// What a commit did (`reservation-state.commit-outcome`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Applied under this revision.
    Committed(u64),
    /// This precondition failed: nothing was applied.
    Conflict(String),
}

/// What an [`Event`] says happened (`reservation-state.event-kind`, 0.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A reservation was made.
    Created,
    /// A live reservation's expiry moved.
    Extended,
    /// A call was matched to its reservation.
    Matched,
    /// A call typed a wrong access code.
    WrongCode,
    /// Too many wrong codes: revoked, or a shared number shut.
    Revoked,
    /// The service gave its reservation back.
    Released,
    /// The service asked again: its reservation ended for a new one.
    Replaced,
    /// A reservation expired unmatched and was reclaimed.
    Expired,
    /// A call reached a number of no live reservation.
    UnreservedCall,
}

/// Something that happened to a reservation (`reservation-state.event`, 0.1.1): never
/// an access code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The number's group (empty when not known).
    pub resource_group: String,
    /// The number.
    pub access_number: String,
    /// The reservation's service.
    pub service_id: Option<String>,
    /// Digits of the caller.
    pub caller: Option<String>,
    /// When the reservation expires (or expired).
    pub expires_at: Option<Instant>,
}

/// The imports of the `plugin` world, as the logic sees them. Store and registry
/// failures arrive as their message; the logic maps them to [`Error`].
pub trait Imports {
    /// `clock.now`.
    fn now(&mut self) -> Instant;
    /// `service-registry.is-active`.
    fn is_active(&mut self, service_id: &str) -> Result<bool, String>;
    /// `resource-groups.options`.
    fn options(&mut self) -> Options;
    /// `resource-groups.group`.
    fn group(&mut self, name: &str) -> Option<Group>;
    /// `resource-groups.policy` (0.1.1): a host of the 0.1.0 contract has none, and every
    /// group then lends as 0.1.0 did.
    fn policy(&mut self, _group: &str) -> Policy {
        Policy::default()
    }
    /// `resource-groups.lease-policy` (0.1.1): without one, the defaults (an hour at
    /// most, and a match releases).
    fn lease_policy(&mut self, _group: &str) -> LeasePolicy {
        LeasePolicy::default()
    }
    /// `resource-groups.number-at`.
    fn number_at(&mut self, group: &str, index: u32) -> Option<String>;
    /// `resource-groups.index-of`.
    fn index_of(&mut self, group: &str, number: &str) -> Option<u32>;
    /// `reservation-state.get`.
    fn get(&mut self, keys: &[String]) -> Result<Vec<Option<Entry>>, String>;
    /// `reservation-state.scan`.
    fn scan(&mut self, start: &str, end: &str, limit: u32) -> Result<Vec<Entry>, String>;
    /// `reservation-state.read` (0.1.1): a host of the 0.1.0 contract has none, and the
    /// keys and ranges are then read by a `get` and a `scan` each.
    fn read(&mut self, keys: &[String], ranges: &[KeyRange]) -> Result<Snapshot, String> {
        let entries = match keys.is_empty() {
            true => Vec::new(),
            false => self.get(keys)?,
        };
        let ranges = ranges
            .iter()
            .map(|r| self.scan(&r.start, &r.end, r.limit))
            .collect::<Result<_, _>>()?;
        Ok(Snapshot { entries, ranges })
    }
    /// `reservation-state.commit`.
    fn commit(
        &mut self,
        preconditions: Vec<Precondition>,
        mutations: Vec<Mutation>,
    ) -> Result<CommitOutcome, String>;
    /// `reservation-state.commit-recorded` (0.1.1): a host of the 0.1.0 contract has
    /// none, and the events are then not kept.
    fn commit_recorded(
        &mut self,
        preconditions: Vec<Precondition>,
        mutations: Vec<Mutation>,
        _events: Vec<Event>,
    ) -> Result<CommitOutcome, String> {
        self.commit(preconditions, mutations)
    }
}
